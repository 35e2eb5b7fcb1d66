//! Errors of the store: opening and running it, and refusing an ingest.
use std::path::PathBuf;

/// Failures opening, writing or reading the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt store file {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("invalid store configuration: {0}")]
    Config(#[from] sonde_config::Invalid),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        addr: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what} server failed: {detail}")]
    Serve { what: &'static str, detail: String },
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(path: impl Into<PathBuf>, detail: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            path: path.into(),
            detail: detail.to_string(),
        }
    }
}

/// Why an ingest request was refused as a whole. Each maps to an OTLP/HTTP status and a gRPC
/// code; per-span rejections are reported as partial success instead.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid tenant: {0}")]
    Tenant(String),
    #[error(
        "RATE_LIMITED: ingestion rate limit ({limit} bytes/s) exceeded for tenant {tenant} while adding {bytes} bytes"
    )]
    RateLimited {
        tenant: String,
        limit: u64,
        bytes: usize,
    },
    #[error(
        "store is busy: {live_bytes} bytes of traces wait in memory to be written as blocks (store.limits.max_live_bytes); retry later"
    )]
    Busy { live_bytes: usize },
    /// The path is for the log; clients see only the cause.
    #[error("store cannot write its WAL: {source}")]
    Storage {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "this store already holds its maximum of {max} tenants (store.max_tenants); send to an existing tenant or raise the limit"
    )]
    TooManyTenants { max: usize },
    #[error("store is shutting down")]
    Closed,
}
