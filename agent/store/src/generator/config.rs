//! The `store.generator:` section: which processors run, their labels and buckets (Tempo's
//! defaults), the registry's limits, where series are remote-written, and per-tenant overrides.
use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};
use sonde_config::Invalid;

/// A metrics-generator processor, named as in Tempo's overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Processor {
    #[serde(rename = "span-metrics")]
    SpanMetrics,
    #[serde(rename = "service-graphs")]
    ServiceGraphs,
}

/// The metrics generator: span metrics and service graphs from every accepted span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorSection {
    /// Generate span metrics and service graphs from ingested spans.
    pub enabled: bool,
    /// Processors run for every tenant (a tenant's override replaces the list).
    pub processors: Vec<Processor>,
    /// Series are collected (remote-written) this often.
    #[serde(with = "sonde_config::duration")]
    pub collection_interval: Duration,
    /// A series not updated for this long is forgotten.
    #[serde(with = "sonde_config::duration")]
    pub stale_duration: Duration,
    /// Series one tenant may hold; a new series past it is counted into one
    /// `metric_overflow="true"` series per metric.
    pub max_active_series: usize,
    /// Distinct values one label may take per tenant; past it only that label's value becomes
    /// `__cardinality_overflow__` (0 = no limit).
    pub max_cardinality_per_label: usize,
    /// Labels added to every series.
    pub external_labels: BTreeMap<String, String>,
    /// When set, every series gets this label holding its tenant.
    pub inject_tenant_id_as: String,
    pub span_metrics: SpanMetricsSection,
    pub service_graphs: ServiceGraphsSection,
    pub remote_write: RemoteWriteSection,
    /// Per-tenant overrides of the settings above, by tenant ID.
    pub overrides: BTreeMap<String, TenantOverrides>,
}

/// Which intrinsic labels span metrics carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntrinsicDimensions {
    pub service: bool,
    pub span_name: bool,
    pub span_kind: bool,
    pub status_code: bool,
    pub status_message: bool,
}

/// `traces_spanmetrics_*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsSection {
    pub intrinsic_dimensions: IntrinsicDimensions,
    /// Extra labels: attribute names looked up on the span, then its resource; the label is the
    /// name with `.` turned into `_` (`http.method` → `http_method`).
    pub dimensions: Vec<String>,
    /// Latency histogram buckets, seconds.
    pub histogram_buckets: Vec<f64>,
}

/// `traces_service_graph_*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceGraphsSection {
    /// How long half an edge waits for its other half.
    #[serde(with = "sonde_config::duration")]
    pub wait: Duration,
    /// Half edges waiting at once per tenant; past it a new one is dropped and counted.
    pub max_items: usize,
    /// Latency histogram buckets, seconds.
    pub histogram_buckets: Vec<f64>,
    /// Extra labels, looked up on the span, then its resource.
    pub dimensions: Vec<String>,
    /// Attributes naming an uninstrumented peer (a virtual node), first found wins.
    pub peer_attributes: Vec<String>,
    /// Attributes marking a client span as a database call (`connection_type="database"`).
    pub database_name_attributes: Vec<String>,
    /// Dimensions become `client_<name>` and `server_<name>`.
    pub enable_client_server_prefix: bool,
    /// Add `virtual_node="client|server"` to edges with a virtual node.
    pub enable_virtual_node_label: bool,
}

/// Prometheus remote write (protobuf + snappy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteSection {
    /// `http://host:9090/api/v1/write`; empty = series are only served on the scrape route
    /// (`/metrics/generator` on the Tempo API port).
    pub url: String,
    /// Extra request headers (with multitenancy, `X-Scope-OrgID` is set to the tenant).
    pub headers: BTreeMap<String, String>,
    /// One request's deadline.
    #[serde(with = "sonde_config::duration")]
    pub timeout: Duration,
    /// Collected requests waiting to be sent (all tenants together); past it the oldest is
    /// dropped and its samples counted.
    pub max_pending_requests: usize,
    /// Samples per request.
    pub max_samples_per_send: usize,
    /// Retry backoff, doubling from min to max.
    #[serde(with = "sonde_config::duration")]
    pub min_backoff: Duration,
    #[serde(with = "sonde_config::duration")]
    pub max_backoff: Duration,
}

/// What one tenant changes; unset keys keep the section's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processors: Option<Vec<Processor>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_active_series: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cardinality_per_label: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_metrics_dimensions: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_graphs_dimensions: Option<Vec<String>>,
    /// `false` keeps this tenant's series off remote write (still on the scrape route).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_write_enabled: Option<bool>,
}

/// `prometheus.ExponentialBuckets(start, factor, n)`.
pub fn exponential_buckets(start: f64, factor: f64, n: usize) -> Vec<f64> {
    std::iter::successors(Some(start), |b| Some(b * factor))
        .take(n)
        .collect()
}

impl Default for GeneratorSection {
    fn default() -> Self {
        Self {
            enabled: true,
            processors: vec![Processor::SpanMetrics, Processor::ServiceGraphs],
            collection_interval: Duration::from_secs(15),
            stale_duration: Duration::from_secs(15 * 60),
            max_active_series: 50_000,
            max_cardinality_per_label: 1_000,
            external_labels: BTreeMap::new(),
            inject_tenant_id_as: String::new(),
            span_metrics: SpanMetricsSection::default(),
            service_graphs: ServiceGraphsSection::default(),
            remote_write: RemoteWriteSection::default(),
            overrides: BTreeMap::new(),
        }
    }
}

impl Default for IntrinsicDimensions {
    fn default() -> Self {
        Self {
            service: true,
            span_name: true,
            span_kind: true,
            status_code: true,
            status_message: false,
        }
    }
}

impl Default for SpanMetricsSection {
    fn default() -> Self {
        Self {
            intrinsic_dimensions: IntrinsicDimensions::default(),
            dimensions: Vec::new(),
            histogram_buckets: exponential_buckets(0.002, 2.0, 14),
        }
    }
}

impl Default for ServiceGraphsSection {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(10),
            max_items: 10_000,
            histogram_buckets: exponential_buckets(0.1, 2.0, 8),
            dimensions: Vec::new(),
            peer_attributes: ["peer.service", "db.name", "db.system", "db.system.name"]
                .map(String::from)
                .to_vec(),
            database_name_attributes: ["db.namespace", "db.name", "db.system", "db.system.name"]
                .map(String::from)
                .to_vec(),
            enable_client_server_prefix: false,
            enable_virtual_node_label: false,
        }
    }
}

impl Default for RemoteWriteSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            max_pending_requests: 64,
            max_samples_per_send: 2_000,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// A label name Prometheus accepts: `[a-zA-Z_][a-zA-Z0-9_]*`, other characters become `_`
/// (Tempo's `SanitizeLabelName`).
pub fn sanitize_label_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn check_buckets(key: &str, b: &[f64]) -> Result<(), Invalid> {
    if b.is_empty() || b.len() > 64 {
        return Err(Invalid::new(key, "must list 1 to 64 bucket bounds"));
    }
    if b.iter().any(|v| !v.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Invalid::new(key, "bounds must be finite and increasing"));
    }
    Ok(())
}

fn check_dimensions(key: &str, dims: &[String]) -> Result<(), Invalid> {
    if dims.len() > 32 {
        return Err(Invalid::new(key, "at most 32 dimensions"));
    }
    if let Some(d) = dims.iter().find(|d| d.is_empty()) {
        return Err(Invalid::new(
            key,
            format!("{d:?}: a dimension needs a name"),
        ));
    }
    Ok(())
}

impl GeneratorSection {
    /// Check every field; the error names the key (from the file's root) and what is wrong.
    pub fn validate(&self) -> Result<(), Invalid> {
        let k = |s: &str| format!("store.generator.{s}");
        if self.collection_interval < Duration::from_millis(100) {
            return Err(Invalid::new(
                k("collection_interval"),
                "must be at least 100ms",
            ));
        }
        if self.stale_duration < self.collection_interval {
            return Err(Invalid::new(
                k("stale_duration"),
                "must be at least collection_interval",
            ));
        }
        if self.max_active_series == 0 {
            return Err(Invalid::new(k("max_active_series"), "must be at least 1"));
        }
        for (name, v) in &self.external_labels {
            if name.is_empty() || sanitize_label_name(name) != *name || v.is_empty() {
                return Err(Invalid::new(
                    k("external_labels"),
                    format!("{name:?}: names are [a-zA-Z_][a-zA-Z0-9_]*, values non-empty"),
                ));
            }
        }
        let t = &self.inject_tenant_id_as;
        if !t.is_empty() && sanitize_label_name(t) != *t {
            return Err(Invalid::new(
                k("inject_tenant_id_as"),
                format!("{t:?} is not a label name"),
            ));
        }
        check_buckets(
            &k("span_metrics.histogram_buckets"),
            &self.span_metrics.histogram_buckets,
        )?;
        check_dimensions(&k("span_metrics.dimensions"), &self.span_metrics.dimensions)?;
        let g = &self.service_graphs;
        check_buckets(&k("service_graphs.histogram_buckets"), &g.histogram_buckets)?;
        check_dimensions(&k("service_graphs.dimensions"), &g.dimensions)?;
        if g.wait.is_zero() {
            return Err(Invalid::new(
                k("service_graphs.wait"),
                "must be greater than 0",
            ));
        }
        if g.max_items == 0 {
            return Err(Invalid::new(
                k("service_graphs.max_items"),
                "must be at least 1",
            ));
        }
        let r = &self.remote_write;
        let http = r.url.starts_with("http://") || r.url.starts_with("https://");
        if !(r.url.is_empty() || http) {
            return Err(Invalid::new(
                k("remote_write.url"),
                format!(
                    "{:?} is not an http(s) URL like http://127.0.0.1:9090/api/v1/write",
                    r.url
                ),
            ));
        }
        if r.max_pending_requests == 0 || r.max_samples_per_send == 0 {
            return Err(Invalid::new(
                k("remote_write"),
                "max_pending_requests and max_samples_per_send must be at least 1",
            ));
        }
        if r.timeout.is_zero() || r.min_backoff.is_zero() || r.max_backoff < r.min_backoff {
            return Err(Invalid::new(
                k("remote_write"),
                "timeout and min_backoff must be > 0, max_backoff ≥ min_backoff",
            ));
        }
        for (tenant, o) in &self.overrides {
            let ko = |s: &str| format!("store.generator.overrides.{tenant}.{s}");
            if o.max_active_series == Some(0) {
                return Err(Invalid::new(ko("max_active_series"), "must be at least 1"));
            }
            if let Some(d) = &o.span_metrics_dimensions {
                check_dimensions(&ko("span_metrics_dimensions"), d)?;
            }
            if let Some(d) = &o.service_graphs_dimensions {
                check_dimensions(&ko("service_graphs_dimensions"), d)?;
            }
        }
        Ok(())
    }

    /// The settings in force for `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> TenantSettings {
        let o = self.overrides.get(tenant).cloned().unwrap_or_default();
        let processors = o.processors.unwrap_or_else(|| self.processors.clone());
        TenantSettings {
            span_metrics: self.enabled && processors.contains(&Processor::SpanMetrics),
            service_graphs: self.enabled && processors.contains(&Processor::ServiceGraphs),
            max_active_series: o.max_active_series.unwrap_or(self.max_active_series),
            max_cardinality_per_label: o
                .max_cardinality_per_label
                .unwrap_or(self.max_cardinality_per_label),
            span_metrics_dimensions: o
                .span_metrics_dimensions
                .unwrap_or_else(|| self.span_metrics.dimensions.clone()),
            service_graphs_dimensions: o
                .service_graphs_dimensions
                .unwrap_or_else(|| self.service_graphs.dimensions.clone()),
            remote_write: o.remote_write_enabled.unwrap_or(true)
                && !self.remote_write.url.is_empty(),
        }
    }
}

/// One tenant's effective settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSettings {
    pub span_metrics: bool,
    pub service_graphs: bool,
    pub max_active_series: usize,
    pub max_cardinality_per_label: usize,
    pub span_metrics_dimensions: Vec<String>,
    pub service_graphs_dimensions: Vec<String>,
    pub remote_write: bool,
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn defaults_are_tempos() {
        let g = GeneratorSection::default();
        assert_eq!(g.validate(), Ok(()));
        assert!(g.enabled);
        let b = &g.span_metrics.histogram_buckets;
        assert_eq!(b.len(), 14);
        assert!((b[0] - 0.002).abs() < 1e-12 && (b[13] - 16.384).abs() < 1e-9);
        let s = &g.service_graphs.histogram_buckets;
        assert_eq!(s.len(), 8);
        assert!((s[7] - 12.8).abs() < 1e-9);
        assert_eq!(g.service_graphs.wait, Duration::from_secs(10));
        assert_eq!(g.service_graphs.max_items, 10_000);
        let t = g.for_tenant("x");
        assert!(t.span_metrics && t.service_graphs && !t.remote_write);
    }

    #[test]
    fn a_tenant_override_replaces_only_its_keys() {
        let g: GeneratorSection = serde_yaml::from_str(
            "remote_write: {url: 'http://p:9090/api/v1/write'}\noverrides:\n  quiet: {processors: [span-metrics], max_active_series: 10, remote_write_enabled: false}\n",
        )
        .unwrap();
        assert_eq!(g.validate(), Ok(()));
        let q = g.for_tenant("quiet");
        assert!(q.span_metrics && !q.service_graphs && !q.remote_write);
        assert_eq!(q.max_active_series, 10);
        let other = g.for_tenant("other");
        assert!(other.service_graphs && other.remote_write);
        assert_eq!(other.max_active_series, 50_000);
    }

    #[rstest]
    #[case::interval("collection_interval: 1ms", "store.generator.collection_interval")]
    #[case::buckets(
        "span_metrics: {histogram_buckets: [1, 0.5]}",
        "store.generator.span_metrics.histogram_buckets"
    )]
    #[case::no_buckets(
        "service_graphs: {histogram_buckets: []}",
        "store.generator.service_graphs.histogram_buckets"
    )]
    #[case::url(
        "remote_write: {url: 'prometheus:9090'}",
        "store.generator.remote_write.url"
    )]
    #[case::label("external_labels: {'a-b': x}", "store.generator.external_labels")]
    #[case::tenant_label("inject_tenant_id_as: 'x.y'", "store.generator.inject_tenant_id_as")]
    #[case::series("max_active_series: 0", "store.generator.max_active_series")]
    #[case::wait("service_graphs: {wait: 0s}", "store.generator.service_graphs.wait")]
    #[case::override_series(
        "overrides: {t: {max_active_series: 0}}",
        "store.generator.overrides.t.max_active_series"
    )]
    #[case::processor("processors: [local-blocks]", "unknown variant")]
    fn invalid_sections(#[case] yaml: &str, #[case] field: &str) {
        let err = match serde_yaml::from_str::<GeneratorSection>(yaml) {
            Ok(s) => s.validate().unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(field), "{err}");
    }

    #[rstest]
    #[case("http.method", "http_method")]
    #[case("k8s.pod-name", "k8s_pod_name")]
    #[case("1abc", "_1abc")]
    #[case("", "_")]
    fn label_names_are_sanitized(#[case] input: &str, #[case] want: &str) {
        assert_eq!(sanitize_label_name(input), want);
    }
}
