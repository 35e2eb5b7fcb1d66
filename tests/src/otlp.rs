//! An in-test OTLP/gRPC receiver on 127.0.0.1 that keeps every span it gets.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    metrics::v1::{HistogramDataPoint, metric::Data},
    trace::v1::{ResourceSpans, Span},
};

/// Spans received so far, with their resource.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<ResourceSpans>>>);

impl Received {
    /// All spans, flattened, each with its resource's attributes.
    pub fn spans(&self) -> Vec<(Vec<opentelemetry_proto::tonic::common::v1::KeyValue>, Span)> {
        let guard = self.0.lock().expect("lock");
        let mut out = Vec::new();
        for rs in guard.iter() {
            let attrs = rs
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push((attrs.clone(), s.clone()));
                }
            }
        }
        out
    }
}

struct Service(Received);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .0
            .lock()
            .expect("lock")
            .extend(request.into_inner().resource_spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// OTLP metrics requests received so far.
#[derive(Clone, Default)]
pub struct ReceivedMetrics(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

impl ReceivedMetrics {
    /// The histogram points of metric `name` in the latest request that has any, each with
    /// its attributes and its resource's, as strings.
    pub fn latest_histogram(
        &self,
        name: &str,
    ) -> Vec<(
        std::collections::HashMap<String, String>,
        HistogramDataPoint,
    )> {
        let guard = self.0.lock().expect("lock");
        for req in guard.iter().rev() {
            let mut out = Vec::new();
            for rm in &req.resource_metrics {
                let resource = rm
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default();
                for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                    if m.name != name {
                        continue;
                    }
                    if let Some(Data::Histogram(h)) = &m.data {
                        for p in &h.data_points {
                            let attrs = resource
                                .iter()
                                .chain(&p.attributes)
                                .filter_map(|kv| {
                                    Some((
                                        kv.key.clone(),
                                        attr_in(std::slice::from_ref(kv), &kv.key)?,
                                    ))
                                })
                                .collect();
                            out.push((attrs, p.clone()));
                        }
                    }
                }
            }
            if !out.is_empty() {
                return out;
            }
        }
        Vec::new()
    }
}

#[tonic::async_trait]
impl MetricsService for ReceivedMetrics {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().expect("lock").push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Start a receiver; returns its address and the shared store. Stops with the runtime.
pub async fn start_receiver() -> (SocketAddr, Received) {
    let (addr, received, _) = start_receiver_with_metrics().await;
    (addr, received)
}

/// A receiver of both spans and metrics on one address.
pub async fn start_receiver_with_metrics() -> (SocketAddr, Received, ReceivedMetrics) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Received::default();
    let metrics = ReceivedMetrics::default();
    let svc = TraceServiceServer::new(Service(received.clone()));
    let metrics_svc = MetricsServiceServer::new(metrics.clone());
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .add_service(metrics_svc)
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, received, metrics)
}

/// A span attribute as a string (ints are formatted), if present.
pub fn attr(span: &Span, key: &str) -> Option<String> {
    attr_in(&span.attributes, key)
}

/// An attribute from a list (span or resource), as a string.
pub fn attr_in(
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

impl Received {
    /// How many spans received satisfy `pred` (without copying them: for large volumes).
    pub fn count(&self, pred: impl Fn(&Span) -> bool) -> usize {
        let guard = self.0.lock().expect("lock");
        guard
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .filter(|s| pred(s))
            .count()
    }

    /// Wait until `pred` holds for the spans received (or `timeout`); returns the spans.
    pub async fn wait_for(
        &self,
        timeout: std::time::Duration,
        pred: impl Fn(&[(Vec<opentelemetry_proto::tonic::common::v1::KeyValue>, Span)]) -> bool,
    ) -> Vec<(Vec<opentelemetry_proto::tonic::common::v1::KeyValue>, Span)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if pred(&spans) || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
