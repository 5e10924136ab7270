//! Control-plane API tokens: each has an ID (the name audit events carry), a role and the
//! secret itself. Only SHA-256 digests of the secrets are kept after loading; a presented
//! token is compared with every one of them in constant time.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::{read_secret_file, Secret, SecretError};

/// The environment variable that may hold tokens instead of a file:
/// `id:role:token[,id:role:token...]`.
pub const TOKENS_ENV: &str = "BIZRA_CONTROL_TOKENS";

/// Shorter tokens are refused: a token must not be guessable.
pub const MIN_TOKEN_CHARS: usize = 32;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every control request.
    Operator,
    /// Reads the control state; changes nothing.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("control tokens ({source_name}): {problems}")]
    Invalid {
        source_name: String,
        problems: String,
    },
}

/// One loaded token: the secret's digest only.
#[derive(Clone)]
struct Entry {
    id: String,
    role: Role,
    digest: [u8; 32],
}

/// Who presented a token that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `Bearer <token>`.
    Malformed,
    /// A bearer token that matches none.
    Unknown,
}

#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (&e.id, e.role)))
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSpec {
    id: String,
    role: Role,
    token: Secret,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret::new(String::deserialize(d)?))
    }
}

impl Tokens {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Tokens from `file` (TOML: `[[tokens]] id, role, token`; mode 0600) when given, else
    /// from the `BIZRA_CONTROL_TOKENS` environment variable, else none.
    pub fn load(file: &Path) -> Result<Self, TokenError> {
        if !file.as_os_str().is_empty() {
            let text = read_secret_file(file)?;
            return Self::parse_toml(text.expose(), &file.display().to_string());
        }
        match crate::secret::from_env(TOKENS_ENV) {
            Some(text) => Self::parse_env(text.expose()),
            None => Ok(Self::default()),
        }
    }

    fn parse_toml(text: &str, source_name: &str) -> Result<Self, TokenError> {
        // The parser's error could quote the line holding a token: report its kind only.
        let file: TokenFile = toml::from_str(text).map_err(|e| TokenError::Invalid {
            source_name: source_name.into(),
            problems: format!(
                "not a [[tokens]] list with id, role (operator|viewer) and token{}",
                e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default()
            ),
        })?;
        let specs = file
            .tokens
            .into_iter()
            .map(|t| (t.id, t.role, t.token))
            .collect();
        Self::from_specs(specs, source_name)
    }

    fn parse_env(text: &str) -> Result<Self, TokenError> {
        let mut specs = Vec::new();
        let mut problems = Vec::new();
        for (n, item) in text.split(',').enumerate() {
            let mut parts = item.trim().splitn(3, ':');
            let (id, role, token) = (parts.next(), parts.next(), parts.next());
            let role = match role {
                Some("operator") => Some(Role::Operator),
                Some("viewer") => Some(Role::Viewer),
                _ => None,
            };
            match (id, role, token) {
                (Some(id), Some(role), Some(token)) => {
                    specs.push((id.to_string(), role, Secret::new(token.to_string())))
                }
                _ => problems.push(format!(
                    "item {} is not id:role:token with role operator or viewer",
                    n + 1
                )),
            }
        }
        if !problems.is_empty() {
            return Err(TokenError::Invalid {
                source_name: TOKENS_ENV.into(),
                problems: problems.join("; "),
            });
        }
        Self::from_specs(specs, TOKENS_ENV)
    }

    fn from_specs(
        specs: Vec<(String, Role, Secret)>,
        source_name: &str,
    ) -> Result<Self, TokenError> {
        let mut problems = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        for (n, (id, role, token)) in specs.into_iter().enumerate() {
            let id_ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            // An ID that breaks the rules may be a token in the wrong place: never quote it.
            let name = if id_ok {
                format!("token {id:?}")
            } else {
                problems.push(format!(
                    "token {} has an ID that is not 1-64 characters of A-Z a-z 0-9 . _ -",
                    n + 1
                ));
                format!("token {}", n + 1)
            };
            if token.expose().chars().count() < MIN_TOKEN_CHARS {
                problems.push(format!(
                    "{name} is shorter than {MIN_TOKEN_CHARS} characters"
                ));
            }
            let digest: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
            if id_ok && entries.iter().any(|e| e.id == id) {
                problems.push(format!("{name} appears twice"));
            }
            if entries.iter().any(|e| bool::from(e.digest.ct_eq(&digest))) {
                problems.push(format!("{name} repeats another token's secret"));
            }
            entries.push(Entry { id, role, digest });
        }
        if !problems.is_empty() {
            return Err(TokenError::Invalid {
                source_name: source_name.into(),
                problems: problems.join("; "),
            });
        }
        Ok(Self { entries })
    }

    /// Authenticate an `Authorization` header value. Every token is compared (no early
    /// exit), each in constant time over equal-length digests.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthFailure> {
        let header = authorization.ok_or(AuthFailure::Missing)?;
        // The scheme name is case-insensitive (RFC 9110 section 11.1).
        let presented = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Malformed)?;
        let digest = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(presented.as_bytes())));
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&*digest)) {
                found = Some(e);
            }
        }
        found
            .map(|e| Caller {
                token_id: e.id.clone(),
                role: e.role,
            })
            .ok_or(AuthFailure::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str = "op-secret-0123456789abcdef0123456789";
    const VIEW: &str = "view-secret-0123456789abcdef01234567";

    fn tokens() -> Tokens {
        Tokens::parse_toml(
            &format!(
                "[[tokens]]\nid = \"ops\"\nrole = \"operator\"\ntoken = \"{OP}\"\n\
                 [[tokens]]\nid = \"dash\"\nrole = \"viewer\"\ntoken = \"{VIEW}\"\n"
            ),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn bearer_tokens_map_to_their_id_and_role() {
        let t = tokens();
        let op = t.authenticate(Some(&format!("Bearer {OP}"))).unwrap();
        assert_eq!((op.token_id.as_str(), op.role), ("ops", Role::Operator));
        let v = t.authenticate(Some(&format!("Bearer {VIEW}"))).unwrap();
        assert_eq!(v.role, Role::Viewer);
        assert_eq!(t.authenticate(None), Err(AuthFailure::Missing));
        assert_eq!(t.authenticate(Some(OP)), Err(AuthFailure::Malformed));
        assert!(t.authenticate(Some(&format!("bearer {OP}"))).is_ok());
        assert_eq!(
            t.authenticate(Some(&format!("Basic {OP}"))),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            t.authenticate(Some("Bearer wrong-token-0123456789abcdef0123")),
            Err(AuthFailure::Unknown)
        );
    }

    #[test]
    fn debug_shows_ids_not_tokens() {
        let shown = format!("{:?}", tokens());
        assert!(shown.contains("ops") && !shown.contains(OP) && !shown.contains(VIEW));
    }

    #[test]
    fn every_problem_is_listed_and_no_secret_is_quoted() {
        let e = Tokens::parse_env("a b:operator:short,x:admin:whatever,ok:viewer")
            .unwrap_err()
            .to_string();
        assert!(e.contains("item 2") && e.contains("item 3"), "{e}");
        let e = Tokens::parse_env(&format!(
            "bad id:operator:short,dup:viewer:{VIEW},dup:viewer:{VIEW}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("token 1 has an ID")
                && e.contains("shorter")
                && e.contains("twice")
                && !e.contains("bad id"),
            "{e}"
        );
        assert!(!e.contains(VIEW) && !e.contains("short,"), "{e}");
        let e = Tokens::parse_toml(
            &format!("[[tokens]]\nid = \"a\"\nrole = \"root\"\ntoken = \"{OP}\"\n"),
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains(OP), "{e}");
    }
}
