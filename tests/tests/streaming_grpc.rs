//! Tempo's streaming gRPC API (`tempopb.StreamingQuerier`, h2c on the HTTP port) of the real
//! `sonde store`, called with a client generated from Tempo's wire shape (tests/proto), not from
//! the store's own declarations: each of the seven calls answers what the HTTP API answers for
//! the same query (trace ids, root names, span set attributes, tag names, values and types,
//! series labels and samples), and a bad query is `InvalidArgument` with the HTTP 400 text.
//! No kernel needed: the store alone, fed over OTLP/gRPC.
use std::collections::{BTreeMap, BTreeSet};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, trace_service_client::TraceServiceClient},
    common::v1::{self as otlp, any_value::Value as OtlpValue},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode},
};
use sonde_e2e::{
    agent::start_sonde,
    free_port,
    tempo::{
        self, Grpc, Http, attr, json, messages,
        pb::{
            opentelemetry::proto::common::v1::{KeyValue, any_value::Value},
            tempopb::{
                QueryInstantRequest, QueryRangeRequest, SearchMetrics, SearchRequest,
                SearchTagValuesRequest, SearchTagsRequest, ServiceStats, TagValue,
                TraceSearchMetadata,
            },
        },
        single,
    },
};
use tonic::Code;

const S: u64 = 1_000_000_000;
/// The search window: three of the store's 300 s search shards, one trace in each.
const WINDOW_SECS: u64 = 900;
/// The metrics queries' step.
const STEP_SECS: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_streaming_call_answers_what_the_http_api_answers() {
    let data = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let _store = start_sonde("store", &[], data.path(), ports, "store listening");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    ingest(ports[1], now).await;
    let api = Http::new(ports[0]);
    let w = Window {
        start: now - WINDOW_SECS,
        end: now + 1,
    };
    api.until_searchable(w.start, w.end, 3).await;
    let mut grpc = tempo::grpc(ports[0]).await;

    search(&mut grpc, &api, &w).await;
    tags(&mut grpc, &api, &w).await;
    tag_values(&mut grpc, &api, &w).await;
    bad_queries(&mut grpc, &api, &w).await;
    metrics(&mut grpc, &api, &w).await;
}

/// Trace `n`'s id: 16 bytes of `0x10 * n` (no leading zero, so its hex is the same in every
/// form Tempo prints).
fn trace_hex(n: u8) -> String {
    hex::encode([0x10 * n; 16])
}

fn kv(key: &str, value: OtlpValue) -> otlp::KeyValue {
    otlp::KeyValue {
        key: key.into(),
        value: Some(otlp::AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Three traces, one per search shard: 1 (shop calling payments, the payment failing, its
/// span with a string, an int, a double and a bool attribute), 2 (shop alone) and 3 (stock,
/// failing). Every span is a server span.
async fn ingest(otlp_grpc: u16, now: u64) {
    let route = |r: &str| kv("http.route", OtlpValue::StringValue(r.into()));
    let code = |c: i64| kv("http.response.status_code", OtlpValue::IntValue(c));
    let payment = vec![
        route("/pay"),
        code(500),
        kv("payment.currency", OtlpValue::StringValue("EUR".into())),
        kv("payment.amount", OtlpValue::DoubleValue(12.5)),
        kv("payment.retry", OtlpValue::BoolValue(true)),
    ];
    #[rustfmt::skip]
    let spans = [
        // service, trace, span id, parent, name, seconds ago, ms, failing, attributes
        ("shop", 1, 0x11, None, "GET /cart", 700, 120, false, vec![route("/cart"), code(200)]),
        ("payments", 1, 0x12, Some(0x11), "POST /pay", 700, 80, true, payment),
        ("shop", 2, 0x21, None, "GET /health", 400, 5, false, vec![route("/health"), code(200)]),
        ("stock", 3, 0x31, None, "GET /items", 30, 40, true, vec![route("/items"), code(503)]),
    ];
    let resource_spans = spans
        .into_iter()
        .map(
            |(service, trace, id, parent, name, ago, ms, failing, attributes)| {
                let start = (now - ago) * S;
                let span = Span {
                    trace_id: vec![0x10 * trace; 16],
                    span_id: vec![id; 8],
                    parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
                    name: name.into(),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + ms * 1_000_000,
                    attributes,
                    status: failing.then(|| Status {
                        code: StatusCode::Error as i32,
                        message: String::new(),
                    }),
                    ..Default::default()
                };
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv(
                            "service.name",
                            OtlpValue::StringValue(service.into()),
                        )],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span],
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            },
        )
        .collect();
    TraceServiceClient::connect(format!("http://127.0.0.1:{otlp_grpc}"))
        .await
        .expect("connect to the store's OTLP/gRPC port")
        .export(ExportTraceServiceRequest { resource_spans })
        .await
        .expect("OTLP export");
}

/// The queries' window, unix seconds.
struct Window {
    start: u64,
    end: u64,
}

impl Window {
    /// As the HTTP API's `start` and `end` (seconds).
    fn secs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("start", self.start.to_string()),
            ("end", self.end.to_string()),
        ]
    }

    /// As the HTTP metrics API's `start` and `end` in nanoseconds (what the gRPC calls carry).
    fn nanos(&self) -> Vec<(&'static str, String)> {
        vec![
            ("start", (self.start * S).to_string()),
            ("end", (self.end * S).to_string()),
        ]
    }

    fn start32(&self) -> u32 {
        u32::try_from(self.start).expect("before 2106")
    }

    fn end32(&self) -> u32 {
        u32::try_from(self.end).expect("before 2106")
    }
}

/// `Search`: the traces of every streamed message (each sent once) against `/api/search`'s.
async fn search(grpc: &mut Grpc, api: &Http, w: &Window) {
    let queries = [
        "{ status = error }",
        r#"{ resource.service.name = "payments" } | select(span.payment.amount, span.payment.retry, span.payment.currency, span.http.response.status_code)"#,
        "{ } | by(resource.service.name) | count() > 0",
    ];
    let mut answers = Vec::new();
    for q in queries {
        let streamed = messages(grpc.search(SearchRequest {
            query: q.into(),
            start: w.start32(),
            end: w.end32(),
            limit: 20,
            spans_per_span_set: 5,
            ..Default::default()
        }))
        .await
        .unwrap_or_else(|e| panic!("Search {q}: {e:?}"));
        let last = streamed.last().expect("at least one message");
        let jobs = last.metrics.clone().expect("the last message's metrics");
        assert!(
            jobs.total_jobs > 0 && jobs.completed_jobs == jobs.total_jobs,
            "{q}: every job done: {jobs:?}"
        );
        let mut by_grpc = BTreeMap::new();
        for t in streamed.into_iter().flat_map(|m| m.traces) {
            let id = t.trace_id.clone();
            assert!(
                by_grpc.insert(id.clone(), t).is_none(),
                "{q}: {id} sent twice"
            );
        }

        let mut query = w.secs();
        query.extend([
            ("q", q.to_owned()),
            ("limit", "20".into()),
            ("spss", "5".into()),
        ]);
        let http = api.json("/api/search", &query).await;
        let by_http: BTreeMap<String, TraceSearchMetadata> = json::list(http.get("traces"))
            .iter()
            .map(|t| (json::text(t, "traceID"), json::trace(t)))
            .collect();
        assert_eq!(by_grpc, by_http, "Search {q}: gRPC (left) and HTTP (right)");
        answers.push(by_grpc);
    }

    // What the answers hold, so that two equally wrong answers do not pass.
    let [errors, payments, by_service] = &answers[..] else {
        unreachable!()
    };
    assert_eq!(
        errors.keys().cloned().collect::<Vec<_>>(),
        [trace_hex(1), trace_hex(3)],
        "the failing traces"
    );
    let roots: BTreeSet<(&str, &str)> = errors
        .values()
        .map(|t| (t.root_service_name.as_str(), t.root_trace_name.as_str()))
        .collect();
    assert_eq!(
        roots,
        BTreeSet::from([("shop", "GET /cart"), ("stock", "GET /items")])
    );
    let cart = &errors[&trace_hex(1)];
    assert_eq!(cart.duration_ms, 120);
    assert_eq!(
        cart.service_stats["payments"],
        ServiceStats {
            span_count: 1,
            error_count: 1
        }
    );
    assert_eq!(
        cart.span_sets[0].spans[0].span_id,
        hex::encode([0x12; 8]),
        "the failing span"
    );

    let pay = &payments[&trace_hex(1)].span_sets[0].spans[0];
    assert_eq!(pay.span_id, hex::encode([0x12; 8]), "{pay:?}");
    assert_eq!(pay.duration_nanos, 80_000_000);
    let a = &pay.attributes;
    assert_eq!(
        attr(a, "payment.amount"),
        Some(&Value::DoubleValue(12.5)),
        "{a:?}"
    );
    assert_eq!(attr(a, "payment.retry"), Some(&Value::BoolValue(true)));
    assert_eq!(
        attr(a, "payment.currency"),
        Some(&Value::StringValue("EUR".into()))
    );
    assert_eq!(
        attr(a, "http.response.status_code"),
        Some(&Value::IntValue(500))
    );

    let sets = &by_service[&trace_hex(1)].span_sets;
    let mut groups: Vec<(String, i64)> = sets
        .iter()
        .map(|set| {
            let a = &set.attributes;
            let Some(Value::StringValue(service)) = attr(a, "by(resource.service.name)") else {
                panic!("a string by() value in {set:?}")
            };
            let Some(Value::IntValue(count)) = attr(a, "count()") else {
                panic!("an int count() in {set:?}")
            };
            (service.clone(), *count)
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [("payments".to_owned(), 1), ("shop".to_owned(), 1)],
        "trace 1's span sets, by service"
    );
}

/// `SearchTags` and `SearchTagsV2` against `/api/search/tags` and `/api/v2/search/tags`.
async fn tags(grpc: &mut Grpc, api: &Http, w: &Window) {
    let req = SearchTagsRequest {
        start: w.start32(),
        end: w.end32(),
        ..Default::default()
    };

    let v1 = single(grpc.search_tags(req.clone())).await;
    let http = json::tags(&api.json("/api/search/tags", &w.secs()).await);
    assert_eq!(v1, http, "SearchTags: gRPC (left) and HTTP (right)");
    for name in [
        "http.route",
        "http.response.status_code",
        "payment.amount",
        "service.name",
    ] {
        assert!(v1.tag_names.iter().any(|n| n == name), "{name} in {v1:?}");
    }

    let v2 = single(grpc.search_tags_v2(req)).await;
    let http = json::tags_v2(&api.json("/api/v2/search/tags", &w.secs()).await);
    assert_eq!(v2, http, "SearchTagsV2: gRPC (left) and HTTP (right)");
    let scope = |name: &str| {
        let scope = v2.scopes.iter().find(|s| s.name == name);
        scope.unwrap_or_else(|| panic!("scope {name} in {v2:?}"))
    };
    assert!(scope("span").tags.contains(&"payment.retry".to_owned()));
    assert!(scope("resource").tags.contains(&"service.name".to_owned()));
    assert!(scope("intrinsic").tags.contains(&"status".to_owned()));
}

/// `SearchTagValues` and `SearchTagValuesV2` against the `/values` routes, with and without
/// a query.
async fn tag_values(grpc: &mut Grpc, api: &Http, w: &Window) {
    let req = |tag: &str, query: &str| SearchTagValuesRequest {
        tag_name: tag.into(),
        query: query.into(),
        start: w.start32(),
        end: w.end32(),
        ..Default::default()
    };

    let v1 = single(grpc.search_tag_values(req("service.name", ""))).await;
    let path = "/api/search/tag/service.name/values";
    let http = json::tag_values(&api.json(path, &w.secs()).await);
    assert_eq!(v1, http, "SearchTagValues: gRPC (left) and HTTP (right)");
    assert_eq!(v1.tag_values, ["payments", "shop", "stock"]);

    let typed = |t: &str, values: &[&str]| -> Vec<TagValue> {
        let value = |v: &&str| TagValue {
            r#type: t.to_owned(),
            value: (*v).to_owned(),
        };
        values.iter().map(value).collect()
    };
    let cases = [
        (
            "span.http.response.status_code",
            "",
            typed("int", &["200", "500", "503"]),
        ),
        (
            "resource.service.name",
            "",
            typed("string", &["payments", "shop", "stock"]),
        ),
        // Only shop's routes.
        (
            "span.http.route",
            r#"{ resource.service.name = "shop" }"#,
            typed("string", &["/cart", "/health"]),
        ),
    ];
    for (tag, q, want) in cases {
        let v2 = single(grpc.search_tag_values_v2(req(tag, q))).await;
        let mut query = w.secs();
        query.push(("q", q.to_owned()));
        let path = format!("/api/v2/search/tag/{tag}/values");
        let http = json::tag_values_v2(&api.json(&path, &query).await);
        assert_eq!(
            v2, http,
            "SearchTagValuesV2 {tag} {q}: gRPC (left) and HTTP (right)"
        );
        let mut got = v2.tag_values;
        got.sort_by(|a, b| a.value.cmp(&b.value));
        assert_eq!(got, want, "SearchTagValuesV2 {tag} {q}");
    }
}

/// Series in a stable order (the store keeps them in no particular order).
fn by_labels<T>(mut series: Vec<T>, labels: impl Fn(&T) -> &[KeyValue]) -> Vec<T> {
    series.sort_by_key(|s| format!("{:?}", labels(s)));
    series
}

/// The counts of `SearchMetrics` that do not depend on where the spans sit (live, WAL or
/// block): traces and spans inspected, jobs done and planned.
fn counts(m: Option<&SearchMetrics>) -> Option<(u32, u64, u32, u32)> {
    m.map(|m| {
        (
            m.inspected_traces,
            m.inspected_spans,
            m.completed_jobs,
            m.total_jobs,
        )
    })
}

/// A series' first label value, as text.
fn first_label(labels: &[KeyValue]) -> String {
    match labels.first().and_then(|kv| attr(labels, &kv.key)) {
        Some(Value::StringValue(v)) => v.clone(),
        Some(Value::IntValue(v)) => v.to_string(),
        other => panic!("a string or int label, not {other:?}"),
    }
}

/// `MetricsQueryRange` and `MetricsQueryInstant` against `/api/metrics/query_range` and
/// `/api/metrics/query`.
async fn metrics(grpc: &mut Grpc, api: &Http, w: &Window) {
    let mut totals = Vec::new();
    for q in [
        "{ } | count_over_time() by (resource.service.name)",
        "{ } | rate() by (span.http.response.status_code)",
    ] {
        let got = single(grpc.metrics_query_range(QueryRangeRequest {
            query: q.into(),
            start: w.start * S,
            end: w.end * S,
            step: STEP_SECS * S,
            ..Default::default()
        }))
        .await;
        let mut query = w.nanos();
        query.extend([("q", q.to_owned()), ("step", format!("{STEP_SECS}s"))]);
        let http = api.json("/api/metrics/query_range", &query).await;
        assert_eq!(
            (got.status, got.message.clone()),
            json::partial(&http),
            "MetricsQueryRange {q}: status and message"
        );
        assert_eq!(got.status, 0, "complete");
        assert_eq!(
            counts(got.metrics.as_ref()),
            counts(json::search_metrics(http.get("metrics")).as_ref()),
            "MetricsQueryRange {q}: metrics, gRPC (left) and HTTP (right)"
        );
        let got = by_labels(got.series, |s| &s.labels);
        let want = json::list(http.get("series")).iter().map(json::series);
        let want = by_labels(want.collect(), |s| &s.labels);
        // Compared as printed: a rate's exemplars carry NaN, which equals nothing.
        assert_eq!(
            format!("{got:#?}"),
            format!("{want:#?}"),
            "MetricsQueryRange {q}: gRPC (left) and HTTP (right)"
        );
        let total: BTreeMap<String, f64> = got
            .iter()
            .map(|s| {
                (
                    first_label(&s.labels),
                    s.samples.iter().map(|p| p.value).sum(),
                )
            })
            .collect();
        totals.push(total);
    }
    let per_label = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    assert_eq!(
        totals[0],
        per_label(&[("payments", 1.0), ("shop", 2.0), ("stock", 1.0)]),
        "spans per service"
    );
    let per_step = 1.0 / STEP_SECS as f64;
    assert_eq!(
        totals[1],
        per_label(&[
            ("200", 2.0 * per_step),
            ("500", per_step),
            ("503", per_step)
        ]),
        "rate per status code"
    );

    let q = "{ } | count_over_time() by (resource.service.name)";
    let got = single(grpc.metrics_query_instant(QueryInstantRequest {
        query: q.into(),
        start: w.start * S,
        end: w.end * S,
    }))
    .await;
    let mut query = w.nanos();
    query.push(("q", q.to_owned()));
    let http = api.json("/api/metrics/query", &query).await;
    assert_eq!(
        (got.status, got.message.clone()),
        json::partial(&http),
        "MetricsQueryInstant: status and message"
    );
    assert_eq!(got.status, 0, "complete");
    let series = by_labels(got.series, |s| &s.labels);
    let want = json::list(http.get("series"))
        .iter()
        .map(json::instant_series);
    let want = by_labels(want.collect(), |s| &s.labels);
    assert_eq!(
        series, want,
        "MetricsQueryInstant: gRPC (left) and HTTP (right)"
    );
    let values: Vec<(String, f64)> = series
        .iter()
        .map(|s| (first_label(&s.labels), s.value))
        .collect();
    assert_eq!(
        values,
        [
            ("payments".to_owned(), 1.0),
            ("shop".to_owned(), 2.0),
            ("stock".to_owned(), 1.0)
        ]
    );
    // Tempo's query frontend sends an instant answer with the metrics of the range query
    // behind it, as the HTTP API does.
    assert_eq!(
        counts(got.metrics.as_ref()),
        counts(json::search_metrics(http.get("metrics")).as_ref()),
        "MetricsQueryInstant: metrics, gRPC (left) and HTTP (right)"
    );
}

/// A query that does not parse: `InvalidArgument` carrying the HTTP API's 400 text.
async fn bad_queries(grpc: &mut Grpc, api: &Http, w: &Window) {
    let bad = "{ span.http.route = }";
    let mut query = w.secs();
    query.push(("q", bad.to_owned()));
    let (status, body) = api.get("/api/search", &query).await;
    assert_eq!(status, 400, "{body}");
    let err = messages(grpc.search(SearchRequest {
        query: bad.into(),
        start: w.start32(),
        end: w.end32(),
        ..Default::default()
    }))
    .await
    .expect_err("a bad query fails");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(err.message(), body.trim(), "Search");

    let mut query = w.nanos();
    query.extend([("q", bad.to_owned()), ("step", format!("{STEP_SECS}s"))]);
    let (status, body) = api.get("/api/metrics/query_range", &query).await;
    assert_eq!(status, 400, "{body}");
    let err = messages(grpc.metrics_query_range(QueryRangeRequest {
        query: bad.into(),
        start: w.start * S,
        end: w.end * S,
        step: STEP_SECS * S,
        ..Default::default()
    }))
    .await
    .expect_err("a bad query fails");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(err.message(), body.trim(), "MetricsQueryRange");
}
