//! Configuration: one YAML file with a section per job (`agent:`, `store:`, `reconcile:`),
//! overridden by environment, then by flags. Each job's section, flags and `run` live in their
//! own file here; this file holds the root and the `all` composition.
use std::path::Path;

use serde::{Deserialize, Serialize};

mod agent;
mod all;
mod reconcile;
mod store;

pub use agent::{AgentArgs, AgentSection, PrintMode, SelectSection, run_agent};
pub use all::{AllArgs, run_all};
pub use reconcile::{
    BackendRef, BasicAuth, CorrelationConfig, EXIT_PENDING, GrafanaConfig, MetricsQuery,
    OperatorTarget, ReconcileArgs, ReconcileSection, SecretSource, TagMapping, TempoConfig,
    is_valid_uid, load_section, parse_duration, run_reconcile,
};
pub use store::{StoreArgs, StoreListenArgs, StoreSection, run_store};

/// Exit code for invalid configuration (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agent: AgentSection,
    pub store: StoreSection,
    pub reconcile: ReconcileSection,
}

/// Errors loading or checking configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Load the file at `path` (or defaults when `None`).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}

/// The default configuration as YAML (`sonde gen-config`).
pub fn example_yaml() -> String {
    serde_yaml::to_string(&Config::default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// deploy/sonde.example.yaml is what `sonde gen-config` prints; regenerate it with
    /// `cargo run -- gen-config > deploy/sonde.example.yaml` when the defaults change.
    #[test]
    fn example_config_is_in_sync_and_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sonde.example.yaml");
        let committed = std::fs::read_to_string(path).expect("deploy/sonde.example.yaml");
        assert_eq!(
            committed,
            example_yaml(),
            "regenerate deploy/sonde.example.yaml"
        );
        let cfg = Config::load(Some(Path::new(path))).expect("parses");
        cfg.agent.validate().expect("valid agent section");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "agent:\n  copy_bytez: 10\n").unwrap();
        let e = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(
            e.contains("copy_bytez") && e.contains(&p.display().to_string()),
            "{e}"
        );
        std::fs::write(&p, "agent:\n  copy_bytes: 10\n").unwrap();
        let e = Config::load(Some(&p))
            .unwrap()
            .agent
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("copy_bytes"), "{e}");
        let e = Config::load(Some(&dir.path().join("nope.yaml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.yaml"), "{e}");
    }
}
