//! The `store:` section of the config file, the `sonde store` flags, and the job's entry.
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// The `store:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {}

/// Flags of `sonde store`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {}

/// Run `sonde store`.
pub fn run_store(_args: StoreArgs) -> ExitCode {
    eprintln!("sonde store: not available in this build yet");
    ExitCode::from(1)
}
