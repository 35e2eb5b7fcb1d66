//! The `reconcile:` section of the config file, the `sonde reconcile` flags, and the job's entry.
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// The `reconcile:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSection {}

/// Flags of `sonde reconcile`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReconcileArgs {}

/// Run `sonde reconcile`.
pub fn run_reconcile(_args: ReconcileArgs) -> ExitCode {
    eprintln!("sonde reconcile: not available in this build yet");
    ExitCode::from(1)
}
