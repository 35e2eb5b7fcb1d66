//! The `store:` section of the configuration file: where data lives, where the store listens,
//! its limits, and the check that reports a bad key before anything is opened.
use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use sonde_config::Invalid;

/// The `store:` section: where data lives, where the store listens, and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Directory for the WAL and blocks (one sub-directory per tenant).
    pub data_dir: PathBuf,
    /// Tempo HTTP API (query, /metrics, /ready). The three addresses default to loopback.
    pub http_listen_address: String,
    /// OTLP gRPC receiver.
    pub otlp_grpc_listen_address: String,
    /// OTLP HTTP receiver (`/v1/traces`).
    pub otlp_http_listen_address: String,
    /// Require `X-Scope-OrgID`; when false everything belongs to `single-tenant`.
    pub multitenancy_enabled: bool,
    /// With multitenancy, whether one query may read several tenants (`X-Scope-OrgID: a|b`).
    pub cross_tenant_queries_enabled: bool,
    /// File holding a token every request but `/ready` must present (`Authorization: Bearer
    /// <token>`, or basic auth with the token as password); empty = no check.
    pub auth_token_file: PathBuf,
    /// PEM certificate chain and private key: with both set, all three listeners speak TLS
    /// (HTTPS and gRPC over TLS); empty = plain.
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    /// Most tenants the store holds; a push for a new tenant past it is refused (400), the
    /// existing tenants are unaffected.
    pub max_tenants: usize,
    /// Delete blocks this long after their data was ingested, whatever the spans' timestamps
    /// (Go duration).
    #[serde(with = "sonde_config::duration")]
    pub retention: Duration,
    /// fsync the WAL this often; `0s` fsyncs every write before acknowledging it.
    #[serde(with = "sonde_config::duration")]
    pub wal_fsync_interval: Duration,
    /// Cut a block when live traces hold this many bytes.
    pub max_block_bytes: u64,
    /// Cut a block at least this often while data is live.
    #[serde(with = "sonde_config::duration")]
    pub max_block_duration: Duration,
    /// A trace is cut into a block once no span arrived for this long.
    #[serde(with = "sonde_config::duration")]
    pub trace_idle_period: Duration,
    /// …and after this long while its root span (the one that usually ends last) is missing.
    #[serde(with = "sonde_config::duration")]
    pub rootless_trace_idle_period: Duration,
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
    /// Request bytes both OTLP receivers may be receiving and decoding at once; past it a
    /// request is refused before its ack (HTTP 429, gRPC UNAVAILABLE), and the client retries.
    pub max_ingest_bytes_in_flight: usize,
    /// Per-tenant limits.
    pub limits: StoreLimits,
    /// Search defaults and limits.
    pub search: SearchSection,
    /// Span metrics and service graphs from ingested spans, remote-written and scrapable.
    pub generator: crate::generator::config::GeneratorSection,
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
    #[serde(with = "sonde_config::duration")]
    pub query_end_cutoff: Duration,
    /// Longest `end - start` accepted.
    #[serde(with = "sonde_config::duration")]
    pub max_duration: Duration,
    /// Window searched when a request has neither start nor end.
    #[serde(with = "sonde_config::duration")]
    pub default_window: Duration,
    /// A search still running after this long is stopped and answered 504 (Tempo: 30s).
    #[serde(with = "sonde_config::duration")]
    pub query_timeout: Duration,
    /// Searches running at once; more wait for a slot until their deadline, then get 429.
    /// Keep it below the number of cores so ingest and `/ready` always get CPU.
    pub max_concurrent_queries: usize,
    /// Memory the results of one search may hold; past it the search is refused (400).
    pub max_result_bytes: usize,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/sonde/store"),
            http_listen_address: "127.0.0.1:3200".into(),
            otlp_grpc_listen_address: "127.0.0.1:4317".into(),
            otlp_http_listen_address: "127.0.0.1:4318".into(),
            multitenancy_enabled: false,
            cross_tenant_queries_enabled: false,
            auth_token_file: PathBuf::new(),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            max_tenants: 100,
            retention: Duration::from_secs(168 * 3600),
            wal_fsync_interval: Duration::from_secs(1),
            max_block_bytes: 32 * 1024 * 1024,
            max_block_duration: Duration::from_secs(10),
            trace_idle_period: Duration::from_secs(1),
            rootless_trace_idle_period: Duration::from_secs(5),
            compaction_min_blocks: 4,
            compaction_max_blocks: 8,
            compaction_max_block_bytes: 128 * 1024 * 1024,
            block_compression_level: 3,
            search_cache_bytes: 32 * 1024 * 1024,
            max_ingest_bytes_in_flight: 256 * 1024 * 1024,
            limits: StoreLimits::default(),
            search: SearchSection::default(),
            generator: Default::default(),
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
            max_result_limit: 10_000,
            default_spans_per_span_set: 3,
            max_spans_per_span_set: 100,
            query_end_cutoff: Duration::ZERO,
            max_duration: Duration::from_secs(168 * 3600),
            default_window: Duration::from_secs(15 * 60),
            query_timeout: Duration::from_secs(30),
            max_concurrent_queries: 2,
            max_result_bytes: 16 * 1024 * 1024,
        }
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl StoreSection {
    /// Check every field; the error names the key and what is wrong.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.retention.is_zero() {
            return Err(Invalid::new("store.retention", "must be greater than 0"));
        }
        for (key, v) in [
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
                return Err(Invalid::new(
                    key,
                    format!("{v:?} is not an address like 0.0.0.0:3200"),
                ));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(Invalid::new("store.data_dir", "must be set"));
        }
        if self.max_block_bytes < 1024 {
            return Err(Invalid::new(
                "store.max_block_bytes",
                "must be at least 1024",
            ));
        }
        if self.tls_cert_file.as_os_str().is_empty() != self.tls_key_file.as_os_str().is_empty() {
            return Err(Invalid::new(
                "store.tls_cert_file",
                "set both tls_cert_file and tls_key_file, or neither",
            ));
        }
        if self.max_tenants == 0 {
            return Err(Invalid::new("store.max_tenants", "must be at least 1"));
        }
        if self.max_ingest_bytes_in_flight < 64 * 1024 {
            return Err(Invalid::new(
                "store.max_ingest_bytes_in_flight",
                "must be at least 65536",
            ));
        }
        if self.compaction_min_blocks < 2 || self.compaction_max_blocks < self.compaction_min_blocks
        {
            return Err(Invalid::new(
                "store.compaction_min_blocks",
                "must be ≥ 2 and ≤ compaction_max_blocks",
            ));
        }
        if !(1..=19).contains(&self.block_compression_level) {
            return Err(Invalid::new(
                "store.block_compression_level",
                "must be 1..=19",
            ));
        }
        if self.limits.max_bytes_per_trace == 0 || self.limits.max_live_bytes == 0 {
            return Err(Invalid::new(
                "store.limits",
                "max_bytes_per_trace and max_live_bytes must be > 0",
            ));
        }
        if (self.limits.max_live_bytes as u64) < 2 * self.max_block_bytes {
            return Err(Invalid::new(
                "store.limits.max_live_bytes",
                format!(
                    "must be at least twice store.max_block_bytes ({}): a block is cut only once live traces reach max_block_bytes, so a smaller limit refuses ingest (503) until max_block_duration passes",
                    self.max_block_bytes
                ),
            ));
        }
        self.generator.validate()?;
        let s = &self.search;
        if s.default_result_limit == 0 || s.default_result_limit > s.max_result_limit {
            return Err(Invalid::new(
                "store.search.default_result_limit",
                "must be 1..=max_result_limit",
            ));
        }
        if s.query_timeout.is_zero() {
            return Err(Invalid::new(
                "store.search.query_timeout",
                "must be greater than 0",
            ));
        }
        if s.max_concurrent_queries == 0 {
            return Err(Invalid::new(
                "store.search.max_concurrent_queries",
                "must be at least 1",
            ));
        }
        if s.max_result_bytes < 64 * 1024 {
            return Err(Invalid::new(
                "store.search.max_result_bytes",
                "must be at least 65536",
            ));
        }
        if s.default_spans_per_span_set > s.max_spans_per_span_set {
            return Err(Invalid::new(
                "store.search.default_spans_per_span_set",
                "must be ≤ max_spans_per_span_set",
            ));
        }
        Ok(())
    }

    pub fn retention_ns(&self) -> u64 {
        ns(self.retention)
    }

    pub fn wal_fsync_interval_ns(&self) -> u64 {
        ns(self.wal_fsync_interval)
    }

    pub fn max_block_duration_ns(&self) -> u64 {
        ns(self.max_block_duration)
    }

    pub fn trace_idle_ns(&self) -> u64 {
        ns(self.trace_idle_period)
    }

    pub fn rootless_trace_idle_ns(&self) -> u64 {
        ns(self.rootless_trace_idle_period)
    }

    pub fn search_limits(&self) -> crate::api::params::SearchLimits {
        crate::api::params::SearchLimits {
            default_limit: self.search.default_result_limit,
            max_limit: self.search.max_result_limit,
            default_spss: self.search.default_spans_per_span_set,
            max_spss: self.search.max_spans_per_span_set,
            query_end_cutoff_ns: ns(self.search.query_end_cutoff),
            max_duration_ns: ns(self.search.max_duration),
            default_window_ns: ns(self.search.default_window),
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn defaults_are_valid_and_tempo_like() {
        let s = StoreSection::default();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.retention, Duration::from_secs(168 * 3600));
        // Loopback until opened up (`--listen-host 0.0.0.0` or the three keys).
        assert_eq!(s.http_listen_address, "127.0.0.1:3200");
        assert_eq!(s.otlp_grpc_listen_address, "127.0.0.1:4317");
        assert_eq!(s.otlp_http_listen_address, "127.0.0.1:4318");
        assert!(!s.cross_tenant_queries_enabled);
        assert_eq!(s.retention_ns(), 168 * 3600 * 1_000_000_000);
    }

    #[rstest]
    #[case::bad_retention("retention: forever", "invalid duration \"forever\"")]
    #[case::zero_retention("retention: 0s", "store.retention")]
    #[case::bad_addr("http_listen_address: localhost", "store.http_listen_address")]
    #[case::neg_idle("trace_idle_period: -1s", "must not be negative")]
    #[case::bad_level("block_compression_level: 40", "store.block_compression_level")]
    #[case::limit(
        "search: {default_result_limit: 0}",
        "store.search.default_result_limit"
    )]
    #[case::live_below_block(
        "{max_block_bytes: 33554432, limits: {max_live_bytes: 1048576}}",
        "store.limits.max_live_bytes"
    )]
    #[case::half_tls("tls_cert_file: /etc/cert.pem", "store.tls_cert_file")]
    #[case::no_timeout("search: {query_timeout: 0s}", "store.search.query_timeout")]
    #[case::no_slots(
        "search: {max_concurrent_queries: 0}",
        "store.search.max_concurrent_queries"
    )]
    #[case::tiny_results("search: {max_result_bytes: 10}", "store.search.max_result_bytes")]
    fn invalid_sections(#[case] yaml: &str, #[case] field: &str) {
        let err = match serde_yaml::from_str::<StoreSection>(yaml) {
            Ok(s) => s.validate().unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(field), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        assert!(serde_yaml::from_str::<StoreSection>("nope: 1").is_err());
    }
}
