//! The `store:` section of the config file, the `sonde store` flags, and the job's entry.
use std::{path::PathBuf, process::ExitCode};

use serde::{Deserialize, Serialize};

use crate::store::params::parse_go_duration;

/// The `store:` section: where data lives, where the store listens, and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Directory for the WAL and blocks (one sub-directory per tenant).
    pub data_dir: PathBuf,
    /// Tempo HTTP API (query, /metrics, /ready).
    pub http_listen_address: String,
    /// OTLP gRPC receiver.
    pub otlp_grpc_listen_address: String,
    /// OTLP HTTP receiver (`/v1/traces`).
    pub otlp_http_listen_address: String,
    /// Require `X-Scope-OrgID`; when false everything belongs to `single-tenant`.
    pub multitenancy_enabled: bool,
    /// Delete blocks whose newest span is older than this (Go duration).
    pub retention: String,
    /// fsync the WAL this often; `0s` fsyncs every write before acknowledging it.
    pub wal_fsync_interval: String,
    /// Cut a block when live traces hold this many bytes.
    pub max_block_bytes: u64,
    /// Cut a block at least this often while data is live.
    pub max_block_duration: String,
    /// A trace is cut into a block once no span arrived for this long.
    pub trace_idle_period: String,
    /// …and after this long while its root span (the one that usually ends last) is missing.
    pub rootless_trace_idle_period: String,
    /// Compact when at least this many small blocks exist.
    pub compaction_min_blocks: usize,
    /// Merge at most this many blocks at once.
    pub compaction_max_blocks: usize,
    /// Blocks up to this size (on disk) are merged.
    pub compaction_max_block_bytes: u64,
    /// zstd level for blocks.
    pub block_compression_level: i32,
    /// Memory budget for decoded search row groups.
    pub search_cache_bytes: usize,
    /// Per-tenant limits.
    pub limits: StoreLimits,
    /// Search defaults and limits.
    pub search: SearchSection,
}

/// Per-tenant ingest limits. Refusals are answered with OTLP status codes and counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreLimits {
    /// Spans that would grow a live trace past this are rejected (partial success).
    pub max_bytes_per_trace: usize,
    /// Token-bucket rate per tenant, request bytes per second (0 = unlimited); over → 429.
    pub ingestion_rate_limit_bytes: u64,
    /// Token-bucket burst.
    pub ingestion_burst_size_bytes: u64,
    /// Live traces waiting to be cut may use this much memory; beyond it ingest answers 503.
    pub max_live_bytes: usize,
}

/// Search defaults and limits (Tempo's query-frontend settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSection {
    pub default_result_limit: u32,
    pub max_result_limit: u32,
    pub default_spans_per_span_set: u32,
    pub max_spans_per_span_set: u32,
    /// Search ignores data newer than now minus this (Tempo: 30s; 0s shows everything).
    pub query_end_cutoff: String,
    /// Longest `end - start` accepted.
    pub max_duration: String,
    /// Window searched when a request has neither start nor end.
    pub default_window: String,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/sonde/store"),
            http_listen_address: "0.0.0.0:3200".into(),
            otlp_grpc_listen_address: "0.0.0.0:4317".into(),
            otlp_http_listen_address: "0.0.0.0:4318".into(),
            multitenancy_enabled: false,
            retention: "168h".into(),
            wal_fsync_interval: "1s".into(),
            max_block_bytes: 32 * 1024 * 1024,
            max_block_duration: "10s".into(),
            trace_idle_period: "1s".into(),
            rootless_trace_idle_period: "5s".into(),
            compaction_min_blocks: 4,
            compaction_max_blocks: 8,
            compaction_max_block_bytes: 128 * 1024 * 1024,
            block_compression_level: 3,
            search_cache_bytes: 32 * 1024 * 1024,
            limits: StoreLimits::default(),
            search: SearchSection::default(),
        }
    }
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_bytes_per_trace: 5_000_000,
            ingestion_rate_limit_bytes: 100_000_000,
            ingestion_burst_size_bytes: 200_000_000,
            max_live_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Default for SearchSection {
    fn default() -> Self {
        Self {
            default_result_limit: 20,
            max_result_limit: 262_144,
            default_spans_per_span_set: 3,
            max_spans_per_span_set: 100,
            query_end_cutoff: "0s".into(),
            max_duration: "168h".into(),
            default_window: "15m".into(),
        }
    }
}

fn dur_ns(s: &str) -> u64 {
    parse_go_duration(s).unwrap_or(0).max(0) as u64
}

impl StoreSection {
    /// Check every field; the message names the field and what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let durations = [
            ("store.retention", &self.retention),
            ("store.wal_fsync_interval", &self.wal_fsync_interval),
            ("store.max_block_duration", &self.max_block_duration),
            ("store.trace_idle_period", &self.trace_idle_period),
            (
                "store.rootless_trace_idle_period",
                &self.rootless_trace_idle_period,
            ),
            (
                "store.search.query_end_cutoff",
                &self.search.query_end_cutoff,
            ),
            ("store.search.max_duration", &self.search.max_duration),
            ("store.search.default_window", &self.search.default_window),
        ];
        for (name, v) in durations {
            match parse_go_duration(v) {
                Ok(ns) if ns < 0 => return Err(format!("{name}: must not be negative, got {v:?}")),
                Ok(_) => {}
                Err(e) => return Err(format!("{name}: {e}")),
            }
        }
        if self.retention_ns() == 0 {
            return Err("store.retention: must be greater than 0".into());
        }
        for (name, v) in [
            ("store.http_listen_address", &self.http_listen_address),
            (
                "store.otlp_grpc_listen_address",
                &self.otlp_grpc_listen_address,
            ),
            (
                "store.otlp_http_listen_address",
                &self.otlp_http_listen_address,
            ),
        ] {
            if v.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!("{name}: {v:?} is not an address like 0.0.0.0:3200"));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err("store.data_dir: must be set".into());
        }
        if self.max_block_bytes < 1024 {
            return Err("store.max_block_bytes: must be at least 1024".into());
        }
        if self.compaction_min_blocks < 2 || self.compaction_max_blocks < self.compaction_min_blocks
        {
            return Err(
                "store.compaction_min_blocks must be ≥ 2 and ≤ compaction_max_blocks".into(),
            );
        }
        if !(1..=19).contains(&self.block_compression_level) {
            return Err("store.block_compression_level: must be 1..=19".into());
        }
        if self.limits.max_bytes_per_trace == 0 || self.limits.max_live_bytes == 0 {
            return Err("store.limits: max_bytes_per_trace and max_live_bytes must be > 0".into());
        }
        let s = &self.search;
        if s.default_result_limit == 0 || s.default_result_limit > s.max_result_limit {
            return Err("store.search.default_result_limit: must be 1..=max_result_limit".into());
        }
        if s.default_spans_per_span_set > s.max_spans_per_span_set {
            return Err(
                "store.search.default_spans_per_span_set: must be ≤ max_spans_per_span_set".into(),
            );
        }
        Ok(())
    }

    pub fn retention_ns(&self) -> u64 {
        dur_ns(&self.retention)
    }

    pub fn wal_fsync_interval_ns(&self) -> u64 {
        dur_ns(&self.wal_fsync_interval)
    }

    pub fn max_block_duration_ns(&self) -> u64 {
        dur_ns(&self.max_block_duration)
    }

    pub fn trace_idle_ns(&self) -> u64 {
        dur_ns(&self.trace_idle_period)
    }

    pub fn rootless_trace_idle_ns(&self) -> u64 {
        dur_ns(&self.rootless_trace_idle_period)
    }

    pub fn search_limits(&self) -> crate::store::params::SearchLimits {
        crate::store::params::SearchLimits {
            default_limit: self.search.default_result_limit,
            max_limit: self.search.max_result_limit,
            default_spss: self.search.default_spans_per_span_set,
            max_spss: self.search.max_spans_per_span_set,
            query_end_cutoff_ns: dur_ns(&self.search.query_end_cutoff),
            max_duration_ns: dur_ns(&self.search.max_duration),
            default_window_ns: dur_ns(&self.search.default_window),
        }
    }
}

/// Where the store keeps data and listens: flags shared by `sonde store` and `sonde all`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreListenArgs {
    /// Directory for the WAL and blocks. [default: /var/lib/sonde/store]
    #[arg(long = "data-dir", env = "SONDE_STORE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Tempo HTTP API listen address. [default: 0.0.0.0:3200]
    #[arg(long = "http-listen-address", env = "SONDE_STORE_HTTP_LISTEN_ADDRESS")]
    pub http_listen_address: Option<String>,
    /// OTLP gRPC listen address. [default: 0.0.0.0:4317]
    #[arg(
        long = "otlp-grpc-listen-address",
        env = "SONDE_STORE_OTLP_GRPC_LISTEN_ADDRESS"
    )]
    pub otlp_grpc_listen_address: Option<String>,
    /// OTLP HTTP listen address. [default: 0.0.0.0:4318]
    #[arg(
        long = "otlp-http-listen-address",
        env = "SONDE_STORE_OTLP_HTTP_LISTEN_ADDRESS"
    )]
    pub otlp_http_listen_address: Option<String>,
}

impl StoreListenArgs {
    /// Layer these flags over the file's section.
    pub fn apply(&self, s: &mut StoreSection) {
        if let Some(d) = &self.data_dir {
            s.data_dir.clone_from(d);
        }
        if let Some(a) = &self.http_listen_address {
            s.http_listen_address.clone_from(a);
        }
        if let Some(a) = &self.otlp_grpc_listen_address {
            s.otlp_grpc_listen_address.clone_from(a);
        }
        if let Some(a) = &self.otlp_http_listen_address {
            s.otlp_http_listen_address.clone_from(a);
        }
    }
}

/// Flags of `sonde store` (each overrides the config file).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Config file (YAML; the `store:` section is used).
    #[arg(long = "config", env = "SONDE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub listen: StoreListenArgs,
    /// Require X-Scope-OrgID on ingest and query.
    #[arg(
        long = "multitenancy-enabled",
        env = "SONDE_STORE_MULTITENANCY_ENABLED"
    )]
    pub multitenancy_enabled: bool,
}

impl StoreArgs {
    /// The effective store section: file, then flags.
    pub fn section(&self) -> Result<StoreSection, super::ConfigError> {
        let mut s = super::Config::load(self.config.as_deref())?.store;
        self.listen.apply(&mut s);
        if self.multitenancy_enabled {
            s.multitenancy_enabled = true;
        }
        s.validate().map_err(super::ConfigError::Invalid)?;
        Ok(s)
    }
}

/// Run `sonde store` until SIGINT or SIGTERM.
pub fn run_store(args: StoreArgs) -> ExitCode {
    let section = match args.section() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sonde store: {e}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    crate::store::limit_malloc_arenas();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sonde store: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let clock: std::sync::Arc<dyn crate::store::Clock> =
            std::sync::Arc::new(crate::store::SystemClock);
        let store = match crate::store::Store::open(&section, clock) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sonde store: {e}");
                return ExitCode::from(1);
            }
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            stop.cancel();
        });
        match crate::store::serve(store, &section, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sonde store: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn defaults_are_valid_and_tempo_like() {
        let s = StoreSection::default();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.http_listen_address, "0.0.0.0:3200");
        assert_eq!(s.otlp_grpc_listen_address, "0.0.0.0:4317");
        assert_eq!(s.otlp_http_listen_address, "0.0.0.0:4318");
        assert_eq!(s.retention_ns(), 168 * 3600 * 1_000_000_000);
    }

    #[rstest]
    #[case::bad_retention("retention: forever", "store.retention")]
    #[case::zero_retention("retention: 0s", "store.retention")]
    #[case::bad_addr("http_listen_address: localhost", "store.http_listen_address")]
    #[case::neg_idle("trace_idle_period: -1s", "store.trace_idle_period")]
    #[case::bad_level("block_compression_level: 40", "store.block_compression_level")]
    #[case::limit(
        "search: {default_result_limit: 0}",
        "store.search.default_result_limit"
    )]
    fn invalid_sections(#[case] yaml: &str, #[case] field: &str) {
        let s: StoreSection = serde_yaml::from_str(yaml).unwrap();
        let err = s.validate().unwrap_err();
        assert!(err.contains(field), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        assert!(serde_yaml::from_str::<StoreSection>("nope: 1").is_err());
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "store:\n  data_dir: /from/file\n  http_listen_address: 127.0.0.1:1\n",
        )
        .unwrap();
        let args = StoreArgs {
            config: Some(path),
            listen: StoreListenArgs {
                data_dir: Some("/from/flag".into()),
                ..StoreListenArgs::default()
            },
            ..StoreArgs::default()
        };
        let s = args.section().unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(s.http_listen_address, "127.0.0.1:1");
    }
}
