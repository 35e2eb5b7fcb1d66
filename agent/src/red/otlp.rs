//! The RED state as OTLP metrics, exported on a timer over the span exporter's transports
//! (gRPC or HTTP/protobuf, `OTEL_EXPORTER_OTLP_METRICS_*` over the generic variables), with
//! cumulative or delta temporality. One `ResourceMetrics` per service (its process resource)
//! with the HTTP histograms and its loss counters, one for the agent with the service graph;
//! requests are cut at [`MAX_POINTS`] data points.
use std::{sync::Arc, time::Duration};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::KeyValue,
    metrics::v1::{
        AggregationTemporality, Exemplar as OtlpExemplar, Histogram, HistogramDataPoint, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exemplar, metric::Data,
        number_data_point,
    },
    resource::v1::Resource,
};
use prost::Message as _;
use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    Red,
    graph::{Edge, EdgeStats, GRAPH_BOUNDS},
    series::{DURATION_BOUNDS, Exemplar, Hist, Labels, OVERFLOW, SIZE_BOUNDS, Series, overflowed},
    state::{ServiceKey, State},
};
use crate::{
    export::{
        client::{Payload, Transport},
        otlp::{kv_int, kv_str, scope, to_otlp_resource},
    },
    span::{SpanKind, resource::SDK_NAME},
};

/// Data points per request at most (receivers refuse messages over 4 MiB by default).
pub const MAX_POINTS: usize = 2000;

/// How sums and histograms are reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Temporality {
    /// Totals since the agent started (what Prometheus expects).
    #[default]
    Cumulative,
    /// What happened since the previous export.
    Delta,
}

impl Temporality {
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: `lowmemory` is delta for the
    /// synchronous counters and histograms, which is all the agent has.
    pub fn from_preference(v: &str) -> Option<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "cumulative" => Some(Self::Cumulative),
            "delta" | "lowmemory" => Some(Self::Delta),
            _ => None,
        }
    }

    fn otlp(self) -> i32 {
        match self {
            Self::Cumulative => AggregationTemporality::Cumulative as i32,
            Self::Delta => AggregationTemporality::Delta as i32,
        }
    }
}

/// Which series a previous value belongs to (delta temporality).
type SeriesId = (ServiceKey, SpanKind, Labels);

/// Turns the state into export requests, remembering what the previous export sent when
/// the temporality is delta.
#[derive(Debug)]
pub struct Snapshotter {
    temporality: Temporality,
    start_ns: u64,
    last_ns: u64,
    prev_series: HashMap<SeriesId, Series>,
    prev_edges: HashMap<Edge, EdgeStats>,
    prev_losses: HashMap<ServiceKey, (u64, u64)>,
}

fn diff<const B: usize>(cur: &Hist<B>, prev: Option<&Hist<B>>) -> Hist<B> {
    let Some(prev) = prev else {
        return cur.clone();
    };
    let mut out = cur.clone();
    for (o, p) in out.counts.iter_mut().zip(prev.counts) {
        *o = o.saturating_sub(p);
    }
    out.sum = cur.sum - prev.sum;
    out
}

fn attributes(l: &Labels) -> Vec<KeyValue> {
    if l.overflow & overflowed::ALL != 0 {
        return [
            "http.request.method",
            "http.response.status_code",
            "http.route",
            "network.protocol.version",
        ]
        .into_iter()
        .map(|k| kv_str(k, OVERFLOW))
        .collect();
    }
    let mut a = vec![kv_str("http.request.method", l.method)];
    if let Some(s) = l.status {
        a.push(kv_int("http.response.status_code", i64::from(s)));
    }
    if let Some(e) = &l.error_type {
        a.push(kv_str("error.type", &**e));
    }
    a.push(kv_str("network.protocol.version", l.version));
    a.push(kv_str("url.scheme", l.scheme));
    if l.overflow & overflowed::ROUTE != 0 {
        a.push(kv_str("http.route", OVERFLOW));
    } else if let Some(r) = &l.route {
        a.push(kv_str("http.route", &**r));
    }
    if l.overflow & overflowed::SERVER_ADDRESS != 0 {
        a.push(kv_str("server.address", OVERFLOW));
    } else if let Some(s) = &l.server_address {
        a.push(kv_str("server.address", &**s));
    }
    if l.overflow & overflowed::SERVER_PORT != 0 {
        a.push(kv_str("server.port", OVERFLOW));
    } else if let Some(p) = l.server_port {
        a.push(kv_int("server.port", i64::from(p)));
    }
    a
}

fn histogram_metric(name: &str, unit: &str, description: &str, temporality: i32) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: unit.to_owned(),
        metadata: Vec::new(),
        data: Some(Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: temporality,
        })),
    }
}

fn sum_metric(name: &str, description: &str, temporality: i32) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: "1".to_owned(),
        metadata: Vec::new(),
        data: Some(Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: temporality,
            is_monotonic: true,
        })),
    }
}

fn histogram_points(m: &mut Metric) -> &mut Vec<HistogramDataPoint> {
    match &mut m.data {
        Some(Data::Histogram(h)) => &mut h.data_points,
        _ => unreachable!("built as a histogram"),
    }
}

fn sum_points(m: &mut Metric) -> &mut Vec<NumberDataPoint> {
    match &mut m.data {
        Some(Data::Sum(s)) => &mut s.data_points,
        _ => unreachable!("built as a sum"),
    }
}

fn points(m: &Metric) -> usize {
    match &m.data {
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        _ => 0,
    }
}

impl Snapshotter {
    pub fn new(temporality: Temporality, start_ns: u64) -> Self {
        Self {
            temporality,
            start_ns,
            last_ns: start_ns,
            prev_series: HashMap::default(),
            prev_edges: HashMap::default(),
            prev_losses: HashMap::default(),
        }
    }

    fn point<const B: usize>(
        &self,
        attributes: Vec<KeyValue>,
        bounds: &[f64],
        h: &Hist<B>,
        exemplars: &[Option<Exemplar>],
        now_ns: u64,
    ) -> HistogramDataPoint {
        let start = match self.temporality {
            Temporality::Cumulative => self.start_ns,
            Temporality::Delta => self.last_ns,
        };
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now_ns,
            count: h.count(),
            sum: Some(h.sum),
            bucket_counts: h.counts.to_vec(),
            explicit_bounds: bounds.to_vec(),
            exemplars: exemplars
                .iter()
                .flatten()
                .filter(|e| e.unix_ms.saturating_mul(1_000_000) >= start)
                .map(|e| OtlpExemplar {
                    filtered_attributes: Vec::new(),
                    time_unix_nano: e.unix_ms.saturating_mul(1_000_000),
                    span_id: e.span_id.to_vec(),
                    trace_id: e.trace_id.to_vec(),
                    value: Some(exemplar::Value::AsDouble(e.value)),
                })
                .collect(),
            flags: 0,
            min: None,
            max: None,
        }
    }

    fn count_point(&self, attributes: Vec<KeyValue>, v: u64, now_ns: u64) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            start_time_unix_nano: match self.temporality {
                Temporality::Cumulative => self.start_ns,
                Temporality::Delta => self.last_ns,
            },
            time_unix_nano: now_ns,
            exemplars: Vec::new(),
            flags: 0,
            value: Some(number_data_point::Value::AsInt(
                i64::try_from(v).unwrap_or(i64::MAX),
            )),
        }
    }

    /// The requests that export `state` at `now_ns`.
    pub fn requests(&mut self, state: &State, now_ns: u64) -> Vec<ExportMetricsServiceRequest> {
        let t = self.temporality.otlp();
        let delta = self.temporality == Temporality::Delta;
        let mut next_series = HashMap::default();
        let mut next_losses = HashMap::default();
        let mut resources = Vec::new();
        for (key, service) in &state.services {
            let mut metrics = Vec::new();
            for (side, kind, table) in [
                ("server", SpanKind::Server, &service.server),
                ("client", SpanKind::Client, &service.client),
            ] {
                let mut duration = histogram_metric(
                    &format!("http.{side}.request.duration"),
                    "s",
                    &format!("Duration of HTTP {side} requests."),
                    t,
                );
                let mut request = histogram_metric(
                    &format!("http.{side}.request.body.size"),
                    "By",
                    &format!("Size of HTTP {side} request bodies."),
                    t,
                );
                let mut response = histogram_metric(
                    &format!("http.{side}.response.body.size"),
                    "By",
                    &format!("Size of HTTP {side} response bodies."),
                    t,
                );
                for (labels, series) in &table.series {
                    let id = (key.clone(), kind, labels.clone());
                    let prev = if delta {
                        self.prev_series.get(&id)
                    } else {
                        None
                    };
                    let d = diff(&series.duration, prev.map(|p| &p.duration));
                    let rq = diff(&series.request_size, prev.map(|p| &p.request_size));
                    let rs = diff(&series.response_size, prev.map(|p| &p.response_size));
                    if delta {
                        next_series.insert(id, series.clone());
                    }
                    if d.count() == 0 {
                        continue;
                    }
                    let attrs = attributes(labels);
                    let ex = series.exemplars.as_deref().map_or(&[][..], |e| &e[..]);
                    if rq.count() > 0 {
                        let p = self.point(attrs.clone(), &SIZE_BOUNDS, &rq, &[], now_ns);
                        histogram_points(&mut request).push(p);
                    }
                    if rs.count() > 0 {
                        let p = self.point(attrs.clone(), &SIZE_BOUNDS, &rs, &[], now_ns);
                        histogram_points(&mut response).push(p);
                    }
                    let p = self.point(attrs, &DURATION_BOUNDS, &d, ex, now_ns);
                    histogram_points(&mut duration).push(p);
                }
                metrics.extend([duration, request, response]);
            }
            let (prev_dropped, prev_overflowed) = if delta {
                self.prev_losses.get(key).copied().unwrap_or_default()
            } else {
                (0, 0)
            };
            let overflowed: u64 = service.overflows.values().sum();
            if delta {
                next_losses.insert(key.clone(), (service.dropped_spans, overflowed));
            }
            // Loss next to the numbers (a delta of nothing is not sent).
            for (name, help, v) in [
                (
                    "sonde.red.dropped_spans",
                    "Spans left out of the RED metrics because the RED queue was full.",
                    service.dropped_spans.saturating_sub(prev_dropped),
                ),
                (
                    "sonde.red.cardinality_overflow",
                    "Spans counted with a label replaced by __cardinality_overflow__.",
                    overflowed.saturating_sub(prev_overflowed),
                ),
            ] {
                let mut m = sum_metric(name, help, t);
                if v > 0 || !delta {
                    sum_points(&mut m).push(self.count_point(Vec::new(), v, now_ns));
                }
                metrics.push(m);
            }
            metrics.retain(|m| points(m) > 0);
            let mut resource = to_otlp_resource(&service.resource);
            for a in &mut resource.attributes {
                match a.key.as_str() {
                    "service.name" => *a = kv_str("service.name", &*key.name),
                    "service.instance.id" => *a = kv_str("service.instance.id", &*key.instance),
                    _ => {}
                }
            }
            resources.push((resource, metrics));
        }
        let graph = self.graph_metrics(state, now_ns);
        if !graph.is_empty() {
            resources.push((
                Resource {
                    attributes: vec![kv_str("service.name", SDK_NAME)],
                    dropped_attributes_count: 0,
                    entity_refs: Vec::new(),
                },
                graph,
            ));
        }
        if delta {
            self.prev_series = next_series;
            self.prev_losses = next_losses;
            self.prev_edges = state.graph.edges.clone();
        }
        self.last_ns = now_ns;
        batch(resources)
    }

    fn graph_metrics(&self, state: &State, now_ns: u64) -> Vec<Metric> {
        let t = self.temporality.otlp();
        let delta = self.temporality == Temporality::Delta;
        let mut total = sum_metric(
            "traces_service_graph_request_total",
            "Requests between two services, counted by the server's agent.",
            t,
        );
        let mut failed = sum_metric(
            "traces_service_graph_request_failed_total",
            "Failed requests between two services, counted by the server's agent.",
            t,
        );
        let mut server = histogram_metric(
            "traces_service_graph_request_server_seconds",
            "s",
            "Request duration between two services as the server's agent saw it.",
            t,
        );
        let mut client = histogram_metric(
            "traces_service_graph_request_client_seconds",
            "s",
            "Request duration between two services as the client's agent saw it.",
            t,
        );
        for (edge, stats) in &state.graph.edges {
            let prev = if delta {
                self.prev_edges.get(edge)
            } else {
                None
            };
            let attrs = vec![
                kv_str("client", &*edge.client),
                kv_str("server", &*edge.server),
                kv_str("connection_type", edge.connection_type),
            ];
            let n = stats.total - prev.map_or(0, |p| p.total);
            if n > 0 {
                sum_points(&mut total).push(self.count_point(attrs.clone(), n, now_ns));
                let f = stats.failed - prev.map_or(0, |p| p.failed);
                sum_points(&mut failed).push(self.count_point(attrs.clone(), f, now_ns));
            }
            let s = diff(&stats.server_seconds, prev.map(|p| &p.server_seconds));
            if s.count() > 0 {
                let p = self.point(attrs.clone(), &GRAPH_BOUNDS, &s, &[], now_ns);
                histogram_points(&mut server).push(p);
            }
            let c = diff(&stats.client_seconds, prev.map(|p| &p.client_seconds));
            if c.count() > 0 {
                let p = self.point(attrs, &GRAPH_BOUNDS, &c, &[], now_ns);
                histogram_points(&mut client).push(p);
            }
        }
        let mut out = vec![total, failed, server, client];
        out.retain(|m| points(m) > 0);
        out
    }
}

/// The first `n` data points of `m` as a metric of their own; `m` keeps the rest.
fn split_off_front(m: &mut Metric, n: usize) -> Metric {
    let mut front = Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        metadata: m.metadata.clone(),
        data: None,
    };
    front.data = match &mut m.data {
        Some(Data::Histogram(h)) => Some(Data::Histogram(Histogram {
            data_points: h.data_points.drain(..n).collect(),
            aggregation_temporality: h.aggregation_temporality,
        })),
        Some(Data::Sum(x)) => Some(Data::Sum(Sum {
            data_points: x.data_points.drain(..n).collect(),
            aggregation_temporality: x.aggregation_temporality,
            is_monotonic: x.is_monotonic,
        })),
        other => other.take(),
    };
    front
}

/// Cut resources into requests of at most [`MAX_POINTS`] data points (a resource or a
/// metric with more is split across requests, its resource repeated).
fn batch(resources: Vec<(Resource, Vec<Metric>)>) -> Vec<ExportMetricsServiceRequest> {
    let mut out = Vec::new();
    let mut current = ExportMetricsServiceRequest::default();
    let mut n = 0;
    let resource_metrics = |resource: &Resource, metrics: Vec<Metric>| ResourceMetrics {
        resource: Some(resource.clone()),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(scope()),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    };
    for (resource, metrics) in resources {
        let mut held: Vec<Metric> = Vec::new();
        for mut m in metrics {
            while n + points(&m) > MAX_POINTS {
                let room = MAX_POINTS - n;
                if room > 0 {
                    held.push(split_off_front(&mut m, room));
                }
                if !held.is_empty() {
                    current
                        .resource_metrics
                        .push(resource_metrics(&resource, std::mem::take(&mut held)));
                }
                out.push(std::mem::take(&mut current));
                n = 0;
            }
            n += points(&m);
            held.push(m);
        }
        if !held.is_empty() {
            current
                .resource_metrics
                .push(resource_metrics(&resource, held));
        }
    }
    if !current.resource_metrics.is_empty() {
        out.push(current);
    }
    out
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Export `red` every `interval` until `shutdown`, then once more.
pub async fn run(
    red: Red,
    transport: Arc<dyn Transport>,
    temporality: Temporality,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut snap = Snapshotter::new(temporality, now_ns());
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = shutdown.cancelled() => true,
        };
        let requests = red.with(|s| snap.requests(s, now_ns())).unwrap_or_default();
        for req in requests {
            let body = req.encode_to_vec();
            let sent = transport.send(Payload::Encoded(body.into())).await;
            red.with_mut(|s| {
                s.otlp_requests += 1;
                s.otlp_failed_requests += u64::from(sent.is_err());
            });
            if let Err(e) = sent
                && last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
            {
                tracing::warn!(error = %e, "OTLP metrics export failed (more failures are only counted for a minute)");
                last_warning = Some(tokio::time::Instant::now());
            }
        }
        if stopping {
            break;
        }
    }
}

#[cfg(test)]
mod tests;
