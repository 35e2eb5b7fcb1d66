//! The store's metrics generator end to end: the real `sonde store`, the OpenTelemetry Python
//! SDK sending two services that call each other (with errors and an uninstrumented peer), and
//! a real Prometheus receiving the remote-written series (and scraping `/metrics/generator`),
//! queried back; then Prometheus down for 30 s while ingest goes on.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use sonde_e2e::{
    agent::{metric, start_sonde},
    free_port,
    prometheus::{self, Prometheus},
};

/// Skip (printing why) when Prometheus or the Python SDK is missing; with
/// `SONDE_REQUIRE_KERNEL=1` (CI) a skip is a failure.
fn skip() -> bool {
    let sdk = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .status()
        .is_ok_and(|s| s.success());
    let why = prometheus::unavailable().or_else(|| {
        (!sdk).then(|| {
            "the OpenTelemetry Python SDK is missing (pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http)".to_string()
        })
    });
    if let Some(why) = why {
        if std::env::var("SONDE_REQUIRE_KERNEL").is_ok_and(|v| v == "1") {
            panic!("generator test cannot run and SONDE_REQUIRE_KERNEL=1: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return true;
    }
    false
}

/// What `programs/two_services.py` sent.
struct Sent {
    traces: Vec<String>,
    failed: u64,
}

fn send(otlp_http: u16, n: usize) -> Sent {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/two_services.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("http://127.0.0.1:{otlp_http}"))
        .arg(n.to_string())
        .output()
        .expect("run two_services.py");
    assert!(
        out.status.success(),
        "two_services.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["flushed"], true, "the store did not take every span: {v}");
    Sent {
        traces: v["traces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        failed: v["failed"].as_u64().unwrap_or(0),
    }
}

fn store_config(dir: &Path, prom_port: u16, queue: usize) -> String {
    let path = dir.join("sonde.yaml");
    std::fs::write(
        &path,
        format!(
            "store:\n  generator:\n    collection_interval: 1s\n    service_graphs:\n      wait: 2s\n    \
             remote_write:\n      url: http://127.0.0.1:{prom_port}/api/v1/write\n      \
             max_pending_requests: {queue}\n      min_backoff: 100ms\n      max_backoff: 1s\n"
        ),
    )
    .expect("write sonde.yaml");
    path.display().to_string()
}

/// A Prometheus receiving remote write (with `prom_config`) and a `sonde store`
/// remote-writing to it with a queue of `queue` requests; the store's three ports.
async fn start(
    dir: &Path,
    prom_config: impl FnOnce(u16) -> String,
    queue: usize,
) -> (Prometheus, sonde_e2e::Proc, [u16; 3]) {
    let ports = [free_port(), free_port(), free_port()];
    let prom_dir = dir.join("prom");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom = Prometheus::start_with(
        &prom_dir,
        &prom_config(ports[0]),
        &["--web.enable-remote-write-receiver"],
    )
    .await;
    let config = store_config(dir, prom.port, queue);
    let store = start_sonde(
        "store",
        &["--config".into(), config],
        &dir.join("data"),
        ports,
        "store listening",
    );
    (prom, store, ports)
}

/// Poll `promql` (one sum) until it equals `want`, for up to 60 s; the last value.
async fn until(prom: &Prometheus, promql: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = prom.query(promql).await.first().map_or(f64::NAN, |r| r.1);
        if v == want || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

const RW: &str = r#"__metrics_gen_instance!="""#;

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_gets_span_metrics_and_the_service_graph() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Remote write in, and a scrape of the generator's route as a homelab would set it up.
    let (prom, _store, ports) = start(
        dir.path(),
        |api| {
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: scrape\n    \
                 metrics_path: /metrics/generator\n    static_configs:\n      - targets: ['127.0.0.1:{api}']\n"
            )
        },
        64,
    )
    .await;
    let n = 12;
    let sent = send(ports[2], n);
    let n = n as f64;
    let failed = sent.failed as f64;
    assert_eq!(failed, 4.0);

    // span-metrics, as the APM table queries them.
    let q = |s: &str| format!("sum(traces_spanmetrics_calls_total{{{RW},{s}}})");
    assert_eq!(
        until(
            &prom,
            &q(r#"service="backend",span_kind="SPAN_KIND_SERVER""#),
            n
        )
        .await,
        n
    );
    assert_eq!(
        until(
            &prom,
            &q(r#"service="backend",status_code="STATUS_CODE_ERROR""#),
            failed
        )
        .await,
        failed
    );
    assert_eq!(
        until(
            &prom,
            &q(r#"service="frontend",span_name="POST /pay",span_kind="SPAN_KIND_CLIENT""#),
            n
        )
        .await,
        n
    );
    let lat = format!(
        r#"sum(traces_spanmetrics_latency_count{{{RW},service="frontend",span_name="GET /checkout"}})"#
    );
    assert_eq!(until(&prom, &lat, n).await, n);

    // service-graphs: the paired edge, its failures, and both virtual nodes.
    let edge = |c: &str, s: &str, extra: &str| {
        format!(
            r#"sum(traces_service_graph_request_total{{{RW},client="{c}",server="{s}"{extra}}})"#
        )
    };
    assert_eq!(until(&prom, &edge("frontend", "backend", ""), n).await, n);
    let vn = r#",connection_type="virtual_node""#;
    assert_eq!(until(&prom, &edge("user", "frontend", vn), n).await, n);
    assert_eq!(
        until(&prom, &edge("frontend", "payments-legacy", vn), n).await,
        n
    );
    let failed_q = format!(
        r#"sum(traces_service_graph_request_failed_total{{{RW},client="frontend",server="backend"}})"#
    );
    assert_eq!(until(&prom, &failed_q, failed).await, failed);
    let server_s = format!(
        r#"sum(traces_service_graph_request_server_seconds_count{{{RW},client="frontend",server="backend"}})"#
    );
    assert_eq!(until(&prom, &server_s, n).await, n);
    // Grafana's service map: `sum by (client, server) (rate(...))` needs the first 0 sample.
    let map = prom
        .query(&format!(
            "sum by (client, server) (increase(traces_service_graph_request_total{{{RW}}}[5m]))"
        ))
        .await;
    let pairs: std::collections::BTreeSet<(String, String)> = map
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(l, _)| {
            let s = |k: &str| l.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            (s("client"), s("server"))
        })
        .collect();
    for (c, s) in [
        ("frontend", "backend"),
        ("user", "frontend"),
        ("frontend", "payments-legacy"),
    ] {
        assert!(
            pairs.contains(&(c.into(), s.into())),
            "{c} → {s} missing from the map: {pairs:?}"
        );
    }

    // Exemplars point at the traces sent.
    let ids: Vec<String> = sent
        .traces
        .iter()
        .map(|t| t.trim_start_matches('0').to_string())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ex = prom
            .exemplars(
                "traces_spanmetrics_latency_bucket",
                Duration::from_secs(600),
            )
            .await;
        let hit = ex
            .iter()
            .filter_map(|l| l.get("traceID").and_then(|v| v.as_str()))
            .any(|t| ids.iter().any(|i| i == t));
        if hit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no exemplar with a sent trace ID: {ex:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The same counts scraped from /metrics/generator.
    let scraped = r#"sum(traces_service_graph_request_total{job="scrape",client="frontend",server="backend"})"#;
    assert_eq!(until(&prom, scraped, n).await, n);
}

/// The store's RSS in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn store_metrics(api: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{api}/metrics"))
        .await
        .expect("store /metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_down_for_30s_drops_counted_then_series_resume() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut prom, store, ports) = start(
        dir.path(),
        |_| "global:\n  scrape_interval: 15s\n".into(),
        3,
    )
    .await;
    let calls = format!(
        r#"sum(traces_spanmetrics_calls_total{{{RW},service="backend",span_kind="SPAN_KIND_SERVER"}})"#
    );
    send(ports[2], 6);
    assert_eq!(until(&prom, &calls, 6.0).await, 6.0);
    let rss0 = rss_kib(store.pid());

    prom.stop();
    let down = Instant::now();
    let mut total = 6;
    while down.elapsed() < Duration::from_secs(30) {
        // The store keeps acknowledging every span.
        send(ports[2], 4);
        total += 4;
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let text = store_metrics(ports[0]).await;
    let dropped = metric(
        &text,
        r#"sonde_store_generator_remote_write_samples_dropped_total{tenant="single-tenant",reason="queue_full"}"#,
    );
    assert!(dropped > 0, "nothing dropped while Prometheus was down");
    let pending = metric(&text, "sonde_store_generator_remote_write_pending_requests");
    assert!(pending <= 3, "queue past its bound: {pending}");
    let retries = metric(
        &text,
        r#"sonde_store_generator_remote_write_retries_total{tenant="single-tenant"}"#,
    );
    assert!(retries > 0);
    let grown = rss_kib(store.pid()).saturating_sub(rss0);
    assert!(
        grown < 64 * 1024,
        "store RSS grew {grown} KiB while Prometheus was down"
    );

    prom.resume().await;
    let total = total as f64;
    assert_eq!(
        until(&prom, &calls, total).await,
        total,
        "series did not resume"
    );
}
