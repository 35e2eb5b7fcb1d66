//! End to end on the real kernel with a ring buffer too small for the load (64 KiB, drained
//! every 100 ms): records are lost, and the spans that are exported must still be right.
//! Keep-alive connections whose records were lost resume at the next request: no request is
//! paired with another request's response (a 404 reported as 500, a 201 as 200).
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use sonde_e2e::{
    agent::{metric, scrape, start_agent},
    free_port,
    otlp::{attr, start_receiver},
    require_kernel,
};

const THREADS: usize = 4;
const PER_THREAD: usize = 1500;

/// Answers `/s/<status>/<n>` with that status and a body of a few bytes, keeping the
/// connection alive (HTTP/1.1).
const SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        status = int(self.path.split("/")[2])
        body = b"x" * (status % 7)
        # Head and body in one write (two small writes would wait on delayed ACKs).
        head = f"HTTP/1.1 {status} S\r\nContent-Length: {len(body)}\r\n\r\n"
        self.wfile.write(head.encode() + body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// Each thread keeps one connection and cycles through statuses.
const CLIENT: &str = r#"
import http.client, sys, threading
port, threads, per = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
statuses = [200, 201, 404, 500, 202, 403]
bad = []
def run(t):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(per):
        s = statuses[(i + t) % len(statuses)]
        c.request("GET", f"/s/{s}/{t}-{i}")
        r = c.getresponse()
        r.read()
        if r.status != s:
            bad.append((s, r.status))
    c.close()
ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print(len(bad))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_ring_loss_spans_stay_right() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sonde.yaml");
    std::fs::write(
        &config,
        "agent:\n  ring_buffer_bytes: 65536\n  drain_interval: 100ms\n",
    )
    .unwrap();
    let port = free_port();
    let _server = sonde_e2e::python_server(SERVER, port);
    let metrics = free_port();
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(
        addr,
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen-address",
            &format!("127.0.0.1:{metrics}"),
        ],
    );
    sonde_e2e::python_client_without_failures(
        CLIENT,
        &[port, THREADS as u16, PER_THREAD as u16].map(|v| v.to_string()),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = scrape(metrics).await;
    let lost = metric(&text, "sonde_agent_kernel_lost_records_total");
    let resyncs = metric(&text, "sonde_agent_conn_ring_loss_resyncs_total");
    // The exchanges dropped are counted next to the RED numbers, per service.
    let skipped: u64 = text
        .lines()
        .filter(|l| l.starts_with("sonde_red_skipped_exchanges_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(lost > 0, "the ring was meant to overflow: {text}");
    let spans: Vec<_> = received
        .spans()
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| attr(s, "server.port") == Some(port.to_string()))
        .filter(|s| attr(s, "url.path").is_some_and(|p| p.starts_with("/s/")))
        .collect();
    let mut wrong = Vec::new();
    for s in &spans {
        let path = attr(s, "url.path").unwrap();
        let want = path.split('/').nth(2).unwrap().to_owned();
        let got = attr(s, "http.response.status_code");
        let size = attr(s, "http.response.body.size");
        let want_size = (want.parse::<u64>().unwrap() % 7).to_string();
        if got.as_deref() != Some(want.as_str()) || size.as_deref() != Some(want_size.as_str()) {
            wrong.push(format!(
                "{:?} {path}: status {got:?}, size {size:?}",
                s.kind
            ));
        }
    }
    let total = 2 * THREADS * PER_THREAD;
    eprintln!(
        "{} of {total} spans exported, {lost} records lost, {resyncs} resyncs",
        spans.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {} spans wrong after ring loss: {:?}",
        wrong.len(),
        spans.len(),
        &wrong[..wrong.len().min(20)]
    );
    assert!(
        resyncs > 0,
        "{lost} records lost, no connection resynchronised"
    );
    assert!(
        skipped > 0,
        "{lost} records lost: no exchange counted as skipped per service"
    );
    let kinds = |k: SpanKind| spans.iter().filter(|s| s.kind == k as i32).count();
    assert!(
        kinds(SpanKind::Client) > 0 && kinds(SpanKind::Server) > 0,
        "spans of both sides still exported"
    );
}
