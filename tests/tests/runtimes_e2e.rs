//! End to end on the real kernel across runtimes that each behave differently on the wire:
//! Node's `http` (writev, event loop), Java 17's `HttpServer` on a thread pool, Go's
//! `net/http` (goroutines), Python asyncio (aiohttp), and nginx proxying to Node (upstream
//! keep-alive). curl makes the same known mix of requests to each, with the agent tracing
//! every process, both sides; every span's attributes are checked against what the client
//! sent and received: method, path (no query, no `;` parameters), status, body sizes, port.
use std::{
    collections::HashMap,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use sonde_e2e::{
    Proc, curl, free_port,
    otlp::{attr, start_receiver},
    require_kernel,
    servers::{nginx_proxy, node},
    wait_port,
};

/// Every server answers `/s/<status>/<n>/<id>` with that status and `n` bytes (declared
/// with Content-Length), after reading the whole request body.
const NODE: &str = r#"
require('http').createServer((q, r) => {
  q.resume();
  q.on('end', () => {
    const [, , st, n] = q.url.split('/');
    r.writeHead(+st, { 'Content-Length': +n });
    r.end('x'.repeat(+n));
  });
}).listen(+process.env.PORT, '127.0.0.1');
"#;

const JAVA: &str = r#"
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.util.concurrent.Executors;
public class Server {
  public static void main(String[] a) throws Exception {
    HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(a[0])), 64);
    s.createContext("/", ex -> {
      ex.getRequestBody().readAllBytes();
      String[] p = ex.getRequestURI().getPath().split("/");
      int st = Integer.parseInt(p[2]), n = Integer.parseInt(p[3]);
      ex.sendResponseHeaders(st, n == 0 ? -1 : n);
      if (n > 0) ex.getResponseBody().write("x".repeat(n).getBytes());
      ex.close();
    });
    s.setExecutor(Executors.newFixedThreadPool(4));
    s.start();
  }
}
"#;

const GO: &str = r#"package main

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		p := strings.Split(r.URL.Path, "/")
		st, _ := strconv.Atoi(p[2])
		n, _ := strconv.Atoi(p[3])
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.WriteHeader(st)
		w.Write([]byte(strings.Repeat("x", n)))
	})
	http.ListenAndServe("127.0.0.1:"+os.Args[1], nil)
}
"#;

const AIOHTTP: &str = r#"
import sys
from aiohttp import web
async def handle(request):
    await request.read()
    _, _, st, n, _ = request.path.split("/")
    return web.Response(status=int(st), body=b"x" * int(n))
app = web.Application()
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"#;

/// One request of the mix, and what a span of it must say.
struct Req {
    method: &'static str,
    status: u16,
    /// Response body bytes.
    n: usize,
    /// Request body bytes (POST with Content-Length).
    upload: usize,
    /// Appended to the path: must not be exported.
    suffix: &'static str,
}

const MIX: &[Req] = &[
    Req {
        method: "GET",
        status: 200,
        n: 5,
        upload: 0,
        suffix: "?token=secret-query",
    },
    Req {
        method: "GET",
        status: 404,
        n: 0,
        upload: 0,
        suffix: "",
    },
    Req {
        method: "GET",
        status: 500,
        n: 13,
        upload: 0,
        suffix: ";jsessionid=secret-session",
    },
    Req {
        method: "POST",
        status: 201,
        n: 7,
        upload: 3000,
        suffix: "",
    },
    Req {
        method: "GET",
        status: 200,
        n: 20_000,
        upload: 0,
        suffix: "",
    },
    Req {
        method: "PUT",
        status: 202,
        n: 1,
        upload: 70_000,
        suffix: "",
    },
];

fn java(dir: &Path, port: u16) -> Proc {
    let src = dir.join("Server.java");
    std::fs::write(&src, JAVA).unwrap();
    let child = Command::new("java")
        .arg(&src)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("start java (apt install openjdk-17-jdk-headless)");
    let p = Proc(child);
    wait_port(port);
    p
}

fn go(dir: &Path, port: u16) -> Proc {
    let src = dir.join("main.go");
    std::fs::write(&src, GO).unwrap();
    let bin = dir.join("goserver");
    let ok = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .status()
        .expect("run go build (apt install golang-go)")
        .success();
    assert!(ok, "go build failed");
    let p = Proc(Command::new(&bin).arg(port.to_string()).spawn().unwrap());
    wait_port(port);
    p
}

fn aiohttp(port: u16) -> Proc {
    let p = Proc(
        Command::new("python3")
            .args(["-c", AIOHTTP, &port.to_string()])
            .spawn()
            .expect("start aiohttp (pip install aiohttp)"),
    );
    wait_port(port);
    p
}

/// Send the mix to `port`, each request with its own id; returns path → request.
fn send_mix(name: &str, port: u16, dir: &Path) -> HashMap<String, &'static Req> {
    let mut sent = HashMap::new();
    for (i, r) in MIX.iter().enumerate() {
        let path = format!("/s/{}/{}/{name}-{i}", r.status, r.n);
        let url = format!("http://127.0.0.1:{port}{path}{}", r.suffix);
        let mut args: Vec<String> = vec![
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code} %{size_download}".into(),
            "-X".into(),
            r.method.into(),
            "-H".into(),
            "Expect:".into(),
        ];
        if r.upload > 0 {
            let file = dir.join(format!("up{}", r.upload));
            std::fs::write(&file, vec![b'a'; r.upload]).unwrap();
            args.push("--data-binary".into());
            args.push(format!("@{}", file.display()));
        }
        args.push(url.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, out) = curl(&args);
        assert_eq!(
            out.trim(),
            format!("{} {}", r.status, r.n),
            "{name}: {url} answered otherwise"
        );
        sent.insert(path, r);
    }
    sent
}

/// What is wrong with `span` for `req`, if anything.
fn check(span: &Span, req: &Req, port: u16) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut expect = |key: &str, want: Option<String>| {
        let got = attr(span, key);
        if got != want {
            wrong.push(format!("{key}: want {want:?}, got {got:?}"));
        }
    };
    expect("http.request.method", Some(req.method.into()));
    expect("http.response.status_code", Some(req.status.to_string()));
    expect("http.response.body.size", Some(req.n.to_string()));
    expect("http.request.body.size", Some(req.upload.to_string()));
    expect("server.port", Some(port.to_string()));
    expect("url.query", None);
    let all = format!("{:?}", span.attributes);
    if all.contains("secret-") {
        wrong.push("a query string or path parameter was exported".into());
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runtime_gets_every_attribute_right() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    let ports: HashMap<&str, u16> = ["node", "java", "go", "aiohttp", "nginx"]
        .into_iter()
        .map(|n| (n, free_port()))
        .collect();
    let _node = node(NODE, ports["node"]);
    let _java = java(dir.path(), ports["java"]);
    let _go = go(dir.path(), ports["go"]);
    let _aiohttp = aiohttp(ports["aiohttp"]);
    let _nginx = nginx_proxy(dir.path(), ports["nginx"], ports["node"]);
    let metrics = free_port();
    let (addr, received) = start_receiver().await;
    let _agent = sonde_e2e::agent::start_agent(
        addr,
        &["--metrics-listen-address", &format!("127.0.0.1:{metrics}")],
    );
    let mut sent: Vec<(&str, HashMap<String, &Req>)> = Vec::new();
    for name in ["node", "java", "go", "aiohttp", "nginx"] {
        sent.push((name, send_mix(name, ports[name], dir.path())));
    }
    // Spans expected: curl's client span and the server's for every request; nginx adds its
    // server span, its client span to node and node's server span.
    let expected = 2 * MIX.len() * 5 + 2 * MIX.len();
    let ours = || -> Vec<Span> {
        received
            .spans()
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| attr(s, "url.path").is_some_and(|p| p.starts_with("/s/")))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ours().len() < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spans = ours();
    let mut problems = Vec::new();
    for (name, requests) in &sent {
        for (path, req) in requests {
            let of = |kind: SpanKind, port: u16| -> Vec<&Span> {
                spans
                    .iter()
                    .filter(|s| {
                        s.kind == kind as i32
                            && attr(s, "url.path").as_deref() == Some(path.as_str())
                            && attr(s, "server.port") == Some(port.to_string())
                    })
                    .collect()
            };
            let mut hops = vec![
                ("curl client", of(SpanKind::Client, ports[name])),
                ("server", of(SpanKind::Server, ports[name])),
            ];
            if *name == "nginx" {
                hops.push(("nginx client", of(SpanKind::Client, ports["node"])));
                hops.push(("node behind nginx", of(SpanKind::Server, ports["node"])));
            }
            for (hop, found) in hops {
                let port = found
                    .first()
                    .and_then(|s| attr(s, "server.port"))
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                match found.as_slice() {
                    [span] => {
                        for w in check(span, req, port) {
                            problems.push(format!("{name} {hop} {path}: {w}"));
                        }
                    }
                    other => problems.push(format!(
                        "{name} {hop} {path}: {} spans, want 1",
                        other.len()
                    )),
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems in {} spans:\n{}",
        problems.len(),
        spans.len(),
        problems.join("\n")
    );
}
