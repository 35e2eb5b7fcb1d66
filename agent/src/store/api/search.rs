//! `/api/search`, tag names (v1, v2) and tag values (v1, v2) handlers and their JSON shapes.
#![expect(
    clippy::result_large_err,
    reason = "handlers return the finished axum Response as their error"
)]
use std::collections::{BTreeSet, HashSet};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde_json::{Map, Value, json};

use super::{ApiState, Params, json_response, tenants, text};
use crate::store::{
    ids,
    metrics::Metrics,
    model::{NO_SYM, SpanRow},
    params::{self, parse_window},
    qlview::QlTrace,
    query::{self, Filter, OutVal, SCOPES, SearchResult, SearchSpec, TraceHit},
    traceql,
    view::{TraceRef, val_string, val_type},
};

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
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
    if let Some((spans, matched)) = &h.span_set {
        let spans: Vec<Value> = spans
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
                    let attrs: Vec<Value> = s
                        .attrs
                        .iter()
                        .map(|(k, v)| json!({ "key": k, "value": out_val(v) }))
                        .collect();
                    sm.insert("attributes".into(), Value::Array(attrs));
                }
                Value::Object(sm)
            })
            .collect();
        let mut set = Map::new();
        set.insert("spans".into(), Value::Array(spans));
        if *matched != 0 {
            set.insert("matched".into(), json!(matched));
        }
        let set = Value::Object(set);
        m.insert("spanSet".into(), set.clone());
        m.insert("spanSets".into(), Value::Array(vec![set]));
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
                .span_set
                .iter()
                .map(|(spans, matched)| pb::SpanSet {
                    spans: spans
                        .iter()
                        .map(|s| pb::Span {
                            span_id: hex::encode(s.span_id),
                            name: s.name.clone().unwrap_or_default(),
                            start_time_unix_nano: s.start_ns,
                            duration_nanos: s.duration_ns,
                            attributes: s.attrs.iter().map(|(k, v)| out_kv(k, v)).collect(),
                        })
                        .collect(),
                    matched: *matched as u32,
                    attributes: Vec::new(),
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
fn parse_q(q: &str) -> Result<traceql::Query, Response> {
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
    let store = s.store.clone();
    let res = tokio::task::spawn_blocking(move || store.search(&tenants, &spec)).await;
    match res {
        Ok(Ok(r)) if super::wants_protobuf(&h) => {
            super::proto_response(prost::Message::encode_to_vec(&search_proto(&r)))
        }
        Ok(Ok(r)) => json_response(&json!({
            "traces": r.traces.iter().map(hit_json).collect::<Vec<_>>(),
            "metrics": metrics_json(&r),
        })),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

const INTRINSICS: &[&str] = &[
    "duration",
    "event:name",
    "event:timeSinceStart",
    "instrumentation:name",
    "instrumentation:version",
    "kind",
    "link:spanID",
    "link:traceID",
    "name",
    "rootName",
    "rootServiceName",
    "span:duration",
    "span:id",
    "span:kind",
    "span:name",
    "span:parentID",
    "span:status",
    "span:statusMessage",
    "status",
    "statusMessage",
    "trace:duration",
    "trace:id",
    "trace:rootName",
    "trace:rootService",
    "traceDuration",
];

/// Shared by both tag-name routes: scope check, window, optional `q`, key collection.
fn collect_tags(
    s: &ApiState,
    h: &HeaderMap,
    p: &[(String, String)],
    allow_q: bool,
) -> Result<(String, [BTreeSet<String>; 5]), Response> {
    let tenants = tenants(&s.store, h)?;
    let scope = get(p, "scope").unwrap_or("").to_string();
    if !matches!(
        scope.as_str(),
        "" | "none" | "intrinsic" | "resource" | "span" | "event" | "link" | "instrumentation"
    ) {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!("invalid scope: {scope}"),
        ));
    }
    let lim = s.store.config().search_limits();
    let (start, end) =
        parse_window(p, s.store.now_ns(), &lim).map_err(|e| text(StatusCode::BAD_REQUEST, e))?;
    let limit = match get(p, "limit").filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| text(StatusCode::BAD_REQUEST, format!("invalid limit: {v}")))?,
        None => usize::MAX,
    }
    .max(1);
    let q = match get(p, "q").filter(|q| allow_q && !q.trim().is_empty()) {
        Some(q) => Some(parse_q(q)?),
        None => None,
    };
    s.store
        .metrics()
        .queries
        .get_or_create(&Metrics::labels(&[("op", "metadata")]))
        .inc();
    let mut out: [BTreeSet<String>; 5] = Default::default();
    let r = s.store.for_each_trace(&tenants, start, end, &mut |t| {
        match &q {
            Some(q) if !q.is_match_all() => {
                let m = q.eval(&QlTrace::new(t));
                query::collect_keys(
                    &t,
                    m.iter().filter_map(|&i| t.spans.get(i)),
                    &mut out,
                    limit,
                );
            }
            _ => query::collect_keys(&t, t.spans.iter(), &mut out, limit),
        }
        true
    });
    r.map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok((scope, out))
}

pub async fn tags_v1(
    State(s): State<ApiState>,
    h: HeaderMap,
    axum::extract::Query(p): Params,
) -> Response {
    let (scope, sets) = match collect_tags(&s, &h, &p, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let names: BTreeSet<String> = match scope.as_str() {
        "intrinsic" => INTRINSICS.iter().map(|s| s.to_string()).collect(),
        "" | "none" => sets.into_iter().flatten().collect(),
        sc => SCOPES
            .iter()
            .position(|x| *x == sc)
            .map(|i| sets[i].clone())
            .unwrap_or_default(),
    };
    json_response(&json!({ "tagNames": names, "metrics": {} }))
}

pub async fn tags_v2(
    State(s): State<ApiState>,
    h: HeaderMap,
    axum::extract::Query(p): Params,
) -> Response {
    let (scope, sets) = match collect_tags(&s, &h, &p, true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut scopes = Vec::new();
    for (i, name) in SCOPES.iter().enumerate() {
        if (scope.is_empty() || scope == "none" || scope == *name) && !sets[i].is_empty() {
            scopes.push(json!({ "name": name, "tags": sets[i] }));
        }
    }
    if matches!(scope.as_str(), "" | "none" | "intrinsic") {
        scopes.push(json!({ "name": "intrinsic", "tags": INTRINSICS }));
    }
    json_response(&json!({ "scopes": scopes, "metrics": {} }))
}

/// What a v2 tag name addresses.
#[derive(Debug, Clone, PartialEq)]
pub enum TagRef {
    /// (scope index in `SCOPES`, or None for unscoped), attribute name.
    Attr(Option<usize>, String),
    Intrinsic(&'static str),
}

/// Parse a TraceQL identifier used as a v2 tag name.
pub fn parse_tag(tag: &str) -> Result<TagRef, String> {
    let bad = || format!("please provide a valid tagName: {tag}");
    let canonical: &[(&[&str], &'static str)] = &[
        (&["name", "span:name"], "name"),
        (&["status", "span:status"], "status"),
        (&["kind", "span:kind"], "kind"),
        (&["duration", "span:duration"], "duration"),
        (&["statusMessage", "span:statusMessage"], "statusMessage"),
        (&["traceDuration", "trace:duration"], "traceDuration"),
        (&["rootName", "trace:rootName"], "rootName"),
        (&["rootServiceName", "trace:rootService"], "rootServiceName"),
        (&["event:name"], "event:name"),
        (&["instrumentation:name"], "instrumentation:name"),
        (&["instrumentation:version"], "instrumentation:version"),
        (&["span:id"], "span:id"),
        (&["trace:id"], "trace:id"),
        (&["span:parentID"], "span:parentID"),
        (&["event:timeSinceStart"], "event:timeSinceStart"),
        (&["link:traceID"], "link:traceID"),
        (&["link:spanID"], "link:spanID"),
    ];
    for (names, c) in canonical {
        if names.contains(&tag) {
            return Ok(TagRef::Intrinsic(c));
        }
    }
    let (scope, rest) = if let Some(r) = tag.strip_prefix('.') {
        (None, r)
    } else if let Some((sc, r)) = tag.split_once('.') {
        match SCOPES.iter().position(|s| *s == sc) {
            Some(i) => (Some(i), r),
            None => return Err(bad()),
        }
    } else {
        return Err(bad());
    };
    let name = if let Some(q) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        q.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        rest.to_string()
    };
    let ok_char = |c: char| !c.is_whitespace() && !"{}()=!<>&|~\"+-*/%^,".contains(c);
    if name.is_empty() || (!rest.starts_with('"') && !name.chars().all(ok_char)) {
        return Err(bad());
    }
    Ok(TagRef::Attr(scope, name))
}

fn strip_values(rest: &str) -> Option<&str> {
    rest.strip_suffix("/values").filter(|t| !t.is_empty())
}

/// Distinct (type, value) pairs in first-seen order.
#[derive(Default)]
struct Distinct {
    seen: HashSet<(&'static str, String)>,
    out: Vec<(&'static str, String)>,
    limit: usize,
}

impl Distinct {
    fn add(&mut self, ty: &'static str, v: String) -> bool {
        if self.out.len() >= self.limit {
            return false;
        }
        if self.seen.insert((ty, v.clone())) {
            self.out.push((ty, v));
        }
        true
    }
}

fn span_values(t: &TraceRef<'_>, s: &SpanRow, tag: &TagRef, d: &mut Distinct) {
    let tab = t.table;
    let attrs = |list: &[crate::store::model::Attr], name: &str, d: &mut Distinct| {
        for a in list.iter().filter(|a| tab.dict.get(a.key) == name) {
            d.add(val_type(a.val), val_string(tab, a.val));
        }
    };
    match tag {
        TagRef::Attr(None, n) => {
            attrs(t.span_attrs(s), n, d);
            attrs(t.resource_attrs(s), n, d);
        }
        TagRef::Attr(Some(0), n) => attrs(t.resource_attrs(s), n, d),
        TagRef::Attr(Some(1), n) => attrs(t.span_attrs(s), n, d),
        TagRef::Attr(Some(2), n) => {
            for e in &tab.events[s.events.range()] {
                attrs(&tab.attrs[e.attrs.range()], n, d);
            }
        }
        TagRef::Attr(Some(3), n) => {
            for l in &tab.links[s.links.range()] {
                attrs(&tab.attrs[l.attrs.range()], n, d);
            }
        }
        TagRef::Attr(Some(_), n) => {
            if let Some(sc) = tab.scopes.get(s.scope as usize) {
                attrs(&tab.attrs[sc.attrs.range()], n, d);
            }
        }
        TagRef::Intrinsic("name") => {
            d.add("string", t.str(s.name).to_string());
        }
        TagRef::Intrinsic("statusMessage") if s.status_msg != NO_SYM => {
            d.add("string", t.str(s.status_msg).to_string());
        }
        TagRef::Intrinsic("event:name") => {
            for e in &tab.events[s.events.range()] {
                d.add("string", t.str(e.name).to_string());
            }
        }
        TagRef::Intrinsic(i @ ("instrumentation:name" | "instrumentation:version")) => {
            if let Some(sc) = tab.scopes.get(s.scope as usize) {
                let sym = if *i == "instrumentation:name" {
                    sc.name
                } else {
                    sc.version
                };
                if sym != NO_SYM && !t.str(sym).is_empty() {
                    d.add("string", t.str(sym).to_string());
                }
            }
        }
        _ => {}
    }
}

fn values_common(
    s: &ApiState,
    h: &HeaderMap,
    p: &[(String, String)],
    tag: &TagRef,
    q: Option<traceql::Query>,
) -> Result<Vec<(&'static str, String)>, Response> {
    let tenants = tenants(&s.store, h)?;
    let lim = s.store.config().search_limits();
    let (start, end) =
        parse_window(p, s.store.now_ns(), &lim).map_err(|e| text(StatusCode::BAD_REQUEST, e))?;
    let limit = match get(p, "limit").filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| text(StatusCode::BAD_REQUEST, format!("invalid limit: {v}")))?,
        None => 10_000,
    }
    .max(1);
    s.store
        .metrics()
        .queries
        .get_or_create(&Metrics::labels(&[("op", "metadata")]))
        .inc();
    let mut d = Distinct {
        limit,
        ..Distinct::default()
    };
    let r = s.store.for_each_trace(&tenants, start, end, &mut |t| {
        let matched: Option<Vec<usize>> = q
            .as_ref()
            .filter(|q| !q.is_match_all())
            .map(|q| q.eval(&QlTrace::new(t)));
        if matched.as_ref().is_some_and(Vec::is_empty) {
            return true;
        }
        match tag {
            TagRef::Intrinsic("rootName") => {
                if let Some(n) = t.root_name() {
                    d.add("string", n.to_string());
                }
            }
            TagRef::Intrinsic("rootServiceName") => {
                if let Some(n) = t.root_service() {
                    d.add("string", n.to_string());
                }
            }
            _ => match &matched {
                Some(m) => m
                    .iter()
                    .filter_map(|&i| t.spans.get(i))
                    .for_each(|sp| span_values(&t, sp, tag, &mut d)),
                None => t
                    .spans
                    .iter()
                    .for_each(|sp| span_values(&t, sp, tag, &mut d)),
            },
        }
        d.out.len() < d.limit
    });
    r.map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(d.out)
}

pub async fn tag_values_v1(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
    h: HeaderMap,
    axum::extract::Query(p): Params,
) -> Response {
    let Some(tag) = strip_values(&rest) else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let tag = TagRef::Attr(None, tag.to_string());
    match values_common(&s, &h, &p, &tag, None) {
        Ok(v) => {
            let vals: BTreeSet<String> = v.into_iter().map(|(_, v)| v).collect();
            json_response(&json!({ "tagValues": vals, "metrics": {} }))
        }
        Err(r) => r,
    }
}

pub async fn tag_values_v2(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
    h: HeaderMap,
    axum::extract::Query(p): Params,
) -> Response {
    let Some(tag) = strip_values(&rest) else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let tag = match parse_tag(tag) {
        Ok(t) => t,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let statics: Option<&[&str]> = match tag {
        TagRef::Intrinsic("status") => Some(&["ok", "error", "unset"]),
        TagRef::Intrinsic("kind") => Some(&[
            "client",
            "server",
            "producer",
            "consumer",
            "internal",
            "unspecified",
        ]),
        TagRef::Intrinsic(
            "duration"
            | "traceDuration"
            | "span:id"
            | "trace:id"
            | "span:parentID"
            | "event:timeSinceStart"
            | "link:traceID"
            | "link:spanID",
        ) => Some(&[]),
        _ => None,
    };
    if let Some(vals) = statics {
        if let Err(r) = tenants(&s.store, &h) {
            return r;
        }
        let vals: Vec<Value> = vals
            .iter()
            .map(|v| json!({ "type": "keyword", "value": v }))
            .collect();
        return json_response(&json!({ "tagValues": vals, "metrics": {} }));
    }
    let q = match get(&p, "q").filter(|q| !q.trim().is_empty()) {
        Some(q) => match parse_q(q) {
            Ok(q) => Some(q),
            Err(r) => return r,
        },
        None => None,
    };
    match values_common(&s, &h, &p, &tag, q) {
        Ok(mut v) => {
            v.sort();
            let vals: Vec<Value> = v
                .into_iter()
                .map(|(t, v)| json!({ "type": t, "value": v }))
                .collect();
            json_response(&json!({ "tagValues": vals, "metrics": {} }))
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::resource("resource.service.name", TagRef::Attr(Some(0), "service.name".into()))]
    #[case::span("span.http.method", TagRef::Attr(Some(1), "http.method".into()))]
    #[case::unscoped(".http.method", TagRef::Attr(None, "http.method".into()))]
    #[case::quoted("span.\"a b\"", TagRef::Attr(Some(1), "a b".into()))]
    #[case::name("name", TagRef::Intrinsic("name"))]
    #[case::span_name("span:name", TagRef::Intrinsic("name"))]
    #[case::root_service("trace:rootService", TagRef::Intrinsic("rootServiceName"))]
    #[case::status("span:status", TagRef::Intrinsic("status"))]
    fn tags_parse(#[case] tag: &str, #[case] want: TagRef) {
        assert_eq!(parse_tag(tag), Ok(want));
    }

    #[rstest]
    #[case::bare("service.name")]
    #[case::unknown_scope("foo.bar")]
    #[case::empty("")]
    #[case::dot(".")]
    #[case::space("span.a b")]
    fn tags_rejected(#[case] tag: &str) {
        assert_eq!(
            parse_tag(tag).unwrap_err(),
            format!("please provide a valid tagName: {tag}")
        );
    }
}
