//! In-process API tests: tenant resolution, content negotiation, shapes of empty answers.
use axum::{body::Body, http::Request};
use tower::ServiceExt;

use super::router;
use crate::{ManualClock, Store, ids::SINGLE_TENANT, testutil::*};

/// Sends a GET through the router: status, content type, body.
pub(super) async fn call(
    store: &Store,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut b = Request::builder().uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = router(store.clone())
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap()
        .to_vec();
    (status, ct, body)
}

fn store(dir: &std::path::Path, multitenant: bool) -> Store {
    let mut c = cfg(dir);
    c.multitenancy_enabled = multitenant;
    Store::open(&c, ManualClock::new(T0)).unwrap()
}

#[tokio::test]
async fn single_tenant_ignores_org_header() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    s.ingest(SINGLE_TENANT, req("svc", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    let path = format!("/api/traces/{}", hex::encode(tid(1)));
    assert_eq!(call(&s, &path, &[("X-Scope-OrgID", "other")]).await.0, 200);
}

#[tokio::test]
async fn multitenant_requires_header_except_on_probes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    s.ingest("a", req("svc", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    let path = format!("/api/traces/{}", hex::encode(tid(1)));
    assert_eq!(call(&s, &path, &[]).await.0, 401);
    assert_eq!(call(&s, &path, &[("X-Scope-OrgID", "a")]).await.0, 200);
    assert_eq!(call(&s, &path, &[("X-Scope-OrgID", "b")]).await.0, 404);
    // Reading several tenants at once is opt-in.
    let (status, _, body) = call(&s, &path, &[("X-Scope-OrgID", "b|a")]).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("store.cross_tenant_queries_enabled"));
    for probe in ["/ready", "/api/echo", "/api/status/buildinfo", "/metrics"] {
        assert_eq!(call(&s, probe, &[]).await.0, 200, "{probe}");
    }
}

#[rstest::rstest]
#[case::none(None, "application/json")]
#[case::any(Some("*/*"), "application/json")]
#[case::json(Some("application/json"), "application/json")]
#[case::protobuf(Some("application/protobuf"), "application/protobuf")]
#[case::both(Some("application/json, application/protobuf"), "application/protobuf")]
#[tokio::test]
async fn accept_header_picks_the_format(#[case] accept: Option<&str>, #[case] want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    s.ingest(SINGLE_TENANT, req("svc", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept", *a)).collect();
    for version in ["", "/v2"] {
        let path = format!("/api{version}/traces/{}", hex::encode(tid(1)));
        let (status, ct, _) = call(&s, &path, &headers).await;
        assert_eq!((status, ct.as_str()), (200, want), "{path}");
    }
}

#[tokio::test]
async fn empty_answers_have_tempo_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let json = |b: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
    let (_, _, b) = call(&s, "/api/search/tags", &[]).await;
    assert_eq!(json(b), serde_json::json!({"tagNames": [], "metrics": {}}));
    let (_, _, b) = call(&s, "/api/search/tag/foo/values", &[]).await;
    assert_eq!(json(b), serde_json::json!({"tagValues": [], "metrics": {}}));
    let (_, _, b) = call(&s, "/api/v2/search/tag/span.foo/values", &[]).await;
    assert_eq!(json(b), serde_json::json!({"tagValues": [], "metrics": {}}));
    let (_, _, b) = call(&s, "/api/v2/search/tag/kind/values", &[]).await;
    assert_eq!(json(b)["tagValues"].as_array().unwrap().len(), 6);
    let (_, _, b) = call(&s, "/api/v2/search/tag/duration/values", &[]).await;
    assert_eq!(json(b), serde_json::json!({"tagValues": [], "metrics": {}}));
    let (_, _, b) = call(&s, "/api/v2/search/tags?scope=intrinsic", &[]).await;
    assert_eq!(json(b)["scopes"][0]["name"], "intrinsic");
}

#[tokio::test]
async fn cross_tenant_reads_work_once_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.multitenancy_enabled = true;
    c.cross_tenant_queries_enabled = true;
    let s = Store::open(&c, ManualClock::new(T0)).unwrap();
    s.ingest("a", req("svc", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    let path = format!("/api/traces/{}", hex::encode(tid(1)));
    assert_eq!(call(&s, &path, &[("X-Scope-OrgID", "b|a")]).await.0, 200);
}

#[tokio::test]
async fn a_configured_token_guards_every_route_but_ready() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut c = cfg(&dir.path().join("data"));
    c.auth_token_file = token;
    let s = Store::open(&c, ManualClock::new(T0)).unwrap();
    s.ingest(SINGLE_TENANT, req("svc", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    let path = format!("/api/traces/{}", hex::encode(tid(1)));
    for route in [path.as_str(), "/api/search", "/metrics", "/api/search/tags"] {
        let (status, _, body) = call(&s, route, &[]).await;
        assert_eq!(status, 401, "{route}");
        assert!(String::from_utf8_lossy(&body).contains("Authorization: Bearer"));
        assert_eq!(
            call(&s, route, &[("Authorization", "Bearer wrong")])
                .await
                .0,
            401,
            "{route}"
        );
        assert_eq!(
            call(&s, route, &[("Authorization", "Bearer s3cret")])
                .await
                .0,
            200,
            "{route}"
        );
    }
    // Grafana's basic auth, the token as password.
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "grafana:s3cret")
    );
    assert_eq!(call(&s, &path, &[("Authorization", &basic)]).await.0, 200);
    assert_eq!(call(&s, "/ready", &[]).await.0, 200);
}

/// Tempo counts spans per service only for TraceQL searches; `tags=` hits carry no `serviceStats`.
#[rstest::rstest]
#[case::tags("/api/search?tags=service.name%3Dsvc", None)]
#[case::traceql("/api/search?q=%7B%7D", Some(serde_json::json!({"svc": {"spanCount": 1}})))]
#[tokio::test]
async fn service_stats_come_with_traceql_search_only(
    #[case] path: &str,
    #[case] want: Option<serde_json::Value>,
) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    s.ingest(SINGLE_TENANT, req("svc", vec![span(1, 1, 0, "x", 0, 1)]))
        .unwrap();
    let (status, _, body) = call(&s, path, &[]).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["traces"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["traces"][0].get("serviceStats").cloned(), want);
}

/// Pipelines answer with one span set per group, each with its `by()` value and aggregates.
#[rstest::rstest]
#[case::by_and_count(
    "{ } | by(resource.service.name) | count() > 0",
    serde_json::json!([
        {"matched": 1, "attributes": [
            {"key": "by(resource.service.name)", "value": {"stringValue": "front"}},
            {"key": "count()", "value": {"intValue": "1"}}]},
        {"matched": 1, "attributes": [
            {"key": "by(resource.service.name)", "value": {"stringValue": "back"}},
            {"key": "count()", "value": {"intValue": "1"}}]}
    ])
)]
#[case::avg_duration(
    "{ } | avg(duration) > 1ms",
    serde_json::json!([{"matched": 2, "attributes": [
        {"key": "avg(duration)", "value": {"stringValue": "7.5ms"}}]}])
)]
#[case::coalesce("{ } | by(name) | coalesce()", serde_json::json!([{"matched": 2}]))]
#[case::select(
    "{ kind = client } | select(span.db.system)",
    serde_json::json!([{"matched": 1}])
)]
#[tokio::test]
async fn pipelines_answer_span_sets(#[case] q: &str, #[case] want: serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    s.ingest(
        SINGLE_TENANT,
        req("front", vec![span(1, 1, 0, "root", 0, 10)]),
    )
    .unwrap();
    let child = with_attrs(span(1, 2, 1, "child", 1, 5), vec![kv_s("db.system", "pg")]);
    s.ingest(SINGLE_TENANT, req("back", vec![child])).unwrap();
    let path = format!("/api/search?q={}", urlencode(q));
    let (status, _, body) = call(&s, &path, &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut sets = v["traces"][0]["spanSets"].clone();
    for set in sets.as_array_mut().unwrap() {
        set.as_object_mut().unwrap().remove("spans");
    }
    assert_eq!(sets, want, "{q}");
    assert_eq!(v["traces"][0]["spanSet"], v["traces"][0]["spanSets"][0]);
}

#[tokio::test]
async fn select_prints_the_selected_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let child = with_attrs(span(1, 2, 1, "child", 0, 5), vec![kv_s("db.system", "pg")]);
    s.ingest(SINGLE_TENANT, req("back", vec![child])).unwrap();
    let q = urlencode("{ kind = client } | select(span.db.system, name)");
    let (_, _, body) = call(&s, &format!("/api/search?q={q}"), &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let span = &v["traces"][0]["spanSet"]["spans"][0];
    assert_eq!(span["name"], "child");
    assert_eq!(
        span["attributes"],
        serde_json::json!([
            {"key": "kind", "value": {"stringValue": "client"}},
            {"key": "db.system", "value": {"stringValue": "pg"}}
        ])
    );
}

fn urlencode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Bad TraceQL is a 400 that says what is wrong.
#[rstest::rstest]
#[case::dangling_structural("{ .a } >>", "syntax error")]
#[case::aggregate_without_comparison("{ } | count()", "syntax error")]
#[case::two_aggregates(
    "({ .a } | count()) > ({ .b } | count())",
    "a scalar filter other than `aggregate op number` is not supported yet"
)]
#[case::parent_intrinsic("{ parent = nil }", "intrinsic parent is not supported yet")]
#[tokio::test]
async fn bad_traceql_is_a_400(#[case] q: &str, #[case] needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let (status, _, body) = call(&s, &format!("/api/search?q={}", urlencode(q)), &[]).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{q}: {body}");
    assert!(
        body.starts_with("invalid TraceQL query: parse error"),
        "{q}: {body}"
    );
    assert!(body.contains(needle), "{q}: {body}");
}
