//! End to end on the real kernel with threads that reuse fd numbers: a Python client whose
//! threads each open a new connection per request, against Python's thread-per-connection
//! server (`ThreadingHTTPServer`, HTTP/1.0: every response closes its connection). A thread
//! closing a socket and another thread getting the same fd number at once must not mix the
//! two connections up: every request is one client span and one server span with its own
//! path, status 200 and no error.
use std::{collections::HashMap, time::Duration};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use sonde_e2e::{
    free_port,
    otlp::{attr, start_receiver},
    require_kernel,
};

const THREADS: usize = 8;
const PER_THREAD: usize = 150;

const SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// Each thread makes its requests one after another, each on a new connection it closes.
const CLIENT: &str = r#"
import http.client, sys, threading
port, threads, per = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
failed = []
def run(t):
    for i in range(per):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            c.request("GET", f"/t{t}/r{i}")
            r = c.getresponse()
            r.read()
            if r.status != 200:
                failed.append((t, i, r.status))
        except Exception as e:
            failed.append((t, i, repr(e)))
        finally:
            c.close()
ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print(len(failed))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_reusing_fd_numbers_keep_their_connections_apart() {
    require_kernel!();
    let port = free_port();
    let _server = sonde_e2e::python_server(SERVER, port);
    let (addr, received) = start_receiver().await;
    // Every process, both sides: the client is a short-lived process started after the agent.
    let metrics = format!("127.0.0.1:{}", free_port());
    let _agent = sonde_e2e::agent::start_agent(addr, &["--metrics-listen-address", &metrics]);
    sonde_e2e::python_client_without_failures(
        CLIENT,
        &[port, THREADS as u16, PER_THREAD as u16].map(|v| v.to_string()),
    );
    let total = THREADS * PER_THREAD;
    let ours = |kind: SpanKind| {
        let spans = received.spans();
        spans
            .into_iter()
            .filter(|(_, s)| {
                s.kind == kind as i32
                    && attr(s, "server.port") == Some(port.to_string())
                    && attr(s, "url.path").is_some_and(|p| p.starts_with("/t"))
            })
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (ours(SpanKind::Client).len() < total || ours(SpanKind::Server).len() < total)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for kind in [SpanKind::Client, SpanKind::Server] {
        let spans = ours(kind);
        let mut wrong: Vec<String> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for s in &spans {
            let path = attr(s, "url.path").unwrap_or_default();
            *seen.entry(path.clone()).or_default() += 1;
            let status = attr(s, "http.response.status_code");
            let error = attr(s, "error.type");
            if status.as_deref() != Some("200") || error.is_some() {
                wrong.push(format!("{path}: status {status:?}, error {error:?}"));
            }
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            wrong.is_empty() && twice.is_empty(),
            "{kind:?}: {} of {} spans wrong: {wrong:?}; paths seen twice: {twice:?}",
            wrong.len(),
            spans.len()
        );
        assert_eq!(
            spans.len(),
            total,
            "{kind:?}: one span per request expected"
        );
    }
}
