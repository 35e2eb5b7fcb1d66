//! Configuration: one YAML file with a section per job (`agent:`, `store:`, `reconcile:`),
//! overridden by environment, then by flags. The agent's section lives here; the store's and
//! the reconciler's live in their crates. Every failure is a [`ConfigError`] naming the file,
//! the key and the reason.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sonde_config::Invalid;

mod agent;

pub use agent::{AgentSection, PrintMode, SelectSection, host_name};

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agent: AgentSection,
    pub store: sonde_store::StoreSection,
    pub reconcile: sonde_reconcile::ReconcileSection,
}

/// What is wrong with the configuration: which file, which key, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// YAML syntax, an unknown key or a value of the wrong form.
    #[error("invalid config file {}: {key}: {source}", path.display())]
    Parse {
        path: PathBuf,
        /// The dotted path of the key whose value is wrong (`.` for the whole file).
        key: String,
        source: serde_yaml::Error,
    },
    #[error("invalid configuration{}: {}", in_file(file.as_deref()), list(problems))]
    Invalid {
        /// The file the value came from (`None`: defaults, environment or flags only).
        file: Option<PathBuf>,
        problems: Vec<Invalid>,
    },
}

impl ConfigError {
    /// Problems found in a section loaded from `file`.
    pub fn invalid(file: Option<&Path>, problems: impl Into<Vec<Invalid>>) -> Self {
        Self::Invalid {
            file: file.map(Path::to_path_buf),
            problems: problems.into(),
        }
    }
}

fn in_file(file: Option<&Path>) -> String {
    file.map(|f| format!(" in {}", f.display()))
        .unwrap_or_default()
}

fn list(problems: &[Invalid]) -> String {
    match problems {
        [one] => one.to_string(),
        many => many.iter().map(|p| format!("\n  {p}")).collect::<String>(),
    }
}

impl Config {
    /// Load the file at `path` (or defaults when `None`).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text)).map_err(|e| {
            ConfigError::Parse {
                path: path.to_path_buf(),
                key: e.path().to_string(),
                source: e.into_inner(),
            }
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
        cfg.store.validate().expect("valid store section");
    }

    #[test]
    fn every_duration_is_written_the_go_way() {
        let yaml = example_yaml();
        for line in [
            "drain_interval: 10ms",
            "idle_timeout: 30s",
            "retention: 168h",
            "default_window: 15m",
            "interval: 5m",
        ] {
            assert!(yaml.contains(line), "{line} missing in\n{yaml}");
        }
        assert!(!yaml.contains("_ms:") && !yaml.contains("_secs:"), "{yaml}");
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "agent:\n  copy_bytez: 10\n").unwrap();
        let e = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(
            e.contains("copy_bytez") && e.contains(&p.display().to_string()),
            "{e}"
        );
        std::fs::write(&p, "store:\n  retention: 7 days\n").unwrap();
        let e = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(
            e.contains(": store.retention: ") && e.contains("line 2") && e.contains("168h"),
            "{e}"
        );
        std::fs::write(&p, "agent:\n  copy_bytes: 10\n").unwrap();
        let problem = Config::load(Some(&p))
            .unwrap()
            .agent
            .validate()
            .unwrap_err();
        let e = ConfigError::invalid(Some(&p), [problem]).to_string();
        assert_eq!(
            e,
            format!(
                "invalid configuration in {}: agent.copy_bytes: must be 64..=4096, got 10",
                p.display()
            )
        );
        let e = Config::load(Some(&dir.path().join("nope.yaml")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.yaml"), "{e}");
    }
}
