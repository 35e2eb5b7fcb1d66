//! End to end on the real kernel: real servers (python3 http.server, nginx, a Rust axum
//! server) and real clients (curl, python urllib) are traced by the real `sonde agent`
//! binary, which exports OTLP/gRPC to a receiver inside the test. Each test selects only its
//! own server or client (by port or pid) so that tests running side by side do not mix.
use std::{process::Command, time::Duration};

use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use sonde_e2e::{
    agent::{metric, scrape, start_agent},
    curl, free_port,
    otlp::{attr, attr_in, start_receiver},
    python_http_server, require_kernel,
    servers::nginx,
};

const WAIT: Duration = Duration::from_secs(15);

fn server_spans_on(
    spans: &[(Vec<opentelemetry_proto::tonic::common::v1::KeyValue>, Span)],
    port: u16,
) -> Vec<Span> {
    spans
        .iter()
        .filter(|(_, s)| {
            s.kind == SpanKind::Server as i32 && attr(s, "server.port") == Some(port.to_string())
        })
        .map(|(_, s)| s.clone())
        .collect()
}

/// Wait for the server spans on `port`; there must be exactly one, for `path`.
async fn one_server_span(received: &sonde_e2e::otlp::Received, port: u16, path: &str) -> Span {
    let spans = received
        .wait_for(WAIT, |s| !server_spans_on(s, port).is_empty())
        .await;
    let got = server_spans_on(&spans, port);
    assert_eq!(got.len(), 1, "one span, for {path}: {:?}", names(&got));
    assert_eq!(attr(&got[0], "url.path").as_deref(), Some(path));
    got[0].clone()
}

fn names(spans: &[Span]) -> Vec<String> {
    spans
        .iter()
        .map(|s| format!("{} {:?}", s.name, attr(s, "http.response.status_code")))
        .collect()
}

fn duration_ns(s: &Span) -> u64 {
    s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano)
}

/// curl one URL; returns (status code, total seconds as measured by curl).
fn curl_timed(url: &str) -> (u16, f64) {
    let (ok, out) = curl(&["-o", "/dev/null", "-w", "%{http_code} %{time_total}", url]);
    assert!(ok, "curl {url} failed");
    let mut it = out.split_whitespace();
    let code = it.next().and_then(|c| c.parse().ok()).expect("status");
    let secs = it.next().and_then(|c| c.parse().ok()).expect("time");
    (code, secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_server_spans_match_requests_including_404() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    let port = free_port();
    let _server = python_http_server(dir.path(), port);
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(addr, &["--port", &port.to_string()]);
    let mut client_latency = Vec::new();
    for path in ["/hello.txt", "/hello.txt?secret=1", "/missing/123"] {
        client_latency.push(curl_timed(&format!("http://127.0.0.1:{port}{path}")));
    }
    let spans = received
        .wait_for(WAIT, |s| server_spans_on(s, port).len() >= 3)
        .await;
    let mut got = server_spans_on(&spans, port);
    got.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(got.len(), 3, "one span per request: {:?}", names(&got));
    for (span, want_path, want_status, (code, secs)) in [
        (&got[0], "/hello.txt", "200", client_latency[0]),
        (&got[1], "/hello.txt", "200", client_latency[1]),
        (&got[2], "/missing/123", "404", client_latency[2]),
    ] {
        assert_eq!(attr(span, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(attr(span, "url.path").as_deref(), Some(want_path));
        assert_eq!(
            attr(span, "url.query"),
            None,
            "query strings are not exported by default"
        );
        assert_eq!(
            attr(span, "http.response.status_code").as_deref(),
            Some(want_status)
        );
        assert_eq!(code.to_string(), want_status);
        assert_eq!(
            attr(span, "network.peer.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(attr(span, "client.address").as_deref(), Some("127.0.0.1"));
        assert!(attr(span, "network.peer.port").is_some_and(|p| p != "0"));
        assert_eq!(
            attr(span, "network.protocol.version").as_deref(),
            Some("1.1")
        );
        assert!(attr(span, "user_agent.original").is_some_and(|ua| ua.starts_with("curl/")));
        let d = duration_ns(span);
        assert!(
            d > 0 && (d as f64) <= secs * 1e9,
            "server span {d} ns must fit in the client's {secs} s"
        );
    }
    // 404 on a server span is not an error; no route matched, so it has none and its name
    // is the method alone; the others have their route.
    assert_eq!(got[2].status.as_ref().map(|s| s.code).unwrap_or(0), 0);
    assert_eq!(got[2].name, "GET");
    assert_eq!(attr(&got[2], "http.route"), None);
    assert_eq!(got[0].name, "GET /hello.txt");
    assert_eq!(attr(&got[0], "http.route").as_deref(), Some("/hello.txt"));
    let resource = &spans
        .iter()
        .find(|(_, s)| s.span_id == got[0].span_id)
        .unwrap()
        .0;
    assert_eq!(
        attr_in(resource, "process.executable.name")
            .as_deref()
            .map(|n| n.starts_with("python")),
        Some(true)
    );
    assert_eq!(
        attr_in(resource, "process.pid"),
        Some(_server.pid().to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_keep_alive_200_requests_on_one_connection_and_a_500() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("index.html"), "x".repeat(695)).unwrap();
    let port = free_port();
    let _nginx = nginx(dir.path(), &root, port);
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(addr, &["--port", &port.to_string()]);
    let url = format!("http://127.0.0.1:{port}/index.html");
    let urls: Vec<&str> = std::iter::repeat_n(url.as_str(), 200).collect();
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{num_connects}\n"])
        .args(&urls)
        .output()
        .unwrap();
    let connects: u32 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.parse::<u32>().ok())
        .sum();
    assert_eq!(
        connects, 1,
        "curl must reuse one connection for the 200 requests"
    );
    let (code, _) = curl_timed(&format!("http://127.0.0.1:{port}/fail"));
    assert_eq!(code, 500);
    let spans = received
        .wait_for(WAIT, |s| server_spans_on(s, port).len() >= 201)
        .await;
    let got = server_spans_on(&spans, port);
    assert_eq!(
        got.len(),
        201,
        "200 keep-alive + 1 failing request: {:?}",
        names(&got)
            .iter()
            .filter(|n| !n.contains("200"))
            .collect::<Vec<_>>()
    );
    let ok: Vec<_> = got
        .iter()
        .filter(|s| attr(s, "http.response.status_code").as_deref() == Some("200"))
        .collect();
    assert_eq!(ok.len(), 200);
    assert!(
        ok.iter()
            .all(|s| attr(s, "http.response.body.size").as_deref() == Some("695"))
    );
    let peers: std::collections::HashSet<_> =
        ok.iter().map(|s| attr(s, "network.peer.port")).collect();
    assert_eq!(peers.len(), 1, "all on one connection");
    let fail = got
        .iter()
        .find(|s| attr(s, "url.path").as_deref() == Some("/fail"))
        .expect("500 span");
    assert_eq!(
        attr(fail, "http.response.status_code").as_deref(),
        Some("500")
    );
    assert_eq!(
        fail.status.as_ref().map(|s| s.code),
        Some(2),
        "5xx server span has status ERROR"
    );
    assert_eq!(attr(fail, "error.type").as_deref(), Some("500"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_50_concurrent_connections() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), "a").unwrap();
    let port = free_port();
    let _nginx = nginx(dir.path(), &root, port);
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(addr, &["--port", &port.to_string()]);
    // `-o` applies to one URL, so each URL gets its own.
    let urls: Vec<String> = (0..50)
        .flat_map(|i| {
            [
                "-o".into(),
                "/dev/null".into(),
                format!("http://127.0.0.1:{port}/a.txt?i={i}"),
            ]
        })
        .collect();
    let out = Command::new("curl")
        .args([
            "-s",
            "--parallel",
            "--parallel-immediate",
            "--parallel-max",
            "50",
            "-w",
            "%{http_code}\n",
        ])
        .args(&urls)
        .output()
        .unwrap();
    let codes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(codes.len(), 50);
    assert!(codes.iter().all(|c| c == "200"), "{codes:?}");
    let spans = received
        .wait_for(WAIT, |s| server_spans_on(s, port).len() >= 50)
        .await;
    let got = server_spans_on(&spans, port);
    assert_eq!(got.len(), 50, "{:?}", names(&got));
    let peers: std::collections::HashSet<_> =
        got.iter().map(|s| attr(s, "network.peer.port")).collect();
    assert!(peers.len() > 1, "several connections");
}

/// A Rust (axum) server in this test process, traced by port; curl as the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_axum_server_with_route_ids_and_500() {
    require_kernel!();
    use axum::{Router, http::StatusCode, routing::get};
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(addr, &["--port", &port.to_string(), "--no-client"]);
    let c1 = tokio::task::spawn_blocking(move || {
        curl_timed(&format!("http://127.0.0.1:{port}/users/12345"))
    })
    .await
    .unwrap();
    let c2 =
        tokio::task::spawn_blocking(move || curl_timed(&format!("http://127.0.0.1:{port}/boom")))
            .await
            .unwrap();
    assert_eq!((c1.0, c2.0), (200, 500));
    let spans = received
        .wait_for(WAIT, |s| server_spans_on(s, port).len() >= 2)
        .await;
    let got = server_spans_on(&spans, port);
    assert_eq!(got.len(), 2, "{:?}", names(&got));
    let user = got
        .iter()
        .find(|s| attr(s, "url.path").as_deref() == Some("/users/12345"))
        .expect("user span");
    assert_eq!(user.name, "GET /users/{id}");
    let boom = got
        .iter()
        .find(|s| attr(s, "url.path").as_deref() == Some("/boom"))
        .expect("boom span");
    assert_eq!(boom.status.as_ref().map(|s| s.code), Some(2));
}

/// Client-only capture: a python urllib client, selected by pid, server side off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_only_capture_of_python_urllib() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.txt"), "x").unwrap();
    let port = free_port();
    let _server = python_http_server(dir.path(), port);
    let script = format!(
        "import time, urllib.request, urllib.error, sys\n\
         sys.stdin.readline()\n\
         for p in ['/x.txt', '/x.txt', '/nope']:\n\
         \ttry: urllib.request.urlopen('http://127.0.0.1:{port}' + p).read()\n\
         \texcept urllib.error.HTTPError as e: pass\n\
         print('done', flush=True)\n"
    );
    let mut client = Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(addr, &["--pid", &client.id().to_string(), "--no-server"]);
    use std::io::Write as _;
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = client.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("done"));
    let spans = received
        .wait_for(WAIT, |s| {
            s.iter()
                .filter(|(_, s)| s.kind == SpanKind::Client as i32)
                .count()
                >= 3
        })
        .await;
    let clients: Vec<_> = spans
        .iter()
        .filter(|(_, s)| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(clients.len(), 3);
    assert!(
        spans.iter().all(|(_, s)| s.kind != SpanKind::Server as i32),
        "server side is off"
    );
    let nope = clients
        .iter()
        .find(|(_, s)| attr(s, "url.path").as_deref() == Some("/nope"))
        .expect("404 client span");
    assert_eq!(
        nope.1.status.as_ref().map(|s| s.code),
        Some(2),
        "4xx client span is an error"
    );
    assert!(
        clients
            .iter()
            .all(|(_, s)| attr(s, "server.port") == Some(port.to_string()))
    );
}

/// A server process that dies in the middle of a request: earlier spans arrive, the agent
/// survives, and curl's client span of the aborted exchange reports the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_process_exiting_mid_request() {
    require_kernel!();
    let port = free_port();
    let script = format!(
        "import http.server, os\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \tdef do_GET(self):\n\
         \t\tif self.path == '/die': os._exit(3)\n\
         \t\tself.send_response(200); self.send_header('Content-Length', '2'); self.end_headers(); self.wfile.write(b'ok')\n\
         \tdef log_message(self, *a): pass\n\
         http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    );
    let server = sonde_e2e::Proc(
        Command::new("python3")
            .args(["-c", &script])
            .spawn()
            .unwrap(),
    );
    sonde_e2e::wait_port(port);
    let (addr, received) = start_receiver().await;
    let mut agent = start_agent(addr, &["--port", &port.to_string()]);
    let (code, _) = curl_timed(&format!("http://127.0.0.1:{port}/fine"));
    assert_eq!(code, 200);
    let (ok, _) = curl(&[&format!("http://127.0.0.1:{port}/die")]);
    assert!(!ok, "the server died mid-request");
    drop(server);
    one_server_span(&received, port, "/fine").await;
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent survives a traced process's death"
    );
}

/// A server that starts listening after the agent: selected by the kernel at its first
/// accept on the configured port, without waiting for a /proc rescan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_started_after_the_agent_is_selected_by_port() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("late.txt"), "late").unwrap();
    let port = free_port();
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(addr, &["--port", &port.to_string()]);
    let _server = python_http_server(dir.path(), port);
    let (code, _) = curl_timed(&format!("http://127.0.0.1:{port}/late.txt"));
    assert_eq!(code, 200);
    one_server_span(&received, port, "/late.txt").await;
}

/// Selection by executable path traces a program started after the agent from its first
/// request: the kernel traces every new program provisionally from its exec, and the agent
/// keeps the ones that match. A copy of curl under a unique name, requesting at once, is
/// traced, also when a shell that was dropped execs it; the real curl, which does not match,
/// is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_started_after_the_agent_is_selected_by_exe_glob_at_exec() {
    require_kernel!();
    use axum::{Router, routing::get};
    let app = Router::new()
        .route("/x", get(|| async { "x" }))
        .route("/y", get(|| async { "y" }))
        .route("/z", get(|| async { "z" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let curl_copy = dir.path().join("sonde-exec-curl");
    let curl_path = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v curl"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::copy(curl_path.trim(), &curl_copy).unwrap();
    let (addr, received) = start_receiver().await;
    let glob = format!("{}/sonde-exec-*", dir.path().display());
    let _agent = start_agent(addr, &["--exe", &glob, "--no-server"]);
    let base = format!("http://127.0.0.1:{port}");
    let ok = tokio::task::spawn_blocking(move || {
        let curl = |bin: &std::path::Path, path: &str| {
            Command::new(bin)
                .args(["-sf", "-o", "/dev/null"])
                .arg(format!("{base}{path}"))
                .status()
                .unwrap()
                .success()
        };
        // The shell is dropped as soon as the agent reads its exec; it execs the copy later.
        let via_shell = Command::new("sh")
            .args(["-c", "sleep 0.2; exec \"$0\" -sf -o /dev/null \"$1\""])
            .arg(&curl_copy)
            .arg(format!("{base}/z"))
            .status()
            .unwrap()
            .success();
        curl(curl_path.trim().as_ref(), "/y") && curl(&curl_copy, "/x") && via_shell
    })
    .await
    .unwrap();
    assert!(ok);
    let is = |s: &Span, path: &str| {
        s.kind == SpanKind::Client as i32
            && attr(s, "url.path").as_deref() == Some(path)
            && attr(s, "server.port") == Some(port.to_string())
    };
    let spans = received
        .wait_for(WAIT, |s| {
            s.iter().any(|(_, s)| is(s, "/x")) && s.iter().any(|(_, s)| is(s, "/z"))
        })
        .await;
    assert_eq!(spans.iter().filter(|(_, s)| is(s, "/x")).count(), 1);
    assert_eq!(spans.iter().filter(|(_, s)| is(s, "/z")).count(), 1);
    // /y was requested, and would have been exported, before /x.
    assert_eq!(spans.iter().filter(|(_, s)| is(s, "/y")).count(), 0);
}

/// Garbage, a TLS ClientHello and a half-sent request on a traced port: the agent skips them,
/// counts them on its /metrics, and still traces the next real request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_skipped_and_counted() {
    require_kernel!();
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.txt"), "ok").unwrap();
    let port = free_port();
    let _server = python_http_server(dir.path(), port);
    let metrics = free_port();
    let (addr, received) = start_receiver().await;
    let mut agent = start_agent(
        addr,
        &[
            "--port",
            &port.to_string(),
            "--metrics-listen-address",
            &format!("127.0.0.1:{metrics}"),
        ],
    );
    for junk in [
        &b"\x00\xff\xfe garbage \r\n\r\n"[..],
        &b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"[..],
        &b"GET /half HTTP/1.1\r\nHost: x"[..],
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(junk).unwrap();
        drop(s);
    }
    let (code, _) = curl_timed(&format!("http://127.0.0.1:{port}/ok.txt"));
    assert_eq!(code, 200);
    one_server_span(&received, port, "/ok.txt").await;
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent is alive");
    let text = scrape(metrics).await;
    let value = |name: &str| metric(&text, name);
    assert!(
        value("sonde_agent_conn_non_http_skipped_total") >= 1,
        "{text}"
    );
    assert_eq!(value("sonde_agent_decode_errors_total"), 0);
}

/// A chunked response written with writev (hyper, behind axum, streams its body this way):
/// the kernel copies the last bytes of the last iovec, so the response ends at its last-chunk
/// marker instead of waiting for the next request, the close or a quiet spell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_writev_response_ends_at_its_last_chunk() {
    require_kernel!();
    use axum::{Router, body::Body, routing::get};
    let app = Router::new().route(
        "/stream",
        get(|| async {
            let parts =
                (0..5).map(|i| Ok::<_, std::io::Error>(format!("part {i} {}\n", "x".repeat(4000))));
            Body::from_stream(futures_util::stream::iter(parts))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let metrics = free_port();
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(
        addr,
        &[
            "--port",
            &port.to_string(),
            "--no-client",
            "--metrics-listen-address",
            &format!("127.0.0.1:{metrics}"),
        ],
    );
    let (code, _) =
        tokio::task::spawn_blocking(move || curl_timed(&format!("http://127.0.0.1:{port}/stream")))
            .await
            .unwrap();
    assert_eq!(code, 200);
    let spans = received
        .wait_for(WAIT, |s| !server_spans_on(s, port).is_empty())
        .await;
    let got = server_spans_on(&spans, port);
    assert_eq!(got.len(), 1, "{:?}", names(&got));
    let text = scrape(metrics).await;
    let value = |name: &str| metric(&text, name);
    eprintln!("{text}");
    assert_eq!(
        value("sonde_agent_conn_chunk_framing_lost_total"),
        0,
        "{text}"
    );
    assert_eq!(value("sonde_agent_conn_ended_by_close_total"), 0, "{text}");
    assert_eq!(
        value("sonde_agent_conn_ended_by_timeout_total"),
        0,
        "{text}"
    );
}
