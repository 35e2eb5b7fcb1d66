//! `cargo xtask …`: developer tasks. `setup` installs what a fresh machine lacks, `test` runs
//! every test the way CI does, `bench` prints figures, `helm-template` renders the Helm chart.
use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod setup;
mod test;

#[derive(Parser)]
#[command(name = "xtask", about = "Sonde developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what a fresh machine lacks (apt packages, rust-src, bpf-linker, tracefs). Idempotent.
    Setup,
    /// Set up, then run unit, kernel and end-to-end tests (as CI does).
    Test(test::Args),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Render deploy/helm/sonde as `helm template` would (no helm binary needed).
    HelmTemplate(xtask::helm::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test(args) => test::run(&args),
        Command::Bench(b) => bench::run(b),
        Command::HelmTemplate(args) => xtask::helm::run(&args),
    }
}
