//! Secrets read from a file or the environment, masked everywhere they could be printed.
use std::fmt;

use crate::config::SecretSource;

use super::Error;

/// What a masked secret prints as.
pub const MASK: &str = "******";

/// A secret value. `Debug` and `Display` print [`MASK`]; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place it is sent (an HTTP header or a Grafana write).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Read a secret from its source; `what` names it in errors (never the value).
pub fn load(source: &SecretSource, what: &str) -> Result<Secret, Error> {
    if let Some(v) = &source.value {
        return Ok(Secret::new(v.clone()));
    }
    if let Some(var) = &source.env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err(Error::Secret {
                what: what.into(),
                reason: format!("environment variable {var} is unset or empty"),
            }),
        };
    }
    if let Some(path) = &source.file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Secret {
            what: what.into(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(Error::Secret {
                what: what.into(),
                reason: format!("{} is empty", path.display()),
            });
        }
        return Ok(Secret::new(value));
    }
    Err(Error::Secret {
        what: what.into(),
        reason: "no source set".into(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn debug_and_display_are_masked() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), format!("{MASK} {MASK}"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_is_trimmed_and_empty_file_is_an_error() {
        let mut f = tempfile::NamedTempFile::new().expect("tempfile");
        writeln!(f, "tok-123").expect("write");
        let src = SecretSource {
            file: Some(f.path().into()),
            ..Default::default()
        };
        assert_eq!(load(&src, "t").expect("load").expose(), "tok-123");
        let empty = tempfile::NamedTempFile::new().expect("tempfile");
        let src = SecretSource {
            file: Some(empty.path().into()),
            ..Default::default()
        };
        let err = load(&src, "grafana token").expect_err("empty");
        assert!(err.to_string().contains("grafana token"), "{err}");
    }

    #[test]
    fn missing_env_is_an_error_that_names_the_variable() {
        let src = SecretSource {
            env: Some("SONDE_TEST_SURELY_UNSET_VAR".into()),
            ..Default::default()
        };
        let err = load(&src, "tenant").expect_err("unset");
        assert!(
            err.to_string().contains("SONDE_TEST_SURELY_UNSET_VAR"),
            "{err}"
        );
    }
}
