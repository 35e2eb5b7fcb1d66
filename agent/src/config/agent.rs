//! The `agent:` section of the config file, the `sonde agent` flags, and the agent job's entry.
use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, EXIT_CONFIG};
use crate::{
    conn::TrackerConfig,
    ebpf::{LoadOptions, select::Selection},
    export::config::ExportConfig,
    pipeline::PipelineConfig,
};

/// Which processes to trace. All empty (the default) means every process on the host except
/// Sonde itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectSection {
    /// Trace these process ids.
    pub pids: Vec<u32>,
    /// Trace processes listening on these TCP ports.
    pub ports: Vec<u16>,
    /// Trace processes whose executable path matches one of these globs (`**/nginx`).
    pub exe_globs: Vec<String>,
}

/// How spans are shown on stdout (debugging).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PrintMode {
    #[default]
    Off,
    Text,
    Json,
}

/// The `agent:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    pub select: SelectSection,
    /// Trace the server side of connections (accepted sockets).
    pub capture_server: bool,
    /// Trace the client side of connections (connected sockets).
    pub capture_client: bool,
    /// Bytes of each socket buffer copied to userspace (64..=4096).
    pub copy_bytes: u32,
    /// Kernel ring buffer size in bytes (a power of two).
    pub ring_buffer_bytes: u32,
    /// Longest time records wait in the ring buffer before the agent drains it.
    pub drain_interval_ms: u64,
    /// Connections tracked at once; the oldest idle one is evicted beyond this.
    pub max_connections: usize,
    /// A connection silent this long is finished and forgotten.
    pub idle_timeout_secs: u64,
    /// Print spans on stdout instead of (off: in addition to nothing) exporting them.
    pub print: PrintMode,
    /// Where the agent serves its own counters on `/metrics` (empty: off).
    pub metrics_listen_address: String,
    /// Where and how spans are exported.
    pub export: ExportConfig,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            select: SelectSection::default(),
            capture_server: true,
            capture_client: true,
            copy_bytes: agent_common::DEFAULT_COPY_LEN,
            ring_buffer_bytes: 4 << 20,
            drain_interval_ms: 10,
            max_connections: 65_536,
            idle_timeout_secs: 30,
            print: PrintMode::Off,
            metrics_listen_address: "127.0.0.1:9464".into(),
            export: ExportConfig::default(),
        }
    }
}

impl AgentSection {
    /// Check values a user can get wrong; one clear message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !(64..=agent_common::MAX_DATA as u32).contains(&self.copy_bytes) {
            return bad(format!(
                "agent.copy_bytes must be 64..=4096, got {}",
                self.copy_bytes
            ));
        }
        if !self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < 65_536 {
            return bad(format!(
                "agent.ring_buffer_bytes must be a power of two ≥ 65536, got {}",
                self.ring_buffer_bytes
            ));
        }
        if !(1..=1000).contains(&self.drain_interval_ms) {
            return bad(format!(
                "agent.drain_interval_ms must be 1..=1000, got {}",
                self.drain_interval_ms
            ));
        }
        if !self.capture_server && !self.capture_client {
            return bad(
                "agent: capture_server and capture_client are both off: nothing to trace".into(),
            );
        }
        if !self.metrics_listen_address.is_empty()
            && self
                .metrics_listen_address
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return bad(format!(
                "agent.metrics_listen_address must be host:port (an IP address), got {:?}",
                self.metrics_listen_address
            ));
        }
        if self.max_connections == 0 {
            return bad("agent.max_connections must be > 0".into());
        }
        Selection::new(vec![], vec![], &self.select.exe_globs)
            .map_err(|e| ConfigError::Invalid(format!("agent.select.exe_globs: {e}")))?;
        self.export
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("agent.export: {e}")))?;
        Ok(())
    }

    pub(crate) fn pipeline_config(&self) -> Result<PipelineConfig, ConfigError> {
        let selection = Selection::new(
            self.select.pids.clone(),
            self.select.ports.clone(),
            &self.select.exe_globs,
        )
        .map_err(|e| ConfigError::Invalid(format!("agent.select.exe_globs: {e}")))?;
        Ok(PipelineConfig {
            load: LoadOptions {
                selected_only: !selection.is_all(),
                copy_len: self.copy_bytes,
                ring_bytes: self.ring_buffer_bytes,
                capture_server: self.capture_server,
                capture_client: self.capture_client,
                ports: self.select.ports.clone(),
                exec_notify: selection.needs_rescan(),
            },
            selection,
            tracker: TrackerConfig {
                max_connections: self.max_connections,
                idle_timeout_ns: self.idle_timeout_secs * 1_000_000_000,
                capture_server: self.capture_server,
                capture_client: self.capture_client,
                ..TrackerConfig::default()
            },
            drain_interval: Duration::from_millis(self.drain_interval_ms),
            host_name: host_name(),
        })
    }
}

/// The node's host name (from the kernel), for `host.name`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

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
        if let Some(a) = &self.metrics_listen_address {
            s.metrics_listen_address.clone_from(a);
        }
    }
}

/// Load file → env → flags, validate. Errors are printed by the caller.
pub(crate) fn load_agent(args: &AgentArgs) -> Result<Config, ConfigError> {
    let mut cfg = Config::load(args.config.as_deref())?;
    cfg.agent
        .export
        .apply_env(&|k| std::env::var(k).ok())
        .map_err(|e| ConfigError::Invalid(format!("OTEL_EXPORTER_OTLP_*: {e}")))?;
    args.apply(&mut cfg.agent);
    cfg.agent.validate()?;
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
    // Few threads allocate here; fewer malloc arenas keep the resident set small.
    crate::store::limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sonde: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, exporter) = match crate::sinks::agent_sink(&cfg.agent, args.no_export) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sonde: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        match crate::sinks::run_capture(&cfg.agent, sink, exporter, stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sonde: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
