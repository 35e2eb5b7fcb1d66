//! The benchmark's reference tracer (`cargo xtask bench overhead --reference`): a minimal
//! capturing tracer run side by side with Sonde. Built only with `--features reference-tracer`.
use clap::Parser;

/// The least a syscall-tracepoint tracer that copies data does (shared/research/kernel-floor.md,
/// config C3), for comparison with Sonde's capture in the same run.
#[derive(Debug, Parser)]
#[command(name = "sonde-reference-tracer")]
struct Args {
    /// Processes to trace.
    #[arg(long = "pid", required = true)]
    pids: Vec<u32>,
}

fn main() -> std::process::ExitCode {
    sonde::ebpf::reference::run_command(&Args::parse().pids)
}
