//! Benchmarks: each prints its figures (ratios side by side, not pass/fail).
use anyhow::Result;
use clap::Subcommand;

mod connect;
mod kernel;
mod overhead;
mod store;

#[derive(Subcommand)]
pub enum Bench {
    /// Traced vs untraced throughput of nginx and python3 http.server under wrk.
    Overhead(overhead::Args),
    /// OTLP ingest, disk, by-id, search and TraceQL metrics latency of the embedded store.
    Store(store::Args),
    /// Connectivity score: the fraction of requests that become one correct trace, per
    /// runtime and concurrency.
    Connect(connect::Args),
    /// Per-program cost of the kernel probes (BPF run-time statistics) under wrk load.
    Kernel(kernel::Args),
}

pub fn run(bench: Bench) -> Result<()> {
    match bench {
        Bench::Overhead(args) => overhead::run(&args),
        Bench::Store(args) => store::run(&args),
        Bench::Kernel(args) => kernel::run(&args),
        Bench::Connect(args) => connect::run(&args),
    }
}
