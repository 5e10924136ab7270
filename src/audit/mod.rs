//! L4 proof of integrity: Ed25519 signatures over canonical bytes, hash-chained per chain,
//! and the verifier auditors run. `wire` is the only module that knows the signed format.

mod chain;
pub mod jcs;
pub mod keys;
pub mod merkle;
pub mod proof;
pub mod verify;
pub mod wire;

pub use chain::{head_after, ChainHead, ChainSigner, CheckpointPolicy, SignedEvent};
pub use verify::{FailureReason, Verifier, VerifyFailure, VerifyOptions, VerifyReport};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("canonical encoding failed: {0}")]
    Encode(String),
    #[error("key file {path}: {message}")]
    Key { path: String, message: String },
}
