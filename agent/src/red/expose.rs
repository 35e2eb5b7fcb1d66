//! The RED state in Prometheus's exposition formats: OpenMetrics text (with trace-ID
//! exemplars on the latency buckets) when the scraper asks for it, the classic text format
//! (version 0.0.4, which has no exemplars) otherwise. OpenTelemetry names become the names
//! Prometheus users graph (`http.server.request.duration` →
//! `http_server_request_duration_seconds`), resource attributes become `target_info`.
//!
//! Written here rather than through prometheus-client's registry: its exemplars can only be
//! filled by its own histogram type, which keeps one lock per series and hides its buckets
//! from the OTLP export; the agent's own counters still go through prometheus-client, and
//! [`super::classic::openmetrics_to_text`] turns that part into the classic format.
use std::fmt::Write as _;

use super::{
    graph::GRAPH_BOUNDS,
    series::{DURATION_BOUNDS, Exemplar, Hist, Labels, OVERFLOW, SIZE_BOUNDS, Series, overflowed},
    state::{ServiceKey, State},
};
use crate::span::{SpanKind, resource::AttrValue};

/// The exposition format a scrape asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    /// From the scrape's `Accept` header: OpenMetrics only when asked for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// A label list being written: `{a="x",b="y"}`.
struct LabelSet(String);

impl LabelSet {
    fn new() -> Self {
        Self(String::with_capacity(256))
    }
    fn add(&mut self, key: &str, value: &str) -> &mut Self {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push_str(key);
        self.0.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => self.0.push_str("\\\\"),
                '"' => self.0.push_str("\\\""),
                '\n' => self.0.push_str("\\n"),
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }
    fn opt(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.add(key, v);
        }
        self
    }
    /// The set with one more label, closed.
    fn with(&self, key: &str, value: &str) -> String {
        let mut s = Self(self.0.clone());
        s.add(key, value);
        s.close()
    }
    fn close(mut self) -> String {
        if !self.0.is_empty() {
            self.0.push('}');
        }
        self.0
    }
}

/// Prometheus's form of an attribute key (`service.name` → `service_name`).
pub fn label_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn service_labels(k: &ServiceKey) -> LabelSet {
    let mut l = LabelSet::new();
    l.add("service_name", &k.name)
        .opt("service_namespace", k.namespace.as_deref())
        .add("service_instance_id", &k.instance);
    l
}

fn series_labels(k: &ServiceKey, s: &Labels) -> LabelSet {
    let mut l = service_labels(k);
    if s.overflow & overflowed::ALL != 0 {
        for key in [
            "http_request_method",
            "http_response_status_code",
            "http_route",
            "network_protocol_version",
        ] {
            l.add(key, OVERFLOW);
        }
        return l;
    }
    let status = s.status.map(|c| c.to_string());
    l.add("http_request_method", s.method)
        .opt("http_response_status_code", status.as_deref())
        .opt("error_type", s.error_type.as_deref())
        .add("network_protocol_version", s.version)
        .add("url_scheme", s.scheme);
    if s.overflow & overflowed::ROUTE != 0 {
        l.add("http_route", OVERFLOW);
    } else {
        l.opt("http_route", s.route.as_deref());
    }
    if s.overflow & overflowed::SERVER_ADDRESS != 0 {
        l.add("server_address", OVERFLOW);
    } else {
        l.opt("server_address", s.server_address.as_deref());
    }
    if s.overflow & overflowed::SERVER_PORT != 0 {
        l.add("server_port", OVERFLOW);
    } else {
        let port = s.server_port.map(|p| p.to_string());
        l.opt("server_port", port.as_deref());
    }
    l
}

/// Writes metric families.
struct Writer {
    out: String,
    format: Format,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, unit: Option<&str>, help: &str) {
        let om = self.format == Format::OpenMetrics;
        // The classic format names a counter by its sample (`_total`) and knows no `info`.
        let (name, kind) = match (om, kind) {
            (false, "counter") => (format!("{name}_total"), kind),
            (false, "info") => (format!("{name}_info"), "gauge"),
            _ => (name.to_owned(), kind),
        };
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        if om && let Some(u) = unit {
            let _ = writeln!(self.out, "# UNIT {name} {u}");
        }
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{name}{labels} {value}");
    }

    fn histogram<const B: usize>(
        &mut self,
        name: &str,
        labels: &LabelSet,
        bounds: &[f64],
        h: &Hist<B>,
        exemplars: Option<&[Option<Exemplar>; 15]>,
    ) {
        let mut cumulative = 0;
        for (i, c) in h.counts.iter().enumerate() {
            cumulative += c;
            let le = bounds
                .get(i)
                .map_or("+Inf".to_owned(), |b| format!("{b:?}"));
            let _ = write!(
                self.out,
                "{name}_bucket{} {cumulative}",
                labels.with("le", &le)
            );
            if self.format == Format::OpenMetrics
                && let Some(e) = exemplars.and_then(|e| e.get(i)).and_then(Option::as_ref)
            {
                let _ = write!(
                    self.out,
                    " # {{trace_id=\"{}\",span_id=\"{}\"}} {:?} {}.{:03}",
                    hex::encode(e.trace_id),
                    hex::encode(e.span_id),
                    e.value,
                    e.unix_ms / 1000,
                    e.unix_ms % 1000
                );
            }
            self.out.push('\n');
        }
        let labels = LabelSet(labels.0.clone()).close();
        self.sample(&format!("{name}_count"), &labels, h.count());
        self.sample(&format!("{name}_sum"), &labels, format!("{:?}", h.sum));
    }
}

/// Which body-size histogram of a series.
type SizeOf = fn(&Series) -> &Hist<11>;

fn series_of(s: &super::state::Service, kind: SpanKind) -> &rustc_hash::FxHashMap<Labels, Series> {
    match kind {
        SpanKind::Server => &s.server.series,
        SpanKind::Client => &s.client.series,
    }
}

/// The RED state in `format`, without the OpenMetrics `# EOF` (the caller ends the page).
pub fn render(state: &State, format: Format) -> String {
    let mut w = Writer {
        out: String::with_capacity(4096 + state.series() * 1500),
        format,
    };
    let mut services: Vec<_> = state.services.iter().collect();
    services.sort_by(|a, b| (&a.0.name, &a.0.instance).cmp(&(&b.0.name, &b.0.instance)));

    w.family(
        "target",
        "info",
        None,
        "The resource of each traced service (OpenTelemetry resource attributes).",
    );
    for (k, s) in &services {
        let mut l = service_labels(k);
        for a in &s.resource.attributes {
            if matches!(
                a.key.as_str(),
                "service.name" | "service.namespace" | "service.instance.id"
            ) {
                continue;
            }
            let v = match &a.value {
                AttrValue::Str(v) => v.clone(),
                AttrValue::Int(i) => i.to_string(),
            };
            l.add(&label_name(&a.key), &v);
        }
        w.sample("target_info", &l.close(), 1);
    }

    for (side, kind) in [("server", SpanKind::Server), ("client", SpanKind::Client)] {
        let name = format!("http_{side}_request_duration_seconds");
        w.family(
            &name,
            "histogram",
            Some("seconds"),
            &format!("Duration of HTTP {side} requests (http.{side}.request.duration)."),
        );
        for (k, s) in &services {
            for (labels, series) in series_of(s, kind) {
                let l = series_labels(k, labels);
                w.histogram(
                    &name,
                    &l,
                    &DURATION_BOUNDS,
                    &series.duration,
                    series.exemplars.as_deref(),
                );
            }
        }
        let sizes: [(&str, SizeOf); 2] = [
            ("request", |s| &s.request_size),
            ("response", |s| &s.response_size),
        ];
        for (what, get) in sizes {
            let name = format!("http_{side}_{what}_body_size_bytes");
            w.family(
                &name,
                "histogram",
                Some("bytes"),
                &format!("Size of HTTP {side} {what} bodies (http.{side}.{what}.body.size)."),
            );
            for (k, s) in &services {
                for (labels, series) in series_of(s, kind) {
                    if get(series).count() > 0 {
                        let l = series_labels(k, labels);
                        w.histogram(&name, &l, &SIZE_BOUNDS, get(series), None);
                    }
                }
            }
        }
    }

    let mut edges: Vec<_> = state.graph.edges.iter().collect();
    edges.sort_by(|a, b| (&a.0.client, &a.0.server).cmp(&(&b.0.client, &b.0.server)));
    let edge_labels = |e: &super::graph::Edge| {
        let mut l = LabelSet::new();
        l.add("client", &e.client)
            .add("server", &e.server)
            .add("connection_type", e.connection_type);
        l
    };
    w.family(
        "traces_service_graph_request",
        "counter",
        None,
        "Requests between two services, counted by the server's agent.",
    );
    for (e, s) in edges.iter().filter(|(_, s)| s.total > 0) {
        w.sample(
            "traces_service_graph_request_total",
            &edge_labels(e).close(),
            s.total,
        );
    }
    w.family(
        "traces_service_graph_request_failed",
        "counter",
        None,
        "Failed requests between two services (5xx or no response), counted by the server's agent.",
    );
    for (e, s) in edges.iter().filter(|(_, s)| s.total > 0) {
        w.sample(
            "traces_service_graph_request_failed_total",
            &edge_labels(e).close(),
            s.failed,
        );
    }
    for (side, what) in [("server", "the server's"), ("client", "the client's")] {
        let name = format!("traces_service_graph_request_{side}_seconds");
        w.family(
            &name,
            "histogram",
            Some("seconds"),
            &format!("Request duration between two services as {what} agent saw it."),
        );
        for (e, s) in &edges {
            let h = if side == "server" {
                &s.server_seconds
            } else {
                &s.client_seconds
            };
            if h.count() > 0 {
                w.histogram(&name, &edge_labels(e), &GRAPH_BOUNDS, h, None);
            }
        }
    }

    w.family(
        "sonde_red_dropped_spans",
        "counter",
        None,
        "Spans of a service left out of its RED metrics because the RED queue was full.",
    );
    for (k, s) in &services {
        w.sample(
            "sonde_red_dropped_spans_total",
            &service_labels(k).close(),
            s.dropped_spans,
        );
    }
    w.family(
        "sonde_red_skipped_exchanges",
        "counter",
        None,
        "Exchanges of a service the capture dropped without a span (records lost to a full ring, no response, eviction): requests its RED metrics do not count.",
    );
    for (k, s) in &services {
        w.sample(
            "sonde_red_skipped_exchanges_total",
            &service_labels(k).close(),
            s.skipped_exchanges,
        );
    }
    w.family(
        "sonde_red_cardinality_overflow",
        "counter",
        None,
        "Spans counted with one label replaced by __cardinality_overflow__ (series limit reached).",
    );
    for (k, s) in &services {
        let mut o: Vec<_> = s.overflows.iter().collect();
        o.sort_by_key(|((kind, label), _)| (*kind == SpanKind::Client, *label));
        for ((kind, label), n) in o {
            let mut l = service_labels(k);
            l.add(
                "span_kind",
                if *kind == SpanKind::Server {
                    "server"
                } else {
                    "client"
                },
            )
            .add("label", label);
            w.sample("sonde_red_cardinality_overflow_total", &l.close(), n);
        }
    }
    w.family(
        "sonde_red_service_overflow",
        "counter",
        None,
        "Spans whose service.instance.id overflowed because the service limit was reached.",
    );
    w.sample(
        "sonde_red_service_overflow_total",
        "",
        state.instance_overflows,
    );
    w.family(
        "sonde_red_graph_overflow",
        "counter",
        None,
        "Service-graph requests whose peer label overflowed because the edge limit was reached.",
    );
    w.sample("sonde_red_graph_overflow_total", "", state.graph.overflowed);
    w.family(
        "sonde_red_otlp_requests",
        "counter",
        None,
        "OTLP metrics export requests sent.",
    );
    w.sample("sonde_red_otlp_requests_total", "", state.otlp_requests);
    w.family(
        "sonde_red_otlp_failed_requests",
        "counter",
        None,
        "OTLP metrics export requests that failed (the next export sends totals again when cumulative).",
    );
    w.sample(
        "sonde_red_otlp_failed_requests_total",
        "",
        state.otlp_failed_requests,
    );
    w.family(
        "sonde_red_series",
        "gauge",
        None,
        "RED series held, every service together.",
    );
    w.sample("sonde_red_series", "", state.series());
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        export::testutil::{resource, server_span},
        red::{series::Observation, state::Limits},
    };
    use rstest::rstest;

    fn state() -> State {
        let mut st = State::new(Limits::default());
        let r = resource(7, "shop");
        let mut s = server_span();
        s.route = Some("/items/{id}".into());
        let mut client = server_span();
        client.kind = SpanKind::Client;
        client.host = Some("pay\"ments:8443".into());
        st.record(vec![Observation::of(&r, &s), Observation::of(&r, &client)]);
        st
    }

    #[test]
    fn openmetrics_has_exemplars_units_and_info() {
        let text = render(&state(), Format::OpenMetrics);
        assert!(text.contains("# TYPE target info\n"), "{text}");
        assert!(
            text.contains("target_info{service_name=\"shop\","),
            "{text}"
        );
        assert!(
            text.contains("# UNIT http_server_request_duration_seconds seconds\n"),
            "{text}"
        );
        let bucket = text
            .lines()
            .find(|l| {
                l.starts_with("http_server_request_duration_seconds_bucket{")
                    && l.contains("le=\"0.005\"")
            })
            .unwrap();
        assert!(bucket.contains("http_route=\"/items/{id}\""), "{bucket}");
        assert!(bucket.contains("http_request_method=\"GET\""), "{bucket}");
        assert!(
            bucket.contains("http_response_status_code=\"200\""),
            "{bucket}"
        );
        assert!(
            bucket.ends_with(&format!(
                " 1 # {{trace_id=\"{}\",span_id=\"{}\"}} 0.00123 1700000000.001",
                "11".repeat(16),
                "22".repeat(8)
            )),
            "{bucket}"
        );
        assert!(
            text.contains("server_address=\"pay\\\"ments\",server_port=\"8443\""),
            "{text}"
        );
        assert!(
            text.contains("# TYPE traces_service_graph_request counter\n"),
            "{text}"
        );
        assert!(text.contains("http_server_request_duration_seconds_count{"));
        assert!(text.contains("le=\"+Inf\"} 1"));
        assert!(text.contains("le=\"1.0\"} 1"));
    }

    #[test]
    fn text_format_has_no_exemplars_and_names_counters_by_sample() {
        let text = render(&state(), Format::Text);
        assert!(!text.contains(" # {"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");
        assert!(text.contains("# TYPE target_info gauge\n"), "{text}");
        assert!(
            text.contains("# TYPE sonde_red_dropped_spans_total counter\n"),
            "{text}"
        );
    }

    #[rstest]
    #[case::none(None, Format::Text)]
    #[case::text(Some("text/plain;version=0.0.4"), Format::Text)]
    #[case::prometheus(
        Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ),
        Format::OpenMetrics
    )]
    #[case::any(Some("*/*"), Format::Text)]
    fn negotiation(#[case] accept: Option<&str>, #[case] want: Format) {
        assert_eq!(Format::from_accept(accept), want);
    }

    #[rstest]
    #[case::plain("service.name", "service_name")]
    #[case::k8s("k8s.pod.name", "k8s_pod_name")]
    #[case::digit("1x", "_1x")]
    #[case::dash("a-b", "a_b")]
    fn label_names(#[case] key: &str, #[case] want: &str) {
        assert_eq!(label_name(key), want);
    }
}
