//! `/api/search`: the handler, and Tempo's JSON and protobuf shapes of its results.
#![expect(
    clippy::result_large_err,
    reason = "handlers return the finished axum Response as their error"
)]
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use super::{ApiState, Params, tenants, text};
use crate::{
    api::params,
    ids,
    metrics::Metrics,
    query::{Filter, OutVal, SearchResult, SearchSpec, SpanSetHit, TraceHit},
};
use sonde_traceql as traceql;

pub(super) fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str())
}

fn out_val(v: &OutVal) -> Value {
    match v {
        OutVal::Str(s) => json!({ "stringValue": s }),
        OutVal::Int(i) => json!({ "intValue": i.to_string() }),
        OutVal::Float(f) => json!({ "doubleValue": f }),
        OutVal::Bool(b) => json!({ "boolValue": b }),
    }
}

fn attributes_json(attrs: &[(String, OutVal)]) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": out_val(v) }))
            .collect(),
    )
}

/// A span set as Tempo's `SpanSet` JSON.
fn span_set_json(set: &SpanSetHit) -> Value {
    let spans: Vec<Value> = set
        .spans
        .iter()
        .map(|s| {
            let mut sm = Map::new();
            sm.insert("spanID".into(), json!(hex::encode(s.span_id)));
            if let Some(n) = &s.name {
                sm.insert("name".into(), json!(n));
            }
            if s.start_ns != 0 {
                sm.insert("startTimeUnixNano".into(), json!(s.start_ns.to_string()));
            }
            if s.duration_ns != 0 {
                sm.insert("durationNanos".into(), json!(s.duration_ns.to_string()));
            }
            if !s.attrs.is_empty() {
                sm.insert("attributes".into(), attributes_json(&s.attrs));
            }
            Value::Object(sm)
        })
        .collect();
    let mut out = Map::new();
    out.insert("spans".into(), Value::Array(spans));
    if set.matched != 0 {
        out.insert("matched".into(), json!(set.matched));
    }
    if !set.attributes.is_empty() {
        out.insert("attributes".into(), attributes_json(&set.attributes));
    }
    Value::Object(out)
}

/// One search hit as Tempo's `TraceSearchMetadata` JSON.
pub fn hit_json(h: &TraceHit) -> Value {
    let mut m = Map::new();
    m.insert("traceID".into(), json!(ids::trace_id_search_hex(&h.id)));
    match &h.root_service {
        Some(s) => {
            m.insert("rootServiceName".into(), json!(s));
            if let Some(n) = h.root_name.as_ref().filter(|n| !n.is_empty()) {
                m.insert("rootTraceName".into(), json!(n));
            }
        }
        None if h.root_name.is_some() => {
            m.insert("rootServiceName".into(), json!(""));
            if let Some(n) = h.root_name.as_ref().filter(|n| !n.is_empty()) {
                m.insert("rootTraceName".into(), json!(n));
            }
        }
        None => {
            m.insert(
                "rootServiceName".into(),
                json!("<root span not yet received>"),
            );
        }
    }
    if h.start_ns != 0 {
        m.insert("startTimeUnixNano".into(), json!(h.start_ns.to_string()));
    }
    let ms = h.duration_ns / 1_000_000;
    if ms != 0 {
        m.insert("durationMs".into(), json!(ms.min(u64::from(u32::MAX))));
    }
    let sets: Vec<Value> = h.span_sets.iter().map(span_set_json).collect();
    if let Some(first) = sets.first() {
        m.insert("spanSet".into(), first.clone());
        m.insert("spanSets".into(), Value::Array(sets));
    }
    if h.service_stats.is_empty() {
        return Value::Object(m);
    }
    let mut stats = Map::new();
    for (name, st) in &h.service_stats {
        let mut sm = Map::new();
        if st.span_count != 0 {
            sm.insert("spanCount".into(), json!(st.span_count));
        }
        if st.error_count != 0 {
            sm.insert("errorCount".into(), json!(st.error_count));
        }
        stats.insert(name.clone(), Value::Object(sm));
    }
    m.insert("serviceStats".into(), Value::Object(stats));
    Value::Object(m)
}

fn out_kv(k: &str, v: &OutVal) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as V};
    let value = match v {
        OutVal::Str(s) => V::StringValue(s.clone()),
        OutVal::Int(i) => V::IntValue(*i),
        OutVal::Float(f) => V::DoubleValue(*f),
        OutVal::Bool(b) => V::BoolValue(*b),
    };
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Search results as `tempopb.SearchResponse` (for `Accept: application/protobuf`).
pub fn search_proto(r: &SearchResult) -> super::tempopb::SearchResponse {
    use super::tempopb as pb;
    let traces = r
        .traces
        .iter()
        .map(|h| {
            let span_sets: Vec<pb::SpanSet> = h
                .span_sets
                .iter()
                .map(|set| pb::SpanSet {
                    spans: set
                        .spans
                        .iter()
                        .map(|s| pb::Span {
                            span_id: hex::encode(s.span_id),
                            name: s.name.clone().unwrap_or_default(),
                            start_time_unix_nano: s.start_ns,
                            duration_nanos: s.duration_ns,
                            attributes: s.attrs.iter().map(|(k, v)| out_kv(k, v)).collect(),
                        })
                        .collect(),
                    matched: set.matched as u32,
                    attributes: set.attributes.iter().map(|(k, v)| out_kv(k, v)).collect(),
                })
                .collect();
            pb::TraceSearchMetadata {
                trace_id: ids::trace_id_search_hex(&h.id),
                root_service_name: h
                    .root_service
                    .clone()
                    .unwrap_or_else(|| "<root span not yet received>".to_string()),
                root_trace_name: h.root_name.clone().unwrap_or_default(),
                start_time_unix_nano: h.start_ns,
                duration_ms: (h.duration_ns / 1_000_000).min(u64::from(u32::MAX)) as u32,
                span_set: span_sets.first().cloned(),
                span_sets,
                service_stats: h
                    .service_stats
                    .iter()
                    .map(|(n, s)| {
                        (
                            n.clone(),
                            pb::ServiceStats {
                                span_count: s.span_count,
                                error_count: s.error_count,
                            },
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    pb::SearchResponse {
        traces,
        metrics: Some(pb::SearchMetrics {
            inspected_traces: r.inspected_traces.min(u64::from(u32::MAX)) as u32,
            inspected_bytes: r.inspected_bytes,
            total_blocks: r.total_blocks.min(u64::from(u32::MAX)) as u32,
            completed_jobs: 1,
            total_jobs: 1,
            ..Default::default()
        }),
    }
}

fn metrics_json(r: &SearchResult) -> Value {
    let mut m = Map::new();
    if r.inspected_traces != 0 {
        m.insert(
            "inspectedTraces".into(),
            json!(r.inspected_traces.min(u64::from(u32::MAX))),
        );
    }
    if r.inspected_bytes != 0 {
        m.insert(
            "inspectedBytes".into(),
            json!(r.inspected_bytes.to_string()),
        );
    }
    if r.total_blocks != 0 {
        m.insert("totalBlocks".into(), json!(r.total_blocks));
    }
    m.insert("completedJobs".into(), json!(1));
    m.insert("totalJobs".into(), json!(1));
    Value::Object(m)
}

/// Parse `q` into a query, with Tempo's 400 text on failure.
pub(super) fn parse_q(q: &str) -> Result<traceql::Query, Response> {
    traceql::parse(q).map_err(|e| {
        text(
            StatusCode::BAD_REQUEST,
            format!("invalid TraceQL query: {e}"),
        )
    })
}

pub async fn search(
    State(s): State<ApiState>,
    h: HeaderMap,
    axum::extract::Query(p): Params,
) -> Response {
    let tenants = match tenants(&s.store, &h) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let lim = s.store.config().search_limits();
    let req = match params::parse_search(&p, s.store.now_ns(), &lim) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let filter = match &req.q {
        // Like Tempo, a metrics query is accepted here and runs its spanset part.
        Some(q) => match traceql::parse_search(q) {
            Ok(q) => Filter::TraceQl(q),
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("invalid TraceQL query: {e}"),
                );
            }
        },
        None => Filter::Tags(req.tags.clone()),
    };
    s.store
        .metrics()
        .queries
        .get_or_create(&Metrics::labels(&[("op", "search")]))
        .inc();
    let spec = SearchSpec {
        filter,
        min_duration_ns: req.min_duration_ns,
        max_duration_ns: req.max_duration_ns,
        start_ns: req.start_ns,
        end_ns: req.end_ns,
        limit: req.limit as usize,
        spss: req.spss as usize,
    };
    run_search(&s.store, tenants, spec, super::wants_protobuf(&h)).await
}

/// Run a search within the store's query limits (see [`super::limits`]).
async fn run_search(
    store: &crate::Store,
    tenants: Vec<String>,
    spec: SearchSpec,
    proto: bool,
) -> Response {
    // Tempo's search by `tags=` answers without `serviceStats`; only TraceQL search counts them.
    let by_tags = matches!(spec.filter, Filter::Tags(_));
    let res = super::limits::within_limits(store, move |st, budget| {
        let mut r = st
            .search_within(&tenants, &spec, budget)
            .map_err(|e| super::limits::stopped(st, &e))?;
        if by_tags {
            r.traces.iter_mut().for_each(|h| h.service_stats.clear());
        }
        Ok(r)
    })
    .await;
    match res {
        Ok(r) if proto => super::proto_response(prost::Message::encode_to_vec(&search_proto(&r))),
        Ok(r) => json_results(&r),
        Err(r) => r,
    }
}

/// Tempo's JSON search response, written hit by hit (no whole-document value tree).
fn json_results(r: &SearchResult) -> Response {
    let mut out = Vec::with_capacity(256 + r.traces.len() * 256);
    out.extend_from_slice(b"{\"traces\":[");
    for (i, h) in r.traces.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &hit_json(h));
    }
    out.extend_from_slice(b"],\"metrics\":");
    let _ = serde_json::to_writer(&mut out, &metrics_json(r));
    out.push(b'}');
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}
