//! The optional shared-secret check on ingest and query: with `store.auth_token_file` set, every
//! request but `/ready` must carry `Authorization: Bearer <token>` or HTTP basic auth whose
//! password is the token (what Grafana's Tempo datasource sends with "Basic auth" on).
use std::path::Path;

use base64::{Engine, engine::general_purpose::STANDARD};
use subtle::ConstantTimeEq;

use crate::StoreError;

/// The token requests must present.
#[derive(Clone)]
pub struct Auth {
    token: Vec<u8>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(<token>)")
    }
}

/// What a client is told when its credentials are missing or wrong.
pub const REFUSED: &str = "authentication required: send Authorization: Bearer <token>, or basic auth with the token as password";

impl Auth {
    /// Read the token from `path` (surrounding whitespace trimmed; empty is an error).
    pub fn from_file(path: &Path) -> Result<Self, StoreError> {
        let raw = std::fs::read_to_string(path).map_err(|e| StoreError::io(path, e))?;
        let token = raw.trim();
        if token.is_empty() {
            return Err(StoreError::corrupt(
                path,
                "store.auth_token_file is empty; put the token in it",
            ));
        }
        Ok(Self {
            token: token.as_bytes().to_vec(),
        })
    }

    #[cfg(test)]
    pub fn new(token: &str) -> Self {
        Self {
            token: token.as_bytes().to_vec(),
        }
    }

    /// Whether an `Authorization` header value carries the token.
    pub fn allows(&self, header: Option<&str>) -> bool {
        let Some(h) = header else { return false };
        let presented = if let Some(t) = strip_scheme(h, "bearer") {
            t.as_bytes().to_vec()
        } else if let Some(b) = strip_scheme(h, "basic") {
            let Ok(decoded) = STANDARD.decode(b.trim()) else {
                return false;
            };
            match decoded.iter().position(|&c| c == b':') {
                Some(i) => decoded[i + 1..].to_vec(),
                None => return false,
            }
        } else {
            return false;
        };
        presented.ct_eq(&self.token).into()
    }
}

/// The credentials after a case-insensitive scheme name and a space.
fn strip_scheme<'a>(h: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = h.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::bearer(Some("Bearer s3cret"), true)]
    #[case::bearer_lower(Some("bearer s3cret"), true)]
    #[case::basic(Some("Basic Z3JhZmFuYTpzM2NyZXQ="), true)]
    #[case::wrong(Some("Bearer nope"), false)]
    #[case::prefix(Some("Bearer s3cre"), false)]
    #[case::basic_wrong(Some("Basic Z3JhZmFuYTpub3Bl"), false)]
    #[case::basic_garbage(Some("Basic ***"), false)]
    #[case::no_scheme(Some("s3cret"), false)]
    #[case::missing(None, false)]
    fn checks_the_token(#[case] header: Option<&str>, #[case] ok: bool) {
        assert_eq!(Auth::new("s3cret").allows(header), ok);
    }
}
