//! The store's own metrics on `/metrics`: Tempo's `tempodb_*` storage series and ingest/query
//! counters under Tempo's names, plus `sonde_store_*` for what Tempo has no name for.
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

type Labels = Vec<(String, String)>;

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn hist() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// All store metrics.
pub struct Metrics {
    registry: Registry,
    pub backend_bytes: Family<Labels, Gauge>,
    pub backend_objects: Family<Labels, Gauge>,
    pub blocklist_length: Family<Labels, Gauge>,
    pub compaction_blocks: Family<Labels, Counter>,
    pub compaction_bytes_written: Family<Labels, Counter>,
    pub compaction_errors: Counter,
    pub retention_deleted: Counter,
    pub spans_received: Family<Labels, Counter>,
    pub bytes_received: Family<Labels, Counter>,
    pub accepted_spans: Family<Labels, Counter>,
    pub refused_spans: Family<Labels, Counter>,
    pub discarded_spans: Family<Labels, Counter>,
    pub blocks_cut: Family<Labels, Counter>,
    pub block_errors: Family<Labels, Counter>,
    pub live_traces: Family<Labels, Gauge>,
    pub live_bytes: Family<Labels, Gauge>,
    pub wal_bytes: Family<Labels, Gauge>,
    pub queries: Family<Labels, Counter>,
    pub queries_inflight: Gauge,
    pub queries_stopped: Family<Labels, Counter>,
    pub request_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub ingest_duration: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Self {
            backend_bytes: Family::default(),
            backend_objects: Family::default(),
            blocklist_length: Family::default(),
            compaction_blocks: Family::default(),
            compaction_bytes_written: Family::default(),
            compaction_errors: Counter::default(),
            retention_deleted: Counter::default(),
            spans_received: Family::default(),
            bytes_received: Family::default(),
            accepted_spans: Family::default(),
            refused_spans: Family::default(),
            discarded_spans: Family::default(),
            blocks_cut: Family::default(),
            block_errors: Family::default(),
            live_traces: Family::default(),
            live_bytes: Family::default(),
            wal_bytes: Family::default(),
            queries: Family::default(),
            queries_inflight: Gauge::default(),
            queries_stopped: Family::default(),
            request_duration: Family::new_with_constructor(hist),
            ingest_duration: Family::new_with_constructor(hist),
            registry: Registry::default(),
        };
        r.register(
            "tempodb_backend_bytes_total",
            "Bytes of blocks on disk",
            m.backend_bytes.clone(),
        );
        r.register(
            "tempodb_backend_objects_total",
            "Traces in blocks on disk",
            m.backend_objects.clone(),
        );
        r.register(
            "tempodb_blocklist_length",
            "Blocks per tenant",
            m.blocklist_length.clone(),
        );
        r.register(
            "tempodb_compaction_blocks",
            "Blocks compacted",
            m.compaction_blocks.clone(),
        );
        r.register(
            "tempodb_compaction_bytes_written",
            "Bytes written by compaction",
            m.compaction_bytes_written.clone(),
        );
        r.register(
            "tempodb_compaction_errors",
            "Failed compactions",
            m.compaction_errors.clone(),
        );
        r.register(
            "tempodb_retention_deleted",
            "Blocks deleted by retention",
            m.retention_deleted.clone(),
        );
        r.register(
            "tempo_distributor_spans_received",
            "Spans received per tenant",
            m.spans_received.clone(),
        );
        r.register(
            "tempo_distributor_bytes_received",
            "Request bytes received per tenant",
            m.bytes_received.clone(),
        );
        r.register(
            "tempo_receiver_accepted_spans",
            "Spans accepted by the OTLP receivers",
            m.accepted_spans.clone(),
        );
        r.register(
            "tempo_receiver_refused_spans",
            "Spans refused by the OTLP receivers",
            m.refused_spans.clone(),
        );
        r.register(
            "tempo_discarded_spans",
            "Spans refused, by reason",
            m.discarded_spans.clone(),
        );
        r.register(
            "sonde_store_blocks_cut",
            "Blocks cut from live traces",
            m.blocks_cut.clone(),
        );
        r.register(
            "sonde_store_block_errors",
            "Failed block writes (data kept in WAL and memory)",
            m.block_errors.clone(),
        );
        r.register(
            "sonde_store_live_traces",
            "Traces in memory waiting for a block",
            m.live_traces.clone(),
        );
        r.register(
            "sonde_store_live_bytes",
            "Memory held by live traces",
            m.live_bytes.clone(),
        );
        r.register(
            "sonde_store_wal_bytes",
            "Bytes in WAL segments",
            m.wal_bytes.clone(),
        );
        r.register(
            "tempo_query_frontend_queries",
            "Queries by operation",
            m.queries.clone(),
        );
        r.register(
            "sonde_store_queries_inflight",
            "Searches running now",
            m.queries_inflight.clone(),
        );
        r.register(
            "sonde_store_queries_stopped",
            "Searches stopped before finishing, by reason (deadline, cancelled, too_large, busy)",
            m.queries_stopped.clone(),
        );
        r.register(
            "tempo_request_duration_seconds",
            "HTTP request latency by route",
            m.request_duration.clone(),
        );
        r.register(
            "sonde_store_ingest_duration_seconds",
            "Ingest latency by transport",
            m.ingest_duration.clone(),
        );
        Self { registry: r, ..m }
    }

    pub fn labels(pairs: &[(&str, &str)]) -> Labels {
        l(pairs)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}
