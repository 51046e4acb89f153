use std::fmt;
use std::path::Path;

use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{ApiError, ControlError};

/// The bearer token that mutating endpoints require. Only its SHA-256 is kept, and requests are
/// compared digest to digest in constant time, so neither content nor length leaks by timing.
#[derive(Clone)]
pub struct ApiToken {
    digest: [u8; 32],
}

/// Shorter tokens are refused: `openssl rand -hex 32` gives 64 characters.
const MIN_TOKEN_LEN: usize = 16;

impl ApiToken {
    /// A token from its text; surrounding whitespace (a file's trailing newline) is dropped.
    pub fn new(text: &str, origin: &str) -> Result<Self, ControlError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ControlError::BadToken {
                origin: origin.to_string(),
                reason: "it is empty",
            });
        }
        if text.len() < MIN_TOKEN_LEN {
            return Err(ControlError::BadToken {
                origin: origin.to_string(),
                reason: "it is shorter than 16 characters (try `openssl rand -hex 32`)",
            });
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ControlError::BadToken {
                origin: origin.to_string(),
                reason: "it contains whitespace or control characters",
            });
        }
        Ok(Self {
            digest: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// Reads the token from a file (e.g. a systemd credential).
    pub fn from_file(path: &Path) -> Result<Self, ControlError> {
        let text = std::fs::read_to_string(path).map_err(|source| ControlError::TokenFile {
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(&text, &format!("`{}`", path.display()))
    }

    /// True when `presented` is the token.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.digest.ct_eq(&digest))
    }

    /// Checks the `Authorization: Bearer …` header of a request.
    pub(crate) fn check(token: Option<&ApiToken>, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "api_token_not_configured",
                "this endpoint changes things and needs an API token, but none is configured; set http.token_file or ETCD_DR_API_TOKEN and restart",
            ));
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        match presented {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the API token as `Authorization: Bearer <token>`",
            )),
            Some(presented) if token.matches(presented.trim()) => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the API token does not match",
            )),
        }
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn matches_only_the_exact_token() {
        let token = ApiToken::new(&format!("{TOKEN}\n"), "test").unwrap();
        assert!(token.matches(TOKEN));
        assert!(!token.matches(&TOKEN[..31]));
        assert!(!token.matches(&format!("{TOKEN}0")));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
    }

    #[test]
    fn refuses_unusable_tokens() {
        for bad in ["", "  \n", "short", "0123456789abcdef 0123"] {
            assert!(ApiToken::new(bad, "test").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn reads_a_token_file_and_names_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("etcd-dr-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api-token");
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        assert!(ApiToken::from_file(&path).unwrap().matches(TOKEN));
        let missing = ApiToken::from_file(&dir.join("nope")).unwrap_err();
        assert!(missing.to_string().contains("http.token_file"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checks_the_authorization_header() {
        let token = ApiToken::new(TOKEN, "test").unwrap();
        let mut headers = HeaderMap::new();
        let status = |r: Result<(), ApiError>| r.err().map(|e| e.status);
        assert_eq!(
            status(ApiToken::check(Some(&token), &headers)),
            Some(StatusCode::UNAUTHORIZED)
        );
        headers.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert_eq!(
            status(ApiToken::check(Some(&token), &headers)),
            Some(StatusCode::UNAUTHORIZED)
        );
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {TOKEN}").parse().unwrap(),
        );
        assert_eq!(status(ApiToken::check(Some(&token), &headers)), None);
        assert_eq!(
            status(ApiToken::check(None, &headers)),
            Some(StatusCode::FORBIDDEN)
        );
    }
}
