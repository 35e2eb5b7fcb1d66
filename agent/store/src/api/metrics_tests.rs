//! In-process tests of the TraceQL metrics API: Tempo's JSON and protobuf shapes, parameters,
//! 400 texts and tenants.
use prost::Message;
use serde_json::{Value, json};

use super::{tempopb, tests::call};
use crate::{ManualClock, Store, ids::SINGLE_TENANT, testutil::*};

const S: u64 = 1_000_000_000;

/// A store whose clock reads T0 + 120 s, holding: service "a" spans at T0+1 s (trace 1) and
/// T0+31 s (trace 2, an error), service "b" at T0+2 s (trace 1). Trace 1 is in a block.
fn store(dir: &std::path::Path, multitenant: bool) -> Store {
    let mut c = cfg(dir);
    c.multitenancy_enabled = multitenant;
    let s = Store::open(&c, ManualClock::new(T0 + 120 * S)).unwrap();
    let tenant = if multitenant { "t1" } else { SINGLE_TENANT };
    s.ingest(tenant, req("a", vec![span(1, 1, 0, "GET /", 1000, 100)]))
        .unwrap();
    s.ingest(tenant, req("b", vec![span(1, 2, 1, "SELECT", 2000, 20)]))
        .unwrap();
    s.cut_blocks(true);
    s.ingest(
        tenant,
        req("a", vec![with_error(span(2, 1, 0, "GET /", 31_000, 300))]),
    )
    .unwrap();
    s
}

fn range_path(q: &str, extra: &str) -> String {
    let q: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!(
        "/api/metrics/query_range?q={q}&start={}&end={}{extra}",
        T0 / S,
        T0 / S + 60
    )
}

fn body_json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

#[tokio::test]
async fn range_answers_tempo_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    // `exemplars=0` means "the default" to Tempo; the hint turns them off.
    let path = range_path(
        "{} | count_over_time() by (resource.service.name) with (exemplars = false)",
        "&step=20s&exemplars=0",
    );
    let (status, ct, body) = call(&s, &path, &[]).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let v = body_json(&body);
    // Start 0 s and end 60 s are on 20 s steps; one more interval comes before the start.
    // Samples are stamped with their interval's end; zeros have no `value`.
    let ts = |sec: u64| json!(((T0 / S + sec) * 1000).to_string());
    assert_eq!(
        v["series"],
        json!([
            {
                "labels": [{"key": "resource.service.name", "value": {"stringValue": "a"}}],
                "samples": [
                    {"timestampMs": ts(0)},
                    {"timestampMs": ts(20), "value": 1.0},
                    {"timestampMs": ts(40), "value": 1.0},
                    {"timestampMs": ts(60)},
                ],
            },
            {
                "labels": [{"key": "resource.service.name", "value": {"stringValue": "b"}}],
                "samples": [
                    {"timestampMs": ts(0)},
                    {"timestampMs": ts(20), "value": 1.0},
                    {"timestampMs": ts(40)},
                    {"timestampMs": ts(60)},
                ],
            },
        ])
    );
    assert_eq!(v["metrics"]["completedJobs"], json!(1));
    assert_eq!(v["metrics"]["totalBlocks"], json!(1));
    assert_eq!(v["metrics"]["inspectedSpans"], json!("3"));
    assert!(v.get("status").is_none() && v.get("message").is_none());
}

#[tokio::test]
async fn ungrouped_series_are_named_after_the_function_and_carry_exemplars() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let path = range_path("{ status = error } | rate()", "&step=20");
    let v = body_json(&call(&s, &path, &[]).await.2);
    let series = &v["series"][0];
    assert_eq!(
        series["labels"],
        json!([{"key": "__name__", "value": {"stringValue": "rate"}}])
    );
    // One error span in (20 s, 40 s]: 1 / 20 per second.
    assert_eq!(series["samples"][2]["value"], json!(0.05));
    let ex = &series["exemplars"][0];
    assert_eq!(
        ex["labels"][0],
        json!({"key": "trace:id", "value": {"stringValue": hex::encode(tid(2))}})
    );
    assert_eq!(ex["value"], json!(0.05));
    assert_eq!(
        ex["timestampMs"],
        json!(((T0 + 31 * S) / 1_000_000).to_string())
    );
}

#[tokio::test]
async fn range_speaks_protobuf_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let path = range_path(
        "{} | count_over_time() by (resource.service.name)",
        "&step=20s",
    );
    let (status, ct, body) = call(
        &s,
        &path,
        &[("Accept", "application/json, application/protobuf")],
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "application/protobuf"));
    let r = tempopb::QueryRangeResponse::decode(body.as_slice()).unwrap();
    let counts: Vec<(String, Vec<f64>)> = r
        .series
        .iter()
        .map(|s| {
            let label = match s.labels[0].value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(v)) => {
                    v.clone()
                }
                _ => String::new(),
            };
            (label, s.samples.iter().map(|x| x.value).collect())
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            ("a".to_string(), vec![0.0, 1.0, 1.0, 0.0]),
            ("b".to_string(), vec![0.0, 1.0, 0.0, 0.0])
        ]
    );
    assert_eq!(r.metrics.map(|m| m.inspected_spans), Some(3));
}

#[tokio::test]
async fn instant_is_one_value_per_series_and_always_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let path = format!(
        "/api/metrics/query?query={}&start={}&end={}",
        "%7B%7D%20%7C%20count_over_time()%20by%20(resource.service.name)",
        T0 / S,
        T0 / S + 60
    );
    let (status, ct, body) = call(&s, &path, &[("Accept", "application/protobuf")]).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let v = body_json(&body);
    assert_eq!(
        v["series"],
        json!([
            {"labels": [{"key": "resource.service.name", "value": {"stringValue": "a"}}], "value": 2.0},
            {"labels": [{"key": "resource.service.name", "value": {"stringValue": "b"}}], "value": 1.0},
        ])
    );
    // Nothing in range: no `series` key at all.
    let path = format!(
        "/api/metrics/query?q=%7B%7D%20%7C%20rate()&start={}&end={}",
        T0 / S + 1000,
        T0 / S + 1060
    );
    let v = body_json(&call(&s, &path, &[]).await.2);
    assert!(v.get("series").is_none(), "{v}");
    assert_eq!(v["metrics"]["completedJobs"], json!(1));
}

#[tokio::test]
async fn empty_range_answer_keeps_the_series_array() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let s = Store::open(&c, ManualClock::new(T0)).unwrap();
    let (status, _, body) = call(&s, &range_path("{} | rate()", ""), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        body_json(&body),
        json!({"series": [], "metrics": {"completedJobs": 1, "totalJobs": 1}})
    );
}

#[tokio::test]
async fn since_and_default_range_read_the_last_hour() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    // The clock reads T0 + 120 s: the last 90 s hold only trace 2's span (T0 + 31 s).
    let path = "/api/metrics/query?q=%7B%7D%20%7C%20count_over_time()&since=90s";
    let v = body_json(&call(&s, path, &[]).await.2);
    assert_eq!(v["series"][0]["value"], json!(1.0));
    let path = "/api/metrics/query?q=%7B%7D%20%7C%20count_over_time()";
    let v = body_json(&call(&s, path, &[]).await.2);
    assert_eq!(v["series"][0]["value"], json!(3.0));
}

#[tokio::test]
async fn bad_requests_get_tempos_texts() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let start = T0 / S;
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "/api/metrics/query_range?q=%7B%7D&start={start}&end={}",
                start + 60
            ),
            "not a metrics query",
        ),
        (
            format!("/api/metrics/query_range?start={start}&end={}", start + 60),
            "parse error : syntax error: unexpected $end",
        ),
        (
            "/api/metrics/query_range?q=%7B%7D%20%7C%20rate()&start=yesterday".to_string(),
            "rpc error: code = Code(400) desc = could not parse 'start' parameter: strconv.ParseInt: parsing \"yesterday\": invalid syntax",
        ),
        (
            "/api/metrics/query_range?q=%7B%7D%20%7C%20rate()&since=1hour".to_string(),
            "rpc error: code = Code(400) desc = could not parse 'since' parameter: not a valid duration string: \"1hour\"",
        ),
        (
            format!(
                "/api/metrics/query_range?q=%7B%7D%20%7C%20rate()&start={start}&end={}&step=1ms",
                start + 3600
            ),
            "step of 1ms is too small, minimum step for given range is 360ms",
        ),
        (
            format!(
                "/api/metrics/query_range?q=%7B%7D%20%7C%20rate()&start={}&end={start}",
                start + 60
            ),
            "end must be greater than start",
        ),
        (
            format!(
                "/api/metrics/query?q=%7B%7D%20%7C%20rate()&start={}&end={start}",
                start + 60
            ),
            "end must be greater than start",
        ),
        (
            format!(
                "/api/metrics/query_range?q=%7B%7D%20%7C%20rate()&start={}&end={start}&step=60",
                start - 2 * 86_400
            ),
            "metrics query time range exceeds the maximum allowed duration of 24h0m0s",
        ),
        (
            format!(
                "/api/metrics/query_range?q=%7B%7D%20%7C%20quantile_over_time(duration%2C%202)&start={start}&end={}",
                start + 60
            ),
            "compiling query: quantile must be between 0 and 1: 2",
        ),
        (
            format!(
                "/api/metrics/query_range?q=%7B%20.a%20%3D%20%7D%20%7C%20rate()&start={start}&end={}",
                start + 60
            ),
            "parse error at line 1, col 8: syntax error: unexpected }",
        ),
    ];
    for (path, want) in cases {
        let (status, ct, body) = call(&s, &path, &[]).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(ct, "text/plain; charset=utf-8", "{path}");
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("{want}\n"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn tenants_see_only_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    let path = format!(
        "/api/metrics/query?q=%7B%7D%20%7C%20count_over_time()&start={}&end={}",
        T0 / S,
        T0 / S + 60
    );
    assert_eq!(call(&s, &path, &[]).await.0, 401);
    let v = body_json(&call(&s, &path, &[("X-Scope-OrgID", "t1")]).await.2);
    assert_eq!(v["series"][0]["value"], json!(3.0));
    let v = body_json(&call(&s, &path, &[("X-Scope-OrgID", "t2")]).await.2);
    assert!(v.get("series").is_none(), "{v}");
}

#[tokio::test]
async fn series_limit_gives_a_partial_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let path = range_path(
        "{} | count_over_time() by (resource.service.name)",
        "&maxSeries=1",
    );
    let v = body_json(&call(&s, &path, &[]).await.2);
    assert_eq!(v["series"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["status"], json!("PARTIAL"));
    assert_eq!(
        v["message"],
        json!(
            "Response exceeds maximum series limit of 1, a partial response is returned. Warning: the accuracy of each individual value is not guaranteed."
        )
    );
}

#[tokio::test]
async fn an_instant_range_is_checked_before_its_query() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let path = format!(
        "/api/metrics/query?q=%7B&start={}&end={}",
        T0 / S + 60,
        T0 / S
    );
    let (status, _, body) = call(&s, &path, &[]).await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).into_owned()),
        (400, "end must be greater than start\n".to_string())
    );
}
