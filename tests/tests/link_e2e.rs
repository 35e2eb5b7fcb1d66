//! Connected traces end to end on the real kernel: curl (→ nginx `proxy_pass`) → a middle
//! hop that calls a python backend without passing headers on → the backend. The agent traces
//! every process; with a python threaded service (one thread per connection) as the middle,
//! each curl request must come out as one trace, curl client → front server → front client →
//! backend server, with the right parent ids and `sonde.link` values, at concurrency 1 and 20;
//! an incoming `traceparent` is honoured. With Node.js, Go and Java as the middle hop, the
//! floor measured by `cargo xtask bench connect` holds and no span lands in a wrong trace.
use std::{collections::HashMap, path::Path, process::Command, time::Duration};

use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    trace::v1::{Span, span::SpanKind},
};
use sonde_e2e::{
    agent::{metric, scrape, start_agent},
    free_port,
    otlp::{Received, attr, start_receiver},
    require_kernel,
    servers::{hop as start_hop, nginx_proxy},
};

const WAIT: Duration = Duration::from_secs(30);

/// A copy of curl under a name of this test's own, so that the agent traces it (by
/// executable glob) and no other curl.
fn curl_copy(dir: &Path) -> std::path::PathBuf {
    let path = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v curl"])
            .output()
            .expect("sh")
            .stdout,
    )
    .expect("utf-8");
    let copy = dir.join("sonde-link-curl");
    std::fs::copy(path.trim(), &copy).expect("copy curl");
    copy
}

type Spans = [(Vec<KeyValue>, Span)];

/// One span each request must make: its kind, path (`{n}` is the request's number), the
/// port it was addressed to, and how it may be linked to the hop before it.
struct Hop {
    kind: SpanKind,
    path: &'static str,
    port: u16,
    links: &'static [&'static str],
}

const fn hop(kind: SpanKind, path: &'static str, port: u16, links: &'static [&'static str]) -> Hop {
    Hop {
        kind,
        path,
        port,
        links,
    }
}

/// curl → front → backend, as the agent must link them.
fn python_hops(front: u16, back: u16) -> Vec<Hop> {
    vec![
        hop(SpanKind::Client, "/front/{n}", front, &["none"]),
        hop(SpanKind::Server, "/front/{n}", front, &["connection"]),
        hop(SpanKind::Client, "/backend/front/{n}", back, &["thread"]),
        hop(
            SpanKind::Server,
            "/backend/front/{n}",
            back,
            &["connection"],
        ),
    ]
}

/// The spans of request `n`, one per hop, when each arrived exactly once.
fn chain(spans: &Spans, hops: &[Hop], n: usize) -> Option<Vec<Span>> {
    hops.iter()
        .map(|h| {
            let path = h.path.replace("{n}", &n.to_string());
            let mut found: Vec<Span> = spans
                .iter()
                .filter(|(_, s)| {
                    s.kind == h.kind as i32
                        && attr(s, "url.path").as_deref() == Some(path.as_str())
                        && attr(s, "server.port") == Some(h.port.to_string())
                })
                .map(|(_, s)| s.clone())
                .collect();
            (found.len() == 1).then(|| found.remove(0))
        })
        .collect()
}

fn link(s: &Span) -> String {
    attr(s, "sonde.link").unwrap_or_default()
}

/// Whether `child` hangs under `parent` in the same trace, linked by `how`.
fn child_of(child: &Span, parent: &Span, how: &str) -> bool {
    child.trace_id == parent.trace_id
        && child.parent_span_id == parent.span_id
        && link(child) == how
}

/// Runs `requests` curl requests for `{url}/front/0..requests`, `concurrency` at a time.
fn run_requests(curl: &Path, url: &str, requests: usize, concurrency: usize, header: Option<&str>) {
    let mut next = 0;
    while next < requests {
        let batch: Vec<_> = (next..requests.min(next + concurrency))
            .map(|n| {
                let mut cmd = Command::new(curl);
                cmd.args(["-sf", "-o", "/dev/null"]);
                if let Some(h) = header {
                    cmd.args(["-H", &format!("traceparent: {h}")]);
                }
                cmd.arg(format!("{url}/front/{n}"));
                cmd.spawn().expect("curl")
            })
            .collect();
        next += batch.len();
        for mut c in batch {
            assert!(c.wait().expect("curl").success(), "curl failed");
        }
    }
}

/// The requests from one curl process, `concurrency` at a time over keep-alive connections
/// (as `cargo xtask bench connect` sends them).
fn run_requests_kept_alive(curl: &Path, url: &str, requests: usize, concurrency: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("curl.cfg");
    let text: String = (0..requests)
        .map(|n| format!("url = \"{url}/front/{n}\"\noutput = \"/dev/null\"\n"))
        .collect();
    std::fs::write(&cfg, text).expect("write curl config");
    let mut cmd = Command::new(curl);
    cmd.args(["-sf", "-K"]).arg(&cfg);
    if concurrency > 1 {
        cmd.args(["-Z", "--parallel-max", &concurrency.to_string()]);
    }
    assert!(cmd.status().expect("curl").success(), "curl failed");
}

/// What came out of one run.
struct Score {
    /// Requests whose spans form exactly the expected tree, in a trace of their own.
    connected: usize,
    /// Requests with a span in a trace holding more spans than one request makes.
    mislinked: usize,
    requests: usize,
}

fn score(spans: &Spans, hops: &[Hop], requests: usize) -> Score {
    let mut per_trace: HashMap<Vec<u8>, usize> = HashMap::new();
    for (_, s) in spans {
        *per_trace.entry(s.trace_id.clone()).or_default() += 1;
    }
    let mut connected = 0;
    let mut mislinked = 0;
    for n in 0..requests {
        let Some(c) = chain(spans, hops, n) else {
            eprintln!("request {n}: spans missing or doubled");
            continue;
        };
        let root_ok =
            c[0].parent_span_id.is_empty() && hops[0].links.contains(&link(&c[0]).as_str());
        let shaped = root_ok
            && c.windows(2)
                .zip(&hops[1..])
                .all(|(w, h)| h.links.iter().any(|how| child_of(&w[1], &w[0], how)));
        let alone = per_trace.get(&c[0].trace_id) == Some(&hops.len());
        if shaped && alone {
            connected += 1;
        } else {
            eprintln!(
                "request {n}: links {:?}, {:?} spans in the root's trace",
                c.iter().map(link).collect::<Vec<_>>(),
                per_trace.get(&c[0].trace_id)
            );
        }
        if c.iter()
            .any(|s| per_trace.get(&s.trace_id).copied().unwrap_or(0) > hops.len())
        {
            mislinked += 1;
        }
    }
    Score {
        connected,
        mislinked,
        requests,
    }
}

fn report(what: &str, s: &Score, text: &str) {
    eprintln!(
        "{what}: {}/{} connected ({:.1}%), {} mislinked; link counters: connection {}, \
         thread {}, proxy {}, goroutine {}, unlinked {}, ambiguous {}, expired {}",
        s.connected,
        s.requests,
        100.0 * s.connected as f64 / s.requests as f64,
        s.mislinked,
        metric(text, "sonde_agent_link_linked_connection_total"),
        metric(text, "sonde_agent_link_linked_thread_total"),
        metric(text, "sonde_agent_link_linked_proxy_total"),
        metric(text, "sonde_agent_link_linked_goroutine_total"),
        metric(text, "sonde_agent_link_unlinked_total"),
        metric(text, "sonde_agent_link_ambiguous_total"),
        metric(text, "sonde_agent_link_expired_unlinked_total"),
    );
}

/// Starts the agent tracing `ports` and the test's curl copy, runs the requests against
/// `url`, and scores the traces against `hops`.
async fn measure(
    dir: &Path,
    ports: &[u16],
    url: String,
    hops: &[Hop],
    requests: usize,
    concurrency: usize,
    keep_alive: bool,
) -> (Score, String) {
    let curl = curl_copy(dir);
    let metrics = free_port();
    let (addr, received) = start_receiver().await;
    let glob = format!("{}/sonde-link-*", dir.display());
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let _agent = start_agent(
        addr,
        &[
            "--port",
            &ports.join(","),
            "--exe",
            &glob,
            "--metrics-listen-address",
            &format!("127.0.0.1:{metrics}"),
        ],
    );
    tokio::task::spawn_blocking(move || {
        if keep_alive {
            run_requests_kept_alive(&curl, &url, requests, concurrency);
        } else {
            run_requests(&curl, &url, requests, concurrency, None);
        }
    })
    .await
    .unwrap();
    let spans = wait_spans(&received, hops.len() * requests).await;
    (score(&spans, hops, requests), scrape(metrics).await)
}

/// Every request one connected trace at concurrency 1; under concurrency, at most one request
/// left unconnected (`cargo xtask bench connect` measures 99.7–100 % at 50 at once: an orphan
/// is a span that never arrived, counted, never a wrong link).
fn assert_connected(s: &Score, concurrency: usize) {
    let allowed = if concurrency > 1 { 1 } else { 0 };
    assert!(
        s.connected + allowed >= s.requests,
        "{} of {} requests connected at concurrency {concurrency}",
        s.connected,
        s.requests
    );
}

async fn python_chain(concurrency: usize, requests: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (front, back) = (free_port(), free_port());
    let _back = start_hop("python", dir.path(), back, None, false);
    let _front = start_hop("python", dir.path(), front, Some(back), false);
    let hops = python_hops(front, back);
    let url = format!("http://127.0.0.1:{front}");
    let (s, text) = measure(
        dir.path(),
        &[front, back],
        url,
        &hops,
        requests,
        concurrency,
        false,
    )
    .await;
    report(&format!("python, concurrency {concurrency}"), &s, &text);
    assert_eq!(s.mislinked, 0, "no span in another request's trace");
    assert_connected(&s, concurrency);
    assert!(metric(&text, "sonde_agent_link_linked_thread_total") >= s.connected as u64);
}

async fn wait_spans(received: &Received, want: usize) -> Vec<(Vec<KeyValue>, Span)> {
    received.wait_for(WAIT, |s| s.len() >= want).await;
    // Anything late (a doubled span) has a moment to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    received.spans()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_chain_is_one_trace_per_request_at_concurrency_1() {
    require_kernel!();
    python_chain(1, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_chain_is_one_trace_per_request_at_concurrency_20() {
    require_kernel!();
    python_chain(20, 60).await;
}

/// curl (not traced) sends a `traceparent`; the front forwards it to the backend. The whole
/// chain joins that trace, the front's span under the header's span, the front's client span
/// with an id of its own under the front's span, the backend's under that client span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_traceparent_is_honoured_and_forwarded() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    let curl = curl_copy(dir.path());
    let (front, back) = (free_port(), free_port());
    let _back = start_hop("python", dir.path(), back, None, false);
    let _front = start_hop("python", dir.path(), front, Some(back), true);
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(addr, &["--port", &format!("{front},{back}")]);
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";
    let header = format!("00-{TRACE}-{PARENT}-01");
    let url = format!("http://127.0.0.1:{front}");
    tokio::task::spawn_blocking(move || run_requests(&curl, &url, 3, 1, Some(&header)))
        .await
        .unwrap();
    let spans = wait_spans(&received, 9).await;
    let hops = &python_hops(front, back)[1..];
    for n in 0..3 {
        let c = chain(&spans, hops, n).expect("three spans, once each");
        assert_eq!(hex::encode(&c[0].trace_id), TRACE, "trace id kept");
        assert_eq!(hex::encode(&c[0].parent_span_id), PARENT);
        assert_eq!(link(&c[0]), "traceparent");
        assert!(child_of(&c[1], &c[0], "thread"), "front client under front");
        assert_ne!(hex::encode(&c[1].span_id), PARENT, "an id of its own");
        assert!(
            child_of(&c[2], &c[1], "connection"),
            "backend under front client"
        );
    }
}

/// curl → nginx (`proxy_pass`, upstream keep-alive) → the python front → the backend: six
/// spans per request, nginx's client span under nginx's server span by thread (one request
/// at a time) or by the proxy rule (its method and path), never a wrong one.
async fn nginx_chain(concurrency: usize, requests: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (edge, front, back) = (free_port(), free_port(), free_port());
    let _back = start_hop("python", dir.path(), back, None, false);
    let _front = start_hop("python", dir.path(), front, Some(back), false);
    let _nginx = nginx_proxy(dir.path(), edge, front);
    let mut hops = vec![
        hop(SpanKind::Client, "/front/{n}", edge, &["none"]),
        hop(SpanKind::Server, "/front/{n}", edge, &["connection"]),
        hop(SpanKind::Client, "/front/{n}", front, &["thread", "proxy"]),
    ];
    hops.extend(python_hops(front, back).into_iter().skip(1));
    let url = format!("http://127.0.0.1:{edge}");
    let (s, text) = measure(
        dir.path(),
        &[edge, front, back],
        url,
        &hops,
        requests,
        concurrency,
        false,
    )
    .await;
    report(&format!("nginx, concurrency {concurrency}"), &s, &text);
    assert_eq!(s.mislinked, 0, "no span in another request's trace");
    assert_connected(&s, concurrency);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_chain_is_one_trace_per_request_at_concurrency_1() {
    require_kernel!();
    nginx_chain(1, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_chain_is_one_trace_per_request_at_concurrency_20() {
    require_kernel!();
    nginx_chain(20, 60).await;
}

/// Another runtime as the middle hop: at least `floors` of the requests connected at
/// concurrency 1 and 10, and none mislinked (`cargo xtask bench connect` measures the rest).
async fn runtime_chain(runtime: &str, floors: [f64; 2]) {
    for ((concurrency, requests), floor) in [(1, 20), (10, 40)].into_iter().zip(floors) {
        let dir = tempfile::tempdir().unwrap();
        let (front, back) = (free_port(), free_port());
        let _back = start_hop("python", dir.path(), back, None, false);
        let _front = start_hop(runtime, dir.path(), front, Some(back), false);
        let mut hops = python_hops(front, back);
        hops[2].links = &["thread", "proxy", "goroutine"];
        let url = format!("http://127.0.0.1:{front}");
        let (s, text) = measure(
            dir.path(),
            &[front, back],
            url,
            &hops,
            requests,
            concurrency,
            true,
        )
        .await;
        report(&format!("{runtime}, concurrency {concurrency}"), &s, &text);
        assert_eq!(s.mislinked, 0, "no span in another request's trace");
        assert!(
            s.connected as f64 >= floor * s.requests as f64,
            "{runtime}: {} of {} connected at concurrency {concurrency}, floor {floor}",
            s.connected,
            s.requests
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_middle_hop_connects_one_request_at_a_time_and_never_mislinks() {
    require_kernel!();
    runtime_chain("node", [1.0, 0.0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_middle_hop_connects_through_its_goroutines() {
    require_kernel!();
    // The goroutine that made each client request is seen by uprobes on Go's client: every
    // request connects, whatever the concurrency (one may arrive too late under load).
    runtime_chain("go", [1.0, 0.97]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiohttp_middle_hop_connects_one_request_at_a_time_and_never_mislinks() {
    require_kernel!();
    runtime_chain("aiohttp", [1.0, 0.0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_middle_hop_never_mislinks() {
    require_kernel!();
    runtime_chain("java", [0.1, 0.0]).await;
}
