//! Spans and resources shared by the export tests.
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};

use crate::span::{
    HttpSpan, SpanKind,
    resource::{ProcFacts, ProcessResource, build_resource},
};

/// A plain server span: `GET /items/42?q=1` answered 200 in 1.23 ms.
pub fn server_span() -> HttpSpan {
    HttpSpan {
        kind: SpanKind::Server,
        trace_id: [0x11; 16],
        span_id: [0x22; 8],
        parent_span_id: None,
        trace_state: None,
        links: Vec::new(),
        link: crate::span::LinkKind::None,
        traceparent_rejected: None,
        start_unix_ns: 1_700_000_000_000_000_000,
        end_unix_ns: 1_700_000_000_001_230_000,
        pid: 1234,
        tid: 1234,
        goroutine: 0,
        head_ring_lost: 0,
        method: "GET".to_owned(),
        path: "/items/42".to_owned(),
        query: Some("q=1".to_owned()),
        route: Some("/items/{id}".to_owned()),
        protocol_version: "1.1",
        status_code: Some(200),
        host: Some("localhost:8000".to_owned()),
        user_agent: Some("curl/8.5.0".to_owned()),
        request_body_size: Some(0),
        response_body_size: Some(17),
        local: "127.0.0.1:8000".parse().expect("addr"),
        peer: "127.0.0.1:50000".parse().expect("addr"),
        error_type: None,
    }
}

/// A resource for a process named `name`.
pub fn resource(pid: u32, name: &str) -> Arc<ProcessResource> {
    let facts = ProcFacts {
        environ: Some(format!("OTEL_SERVICE_NAME={name}").into_bytes()),
        ..ProcFacts::default()
    };
    Arc::new(build_resource(pid, "testhost", &facts))
}

/// Attribute `key` of an OTLP attribute list.
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// A string attribute value.
pub fn s(v: &str) -> Option<Value> {
    Some(Value::StringValue(v.to_owned()))
}

/// An integer attribute value.
pub fn i(v: i64) -> Option<Value> {
    Some(Value::IntValue(v))
}
