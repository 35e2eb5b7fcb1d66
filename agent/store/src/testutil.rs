//! Test helpers (the store's own tests, and other crates' with the `test-util` feature): a
//! clock that moves only when told to, and builders for OTLP requests and store configs.
use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status},
};

use crate::{Clock, config::StoreSection};

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicU64);

impl ManualClock {
    pub fn new(ns: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(ns)))
    }

    pub fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::SeqCst);
    }

    pub fn advance(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub const T0: u64 = 1_700_000_000_000_000_000;

pub fn kv_s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub fn kv_i(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

pub fn tid(n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&n.to_be_bytes());
    id[0] = 0xab;
    id
}

/// A span of trace `trace` with id `id` (parent 0 = root), starting `start_ms` after T0.
pub fn span(trace: u64, id: u64, parent: u64, name: &str, start_ms: u64, dur_ms: u64) -> Span {
    Span {
        trace_id: tid(trace).to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 {
            vec![]
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: name.into(),
        kind: if parent == 0 { 2 } else { 3 },
        start_time_unix_nano: T0 + start_ms * 1_000_000,
        end_time_unix_nano: T0 + (start_ms + dur_ms) * 1_000_000,
        ..Default::default()
    }
}

pub fn with_attrs(mut s: Span, attrs: Vec<KeyValue>) -> Span {
    s.attributes = attrs;
    s
}

pub fn with_error(mut s: Span) -> Span {
    s.status = Some(Status {
        code: 2,
        message: "boom".into(),
    });
    s
}

pub fn req(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_s("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

pub fn cfg(dir: &Path) -> StoreSection {
    StoreSection {
        data_dir: dir.to_path_buf(),
        http_listen_address: "127.0.0.1:0".into(),
        otlp_grpc_listen_address: "127.0.0.1:0".into(),
        otlp_http_listen_address: "127.0.0.1:0".into(),
        ..StoreSection::default()
    }
}
