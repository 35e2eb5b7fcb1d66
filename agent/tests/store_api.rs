//! The store binary against the real OpenTelemetry Python SDK (gRPC and HTTP exporters):
//! Tempo's JSON and protobuf shapes checked field by field, search, tags, errors, /metrics.
#[path = "store/support.rs"]
mod support;

use base64::{Engine, engine::general_purpose::STANDARD};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde_json::Value;
use support::*;

#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TracesData>,
    #[prost(message, optional, tag = "2")]
    metrics: Option<TraceByIdMetrics>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SearchResponse {
    #[prost(message, repeated, tag = "1")]
    traces: Vec<TraceSearchMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TraceSearchMetadata {
    #[prost(string, tag = "1")]
    trace_id: String,
    #[prost(string, tag = "2")]
    root_service_name: String,
    #[prost(uint64, tag = "4")]
    start_time_unix_nano: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdMetrics {
    #[prost(uint64, tag = "1")]
    inspected_bytes: u64,
}

async fn get(url: &str, accept: Option<&str>) -> (u16, String, Vec<u8>) {
    let c = reqwest::Client::new();
    let mut r = c.get(url);
    if let Some(a) = accept {
        r = r.header("Accept", a);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, resp.bytes().await.expect("body").to_vec())
}

async fn get_json(url: &str) -> Value {
    let (status, ct, body) = get(url, None).await;
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    assert_eq!(ct, "application/json", "{url}");
    serde_json::from_slice(&body).expect("json")
}

fn b64_of_hex(h: &str) -> String {
    STANDARD.encode(hex::decode(h).unwrap())
}

fn attr<'a>(attrs: &'a Value, key: &str) -> &'a Value {
    attrs
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
        .unwrap_or(&Value::Null)
}

fn all_spans(batches: &Value) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for rs in batches.as_array().unwrap() {
        for ss in rs["scopeSpans"].as_array().unwrap() {
            for s in ss["spans"].as_array().unwrap() {
                out.push((rs["resource"].clone(), s.clone()));
            }
        }
    }
    out
}

fn check_trace_json(batches: &Value, t: &Value, service: &str, i: usize) {
    let spans = all_spans(batches);
    assert_eq!(spans.len(), 2, "{batches}");
    let tid = t["trace_id"].as_str().unwrap();
    let root_id = t["root_span_id"].as_str().unwrap();
    let (res, root) = spans
        .iter()
        .find(|(_, s)| s["spanId"] == b64_of_hex(root_id))
        .expect("root span");
    let (_, child) = spans
        .iter()
        .find(|(_, s)| s["spanId"] != b64_of_hex(root_id))
        .expect("child span");
    assert_eq!(
        attr(&res["attributes"], "service.name"),
        &serde_json::json!({"stringValue": service})
    );
    assert_eq!(root["traceId"], b64_of_hex(tid));
    assert_eq!(root["name"], format!("GET /items/{i}"));
    assert_eq!(root["kind"], "SPAN_KIND_SERVER");
    assert_eq!(
        root["startTimeUnixNano"],
        t["start"].as_u64().unwrap().to_string()
    );
    assert_eq!(
        root["endTimeUnixNano"],
        t["end"].as_u64().unwrap().to_string()
    );
    assert!(
        root.get("parentSpanId").is_none(),
        "root has no parent: {root}"
    );
    assert_eq!(root["status"], serde_json::json!({}));
    let code = if i % 2 == 1 { "500" } else { "200" };
    assert_eq!(
        attr(&root["attributes"], "http.response.status_code"),
        &serde_json::json!({"intValue": code})
    );
    assert_eq!(
        attr(&root["attributes"], "ratio"),
        &serde_json::json!({"doubleValue": 0.5})
    );
    assert_eq!(
        attr(&root["attributes"], "cached"),
        &serde_json::json!({"boolValue": i.is_multiple_of(2)})
    );
    assert_eq!(child["parentSpanId"], b64_of_hex(root_id));
    assert_eq!(child["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(child["events"][0]["name"], "query.start");
    assert!(child["events"][0]["timeUnixNano"].is_string());
    assert_eq!(
        attr(&child["events"][0]["attributes"], "rows"),
        &serde_json::json!({"intValue": "3"})
    );
    if i % 2 == 1 {
        assert_eq!(
            child["status"],
            serde_json::json!({"code": "STATUS_CODE_ERROR", "message": "deadlock"})
        );
    } else {
        assert_eq!(child["status"], serde_json::json!({}));
    }
}

async fn wait_for_blocks(api: &str) {
    for _ in 0..100 {
        let (_, _, body) = get(&format!("{api}/metrics"), None).await;
        let text = String::from_utf8_lossy(&body).to_string();
        if text
            .lines()
            .any(|l| l.starts_with("tempodb_blocklist_length{") && !l.ends_with(" 0"))
        {
            assert!(
                text.contains(
                    r#"tempodb_backend_bytes_total{tenant="single-tenant",status="live"}"#
                ),
                "{text}"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no block was cut");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_traces_answer_in_tempo_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreProc::start(
        dir.path(),
        "  max_block_duration: 1s\n  trace_idle_period: 300ms\n",
    );
    let t_start = now_ns() / 1_000_000_000 - 5;
    let http = python_send("http", &store.http, "py-http", 3, None);
    let grpc = python_send("grpc", &store.grpc, "py-grpc", 3, None);
    let t_end = now_ns() / 1_000_000_000 + 5;
    let api = store.api.clone();

    for phase in ["live", "blocks"] {
        for (sent, service) in [(&http, "py-http"), (&grpc, "py-grpc")] {
            for (i, t) in sent["traces"].as_array().unwrap().iter().enumerate() {
                let tid = t["trace_id"].as_str().unwrap();
                let v1 = get_json(&format!("{api}/api/traces/{tid}")).await;
                check_trace_json(&v1["batches"], t, service, i);
                let upper = get_json(&format!("{api}/api/traces/{}", tid.to_uppercase())).await;
                assert_eq!(upper, v1, "ids are case-insensitive ({phase})");
                let v2 = get_json(&format!("{api}/api/v2/traces/{tid}")).await;
                check_trace_json(&v2["trace"]["resourceSpans"], t, service, i);
                assert!(v2["metrics"]["inspectedBytes"].is_string());
                let (status, ct, body) = get(
                    &format!("{api}/api/traces/{tid}"),
                    Some("application/protobuf"),
                )
                .await;
                assert_eq!((status, ct.as_str()), (200, "application/protobuf"));
                let td = TracesData::decode(body.as_slice()).unwrap();
                assert_eq!(
                    td.resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .map(|s| s.spans.len())
                        .sum::<usize>(),
                    2
                );
                let (status, _, body) = get(
                    &format!("{api}/api/v2/traces/{tid}"),
                    Some("application/json, application/protobuf"),
                )
                .await;
                assert_eq!(status, 200);
                let r = TraceByIdResponse::decode(body.as_slice()).unwrap();
                assert_eq!(
                    r.trace.unwrap().resource_spans[0].scope_spans[0]
                        .scope
                        .as_ref()
                        .unwrap()
                        .name,
                    "sonde-test"
                );
                assert!(r.metrics.unwrap().inspected_bytes > 0);
            }
        }

        // TraceQL search: hex ids, root names, span sets with the referenced attribute.
        let q = "{ span.http.response.status_code >= 500 }";
        let url = format!(
            "{api}/api/search?q={}&start={t_start}&end={t_end}&limit=50",
            urlencode(q)
        );
        let res = get_json(&url).await;
        let traces = res["traces"].as_array().unwrap();
        assert_eq!(
            traces.len(),
            2,
            "one error trace per service ({phase}): {res}"
        );
        for tr in traces {
            let id = tr["traceID"].as_str().unwrap();
            let sent = [&http, &grpc]
                .iter()
                .flat_map(|s| s["traces"].as_array().unwrap().iter())
                .find(|t| t["trace_id"].as_str().unwrap().trim_start_matches('0') == id)
                .expect("a sent trace");
            assert_eq!(tr["rootTraceName"], "GET /items/1");
            assert!(tr["rootServiceName"].as_str().unwrap().starts_with("py-"));
            assert_eq!(
                tr["startTimeUnixNano"],
                sent["start"].as_u64().unwrap().to_string()
            );
            let set = &tr["spanSets"][0];
            assert_eq!(tr["spanSet"], *set);
            assert_eq!(set["matched"], 1);
            let sp = &set["spans"][0];
            assert_eq!(sp["spanID"], sent["root_span_id"]);
            assert!(sp["durationNanos"].is_string() && sp["startTimeUnixNano"].is_string());
            assert!(
                sp.get("name").is_none(),
                "name only when the query references it"
            );
            assert_eq!(
                sp["attributes"][0],
                serde_json::json!({"key": "http.response.status_code", "value": {"intValue": "500"}})
            );
            let svc = tr["rootServiceName"].as_str().unwrap();
            assert_eq!(
                tr["serviceStats"][svc],
                serde_json::json!({"spanCount": 2, "errorCount": 1})
            );
        }
        assert_eq!(res["metrics"]["completedJobs"], 1);
        let (status, ct, body) = get(&url, Some("application/protobuf")).await;
        assert_eq!((status, ct.as_str()), (200, "application/protobuf"));
        let pb = SearchResponse::decode(body.as_slice()).unwrap();
        let mut pb_ids: Vec<String> = pb.traces.iter().map(|t| t.trace_id.clone()).collect();
        let mut json_ids: Vec<String> = traces
            .iter()
            .map(|t| t["traceID"].as_str().unwrap().to_string())
            .collect();
        pb_ids.sort();
        json_ids.sort();
        assert_eq!(pb_ids, json_ids);
        assert!(
            pb.traces
                .iter()
                .all(|t| t.start_time_unix_nano > 0 && t.root_service_name.starts_with("py-"))
        );

        let mq = format!(
            "{api}/api/search?q={}&start={t_start}&end={t_end}",
            urlencode("{ span.http.response.status_code >= 500 } | rate()")
        );
        assert_eq!(
            get_json(&mq).await["traces"].as_array().unwrap().len(),
            2,
            "metrics query runs its spanset part"
        );
        let res = get_json(&format!(
            "{api}/api/search?tags={}&start={t_start}&end={t_end}",
            urlencode("service.name=py-http")
        ))
        .await;
        assert_eq!(res["traces"].as_array().unwrap().len(), 3, "{res}");
        assert!(res["traces"][0].get("spanSets").is_none());
        let res = get_json(&format!(
            "{api}/api/search?tags={}&minDuration=1h&start={t_start}&end={t_end}",
            urlencode("service.name=py")
        ))
        .await;
        assert_eq!(
            res["traces"],
            serde_json::json!([]),
            "a 1h minimum matches nothing"
        );
        assert_eq!(res["metrics"]["totalJobs"], 1);

        let tags = get_json(&format!("{api}/api/v2/search/tags")).await;
        let scope = |name: &str| {
            tags["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .cloned()
        };
        assert!(
            scope("resource").unwrap()["tags"]
                .as_array()
                .unwrap()
                .contains(&Value::from("service.name"))
        );
        assert!(
            scope("span").unwrap()["tags"]
                .as_array()
                .unwrap()
                .contains(&Value::from("http.route"))
        );
        assert!(
            scope("intrinsic").unwrap()["tags"]
                .as_array()
                .unwrap()
                .contains(&Value::from("duration"))
        );
        let v1tags = get_json(&format!("{api}/api/search/tags")).await;
        assert!(
            v1tags["tagNames"]
                .as_array()
                .unwrap()
                .contains(&Value::from("db.system"))
        );
        assert!(
            !v1tags["tagNames"]
                .as_array()
                .unwrap()
                .contains(&Value::from("duration"))
        );
        let vals = get_json(&format!(
            "{api}/api/v2/search/tag/resource.service.name/values"
        ))
        .await;
        let mut got: Vec<&Value> = vals["tagValues"].as_array().unwrap().iter().collect();
        got.sort_by_key(|v| v["value"].as_str().unwrap().to_string());
        assert_eq!(
            got,
            vec![
                &serde_json::json!({"type":"string","value":"py-grpc"}),
                &serde_json::json!({"type":"string","value":"py-http"})
            ]
        );
        let vals = get_json(&format!(
            "{api}/api/v2/search/tag/span.http.response.status_code/values?q={}",
            urlencode("{ resource.service.name = \"py-http\" }")
        ))
        .await;
        let mut got: Vec<String> = vals["tagValues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                format!(
                    "{}:{}",
                    v["type"].as_str().unwrap(),
                    v["value"].as_str().unwrap()
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, vec!["int:200", "int:500"]);
        let vals = get_json(&format!("{api}/api/v2/search/tag/status/values")).await;
        assert_eq!(
            vals["tagValues"][1],
            serde_json::json!({"type": "keyword", "value": "error"})
        );
        let vals = get_json(&format!("{api}/api/search/tag/http.route/values")).await;
        assert_eq!(vals["tagValues"], serde_json::json!(["/items/{id}"]));
        if phase == "live" {
            wait_for_blocks(&api).await;
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_codes_and_error_bodies_match_tempo() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreProc::start(dir.path(), "");
    let api = &store.api;
    let cases: &[(&str, u16, &str)] = &[
        ("/ready", 200, "ready\n"),
        ("/api/echo", 200, "echo\n"),
        (
            "/api/traces/xyz",
            400,
            "trace IDs can only contain hex characters: invalid character 'x' at position 1\n",
        ),
        (
            "/api/traces/0123456789abcdef0123456789abcdef01",
            400,
            "trace IDs can't be larger than 128 bits\n",
        ),
        ("/api/traces/1234", 404, ""),
        (
            "/api/search?q=%7B%20span.foo%20%3D%20%7D",
            400,
            "invalid TraceQL query: parse error at line 1, col 14: syntax error: unexpected }\n",
        ),
        (
            "/api/search?q=%7B%7D&tags=a%3Db",
            400,
            "invalid request: can't specify tags and q in the same query\n",
        ),
        (
            "/api/search?limit=0",
            400,
            "invalid limit: must be a positive number\n",
        ),
        (
            "/api/search?limit=999999999",
            400,
            "limit 999999999 exceeds max limit 10000\n",
        ),
        (
            "/api/search?start=20&end=10",
            400,
            "http parameter start must be before end. received start=20 end=10\n",
        ),
        (
            "/api/search?minDuration=fast",
            400,
            "invalid minDuration: time: invalid duration \"fast\"\n",
        ),
        (
            "/api/search?spss=1000",
            400,
            "spans per span set exceeds 100. received 1000\n",
        ),
        (
            "/api/search/tags?scope=bogus",
            400,
            "invalid scope: bogus\n",
        ),
        (
            "/api/v2/search/tag/service.name/values",
            400,
            "please provide a valid tagName: service.name\n",
        ),
        ("/nope", 404, "404 page not found\n"),
    ];
    for (path, code, body) in cases {
        let (status, ct, b) = get(&format!("{api}{path}"), None).await;
        assert_eq!(
            (status, String::from_utf8_lossy(&b).as_ref()),
            (*code, *body),
            "{path}"
        );
        if *code == 400 {
            assert_eq!(ct, "text/plain; charset=utf-8", "{path}");
        }
    }
    assert_eq!(
        get_json(&format!("{api}/api/v2/traces/1234")).await,
        serde_json::json!({"trace": {}, "metrics": {}})
    );
    let (status, _, body) = get(
        &format!("{api}/api/v2/traces/1234"),
        Some("application/protobuf"),
    )
    .await;
    assert_eq!((status, body.len()), (200, 0));
    let v = get_json(&format!("{api}/api/status/buildinfo")).await;
    assert!(
        v["version"].as_str().unwrap().split('.').count() == 3,
        "semver: {v}"
    );
    assert_eq!(
        get_json(&format!("{api}/api/search")).await["traces"],
        serde_json::json!([])
    );
    assert_eq!(
        get_json(&format!("{api}/api/v2/search/tags?scope=span")).await,
        serde_json::json!({"scopes": [], "metrics": {}})
    );
}
