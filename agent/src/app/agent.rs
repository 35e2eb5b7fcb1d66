//! `sonde agent`: its flags, loading file → environment → flags, and the job's entry.
use std::{path::PathBuf, process::ExitCode};

use super::{EXIT_CONFIG, capture};
use crate::config::{AgentSection, Config, ConfigError, PrintMode};

/// Flags of `sonde agent` (they override the file and the environment).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentArgs {
    /// Config file (YAML; see `sonde gen-config`).
    #[arg(long, env = "SONDE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Trace only this process id (repeatable).
    #[arg(long = "pid", env = "SONDE_PIDS", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Trace only processes listening on this port (repeatable).
    #[arg(long = "port", env = "SONDE_PORTS", value_delimiter = ',')]
    pub ports: Vec<u16>,
    /// Trace only processes whose executable path matches this glob (repeatable).
    #[arg(long = "exe", env = "SONDE_EXE_GLOBS", value_delimiter = ',')]
    pub exe_globs: Vec<String>,
    /// Do not trace the server side of connections.
    #[arg(long)]
    pub no_server: bool,
    /// Do not trace the client side of connections.
    #[arg(long)]
    pub no_client: bool,
    /// Print spans on stdout (text or json). [default: off]
    #[arg(long, env = "SONDE_PRINT")]
    pub print: Option<PrintMode>,
    /// Serve the agent's own counters on this address (`""` turns it off). [default: 127.0.0.1:9464]
    #[arg(long, env = "SONDE_METRICS_LISTEN_ADDRESS")]
    pub metrics_listen_address: Option<String>,
    /// Do not export over OTLP (useful with --print).
    #[arg(long)]
    pub no_export: bool,
    /// Do not derive RED metrics and the service graph from the spans.
    #[arg(long)]
    pub no_red: bool,
    /// Keep the learnt route collapses in this file across restarts (`""`: not kept).
    /// [default: /var/lib/sonde/agent/learnt-routes.json]
    #[arg(long, env = "SONDE_LEARNT_ROUTES_FILE")]
    pub learnt_routes_file: Option<PathBuf>,
}

impl AgentArgs {
    /// Layer the flags over the file's section.
    pub fn apply(&self, s: &mut AgentSection) {
        if !self.pids.is_empty() {
            s.select.pids = self.pids.clone();
        }
        if !self.ports.is_empty() {
            s.select.ports = self.ports.clone();
        }
        if !self.exe_globs.is_empty() {
            s.select.exe_globs = self.exe_globs.clone();
        }
        if self.no_server {
            s.capture_server = false;
        }
        if self.no_client {
            s.capture_client = false;
        }
        if let Some(p) = self.print {
            s.print = p;
        }
        if let Some(f) = &self.learnt_routes_file {
            s.red.learnt_routes_file.clone_from(f);
        }
        if let Some(a) = &self.metrics_listen_address {
            s.metrics_listen_address.clone_from(a);
        }
        if self.no_red {
            s.red.enabled = false;
        }
    }
}

/// Load file → env → flags, validate. Errors are printed by the caller.
pub(crate) fn load_agent(args: &AgentArgs) -> Result<Config, ConfigError> {
    let file = args.config.as_deref();
    let mut cfg = Config::load(file)?;
    // The metrics exporter starts from the file's `export:` section, not the traces' variables.
    let file_export = cfg.agent.export.clone();
    cfg.agent
        .red
        .apply_env(&file_export, &|k| std::env::var(k).ok())
        .map_err(|e| ConfigError::invalid(None, [e]))?;
    cfg.agent
        .export
        .apply_env(&|k| std::env::var(k).ok())
        .map_err(|e| {
            ConfigError::invalid(
                None,
                [sonde_config::Invalid::new(
                    "OTEL_EXPORTER_OTLP_*",
                    e.to_string(),
                )],
            )
        })?;
    args.apply(&mut cfg.agent);
    cfg.agent
        .validate()
        .map_err(|e| ConfigError::invalid(file, [e]))?;
    Ok(cfg)
}

/// Run `sonde agent` until SIGINT/SIGTERM.
pub fn run_agent(args: AgentArgs) -> ExitCode {
    let cfg = match load_agent(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sonde: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match super::runtime("agent", super::Threads::Workers(1)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let shutdown = super::shutdown_on_signal();
        let (sink, exporter) = match capture::agent_sink(&cfg.agent, args.no_export) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sonde: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        match capture::run_capture(&cfg.agent, sink, exporter, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sonde: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
