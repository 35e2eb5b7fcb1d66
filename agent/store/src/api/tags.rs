//! Tag names (`/api/search/tags`, `/api/v2/search/tags`) and tag values
//! (`/api/search/tag/{name}/values`, `/api/v2/search/tag/{name}/values`) handlers.
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
use serde_json::{Value, json};

use super::{
    ApiState, Params, json_response,
    limits::within_limits,
    search::{get, parse_q},
    tenants, text,
};
use crate::{
    Store,
    api::params::parse_window,
    metrics::Metrics,
    query::budget::{Budget, QueryError},
    query::traceql_view::QlTrace,
    query::view::{TraceRef, val_string, val_type},
    query::{self, SCOPES},
    rows::{NO_SYM, SpanRow},
};
use sonde_traceql as traceql;

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
    store: &Store,
    h: &HeaderMap,
    p: &[(String, String)],
    allow_q: bool,
    budget: &mut Budget,
) -> Result<(String, [BTreeSet<String>; 5]), Response> {
    let tenants = tenants(store, h)?;
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
    let lim = store.config().search_limits();
    let (start, end) =
        parse_window(p, store.now_ns(), &lim).map_err(|e| text(StatusCode::BAD_REQUEST, e))?;
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
    store
        .metrics()
        .queries
        .get_or_create(&Metrics::labels(&[("op", "metadata")]))
        .inc();
    let mut out: [BTreeSet<String>; 5] = Default::default();
    let max_bytes = store.config().search.max_result_bytes;
    let mut bytes = 0usize;
    let r = store.for_each_trace(&tenants, start, end, budget, &mut |t| {
        bytes += match &q {
            Some(q) if !q.is_match_all() => {
                let m = q.eval(&QlTrace::new(t));
                query::collect_keys(
                    &t,
                    m.iter().filter_map(|&i| t.spans.get(i)),
                    &mut out,
                    limit,
                )
            }
            _ => query::collect_keys(&t, t.spans.iter(), &mut out, limit),
        };
        bytes <= max_bytes
    });
    r.map_err(|e| super::limits::stopped(store, &e))?;
    if bytes > max_bytes {
        return Err(super::limits::stopped(
            store,
            &QueryError::TooLarge { max_bytes },
        ));
    }
    Ok((scope, out))
}

pub async fn tags_v1(
    State(s): State<ApiState>,
    h: HeaderMap,
    axum::extract::Query(p): Params,
) -> Response {
    let (scope, sets) =
        match within_limits(&s.store, move |st, b| collect_tags(st, &h, &p, false, b)).await {
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
    let (scope, sets) =
        match within_limits(&s.store, move |st, b| collect_tags(st, &h, &p, true, b)).await {
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
    /// Memory the values hold, and the most they may (the query's result cap).
    bytes: usize,
    max_bytes: usize,
}

impl Distinct {
    fn add(&mut self, ty: &'static str, v: String) -> bool {
        if self.out.len() >= self.limit || self.over() {
            return false;
        }
        if self.seen.insert((ty, v.clone())) {
            self.bytes += 2 * v.len() + 96;
            self.out.push((ty, v));
        }
        true
    }

    fn over(&self) -> bool {
        self.bytes > self.max_bytes
    }
}

fn span_values(t: &TraceRef<'_>, s: &SpanRow, tag: &TagRef, d: &mut Distinct) {
    let tab = t.table;
    let attrs = |list: &[crate::rows::Attr], name: &str, d: &mut Distinct| {
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
    store: &Store,
    h: &HeaderMap,
    p: &[(String, String)],
    tag: &TagRef,
    q: Option<traceql::Query>,
    budget: &mut Budget,
) -> Result<Vec<(&'static str, String)>, Response> {
    let tenants = tenants(store, h)?;
    let lim = store.config().search_limits();
    let (start, end) =
        parse_window(p, store.now_ns(), &lim).map_err(|e| text(StatusCode::BAD_REQUEST, e))?;
    let limit = match get(p, "limit").filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| text(StatusCode::BAD_REQUEST, format!("invalid limit: {v}")))?,
        None => 10_000,
    }
    .max(1);
    store
        .metrics()
        .queries
        .get_or_create(&Metrics::labels(&[("op", "metadata")]))
        .inc();
    let mut d = Distinct {
        limit,
        max_bytes: store.config().search.max_result_bytes,
        ..Distinct::default()
    };
    let r = store.for_each_trace(&tenants, start, end, budget, &mut |t| {
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
        d.out.len() < d.limit && !d.over()
    });
    r.map_err(|e| super::limits::stopped(store, &e))?;
    if d.over() {
        return Err(super::limits::stopped(
            store,
            &QueryError::TooLarge {
                max_bytes: d.max_bytes,
            },
        ));
    }
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
    match within_limits(&s.store, move |st, b| {
        values_common(st, &h, &p, &tag, None, b)
    })
    .await
    {
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
    match within_limits(&s.store, move |st, b| values_common(st, &h, &p, &tag, q, b)).await {
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
