//! Command line: `sonde [all|agent|store|reconcile|doctor|gen-config]`. Each job owns its argument
//! struct and `run`; this file only dispatches and sets up logging.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Zero-code HTTP tracing with eBPF, an embedded Tempo-compatible store, and a Grafana
/// datasource reconciler.
#[derive(Debug, Parser)]
#[command(name = "sonde", version, about)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax). [default: info]
    #[arg(long, global = true, env = "SONDE_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Agent and embedded store in one process (what `sonde` alone runs).
    All(crate::app::all::AllArgs),
    /// eBPF capture → spans → OTLP to any endpoint.
    Agent(crate::app::agent::AgentArgs),
    /// The embedded Tempo-compatible store alone.
    Store(crate::app::store::StoreArgs),
    /// Make Grafana datasources correlate (traces ↔ metrics ↔ logs).
    Reconcile(crate::app::reconcile::ReconcileArgs),
    /// Check whether Sonde can run here and what it will see (exit 1 when capture cannot start).
    Doctor(crate::app::doctor::DoctorArgs),
    /// Print the default configuration file.
    GenConfig,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let command = cli
        .command
        .unwrap_or(Command::All(crate::app::all::AllArgs::default()));
    match command {
        Command::GenConfig => {
            print!("{}", crate::config::example_yaml());
            ExitCode::SUCCESS
        }
        Command::All(args) => crate::app::all::run_all(args),
        Command::Agent(args) => crate::app::agent::run_agent(args),
        Command::Store(args) => crate::app::store::run_store(args),
        Command::Reconcile(args) => crate::app::reconcile::run_reconcile(args),
        Command::Doctor(args) => crate::app::doctor::run_doctor(args),
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
