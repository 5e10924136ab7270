//! Signing keys: hex files, the secret one readable by its owner only.

use std::fs;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::AuditError;

fn key_err(path: &Path, message: impl Into<String>) -> AuditError {
    AuditError::Key {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Short, stable ID of a verifying key: first 16 hex digits of SHA-256 of its bytes.
pub fn key_id(vk: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(vk.as_bytes())[..8])
}

/// A fresh key from the operating system's CSPRNG.
pub fn generate() -> Result<SigningKey, AuditError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| AuditError::Key {
        path: "<os rng>".into(),
        message: e.to_string(),
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Write `sk` as hex to `path` (mode 0600, never overwriting) and its public half to
/// `path.pub`.
pub fn write_new(path: &Path, sk: &SigningKey) -> Result<(), AuditError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| key_err(dir, e.to_string()))?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| key_err(path, e.to_string()))?;
    f.write_all(hex::encode(sk.to_bytes()).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| key_err(path, e.to_string()))?;
    let pub_path = public_path(path);
    fs::write(&pub_path, hex::encode(sk.verifying_key().as_bytes()))
        .map_err(|e| key_err(&pub_path, e.to_string()))
}

pub fn public_path(secret: &Path) -> std::path::PathBuf {
    let mut s = secret.as_os_str().to_owned();
    s.push(".pub");
    s.into()
}

/// Load a secret key, refusing files that group or others can read (the rule every
/// secret file follows: `secret::read_secret_file`); its text is zeroed after parsing.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, AuditError> {
    let text = crate::secret::read_secret_file(path).map_err(|e| AuditError::Key {
        path: path.display().to_string(),
        message: match e {
            crate::secret::SecretError::Readable { mode, .. } => {
                format!("mode {mode:o} lets others read the secret key; run chmod 600")
            }
            other => other.to_string(),
        },
    })?;
    let bytes = zeroize::Zeroizing::new(
        hex::decode(text.expose()).map_err(|_| key_err(path, "expected 64 hex digits"))?,
    );
    let bytes: &[u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| key_err(path, "expected 64 hex digits"))?;
    Ok(SigningKey::from_bytes(bytes))
}

/// Parse a verifying key from hex, rejecting weak (small-order) keys.
pub fn parse_verifying_key(hex_text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("expected 64 hex digits")?;
    let vk = VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())?;
    if vk.is_weak() {
        return Err("weak (small-order) public key".into());
    }
    Ok(vk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, Verifier};

    /// RFC 8032 section 7.1, TEST 1 and TEST 2.
    #[test]
    fn rfc8032_vectors() {
        let cases = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
        ];
        for (sk, pk, msg, sig) in cases {
            let sk = SigningKey::from_bytes(&hex::decode(sk).unwrap().try_into().unwrap());
            assert_eq!(hex::encode(sk.verifying_key().as_bytes()), pk);
            let msg = hex::decode(msg).unwrap();
            let s = sk.sign(&msg);
            assert_eq!(hex::encode(s.to_bytes()), sig);
            assert!(sk.verifying_key().verify(&msg, &s).is_ok());
        }
    }

    #[test]
    fn keyfile_roundtrip_and_permission_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/signing.key");
        let sk = generate().unwrap();
        write_new(&path, &sk).unwrap();
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), sk.to_bytes());
        assert!(write_new(&path, &sk).is_err(), "never overwrites");
        let vk = parse_verifying_key(&fs::read_to_string(public_path(&path)).unwrap()).unwrap();
        assert_eq!(vk, sk.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(load_signing_key(&path)
                .unwrap_err()
                .to_string()
                .contains("chmod 600"));
        }
    }
}
