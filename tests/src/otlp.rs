//! An in-test OTLP/gRPC receiver on 127.0.0.1 that keeps every span it gets.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
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

/// Start a receiver; returns its address and the shared store. Stops with the runtime.
pub async fn start_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Received::default();
    let svc = TraceServiceServer::new(Service(received.clone()));
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, received)
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
