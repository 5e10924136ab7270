//! Secrets (API tokens, SASL passwords): read from files or the environment, held in memory
//! that is zeroed when dropped, and never shown by `Debug`, `Display`, logs or errors.

use std::path::Path;

use zeroize::Zeroizing;

/// The largest secret file read: a token list or a password, never megabytes.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A secret string. `Debug` and `Display` print `<redacted>`; the bytes are zeroed on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself, for the one place that must hand it on (a comparison, a client
    /// library's configuration).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret could not be read. Messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("secret file {path}: mode {mode:o} lets others read it; run chmod 600")]
    Readable { path: String, mode: u32 },
    #[error("secret file {path} is {bytes} bytes; at most {max} are read")]
    TooLarge { path: String, bytes: u64, max: u64 },
}

/// Read a secret file: readable by its owner only (mode 0600 or 0400; or by the engine's
/// own group, see `check_owner_only`) and at most `MAX_SECRET_FILE_BYTES` long.
/// Surrounding whitespace is trimmed.
pub fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    let shown = path.display().to_string();
    let err = |reason: String| SecretError::File {
        path: shown.clone(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    check_owner_only(path, &meta)?;
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(SecretError::TooLarge {
            path: shown,
            bytes: meta.len(),
            max: MAX_SECRET_FILE_BYTES,
        });
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| err("not UTF-8".into()))?;
    Ok(Secret::new(text.trim().to_string()))
}

/// Refuse a secret file that others may read, or that a group other than the engine's own
/// may read (on Unix). The engine's own group is allowed because Kubernetes mounts Secret
/// files as `root:<fsGroup>` mode 0440, readable through the pod's group only.
pub fn check_owner_only(path: &Path, meta: &std::fs::Metadata) -> Result<(), SecretError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode() & 0o777;
        let own_group = process_groups().contains(&meta.gid());
        let others = mode & 0o007 != 0;
        let foreign_group = mode & 0o070 != 0 && !own_group;
        if others || foreign_group {
            return Err(SecretError::Readable {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
    Ok(())
}

/// The engine's effective group and its supplementary groups.
#[cfg(unix)]
fn process_groups() -> Vec<u32> {
    // SAFETY: getegid has no preconditions; getgroups writes at most `len` entries into a
    // buffer of that length and returns how many it wrote (or -1).
    unsafe {
        let mut groups = vec![libc::getegid()];
        let len = libc::getgroups(0, std::ptr::null_mut());
        if len > 0 {
            let mut buf = vec![0 as libc::gid_t; len as usize];
            let n = libc::getgroups(len, buf.as_mut_ptr());
            if n > 0 {
                groups.extend_from_slice(&buf[..n as usize]);
            }
        }
        groups
    }
}

/// A secret from the environment variable `name`, when set and not empty.
pub fn from_env(name: &str) -> Option<Secret> {
    let value = Zeroizing::new(std::env::var(name).ok()?);
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| Secret::new(trimmed.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let s = Secret::new("hunter2-very-secret".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[cfg(unix)]
    #[test]
    fn group_readable_files_are_refused_and_0600_ones_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "  abc \n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret_file(&path).unwrap_err();
        assert!(
            matches!(e, SecretError::Readable { mode: 0o644, .. }),
            "{e}"
        );
        assert!(!e.to_string().contains("abc"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().expose(), "abc");
        // Kubernetes: root:<fsGroup> 0440, the engine reading through its own group.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().expose(), "abc");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert!(read_secret_file(&path).is_err());
    }
}
