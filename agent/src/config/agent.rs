//! The `agent:` section of the configuration file: what to trace, how the capture is sized,
//! and where spans go; checked before any probe is loaded.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sonde_config::Invalid;

use crate::{
    conn::TrackerConfig,
    ebpf::{LoadOptions, select::Selection},
    export::config::ExportConfig,
    link::LinkConfig,
    pipeline::PipelineConfig,
    red::RedSection,
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
    #[serde(with = "sonde_config::duration")]
    pub drain_interval: Duration,
    /// Connections tracked at once; the oldest idle one is evicted beyond this.
    pub max_connections: usize,
    /// A connection silent this long is finished and forgotten.
    #[serde(with = "sonde_config::duration")]
    pub idle_timeout: Duration,
    /// Longest a finished span waits for the spans it links to (its client on this node, the
    /// request it was made under) before it is sent on; `0s` turns linking off.
    #[serde(with = "sonde_config::duration")]
    pub link_window: Duration,
    /// Attach uprobes to Go programs' HTTP client, so that their client calls join the
    /// request of the goroutine that made them (`sonde.link = goroutine`). Each outgoing Go
    /// request then passes two probes (a few µs each). Unused when linking is off.
    pub go_probes: bool,
    /// Kubernetes metadata on spans (`k8s.*`, `service.name` from the pod).
    pub kubernetes: KubernetesSection,
    /// Print spans on stdout instead of (off: in addition to nothing) exporting them.
    pub print: PrintMode,
    /// Where the agent serves its own counters on `/metrics` (empty: off).
    pub metrics_listen_address: String,
    /// Where and how spans are exported.
    pub export: ExportConfig,
    /// RED metrics and the service graph, derived from the spans.
    pub red: RedSection,
}

/// Whether to watch this node's pods for the Kubernetes metadata of resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesMode {
    /// On when running in a pod (`KUBERNETES_SERVICE_HOST` is set).
    #[default]
    Auto,
    On,
    Off,
}

/// `agent.kubernetes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesSection {
    pub mode: KubernetesMode,
    /// The node whose pods are watched; empty: `K8S_NODE_NAME` (or `NODE_NAME`) from the
    /// environment (the DaemonSet sets it from `spec.nodeName`), else the host name.
    pub node_name: String,
}

impl KubernetesSection {
    /// Whether the pod watch runs.
    pub fn enabled(&self) -> bool {
        match self.mode {
            KubernetesMode::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
            KubernetesMode::On => true,
            KubernetesMode::Off => false,
        }
    }

    /// The node whose pods are watched.
    pub fn node(&self) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        ["K8S_NODE_NAME", "NODE_NAME"]
            .into_iter()
            .find_map(|v| std::env::var(v).ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(host_name)
    }
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            select: SelectSection::default(),
            capture_server: true,
            capture_client: true,
            copy_bytes: agent_common::DEFAULT_COPY_LEN,
            ring_buffer_bytes: 4 << 20,
            drain_interval: Duration::from_millis(10),
            max_connections: 65_536,
            idle_timeout: Duration::from_secs(30),
            link_window: Duration::from_secs(1),
            go_probes: true,
            kubernetes: KubernetesSection::default(),
            print: PrintMode::Off,
            metrics_listen_address: "127.0.0.1:9464".into(),
            export: ExportConfig::default(),
            red: RedSection::default(),
        }
    }
}

impl AgentSection {
    /// Check values a user can get wrong; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(64..=agent_common::MAX_DATA as u32).contains(&self.copy_bytes) {
            return Err(Invalid::new(
                "agent.copy_bytes",
                format!("must be 64..=4096, got {}", self.copy_bytes),
            ));
        }
        if !self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < 65_536 {
            return Err(Invalid::new(
                "agent.ring_buffer_bytes",
                format!(
                    "must be a power of two ≥ 65536, got {}",
                    self.ring_buffer_bytes
                ),
            ));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(1)).contains(&self.drain_interval) {
            return Err(Invalid::new(
                "agent.drain_interval",
                format!(
                    "must be 1ms..=1s, got {}",
                    sonde_config::duration::format(self.drain_interval)
                ),
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(Invalid::new("agent.idle_timeout", "must be greater than 0"));
        }
        if self.link_window > Duration::from_secs(10) {
            return Err(Invalid::new(
                "agent.link_window",
                format!(
                    "must be 0s..=10s (spans are held this long), got {}",
                    sonde_config::duration::format(self.link_window)
                ),
            ));
        }
        if !self.capture_server && !self.capture_client {
            return Err(Invalid::new(
                "agent.capture_server",
                "capture_server and capture_client are both off: nothing to trace",
            ));
        }
        if !self.metrics_listen_address.is_empty()
            && self
                .metrics_listen_address
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(Invalid::new(
                "agent.metrics_listen_address",
                format!(
                    "must be host:port (an IP address), got {:?}",
                    self.metrics_listen_address
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(Invalid::new("agent.max_connections", "must be > 0"));
        }
        Selection::new(vec![], vec![], &self.select.exe_globs)
            .map_err(|e| Invalid::new("agent.select.exe_globs", e.to_string()))?;
        self.export
            .validate()
            .map_err(|e| Invalid::new("agent.export", e.to_string()))?;
        self.red.validate()?;
        Ok(())
    }

    pub(crate) fn pipeline_config(&self) -> Result<PipelineConfig, Invalid> {
        let selection = Selection::new(
            self.select.pids.clone(),
            self.select.ports.clone(),
            &self.select.exe_globs,
        )
        .map_err(|e| Invalid::new("agent.select.exe_globs", e.to_string()))?;
        Ok(PipelineConfig {
            load: LoadOptions {
                selected_only: !selection.is_all(),
                copy_len: self.copy_bytes,
                ring_bytes: self.ring_buffer_bytes,
                capture_server: self.capture_server,
                capture_client: self.capture_client,
                ports: self.select.ports.clone(),
                exec_notify: selection.needs_rescan(),
                go_probes: self.go_probes && !self.link_window.is_zero(),
            },
            selection,
            tracker: TrackerConfig {
                max_connections: self.max_connections,
                idle_timeout_ns: u64::try_from(self.idle_timeout.as_nanos()).unwrap_or(u64::MAX),
                capture_server: self.capture_server,
                capture_client: self.capture_client,
                ..TrackerConfig::default()
            },
            link: LinkConfig {
                hold_ns: u64::try_from(self.link_window.as_nanos()).unwrap_or(u64::MAX),
                ..LinkConfig::default()
            },
            drain_interval: self.drain_interval,
            host_name: host_name(),
            pods: None,
        })
    }
}

/// The node's host name (from the kernel), for `host.name`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
