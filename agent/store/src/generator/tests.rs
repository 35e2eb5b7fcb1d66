//! The generator through the store's ingest seam: span metrics, service-graph pairing, virtual
//! nodes, database edges, the bounded stores, the scrape route and remote write to an
//! in-test receiver that decodes what Prometheus would.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
use prost::Message;
use tokio_util::sync::CancellationToken;

use super::prompb::WriteRequest;
use crate::{ManualClock, Store, StoreSection, ids::SINGLE_TENANT, testutil::*};

const SEC: u64 = 1_000_000_000;

fn open(
    dir: &std::path::Path,
    clock: &Arc<ManualClock>,
    f: impl FnOnce(&mut StoreSection),
) -> Store {
    let mut c = cfg(dir);
    f(&mut c);
    Store::open(&c, clock.clone()).unwrap()
}

/// A store in a fresh directory at T0 on a manual clock, `f` changing its config.
fn fresh(f: impl FnOnce(&mut StoreSection)) -> (tempfile::TempDir, Arc<ManualClock>, Store) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock, f);
    (dir, clock, store)
}

/// Scrape text → `name{labels}` → value, labels as written.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| {
        panic!(
            "no {key} in\n{}",
            m.keys().cloned().collect::<Vec<_>>().join("\n")
        )
    })
}

fn kind(
    mut s: opentelemetry_proto::tonic::trace::v1::Span,
    k: i32,
) -> opentelemetry_proto::tonic::trace::v1::Span {
    s.kind = k;
    s
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn scraped(store: &Store) -> BTreeMap<String, f64> {
    parse(&store.generator().unwrap().render(None))
}

#[test]
fn span_metrics_count_calls_latency_and_size_by_tempos_labels() {
    let (_dir, _, store) = fresh(|_| {});
    store
        .ingest(
            SINGLE_TENANT,
            req(
                "shop",
                vec![
                    span(1, 1, 0, "GET /cart", 0, 5),
                    span(2, 1, 0, "GET /cart", 0, 300),
                    with_error(span(3, 1, 0, "GET /cart", 0, 3000)),
                    span(3, 2, 1, "SELECT", 0, 1),
                ],
            ),
        )
        .unwrap();
    let m = scraped(&store);
    let ok = r#"service="shop",span_name="GET /cart",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET""#;
    let err = r#"service="shop",span_name="GET /cart",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR""#;
    assert_eq!(
        get(&m, &format!("traces_spanmetrics_calls_total{{{ok}}}")),
        2.0
    );
    assert_eq!(
        get(&m, &format!("traces_spanmetrics_calls_total{{{err}}}")),
        1.0
    );
    assert_eq!(
        get(
            &m,
            r#"traces_spanmetrics_calls_total{service="shop",span_name="SELECT",span_kind="SPAN_KIND_CLIENT",status_code="STATUS_CODE_UNSET"}"#
        ),
        1.0
    );
    // 5 ms is in the 0.008 bucket, 300 ms in 0.512, both under +Inf.
    assert_eq!(
        get(
            &m,
            &format!("traces_spanmetrics_latency_bucket{{{ok},le=\"0.004\"}}")
        ),
        0.0
    );
    assert_eq!(
        get(
            &m,
            &format!("traces_spanmetrics_latency_bucket{{{ok},le=\"0.008\"}}")
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            &format!("traces_spanmetrics_latency_bucket{{{ok},le=\"0.512\"}}")
        ),
        2.0
    );
    assert_eq!(
        get(
            &m,
            &format!("traces_spanmetrics_latency_bucket{{{ok},le=\"16.384\"}}")
        ),
        2.0
    );
    assert_eq!(
        get(&m, &format!("traces_spanmetrics_latency_count{{{ok}}}")),
        2.0
    );
    assert!((get(&m, &format!("traces_spanmetrics_latency_sum{{{ok}}}")) - 0.305).abs() < 1e-9);
    assert!(get(&m, &format!("traces_spanmetrics_size_total{{{ok}}}")) > 40.0);
    // The generator's own counters are on the store's /metrics.
    let mut body = store.metrics().render();
    super::scrape::append_self(store.generator().unwrap(), &mut body);
    assert!(
        body.contains("tempo_metrics_generator_spans_received_total{tenant=\"single-tenant\"} 4"),
        "{body}"
    );
    assert!(body.trim_end().ends_with("# EOF"));
    assert_eq!(body.matches("# EOF").count(), 1);
}

#[test]
fn extra_dimensions_come_from_the_span_then_the_resource_sanitized() {
    let (_dir, _, store) = fresh(|c| {
        c.generator.span_metrics.dimensions = vec!["http.method".into(), "service.name".into()];
        c.generator.span_metrics.intrinsic_dimensions.status_message = true;
    });
    store
        .ingest(
            SINGLE_TENANT,
            req(
                "shop",
                vec![with_error(with_attrs(
                    span(1, 1, 0, "x", 0, 1),
                    vec![kv_s("http.method", "POST")],
                ))],
            ),
        )
        .unwrap();
    let m = scraped(&store);
    assert_eq!(
        get(
            &m,
            r#"traces_spanmetrics_calls_total{service="shop",span_name="x",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR",status_message="boom",http_method="POST",service_name="shop"}"#
        ),
        1.0
    );
}

/// frontend (root server span 1) calls backend (client 2 → server 3, failing), an
/// uninstrumented `legacy` (client 4 with peer.service) and something unknown (client 5).
fn two_services(store: &Store, trace: u64) {
    store
        .ingest(
            SINGLE_TENANT,
            req(
                "frontend",
                vec![
                    kind(span(trace, 1, 0, "GET /", 0, 500), SERVER),
                    kind(span(trace, 2, 1, "GET /api", 10, 300), CLIENT),
                    kind(
                        with_attrs(
                            span(trace, 4, 1, "GET /old", 10, 50),
                            vec![kv_s("peer.service", "legacy")],
                        ),
                        CLIENT,
                    ),
                    kind(span(trace, 5, 1, "GET /lost", 10, 50), CLIENT),
                ],
            ),
        )
        .unwrap();
    store
        .ingest(
            SINGLE_TENANT,
            req(
                "backend",
                vec![with_error(kind(
                    span(trace, 3, 2, "GET /api", 20, 250),
                    SERVER,
                ))],
            ),
        )
        .unwrap();
}

#[test]
fn service_graph_pairs_edges_and_makes_virtual_nodes_on_expiry() {
    let (_dir, clock, store) = fresh(|_| {});
    two_services(&store, 1);
    two_services(&store, 2);
    let g = store.generator().unwrap();
    let m = scraped(&store);
    let fb = r#"client="frontend",server="backend""#;
    assert_eq!(
        get(&m, &format!("traces_service_graph_request_total{{{fb}}}")),
        2.0
    );
    assert_eq!(
        get(
            &m,
            &format!("traces_service_graph_request_failed_total{{{fb}}}")
        ),
        2.0
    );
    // Server 250 ms and client 300 ms both fall in the 0.4 bucket, not in 0.2.
    assert_eq!(
        get(
            &m,
            &format!("traces_service_graph_request_server_seconds_bucket{{{fb},le=\"0.2\"}}")
        ),
        0.0
    );
    assert_eq!(
        get(
            &m,
            &format!("traces_service_graph_request_server_seconds_bucket{{{fb},le=\"0.4\"}}")
        ),
        2.0
    );
    assert!(
        (get(
            &m,
            &format!("traces_service_graph_request_server_seconds_sum{{{fb}}}")
        ) - 0.5)
            .abs()
            < 1e-9
    );
    assert!(
        (get(
            &m,
            &format!("traces_service_graph_request_client_seconds_sum{{{fb}}}")
        ) - 0.6)
            .abs()
            < 1e-9
    );
    // The other halves wait for `wait` (10s).
    assert!(
        !m.keys()
            .any(|k| k.contains("legacy") || k.contains("\"user\""))
    );
    clock.advance(11 * SEC);
    g.collect();
    let m = scraped(&store);
    let vn = r#"connection_type="virtual_node""#;
    assert_eq!(
        get(
            &m,
            &format!(
                "traces_service_graph_request_total{{client=\"user\",server=\"frontend\",{vn}}}"
            )
        ),
        2.0
    );
    assert_eq!(
        get(
            &m,
            &format!(
                "traces_service_graph_request_total{{client=\"frontend\",server=\"legacy\",{vn}}}"
            )
        ),
        2.0
    );
    assert_eq!(
        get(
            &m,
            r#"traces_service_graph_unpaired_spans_total{client="frontend"}"#
        ),
        2.0
    );
    assert!(!m.keys().any(|k| k.contains("failed_total{client=\"user\"")));
    let mut body = String::new();
    super::scrape::append_self(g, &mut body);
    let s = parse(&body);
    assert_eq!(
        get(
            &s,
            r#"tempo_metrics_generator_processor_service_graphs_expired_edges_total{tenant="single-tenant"}"#
        ),
        2.0
    );
    assert_eq!(
        get(
            &s,
            r#"sonde_store_generator_pending_edges{tenant="single-tenant"}"#
        ),
        0.0
    );
}

#[test]
fn a_database_client_span_is_an_edge_at_once() {
    let (_dir, _, store) = fresh(|_| {});
    let db = |id, attrs| kind(with_attrs(span(1, id, 9, "SELECT", 0, 2), attrs), CLIENT);
    store
        .ingest(
            SINGLE_TENANT,
            req(
                "shop",
                vec![
                    db(
                        1,
                        vec![
                            kv_s("db.system", "postgresql"),
                            kv_s("server.address", "pg1"),
                        ],
                    ),
                    db(
                        2,
                        vec![
                            kv_s("db.name", "orders"),
                            kv_s("network.peer.address", "10.0.0.5"),
                            kv_i("network.peer.port", 5432),
                        ],
                    ),
                    db(3, vec![kv_s("db.namespace", "users")]),
                ],
            ),
        )
        .unwrap();
    let m = scraped(&store);
    for server in ["pg1", "10.0.0.5:5432", "users"] {
        assert_eq!(
            get(
                &m,
                &format!(
                    "traces_service_graph_request_total{{client=\"shop\",server=\"{server}\",connection_type=\"database\"}}"
                )
            ),
            1.0
        );
    }
}

#[test]
fn pending_edges_are_bounded_and_the_overflow_counted() {
    let (_dir, _, store) = fresh(|c| c.generator.service_graphs.max_items = 2);
    let clients: Vec<_> = (1..=5)
        .map(|i| kind(span(i, 2, 1, "call", 0, 1), CLIENT))
        .collect();
    store.ingest(SINGLE_TENANT, req("a", clients)).unwrap();
    let m = scraped(&store);
    assert_eq!(
        get(
            &m,
            r#"traces_service_graph_dropped_spans_total{client="a"}"#
        ),
        3.0
    );
    // The two kept halves still pair.
    store
        .ingest(
            SINGLE_TENANT,
            req(
                "b",
                (1..=2)
                    .map(|i| kind(span(i, 3, 2, "call", 0, 1), SERVER))
                    .collect(),
            ),
        )
        .unwrap();
    let m = scraped(&store);
    assert_eq!(
        get(
            &m,
            r#"traces_service_graph_request_total{client="a",server="b"}"#
        ),
        2.0
    );
}

#[test]
fn high_cardinality_span_names_overflow_alone_and_are_counted() {
    let (_dir, _, store) = fresh(|c| {
        c.generator.max_cardinality_per_label = 3;
        c.generator.processors = vec![super::config::Processor::SpanMetrics];
    });
    let spans = (1..=10)
        .map(|i| span(i, 1, 0, &format!("GET /user/{i}"), 0, 1))
        .collect();
    store.ingest(SINGLE_TENANT, req("shop", spans)).unwrap();
    let m = scraped(&store);
    let calls: Vec<_> = m
        .iter()
        .filter(|(k, _)| k.starts_with("traces_spanmetrics_calls_total"))
        .collect();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(
        get(
            &m,
            r#"traces_spanmetrics_calls_total{service="shop",span_name="__cardinality_overflow__",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"}"#
        ),
        7.0
    );
    let mut body = String::new();
    super::scrape::append_self(store.generator().unwrap(), &mut body);
    let s = parse(&body);
    assert_eq!(
        get(
            &s,
            r#"tempo_metrics_generator_registry_label_values_limited_total{tenant="single-tenant",label_name="span_name"}"#
        ),
        7.0
    );
    assert!(
        !m.keys().any(|k| k.contains("service_graph")),
        "service graphs are off for this store"
    );
}

#[test]
fn tenant_overrides_and_the_off_switch() {
    let (_dir, _, store) = fresh(|c| {
        c.multitenancy_enabled = true;
        c.generator.overrides.insert(
            "quiet".into(),
            super::config::TenantOverrides {
                processors: Some(vec![]),
                ..Default::default()
            },
        );
    });
    store
        .ingest("loud", req("a", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    store
        .ingest("quiet", req("b", vec![span(2, 1, 0, "y", 0, 1)]))
        .unwrap();
    let text = store.generator().unwrap().render(None);
    assert!(
        text.contains(r#"traces_spanmetrics_calls_total{tenant="loud",service="a""#),
        "{text}"
    );
    assert!(!text.contains("quiet"), "{text}");
    let (_dir2, _, off) = fresh(|c| c.generator.enabled = false);
    assert!(off.generator().is_none());
    off.ingest(SINGLE_TENANT, req("a", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
}

#[tokio::test]
async fn the_scrape_route_serves_generated_series() {
    use tower::ServiceExt;
    let (_dir, _, store) = fresh(|_| {});
    store
        .ingest(SINGLE_TENANT, req("a", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    let resp = crate::api::router(store.clone())
        .oneshot(
            axum::http::Request::get("/metrics/generator")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("# TYPE traces_spanmetrics_latency histogram"),
        "{text}"
    );
    assert!(
        text.contains(r#"traces_spanmetrics_calls_total{service="a",span_name="x""#),
        "{text}"
    );
}

/// An in-test remote-write receiver: answers `fail_first` requests with `fail_with` (503
/// unless set), then 204; keeps each accepted request's tenant header and decoded series.
/// Each accepted request's `X-Scope-OrgID` and decoded body.
type Got = Arc<Mutex<Vec<(Option<String>, WriteRequest)>>>;

#[derive(Clone, Default)]
struct Receiver {
    got: Got,
    fail_first: Arc<Mutex<usize>>,
    fail_with: Arc<Mutex<Option<axum::http::StatusCode>>>,
}

async fn start_receiver(r: Receiver) -> String {
    let app = Router::new().route(
        "/api/v1/write",
        post(move |h: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move {
                {
                    let mut f = r.fail_first.lock().unwrap();
                    if *f > 0 {
                        *f -= 1;
                        return r
                            .fail_with
                            .lock()
                            .unwrap()
                            .unwrap_or(axum::http::StatusCode::SERVICE_UNAVAILABLE);
                    }
                }
                assert_eq!(h.get("content-encoding").unwrap(), "snappy");
                let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                let wr = WriteRequest::decode(raw.as_slice()).unwrap();
                let tenant = h
                    .get("x-scope-orgid")
                    .map(|v| v.to_str().unwrap().to_string());
                r.got.lock().unwrap().push((tenant, wr));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}/api/v1/write")
}

/// A receiver failing its first `fail_first` requests, and a multitenant store remote-writing
/// to it every 100 ms with a queue of `queue` requests.
async fn rw_setup(
    fail_first: usize,
    queue: usize,
) -> (Receiver, tempfile::TempDir, Arc<ManualClock>, Store) {
    let rx = Receiver::default();
    *rx.fail_first.lock().unwrap() = fail_first;
    let url = start_receiver(rx.clone()).await;
    let (dir, clock, store) = fresh(|c| {
        c.multitenancy_enabled = true;
        c.generator.collection_interval = Duration::from_millis(100);
        c.generator.remote_write.url = url;
        c.generator.remote_write.min_backoff = Duration::from_millis(20);
        c.generator.remote_write.max_backoff = Duration::from_millis(40);
        c.generator.remote_write.max_pending_requests = queue;
        c.generator
            .external_labels
            .insert("cluster".into(), "home".into());
    });
    (rx, dir, clock, store)
}

fn label<'a>(ts: &'a super::prompb::TimeSeries, name: &str) -> Option<&'a str> {
    ts.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

#[tokio::test]
async fn remote_write_sends_each_tenants_series_with_its_org_id_and_retries() {
    let (rx, _dir, _, store) = rw_setup(2, 64).await;
    store
        .ingest("team-a", req("a", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    store
        .ingest("team-b", req("b", vec![span(2, 1, 0, "y", 0, 1)]))
        .unwrap();
    let sd = CancellationToken::new();
    let task = tokio::spawn(super::remote_write::run(
        store.generator().unwrap().clone(),
        sd.clone(),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let tenants = loop {
        let t: std::collections::BTreeSet<Option<String>> = rx
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect();
        if t.len() == 2 || std::time::Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sd.cancel();
    task.await.unwrap();
    assert_eq!(
        tenants,
        [Some("team-a".to_string()), Some("team-b".to_string())]
            .into_iter()
            .collect()
    );
    let got = rx.got.lock().unwrap();
    let (_, first) = got
        .iter()
        .find(|(t, _)| t.as_deref() == Some("team-a"))
        .unwrap();
    let calls = first
        .timeseries
        .iter()
        .find(|ts| label(ts, "__name__") == Some("traces_spanmetrics_calls_total"))
        .unwrap();
    assert_eq!(label(calls, "service"), Some("a"));
    assert_eq!(label(calls, "cluster"), Some("home"));
    assert!(label(calls, "__metrics_gen_instance").is_some());
    // A new counter starts with a 0 at the end of the previous minute, then its value.
    assert_eq!(calls.samples.len(), 2);
    assert_eq!(calls.samples[0].value, 0.0);
    assert_eq!(calls.samples[1].value, 1.0);
    let bucket = first
        .timeseries
        .iter()
        .find(|ts| {
            label(ts, "__name__") == Some("traces_spanmetrics_latency_bucket")
                && !ts.exemplars.is_empty()
        })
        .unwrap();
    assert_eq!(bucket.exemplars[0].labels[0].name, "traceID");
    assert_eq!(bucket.exemplars[0].labels[0].value, hex::encode(tid(1)));
    let s = store.generator().unwrap().render_self();
    assert!(
        s.contains("sonde_store_generator_remote_write_retries_total{tenant="),
        "{s}"
    );
}

#[tokio::test]
async fn remote_write_drops_the_oldest_requests_while_prometheus_is_down() {
    let (rx, _dir, clock, store) = rw_setup(30, 2).await;
    let g = store.generator().unwrap().clone();
    let sd = CancellationToken::new();
    let task = tokio::spawn(super::remote_write::run(g.clone(), sd.clone()));
    for i in 1..=20u64 {
        store
            .ingest("t", req("a", vec![span(i, 1, 0, "x", 0, 1)]))
            .unwrap();
        clock.advance(SEC);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(g.queue.len() <= 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let last = loop {
        let last = rx.got.lock().unwrap().iter().rev().find_map(|(_, w)| {
            w.timeseries
                .iter()
                .find(|ts| label(ts, "__name__") == Some("traces_spanmetrics_calls_total"))
                .and_then(|ts| ts.samples.last().map(|s| s.value))
        });
        if last == Some(20.0) || std::time::Instant::now() > deadline {
            break last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sd.cancel();
    task.await.unwrap();
    // Counters are cumulative: what was dropped meanwhile is not lost from the totals.
    assert_eq!(last, Some(20.0));
    let s = parse(&g.render_self());
    assert!(
        get(
            &s,
            r#"sonde_store_generator_remote_write_samples_dropped_total{tenant="t",reason="queue_full"}"#
        ) > 0.0
    );
}

#[tokio::test]
async fn what_prometheus_refuses_is_dropped_and_counted_not_retried() {
    let (rx, _dir, _, store) = rw_setup(1, 64).await;
    *rx.fail_with.lock().unwrap() = Some(axum::http::StatusCode::BAD_REQUEST);
    store
        .ingest("t", req("a", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    let g = store.generator().unwrap().clone();
    let sd = CancellationToken::new();
    let task = tokio::spawn(super::remote_write::run(g.clone(), sd.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rx.got.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sd.cancel();
    task.await.unwrap();
    let s = parse(&g.render_self());
    assert!(
        get(
            &s,
            r#"sonde_store_generator_remote_write_samples_dropped_total{tenant="t",reason="rejected"}"#
        ) > 0.0
    );
    // The next collection went through; the refused one was not sent again.
    assert!(!rx.got.lock().unwrap().is_empty());
    assert!(
        !s.keys()
            .any(|k| k.starts_with("sonde_store_generator_remote_write_retries"))
    );
}

#[tokio::test]
async fn the_scrape_route_reads_the_tenants_asked_for() {
    use tower::ServiceExt;
    let (_dir, _, store) = fresh(|c| c.multitenancy_enabled = true);
    store
        .ingest("a", req("svc-a", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    store
        .ingest("b", req("svc-b", vec![span(2, 1, 0, "x", 0, 1)]))
        .unwrap();
    let scrape = |org: Option<&str>| {
        let mut r = axum::http::Request::get("/metrics/generator");
        if let Some(o) = org {
            r = r.header("X-Scope-OrgID", o);
        }
        let router = crate::api::router(store.clone());
        async move {
            let resp = router
                .oneshot(r.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, all) = scrape(None).await;
    assert_eq!(status, 200);
    assert!(
        all.contains(r#"tenant="a",service="svc-a""#)
            && all.contains(r#"tenant="b",service="svc-b""#),
        "{all}"
    );
    // One `# TYPE` line per family, whatever the number of tenants.
    assert_eq!(
        all.matches("# TYPE traces_spanmetrics_calls_total counter")
            .count(),
        1
    );
    let (_, only_b) = scrape(Some("b")).await;
    assert!(
        only_b.contains("svc-b") && !only_b.contains("svc-a"),
        "{only_b}"
    );
    assert_eq!(scrape(Some("a|b")).await.0, 400);
}
