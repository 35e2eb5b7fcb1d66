//! Sonde: zero-code HTTP tracing (eBPF capture → spans → OTLP), an embedded Tempo-compatible
//! store, and a Grafana datasource reconciler. The module tree follows the data flow in
//! ARCHITECTURE.md: ebpf → conn → protocol → span → red / export; store and reconcile beside.

pub mod cli;
pub mod config;
pub mod conn;
pub mod ebpf;
pub mod export;
pub mod pipeline;
pub mod protocol;
pub mod reconcile;
pub mod red;
pub mod selfmetrics;
pub mod sinks;
pub mod span;
pub mod store;
