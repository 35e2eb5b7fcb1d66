//! `sonde all` end to end on the real kernel: a curl to a traced python3 http.server becomes a
//! span in the embedded store, findable through Tempo's HTTP API (search and trace by id)
//! within a few seconds — the path Grafana's Tempo datasource takes.
use std::time::{Duration, Instant};

use sonde_e2e::{agent::start_sonde, curl, free_port, python_http_server, require_kernel};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_to_python_is_findable_by_search_and_by_id() {
    require_kernel!();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("hello.txt"), "hello\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = python_http_server(www.path(), port);
    let (api, grpc, http) = (free_port(), free_port(), free_port());
    let _all = start_sonde(
        "all",
        &["--port".into(), port.to_string()],
        data.path(),
        [api, grpc, http],
        "capturing",
    );
    let base = format!("http://127.0.0.1:{api}");
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/api/echo"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .trim(),
        "echo"
    );

    let (ok, body) = curl(&[&format!("http://127.0.0.1:{port}/hello.txt")]);
    assert!(ok && body == "hello\n");
    let acked = Instant::now();

    // Search: the span's path, as Grafana's search builder would ask.
    let q = r#"{ span.url.path = "/hello.txt" && span.http.response.status_code = 200 }"#;
    let mut trace_id = None;
    while acked.elapsed() < Duration::from_secs(10) {
        let resp = client
            .get(format!("{base}/api/search"))
            .query(&[("q", q)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let json: serde_json::Value = resp.json().await.unwrap();
        if let Some(t) = json["traces"].as_array().and_then(|a| a.first()) {
            assert!(
                t["rootTraceName"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("GET")),
                "{t}"
            );
            trace_id = t["traceID"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let trace_id = trace_id.expect("the request is findable by search within 10 s");
    eprintln!("findable by search after {:?}", acked.elapsed());

    // By id, as Grafana asks first (v2), then v1.
    let v2: serde_json::Value = client
        .get(format!("{base}/api/v2/traces/{trace_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = v2.to_string();
    assert!(
        text.contains("/hello.txt") && text.contains("http.request.method"),
        "{text}"
    );
    let v1 = client
        .get(format!("{base}/api/traces/{trace_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(v1.status(), 200);
    let v1: serde_json::Value = v1.json().await.unwrap();
    let spans = &v1["batches"][0]["scopeSpans"][0]["spans"];
    assert_eq!(spans.as_array().map(Vec::len), Some(1), "{v1}");
    assert_eq!(spans[0]["kind"], "SPAN_KIND_SERVER");

    // An unknown id is a 404, as in Tempo.
    let missing = client
        .get(format!("{base}/api/traces/{}", "ab".repeat(16)))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
