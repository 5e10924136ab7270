//! L4 proof of integrity: Ed25519 signatures over canonical bytes, hash-chained per chain,
//! and the verifier auditors run. `wire` is the only module that knows the signed format.

pub mod anchor;
mod chain;
pub mod encoded;
pub mod jcs;
pub mod keys;
pub mod merkle;
pub mod proof;
pub mod verify;
pub mod wire;

pub use chain::{
    checkpoint_head, head_after, ChainHead, ChainSigner, CheckpointHead, CheckpointPolicy,
    SignedEvent,
};
pub use verify::{FailureReason, Verifier, VerifyFailure, VerifyOptions, VerifyReport};

/// Lower-case hex of a 32-byte hash (`hex::encode` goes char by char; this is on the
/// signing path twice per event).
pub fn hex32(hash: &[u8; 32]) -> String {
    Hex32::of(hash).as_str().to_owned()
}

/// The 64 lower-case hex digits of a 32-byte hash, on the stack.
pub struct Hex32([u8; 64]);

impl Hex32 {
    pub fn of(hash: &[u8; 32]) -> Self {
        let mut digits = [0u8; 64];
        // 64 output bytes always fit 32 input bytes.
        let _ = hex::encode_to_slice(hash, &mut digits);
        Self(digits)
    }

    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("canonical encoding failed: {0}")]
    Encode(String),
    #[error("key file {path}: {message}")]
    Key { path: String, message: String },
}
