//! What one search may cost: its deadline, cancellation when the client goes away, the bound
//! on searches running at once, and the memory cap on its results.
use std::time::Duration;

use axum::{body::Body, http::Request};
use tower::ServiceExt;

use super::router;
use crate::{
    ManualClock, Store, config::StoreSection, ids::SINGLE_TENANT, metrics::Metrics, testutil::*,
};

async fn get(store: &Store, path: &str) -> (u16, String) {
    let resp = router(store.clone())
        .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 26)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn open(dir: &std::path::Path, tune: impl FnOnce(&mut StoreSection)) -> Store {
    let mut c = cfg(dir);
    tune(&mut c);
    Store::open(&c, ManualClock::new(T0)).unwrap()
}

/// `n` traces of three spans each, every span with an attribute the heavy query looks at.
fn fill(store: &Store, n: u64) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let spans = chunk
            .iter()
            .flat_map(|&t| {
                (0..3).map(move |i| {
                    with_attrs(
                        span(
                            t + 1,
                            t * 4 + i + 1,
                            if i == 0 { 0 } else { t * 4 + 1 },
                            "op",
                            i,
                            5,
                        ),
                        vec![kv_s("payload", &format!("value-{t}-{i}-abcdefghijklmnop"))],
                    )
                })
            })
            .collect();
        store.ingest(SINGLE_TENANT, req("svc", spans)).unwrap();
    }
}

/// A valid query of 300 regex alternatives that matches nothing: costly on every span.
fn heavy_q() -> String {
    let terms: Vec<String> = (0..300)
        .map(|i| format!("span.payload =~ \"nomatch{i}.*z\""))
        .collect();
    urlencode(&format!("{{ {} }}", terms.join(" || ")))
}

fn heavy_query() -> String {
    format!("/api/search?q={}", heavy_q())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn stopped(store: &Store, reason: &str) -> u64 {
    store
        .metrics()
        .queries_stopped
        .get_or_create(&Metrics::labels(&[("reason", reason)]))
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_its_deadline_is_stopped_with_504() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), |c| {
        c.search.query_timeout = Duration::from_millis(1)
    });
    fill(&s, 2000);
    let (status, body) = get(&s, &heavy_query()).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("store.search.query_timeout"), "{body}");
    assert_eq!(stopped(&s, "deadline"), 1);
    assert_eq!(s.metrics().queries_inflight.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_lookups_have_the_same_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), |c| {
        c.search.query_timeout = Duration::from_millis(1)
    });
    fill(&s, 2000);
    for route in [
        format!("/api/v2/search/tag/span.payload/values?q={}", heavy_q()),
        format!("/api/v2/search/tags?q={}", heavy_q()),
    ] {
        let (status, body) = get(&s, &route).await;
        assert_eq!(status, 504, "{route}: {body}");
    }
    assert_eq!(stopped(&s, "deadline"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_stops_when_its_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), |_| {});
    fill(&s, 3000);
    let (s2, path) = (s.clone(), heavy_query());
    let client = tokio::spawn(async move { get(&s2, &path).await });
    for _ in 0..2000 {
        if s.metrics().queries_inflight.get() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        s.metrics().queries_inflight.get(),
        1,
        "the search never started"
    );
    client.abort();
    for _ in 0..2000 {
        if stopped(&s, "cancelled") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        stopped(&s, "cancelled"),
        1,
        "the search ran on without its client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_past_the_concurrency_bound_get_429_and_probes_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), |c| {
        c.search.max_concurrent_queries = 1;
        c.search.query_timeout = Duration::from_millis(200);
    });
    fill(&s, 10);
    let held = s.inner.query_slots.clone().try_acquire_owned().unwrap();
    let (status, body) = get(&s, "/api/search?q=%7B%7D").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("store.search.max_concurrent_queries"),
        "{body}"
    );
    assert_eq!(get(&s, "/ready").await.0, 200);
    drop(held);
    assert_eq!(get(&s, "/api/search?q=%7B%7D").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_its_memory_cap_is_refused_with_400() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), |c| c.search.max_result_bytes = 64 * 1024);
    fill(&s, 2000);
    let (status, body) = get(&s, "/api/search?q=%7B%7D&limit=2000").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("store.search.max_result_bytes"), "{body}");
    assert_eq!(stopped(&s, "too_large"), 1);
    let (status, body) = get(&s, "/api/search?q=%7B%7D&limit=20").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["traces"].as_array().unwrap().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_values_past_the_memory_cap_are_refused_with_400() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), |c| c.search.max_result_bytes = 64 * 1024);
    fill(&s, 2000);
    for route in [
        "/api/v2/search/tag/span.payload/values",
        "/api/search/tag/payload/values",
    ] {
        let (status, body) = get(&s, route).await;
        assert_eq!(status, 400, "{route}: {body:.200}");
        assert!(body.contains("store.search.max_result_bytes"), "{body}");
    }
    let (status, _) = get(&s, "/api/v2/search/tag/span.payload/values?limit=10").await;
    assert_eq!(status, 200);
}

#[test]
fn the_default_result_limit_cap_is_sane() {
    let c = StoreSection::default();
    assert!(c.search.max_result_limit <= 10_000);
    assert!(c.search.max_result_bytes <= 64 * 1024 * 1024);
}
