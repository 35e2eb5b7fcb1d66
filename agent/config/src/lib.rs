//! The configuration vocabulary every Sonde crate shares: durations written the way Tempo's
//! and Prometheus's users write them (`10s`, `168h`, `1h30m`, `250ms`), parsed by one parser,
//! and [`Invalid`], the key and reason a section's `validate()` reports (the binary adds the
//! file).
pub mod duration;

/// A configuration value that is not acceptable: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct Invalid {
    /// The dotted path of the key, from the file's root (`store.retention`).
    pub key: String,
    /// What is wrong, and what would be right.
    pub reason: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}
