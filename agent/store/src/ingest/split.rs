//! Splits a decoded OTLP export request into per-trace fragments: for every (resource, trace)
//! one `ResourceSpans` encoded as a `TracesData` field, so fragments concatenate into a trace.
use std::collections::HashMap;

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, trace::v1::ResourceSpans,
};
use prost::{
    Message,
    encoding::{WireType, encode_key, encode_varint, encoded_len_varint},
};

use crate::ids::TraceId;

/// Spans of one trace from one `ResourceSpans`, with its encoded payload.
#[derive(Debug)]
pub struct Fragment {
    pub trace_id: TraceId,
    /// Index into the request's `resource_spans`.
    pub rs: usize,
    /// (scope_spans index, span index) of each span.
    pub spans: Vec<(u32, u32)>,
    /// Encoded length of each span (computed once).
    lens: Vec<u32>,
    /// `TracesData.resource_spans` entry (tag, length, `ResourceSpans` bytes).
    pub payload: Vec<u8>,
}

/// The request split up, plus what was rejected as malformed.
#[derive(Debug, Default)]
pub struct Split {
    pub fragments: Vec<Fragment>,
    /// Encoded resource (key for de-duplication) per `resource_spans` entry.
    pub resource_keys: Vec<Vec<u8>>,
    /// Encoded scope per (rs, ss).
    pub scope_keys: Vec<Vec<Vec<u8>>>,
    pub spans_total: usize,
    pub rejected_spans: usize,
    pub reject_reason: Option<String>,
}

fn put_len_field(buf: &mut Vec<u8>, tag: u32, body_len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(body_len as u64, buf);
}

fn len_field_size(tag: u32, body_len: usize) -> usize {
    prost::encoding::key_len(tag) + encoded_len_varint(body_len as u64) + body_len
}

/// How far past the store's clock a span may end: beyond it the timestamp is garbage (an end
/// time of u64::MAX, a clock years ahead), and such a span is refused rather than stored.
pub const MAX_FUTURE_NS: u64 = 24 * 3600 * 1_000_000_000;

/// Split `req` by trace id. Spans whose trace id is not 16 bytes (or all zero), whose span id
/// is not 8 bytes, or that end after `max_end_ns` are rejected and counted.
pub fn split(req: &ExportTraceServiceRequest, max_end_ns: u64) -> Split {
    let mut out = Split::default();
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        out.resource_keys.push(
            rs.resource
                .as_ref()
                .map(|r| r.encode_to_vec())
                .unwrap_or_default(),
        );
        let mut scope_keys = Vec::with_capacity(rs.scope_spans.len());
        // trace id → fragment index (within this resource)
        let mut by_trace: HashMap<TraceId, usize> = HashMap::new();
        let base = out.fragments.len();
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            scope_keys.push(
                ss.scope
                    .as_ref()
                    .map(|s| s.encode_to_vec())
                    .unwrap_or_default(),
            );
            for (pi, span) in ss.spans.iter().enumerate() {
                out.spans_total += 1;
                if span.trace_id.len() != 16
                    || span.trace_id.iter().all(|b| *b == 0)
                    || span.span_id.len() != 8
                {
                    out.rejected_spans += 1;
                    out.reject_reason.get_or_insert_with(|| {
                        format!(
                            "invalid span: trace id must be 16 bytes and span id 8 bytes (got {} and {})",
                            span.trace_id.len(),
                            span.span_id.len()
                        )
                    });
                    continue;
                }
                if span.end_time_unix_nano > max_end_ns {
                    out.rejected_spans += 1;
                    out.reject_reason.get_or_insert_with(|| {
                        format!(
                            "invalid span: end time {} is more than 24h past the store's clock ({}); check the sender's clock",
                            span.end_time_unix_nano,
                            max_end_ns - MAX_FUTURE_NS.min(max_end_ns)
                        )
                    });
                    continue;
                }
                let mut tid = [0u8; 16];
                tid.copy_from_slice(&span.trace_id);
                let idx = *by_trace.entry(tid).or_insert_with(|| {
                    out.fragments.push(Fragment {
                        trace_id: tid,
                        rs: ri,
                        spans: Vec::new(),
                        lens: Vec::new(),
                        payload: Vec::new(),
                    });
                    out.fragments.len() - 1
                });
                out.fragments[idx].spans.push((si as u32, pi as u32));
                out.fragments[idx].lens.push(span.encoded_len() as u32);
            }
        }
        for frag in &mut out.fragments[base..] {
            frag.payload = encode_fragment(
                rs,
                &out.resource_keys[ri],
                &scope_keys,
                &frag.spans,
                &frag.lens,
            );
        }
        out.scope_keys.push(scope_keys);
    }
    out
}

/// Encode one `ResourceSpans` holding only the given spans, wrapped as a `TracesData` field.
fn encode_fragment(
    rs: &ResourceSpans,
    resource: &[u8],
    scope_keys: &[Vec<u8>],
    spans: &[(u32, u32)],
    lens: &[u32],
) -> Vec<u8> {
    // Group consecutive spans by scope (spans are in scope order already).
    let mut scope_bodies: Vec<(usize, usize)> = Vec::new(); // (scope index, body len)
    let mut i = 0;
    while i < spans.len() {
        let si = spans[i].0 as usize;
        let ss = &rs.scope_spans[si];
        let mut body = 0;
        if ss.scope.is_some() {
            body += len_field_size(1, scope_keys[si].len());
        }
        while i < spans.len() && spans[i].0 as usize == si {
            body += len_field_size(2, lens[i] as usize);
            i += 1;
        }
        if !ss.schema_url.is_empty() {
            body += len_field_size(3, ss.schema_url.len());
        }
        scope_bodies.push((si, body));
    }
    let mut rs_len = 0;
    if rs.resource.is_some() {
        rs_len += len_field_size(1, resource.len());
    }
    for (_, body) in &scope_bodies {
        rs_len += len_field_size(2, *body);
    }
    if !rs.schema_url.is_empty() {
        rs_len += len_field_size(3, rs.schema_url.len());
    }
    let mut buf = Vec::with_capacity(len_field_size(1, rs_len));
    put_len_field(&mut buf, 1, rs_len);
    if rs.resource.is_some() {
        put_len_field(&mut buf, 1, resource.len());
        buf.extend_from_slice(resource);
    }
    let mut j = 0;
    for (si, body) in scope_bodies {
        let ss = &rs.scope_spans[si];
        put_len_field(&mut buf, 2, body);
        if ss.scope.is_some() {
            put_len_field(&mut buf, 1, scope_keys[si].len());
            buf.extend_from_slice(&scope_keys[si]);
        }
        while j < spans.len() && spans[j].0 as usize == si {
            let span = &ss.spans[spans[j].1 as usize];
            put_len_field(&mut buf, 2, lens[j] as usize);
            span.encode_raw(&mut buf);
            j += 1;
        }
        if !ss.schema_url.is_empty() {
            put_len_field(&mut buf, 3, ss.schema_url.len());
            buf.extend_from_slice(ss.schema_url.as_bytes());
        }
    }
    if !rs.schema_url.is_empty() {
        put_len_field(&mut buf, 3, rs.schema_url.len());
        buf.extend_from_slice(rs.schema_url.as_bytes());
    }
    buf
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
        resource::v1::Resource,
        trace::v1::{ScopeSpans, Span, TracesData},
    };

    use super::*;

    fn span(t: u8, s: u8, name: &str) -> Span {
        Span {
            trace_id: vec![t; 16],
            span_id: vec![s; 8],
            name: name.into(),
            ..Default::default()
        }
    }

    fn req(spans_a: Vec<Span>, spans_b: Vec<Span>) -> ExportTraceServiceRequest {
        let res = Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue("svc".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(res),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "a".into(),
                            ..Default::default()
                        }),
                        spans: spans_a,
                        schema_url: "u".into(),
                    },
                    ScopeSpans {
                        scope: None,
                        spans: spans_b,
                        schema_url: String::new(),
                    },
                ],
                schema_url: "r".into(),
            }],
        }
    }

    #[test]
    fn fragments_decode_to_the_spans_of_their_trace() {
        let r = req(
            vec![span(1, 1, "x"), span(2, 2, "y")],
            vec![span(1, 3, "z")],
        );
        let s = split(&r, u64::MAX);
        assert_eq!((s.spans_total, s.rejected_spans), (3, 0));
        assert_eq!(s.fragments.len(), 2);
        let t1 = s.fragments.iter().find(|f| f.trace_id == [1; 16]).unwrap();
        let td = TracesData::decode(t1.payload.as_slice()).unwrap();
        assert_eq!(td.resource_spans.len(), 1);
        let rs = &td.resource_spans[0];
        assert_eq!(rs.schema_url, "r");
        assert_eq!(rs.resource, r.resource_spans[0].resource);
        let names: Vec<&str> = rs
            .scope_spans
            .iter()
            .flat_map(|ss| ss.spans.iter().map(|s| s.name.as_str()))
            .collect();
        assert_eq!(names, vec!["x", "z"]);
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "a");
        assert_eq!(rs.scope_spans[0].schema_url, "u");
        assert!(rs.scope_spans[1].scope.is_none());
    }

    #[test]
    fn concatenated_fragments_form_one_trace() {
        let a = split(&req(vec![span(1, 1, "x")], vec![]), u64::MAX);
        let b = split(&req(vec![span(1, 2, "y")], vec![]), u64::MAX);
        let mut both = a.fragments[0].payload.clone();
        both.extend_from_slice(&b.fragments[0].payload);
        let td = TracesData::decode(both.as_slice()).unwrap();
        assert_eq!(td.resource_spans.len(), 2);
    }

    #[test]
    fn bad_ids_are_rejected_and_counted() {
        let mut bad = span(1, 1, "x");
        bad.trace_id = vec![1; 8];
        let zero = span(0, 1, "zero");
        let mut short_span = span(3, 1, "s");
        short_span.span_id = vec![];
        let s = split(
            &req(vec![bad, zero, short_span, span(2, 2, "ok")], vec![]),
            u64::MAX,
        );
        assert_eq!(
            (s.spans_total, s.rejected_spans, s.fragments.len()),
            (4, 3, 1)
        );
        assert!(s.reject_reason.is_some());
    }

    #[test]
    fn spans_ending_past_the_bound_are_rejected_and_counted() {
        let mut far = span(1, 1, "far");
        far.end_time_unix_nano = u64::MAX;
        let mut near = span(2, 2, "near");
        near.end_time_unix_nano = 1_000;
        let s = split(&req(vec![far, near], vec![]), 1_000 + MAX_FUTURE_NS);
        assert_eq!(
            (s.spans_total, s.rejected_spans, s.fragments.len()),
            (2, 1, 1)
        );
        assert!(s.reject_reason.unwrap().contains("more than 24h past"));
    }

    #[test]
    fn empty_request() {
        let s = split(&ExportTraceServiceRequest::default(), u64::MAX);
        assert_eq!((s.spans_total, s.fragments.len()), (0, 0));
    }
}
