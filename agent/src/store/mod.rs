//! The embedded Tempo-compatible trace store.
