//! The embedded Tempo-compatible trace store.
pub mod traceql;
