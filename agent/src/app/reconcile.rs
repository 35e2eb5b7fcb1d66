//! `sonde reconcile`: its flags, loading the `reconcile:` section (again when the file
//! changes), and the job's entry.
use std::{path::PathBuf, process::ExitCode};

use sonde_config::Invalid;
use sonde_reconcile::{Mode, ReconcileSection, Run};

use super::EXIT_CONFIG;
use crate::config::{Config, ConfigError};

/// Flags of `sonde reconcile`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReconcileArgs {
    /// Config file with a `reconcile:` section.
    #[arg(long, env = "SONDE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the plan as a diff, write nothing and exit (2 when changes are pending).
    #[arg(long)]
    pub dry_run: bool,
    /// Reconcile once and exit (default: keep reconciling on an interval and on config change).
    #[arg(long)]
    pub once: bool,
    /// Override `reconcile.mode`.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Override `reconcile.output_dir`.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Override `reconcile.interval` (e.g. 30s, 5m).
    #[arg(long)]
    pub interval: Option<String>,
}

/// Load the config named by the flags, apply flag overrides, and validate.
pub fn load_section(args: &ReconcileArgs) -> Result<ReconcileSection, ConfigError> {
    let Some(path) = &args.config else {
        return Err(ConfigError::invalid(
            None,
            [Invalid::new(
                "--config",
                "is required (a file with a `reconcile:` section)",
            )],
        ));
    };
    let file = Some(path.as_path());
    let mut section = Config::load(file)?.reconcile;
    if let Some(mode) = args.mode {
        section.mode = mode;
    }
    if let Some(dir) = &args.output_dir {
        section.output_dir = dir.clone();
    }
    if let Some(interval) = &args.interval {
        section.interval = sonde_config::duration::parse(interval)
            .map_err(|e| ConfigError::invalid(None, [Invalid::new("--interval", e)]))?;
    }
    section
        .validate()
        .map_err(|problems| ConfigError::invalid(file, problems))?;
    Ok(section)
}

/// Run `sonde reconcile`: 0 ok, 2 when `--dry-run` finds pending changes, 64 on invalid
/// config, 1 on failure.
pub fn run_reconcile(args: ReconcileArgs) -> ExitCode {
    let section = match load_section(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sonde reconcile: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match super::runtime("reconcile", super::Threads::Current) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let reload = || load_section(&args).map_err(|e| e.to_string());
    let how = Run {
        once: args.once,
        dry_run: args.dry_run,
        config: args.config.as_deref(),
        reload: &reload,
    };
    ExitCode::from(runtime.block_on(sonde_reconcile::run(how, section)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_missing_config_is_an_error() {
        assert!(
            load_section(&ReconcileArgs::default())
                .expect_err("no config")
                .to_string()
                .contains("--config")
        );
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/reconcile.example.yaml"
        );
        let args = ReconcileArgs {
            config: Some(path.into()),
            mode: Some(Mode::Provisioning),
            interval: Some("30s".into()),
            output_dir: Some("/tmp/x".into()),
            ..Default::default()
        };
        let s = load_section(&args).expect("valid");
        assert_eq!(
            (s.mode, s.interval),
            (Mode::Provisioning, std::time::Duration::from_secs(30))
        );
        assert_eq!(s.output_dir, PathBuf::from("/tmp/x"));
        let bad = ReconcileArgs {
            interval: Some("never".into()),
            ..args
        };
        assert!(
            load_section(&bad)
                .expect_err("invalid")
                .to_string()
                .contains("--interval")
        );
    }
}
