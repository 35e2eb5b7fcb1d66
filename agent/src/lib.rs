//! Sonde's binary crate: the capture path (eBPF capture → spans → OTLP) and the jobs that
//! compose it with the store and the reconciler, which live in their own crates
//! (`sonde-store`, `sonde-traceql`, `sonde-reconcile`). The module tree follows the data flow
//! in ARCHITECTURE.md: ebpf → conn → protocol → span → link → red / export; `app` runs the jobs.

pub mod app;
pub mod cli;
pub mod config;
pub mod conn;
pub mod ebpf;
pub mod export;
pub mod k8s;
pub mod link;
pub mod pipeline;
pub mod protocol;
pub mod red;
pub mod span;
