//! OTLP ingest edge cases against the store binary: partial success, JSON and gzip bodies,
//! malformed bodies, per-tenant limits answered with OTLP statuses, and tenant isolation.
#[path = "store/support.rs"]
mod support;

use std::io::Write;

use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    trace::v1::Span,
};
use prost::Message;
use support::*;

fn span(trace: u8, id: u8, name: &str) -> Span {
    let now = now_ns();
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: now - 5_000_000,
        end_time_unix_nano: now,
        ..Default::default()
    }
}

async fn post(url: &str, ct: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut r = reqwest::Client::new()
        .post(format!("{url}/v1/traces"))
        .header("Content-Type", ct)
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.expect("post");
    (
        resp.status().as_u16(),
        resp.bytes().await.expect("body").to_vec(),
    )
}

async fn status_of(api: &str, path: &str, tenant: Option<&str>) -> u16 {
    let mut r = reqwest::Client::new().get(format!("{api}{path}"));
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    r.send().await.expect("get").status().as_u16()
}

fn proto(req: &ExportTraceServiceRequest) -> Vec<u8> {
    req.encode_to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_http_bodies_and_partial_success() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreProc::start(dir.path(), "  limits:\n    max_bytes_per_trace: 2000\n");
    let (h, api) = (&store.http, &store.api);

    // One good span, one with a 3-byte trace id: partial success, counted.
    let mut bad = span(1, 1, "bad");
    bad.trace_id = vec![1, 2, 3];
    let (code, body) = post(
        h,
        "application/x-protobuf",
        proto(&request("svc", vec![bad, span(2, 2, "good")])),
        &[],
    )
    .await;
    assert_eq!(code, 200);
    let resp = ExportTraceServiceResponse::decode(body.as_slice()).unwrap();
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 1);
    assert!(!ps.error_message.is_empty());
    assert_eq!(
        status_of(api, "/api/traces/02020202020202020202020202020202", None).await,
        200
    );

    // Fully accepted: no partial_success.
    let (code, body) = post(
        h,
        "application/x-protobuf",
        proto(&request("svc", vec![span(3, 3, "ok")])),
        &[],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        ExportTraceServiceResponse::decode(body.as_slice())
            .unwrap()
            .partial_success,
        None
    );

    // OTLP JSON (hex ids, string int64) and a JSON reply.
    let now = now_ns();
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"json-svc"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"04040404040404040404040404040404","spanId":"0404040404040404","name":"from-json","kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{now}"}}]}}]}}]}}"#,
        now - 1000
    );
    let (code, body) = post(h, "application/json", json.into_bytes(), &[]).await;
    assert_eq!((code, String::from_utf8_lossy(&body).as_ref()), (200, "{}"));
    let v: serde_json::Value =
        reqwest::get(format!("{api}/api/traces/04040404040404040404040404040404"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        v["batches"][0]["scopeSpans"][0]["spans"][0]["name"],
        "from-json"
    );

    // gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&proto(&request("svc", vec![span(5, 5, "gzipped")])))
        .unwrap();
    let (code, _) = post(
        h,
        "application/x-protobuf",
        gz.finish().unwrap(),
        &[("Content-Encoding", "gzip")],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        status_of(api, "/api/traces/05050505050505050505050505050505", None).await,
        200
    );

    // Garbage and unsupported types.
    assert_eq!(
        post(h, "application/x-protobuf", vec![0xff, 0xff, 0xff], &[])
            .await
            .0,
        400
    );
    assert_eq!(
        post(h, "application/json", b"{not json".to_vec(), &[])
            .await
            .0,
        400
    );
    assert_eq!(post(h, "text/plain", b"hi".to_vec(), &[]).await.0, 415);

    // A trace growing past max_bytes_per_trace: the extra spans are rejected, not dropped silently.
    let mut big = span(6, 6, "big");
    big.attributes = vec![kv_s("blob", &"x".repeat(3000))];
    let (code, body) = post(
        h,
        "application/x-protobuf",
        proto(&request("svc", vec![big])),
        &[],
    )
    .await;
    assert_eq!(code, 200);
    let ps = ExportTraceServiceResponse::decode(body.as_slice())
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(ps.rejected_spans, 1);
    assert!(
        ps.error_message.starts_with("TRACE_TOO_LARGE"),
        "{}",
        ps.error_message
    );
    let metrics = reqwest::get(format!("{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"tempo_discarded_spans_total{reason="trace_too_large",tenant="single-tenant"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"tempo_receiver_refused_spans_total{receiver="otlp",transport="http"} 2"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_answers_429_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreProc::start(
        dir.path(),
        "  limits:\n    ingestion_rate_limit_bytes: 1000\n    ingestion_burst_size_bytes: 1000\n",
    );
    let mut big = span(1, 1, "x");
    big.attributes = vec![kv_s("pad", &"p".repeat(700))];
    let body = proto(&request("svc", vec![big]));
    assert_eq!(
        post(&store.http, "application/x-protobuf", body.clone(), &[])
            .await
            .0,
        200
    );
    let (code, resp) = post(&store.http, "application/x-protobuf", body, &[]).await;
    assert_eq!(code, 429, "{}", String::from_utf8_lossy(&resp));
    let metrics = reqwest::get(format!("{}/metrics", store.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"tempo_discarded_spans_total{reason="rate_limited",tenant="single-tenant"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_isolated_with_multitenancy() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreProc::start(dir.path(), "  multitenancy_enabled: true\n");
    let (h, api) = (&store.http, &store.api);
    let body = |t: u8| proto(&request("svc", vec![span(t, t, "x")]));
    assert_eq!(
        post(
            h,
            "application/x-protobuf",
            body(1),
            &[("X-Scope-OrgID", "team-a")]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            h,
            "application/x-protobuf",
            body(2),
            &[("X-Scope-OrgID", "team-b")]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(h, "application/x-protobuf", body(3), &[]).await.0,
        503,
        "no org id on ingest"
    );
    assert_eq!(
        post(
            h,
            "application/x-protobuf",
            body(3),
            &[("X-Scope-OrgID", "bad/tenant")]
        )
        .await
        .0,
        400
    );
    let a = "/api/traces/01010101010101010101010101010101";
    let b = "/api/traces/02020202020202020202020202020202";
    assert_eq!(status_of(api, a, Some("team-a")).await, 200);
    assert_eq!(status_of(api, a, Some("team-b")).await, 404);
    // Reading several tenants at once is opt-in (store.cross_tenant_queries_enabled).
    assert_eq!(status_of(api, b, Some("team-a|team-b")).await, 400);
    assert_eq!(status_of(api, a, None).await, 401);
    assert_eq!(status_of(api, "/api/echo", None).await, 200);
    assert_eq!(status_of(api, "/api/search", Some("bad/tenant")).await, 400);
    let resp = reqwest::Client::new()
        .get(format!("{api}/api/search"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "no org id\n");
    // Python SDK over gRPC with a tenant header.
    let sent = python_send("grpc", &store.grpc, "py-tenant", 1, Some("team-c"));
    let id = sent["traces"][0]["trace_id"].as_str().unwrap().to_string();
    assert_eq!(
        status_of(api, &format!("/api/traces/{id}"), Some("team-c")).await,
        200
    );
    assert_eq!(
        status_of(api, &format!("/api/traces/{id}"), Some("team-a")).await,
        404
    );
    assert!(store.dir.join("data/team-a").is_dir() && store.dir.join("data/team-c").is_dir());
}
