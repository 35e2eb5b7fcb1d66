//! Connected traces end to end on the real kernel: curl → a python threaded service (one
//! thread per connection) that calls a python backend with urllib → the backend. The agent
//! traces all three processes; each curl request must come out as one trace, curl client →
//! front server → front client → backend server, with the right parent ids and `sonde.link`
//! values, at concurrency 1 and 20; an incoming `traceparent` is honoured.
use std::{
    collections::HashMap,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    trace::v1::{Span, span::SpanKind},
};
use sonde_e2e::{
    Proc,
    agent::{metric, scrape, start_agent},
    free_port,
    otlp::{Received, attr, start_receiver},
    require_kernel, wait_port,
};

const WAIT: Duration = Duration::from_secs(30);

/// The backend answers `ok`; the front calls `BACK_PORT` with the same path under
/// `/backend` (forwarding `traceparent` only when `FORWARD=1`) and answers what it got.
const SERVICE: &str = r#"
import http.server, os, urllib.request
BACK = os.environ.get('BACK_PORT')
FORWARD = os.environ.get('FORWARD') == '1'
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        body = b'ok'
        if BACK:
            headers = {}
            if FORWARD and self.headers.get('traceparent'):
                headers['traceparent'] = self.headers['traceparent']
            url = 'http://127.0.0.1:%s/backend%s' % (BACK, self.path)
            body = urllib.request.urlopen(urllib.request.Request(url, headers=headers)).read()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"#;

fn service(port: u16, back: Option<u16>, forward: bool) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SERVICE])
        .env("PORT", port.to_string())
        .env("FORWARD", if forward { "1" } else { "0" })
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(b) = back {
        cmd.env("BACK_PORT", b.to_string());
    }
    let p = Proc(cmd.spawn().expect("start python3"));
    wait_port(port);
    p
}

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

/// The four spans of one request, found by path.
struct Chain {
    curl: Span,
    front: Span,
    front_client: Span,
    backend: Span,
}

type Spans = [(Vec<KeyValue>, Span)];

fn one(spans: &Spans, kind: SpanKind, path: &str, port: u16) -> Vec<Span> {
    spans
        .iter()
        .filter(|(_, s)| {
            s.kind == kind as i32
                && attr(s, "url.path").as_deref() == Some(path)
                && attr(s, "server.port") == Some(port.to_string())
        })
        .map(|(_, s)| s.clone())
        .collect()
}

/// The chain of `/front/{n}`, when each of its spans arrived exactly once.
fn chain(spans: &Spans, n: usize, front: u16, back: u16, with_curl: bool) -> Option<Chain> {
    let path = format!("/front/{n}");
    let inner = format!("/backend/front/{n}");
    let single = |mut v: Vec<Span>| (v.len() == 1).then(|| v.remove(0));
    Some(Chain {
        curl: if with_curl {
            single(one(spans, SpanKind::Client, &path, front))?
        } else {
            Span::default()
        },
        front: single(one(spans, SpanKind::Server, &path, front))?,
        front_client: single(one(spans, SpanKind::Client, &inner, back))?,
        backend: single(one(spans, SpanKind::Server, &inner, back))?,
    })
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

/// Runs `requests` curl requests for `/front/0..requests`, `concurrency` at a time.
fn run_requests(
    curl: &Path,
    front: u16,
    requests: usize,
    concurrency: usize,
    header: Option<&str>,
) {
    let mut next = 0;
    while next < requests {
        let batch: Vec<_> = (next..requests.min(next + concurrency))
            .map(|n| {
                let mut cmd = Command::new(curl);
                cmd.args(["-sf", "-o", "/dev/null"]);
                if let Some(h) = header {
                    cmd.args(["-H", &format!("traceparent: {h}")]);
                }
                cmd.arg(format!("http://127.0.0.1:{front}/front/{n}"));
                cmd.spawn().expect("curl")
            })
            .collect();
        next += batch.len();
        for mut c in batch {
            assert!(c.wait().expect("curl").success(), "curl failed");
        }
    }
}

/// What came out of one run: how many requests made one correctly shaped trace.
struct Score {
    connected: usize,
    /// Requests with a span in another request's trace.
    mislinked: usize,
    requests: usize,
}

fn score(spans: &Spans, requests: usize, front: u16, back: u16) -> Score {
    let mut per_trace: HashMap<Vec<u8>, usize> = HashMap::new();
    for (_, s) in spans {
        *per_trace.entry(s.trace_id.clone()).or_default() += 1;
    }
    let mut connected = 0;
    let mut mislinked = 0;
    for n in 0..requests {
        let Some(c) = chain(spans, n, front, back, true) else {
            eprintln!("/front/{n}: spans missing or doubled");
            continue;
        };
        let shaped = c.curl.parent_span_id.is_empty()
            && link(&c.curl) == "none"
            && child_of(&c.front, &c.curl, "connection")
            && child_of(&c.front_client, &c.front, "thread")
            && child_of(&c.backend, &c.front_client, "connection");
        let alone = per_trace.get(&c.curl.trace_id) == Some(&4);
        let traces: std::collections::HashSet<&Vec<u8>> =
            [&c.curl, &c.front, &c.front_client, &c.backend]
                .iter()
                .map(|s| &s.trace_id)
                .collect();
        if shaped && alone {
            connected += 1;
        } else {
            eprintln!(
                "/front/{n}: links {} {} {} {}, {} trace(s), {:?} spans in the curl's trace",
                link(&c.curl),
                link(&c.front),
                link(&c.front_client),
                link(&c.backend),
                traces.len(),
                per_trace.get(&c.curl.trace_id)
            );
        }
        if traces
            .iter()
            .any(|t| per_trace.get(*t).copied().unwrap_or(0) > 4)
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

async fn connected_chain(concurrency: usize, requests: usize) {
    let dir = tempfile::tempdir().unwrap();
    let curl = curl_copy(dir.path());
    let (front, back) = (free_port(), free_port());
    let _back = service(back, None, false);
    let _front = service(front, Some(back), false);
    let metrics = free_port();
    let (addr, received) = start_receiver().await;
    let glob = format!("{}/sonde-link-*", dir.path().display());
    let _agent = start_agent(
        addr,
        &[
            "--port",
            &format!("{front},{back}"),
            "--exe",
            &glob,
            "--metrics-listen-address",
            &format!("127.0.0.1:{metrics}"),
        ],
    );
    let c = curl.clone();
    tokio::task::spawn_blocking(move || run_requests(&c, front, requests, concurrency, None))
        .await
        .unwrap();
    let spans = wait_spans(&received, 4 * requests).await;
    let s = score(&spans, requests, front, back);
    let text = scrape(metrics).await;
    eprintln!(
        "concurrency {concurrency}: {}/{} connected ({:.1}%), {} mislinked; link counters: \
         connection {}, thread {}, unlinked {}, ambiguous {}, expired {}",
        s.connected,
        s.requests,
        100.0 * s.connected as f64 / s.requests as f64,
        s.mislinked,
        metric(&text, "sonde_agent_link_linked_connection_total"),
        metric(&text, "sonde_agent_link_linked_thread_total"),
        metric(&text, "sonde_agent_link_unlinked_total"),
        metric(&text, "sonde_agent_link_ambiguous_total"),
        metric(&text, "sonde_agent_link_expired_unlinked_total"),
    );
    assert_eq!(s.mislinked, 0, "no span in another request's trace");
    assert_eq!(
        s.connected, s.requests,
        "every request is one connected trace"
    );
    assert!(metric(&text, "sonde_agent_link_linked_thread_total") >= requests as u64);
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
    connected_chain(1, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_chain_is_one_trace_per_request_at_concurrency_20() {
    require_kernel!();
    connected_chain(20, 60).await;
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
    let _back = service(back, None, false);
    let _front = service(front, Some(back), true);
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(addr, &["--port", &format!("{front},{back}")]);
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";
    let header = format!("00-{TRACE}-{PARENT}-01");
    tokio::task::spawn_blocking(move || run_requests(&curl, front, 3, 1, Some(&header)))
        .await
        .unwrap();
    let spans = wait_spans(&received, 9).await;
    for n in 0..3 {
        let c = chain(&spans, n, front, back, false).expect("three spans, once each");
        assert_eq!(hex::encode(&c.front.trace_id), TRACE, "trace id kept");
        assert_eq!(hex::encode(&c.front.parent_span_id), PARENT);
        assert_eq!(link(&c.front), "traceparent");
        assert!(
            child_of(&c.front_client, &c.front, "thread"),
            "front client under front"
        );
        assert_ne!(
            hex::encode(&c.front_client.span_id),
            PARENT,
            "an id of its own"
        );
        assert!(
            child_of(&c.backend, &c.front_client, "connection"),
            "backend under front client"
        );
    }
}
