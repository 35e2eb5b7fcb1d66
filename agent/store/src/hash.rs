//! The store's fast hasher for in-memory maps is the TraceQL crate's (metrics group by it too);
//! the row-group blooms on disk are keyed with it, so it must not change.
pub use sonde_traceql::hash::{FastHasher, FastMap};
