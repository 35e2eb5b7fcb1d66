//! Tempo's JSON for traces (gogo jsonpb defaults): camelCase names, base64 ids, enum names,
//! 64-bit numbers as strings, zero values omitted, `"status":{}` always present.
use std::collections::HashSet;

use base64::{Engine, engine::general_purpose::STANDARD};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, Span, TracesData, span, status},
};
use serde_json::{Map, Value, json};

fn b64(b: &[u8]) -> Value {
    Value::String(STANDARD.encode(b))
}

fn put_u64(m: &mut Map<String, Value>, k: &str, v: u64) {
    if v != 0 {
        m.insert(k.into(), Value::String(v.to_string()));
    }
}

fn put_u32(m: &mut Map<String, Value>, k: &str, v: u32) {
    if v != 0 {
        m.insert(k.into(), json!(v));
    }
}

fn put_str(m: &mut Map<String, Value>, k: &str, v: &str) {
    if !v.is_empty() {
        m.insert(k.into(), Value::String(v.into()));
    }
}

fn put_bytes(m: &mut Map<String, Value>, k: &str, v: &[u8]) {
    if !v.is_empty() {
        m.insert(k.into(), b64(v));
    }
}

fn float(f: f64) -> Value {
    if f.is_nan() {
        json!("NaN")
    } else if f.is_infinite() {
        json!(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(f)
    }
}

/// An `AnyValue` as jsonpb prints it (the set oneof field is always printed).
pub fn any_value(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => json!({ "stringValue": s }),
        Some(any_value::Value::BoolValue(b)) => json!({ "boolValue": b }),
        Some(any_value::Value::IntValue(i)) => json!({ "intValue": i.to_string() }),
        Some(any_value::Value::DoubleValue(d)) => json!({ "doubleValue": float(*d) }),
        Some(any_value::Value::ArrayValue(a)) => {
            let mut inner = Map::new();
            if !a.values.is_empty() {
                inner.insert(
                    "values".into(),
                    Value::Array(a.values.iter().map(any_value).collect()),
                );
            }
            json!({ "arrayValue": inner })
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let mut inner = Map::new();
            if !kv.values.is_empty() {
                inner.insert("values".into(), attributes(&kv.values));
            }
            json!({ "kvlistValue": inner })
        }
        Some(any_value::Value::BytesValue(b)) => json!({ "bytesValue": STANDARD.encode(b) }),
        Some(any_value::Value::StringValueStrindex(i)) => json!({ "stringValueStrindex": i }),
        None => json!({}),
    }
}

fn attributes(kvs: &[KeyValue]) -> Value {
    Value::Array(
        kvs.iter()
            .map(|kv| {
                let mut m = Map::new();
                put_str(&mut m, "key", &kv.key);
                if let Some(v) = &kv.value {
                    m.insert("value".into(), any_value(v));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

fn put_attrs(m: &mut Map<String, Value>, kvs: &[KeyValue]) {
    if !kvs.is_empty() {
        m.insert("attributes".into(), attributes(kvs));
    }
}

fn resource(r: &Resource) -> Value {
    let mut m = Map::new();
    put_attrs(&mut m, &r.attributes);
    put_u32(&mut m, "droppedAttributesCount", r.dropped_attributes_count);
    Value::Object(m)
}

fn scope(s: &InstrumentationScope) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "name", &s.name);
    put_str(&mut m, "version", &s.version);
    put_attrs(&mut m, &s.attributes);
    put_u32(&mut m, "droppedAttributesCount", s.dropped_attributes_count);
    Value::Object(m)
}

fn kind_name(k: i32) -> Option<&'static str> {
    span::SpanKind::try_from(k)
        .ok()
        .filter(|k| *k != span::SpanKind::Unspecified)
        .map(|k| k.as_str_name())
}

fn span_json(s: &Span) -> Value {
    let mut m = Map::new();
    put_bytes(&mut m, "traceId", &s.trace_id);
    put_bytes(&mut m, "spanId", &s.span_id);
    put_str(&mut m, "traceState", &s.trace_state);
    put_bytes(&mut m, "parentSpanId", &s.parent_span_id);
    put_u32(&mut m, "flags", s.flags);
    put_str(&mut m, "name", &s.name);
    if let Some(k) = kind_name(s.kind) {
        m.insert("kind".into(), json!(k));
    } else if s.kind != 0 {
        m.insert("kind".into(), json!(s.kind));
    }
    put_u64(&mut m, "startTimeUnixNano", s.start_time_unix_nano);
    put_u64(&mut m, "endTimeUnixNano", s.end_time_unix_nano);
    put_attrs(&mut m, &s.attributes);
    put_u32(&mut m, "droppedAttributesCount", s.dropped_attributes_count);
    if !s.events.is_empty() {
        let evs = s
            .events
            .iter()
            .map(|e| {
                let mut em = Map::new();
                put_u64(&mut em, "timeUnixNano", e.time_unix_nano);
                put_str(&mut em, "name", &e.name);
                put_attrs(&mut em, &e.attributes);
                put_u32(
                    &mut em,
                    "droppedAttributesCount",
                    e.dropped_attributes_count,
                );
                Value::Object(em)
            })
            .collect();
        m.insert("events".into(), Value::Array(evs));
    }
    put_u32(&mut m, "droppedEventsCount", s.dropped_events_count);
    if !s.links.is_empty() {
        let ls = s
            .links
            .iter()
            .map(|l| {
                let mut lm = Map::new();
                put_bytes(&mut lm, "traceId", &l.trace_id);
                put_bytes(&mut lm, "spanId", &l.span_id);
                put_str(&mut lm, "traceState", &l.trace_state);
                put_attrs(&mut lm, &l.attributes);
                put_u32(
                    &mut lm,
                    "droppedAttributesCount",
                    l.dropped_attributes_count,
                );
                put_u32(&mut lm, "flags", l.flags);
                Value::Object(lm)
            })
            .collect();
        m.insert("links".into(), Value::Array(ls));
    }
    put_u32(&mut m, "droppedLinksCount", s.dropped_links_count);
    let mut st = Map::new();
    if let Some(status) = &s.status {
        put_str(&mut st, "message", &status.message);
        match status::StatusCode::try_from(status.code) {
            Ok(status::StatusCode::Unset) => {}
            Ok(c) => {
                st.insert("code".into(), json!(c.as_str_name()));
            }
            Err(_) => {
                st.insert("code".into(), json!(status.code));
            }
        }
    }
    m.insert("status".into(), Value::Object(st));
    Value::Object(m)
}

fn resource_spans(rs: &ResourceSpans) -> Value {
    let mut m = Map::new();
    if let Some(r) = &rs.resource {
        m.insert("resource".into(), resource(r));
    }
    if !rs.scope_spans.is_empty() {
        let sss = rs
            .scope_spans
            .iter()
            .map(|ss| {
                let mut sm = Map::new();
                if let Some(s) = &ss.scope {
                    sm.insert("scope".into(), scope(s));
                }
                if !ss.spans.is_empty() {
                    sm.insert(
                        "spans".into(),
                        Value::Array(ss.spans.iter().map(span_json).collect()),
                    );
                }
                put_str(&mut sm, "schemaUrl", &ss.schema_url);
                Value::Object(sm)
            })
            .collect();
        m.insert("scopeSpans".into(), Value::Array(sss));
    }
    put_str(&mut m, "schemaUrl", &rs.schema_url);
    Value::Object(m)
}

/// The `resourceSpans` array of a trace.
pub fn resource_spans_json(td: &TracesData) -> Value {
    Value::Array(td.resource_spans.iter().map(resource_spans).collect())
}

/// Drop spans whose span id was already seen, then empty scopes and resources.
pub fn dedupe(td: &mut TracesData) {
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for rs in &mut td.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| seen.insert(s.span_id.clone()));
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    td.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::any_value::Value as V,
        trace::v1::{ScopeSpans, Status},
    };

    use super::*;

    #[test]
    fn span_fields_follow_tempo_json() {
        let s = Span {
            trace_id: vec![0; 16],
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
            name: "GET /x".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_001,
            end_time_unix_nano: 1_700_000_000_000_000_002,
            attributes: vec![KeyValue {
                key: "http.status_code".into(),
                value: Some(AnyValue {
                    value: Some(V::IntValue(200)),
                }),
                ..Default::default()
            }],
            status: Some(Status {
                code: 2,
                message: "bad".into(),
            }),
            ..Default::default()
        };
        let v = span_json(&s);
        assert_eq!(v["spanId"], "AAAAAAAAAAE=");
        assert_eq!(v["traceId"], "AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(v["kind"], "SPAN_KIND_SERVER");
        assert_eq!(v["startTimeUnixNano"], "1700000000000000001");
        assert_eq!(v["attributes"][0]["value"]["intValue"], "200");
        assert_eq!(v["status"]["code"], "STATUS_CODE_ERROR");
        assert!(v.get("parentSpanId").is_none());
        assert!(v.get("droppedAttributesCount").is_none());
    }

    #[test]
    fn empty_status_and_unspecified_kind() {
        let v = span_json(&Span::default());
        assert_eq!(v["status"], json!({}));
        assert!(v.get("kind").is_none());
    }

    #[rstest::rstest]
    #[case::bool_false(V::BoolValue(false), json!({"boolValue": false}))]
    #[case::zero_int(V::IntValue(0), json!({"intValue": "0"}))]
    #[case::double(V::DoubleValue(1.5), json!({"doubleValue": 1.5}))]
    #[case::nan(V::DoubleValue(f64::NAN), json!({"doubleValue": "NaN"}))]
    #[case::bytes(V::BytesValue(vec![1, 2]), json!({"bytesValue": "AQI="}))]
    #[case::empty_array(V::ArrayValue(Default::default()), json!({"arrayValue": {}}))]
    fn any_values(#[case] v: V, #[case] want: Value) {
        assert_eq!(any_value(&AnyValue { value: Some(v) }), want);
    }

    #[test]
    fn dedupe_drops_repeated_span_ids() {
        let sp = |id: u8| Span {
            span_id: vec![id; 8],
            ..Default::default()
        };
        let rs = |spans| ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut td = TracesData {
            resource_spans: vec![rs(vec![sp(1), sp(2)]), rs(vec![sp(1)])],
        };
        dedupe(&mut td);
        assert_eq!(td.resource_spans.len(), 1);
        assert_eq!(td.resource_spans[0].scope_spans[0].spans.len(), 2);
    }
}
