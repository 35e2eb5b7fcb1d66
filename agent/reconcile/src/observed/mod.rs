//! What Grafana holds: the HTTP API client the reconciler reads (and writes) through.
pub mod grafana;
