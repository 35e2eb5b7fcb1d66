//! The `agent:` section of the config file, the `sonde agent` flags, and the job's entry.
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// The `agent:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {}

/// Flags of `sonde agent`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentArgs {}

/// Run `sonde agent`.
pub fn run_agent(_args: AgentArgs) -> ExitCode {
    eprintln!("sonde agent: not available in this build yet");
    ExitCode::from(1)
}
