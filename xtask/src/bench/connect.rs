//! `cargo xtask bench connect`: the connectivity score. For each runtime as the middle hop
//! (curl → [nginx →] middle → python backend, the middle calling the backend without
//! forwarding headers) and each concurrency, runs N curl requests traced by `sonde agent`
//! and scores every request from the spans received: connected (exactly the expected tree,
//! in a trace of its own), mislinked (a span of it in a trace with another request's spans),
//! or orphaned (anything else: broken into several traces, or spans missing). Also prints
//! how the spans were linked (`sonde.link`) and the agent's CPU per span.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{KeyValue, any_value::Value},
    trace::v1::span::SpanKind,
};

use super::overhead::{Server, agent_usage, free_port, sonde_bin, stop, wait_port};

#[derive(clap::Args)]
pub struct Args {
    /// Requests per (runtime, concurrency).
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Concurrent requests (curl --parallel-max).
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    concurrency: Vec<usize>,
    /// Middle hops to run: python (threaded http.server + urllib), nginx (proxy_pass in front
    /// of the python middle), node (http + fetch), aiohttp (asyncio server + ClientSession),
    /// go (net/http), java (HttpServer with a thread pool + HttpClient).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "python,nginx,node,aiohttp,go,java"
    )]
    runtimes: Vec<String>,
    /// Also run each case with linking off (`agent.link_window: 0s`), for the agent's CPU per
    /// span side by side.
    #[arg(long)]
    compare_off: bool,
}

/// The programs of the hops, shared with the end-to-end tests (tests/programs).
const PYTHON: &str = include_str!("../../../tests/programs/service.py");
const NODE: &str = include_str!("../../../tests/programs/middle.js");
const AIOHTTP: &str = include_str!("../../../tests/programs/middle_aiohttp.py");
const GO: &str = include_str!("../../../tests/programs/middle.go");
const JAVA: &str = include_str!("../../../tests/programs/Main.java");

/// One span each request makes: kind, path (`{n}`: the request's number) and the port it
/// was addressed to.
struct Hop {
    kind: SpanKind,
    path: &'static str,
    port: u16,
}

/// One span as received, reduced to what the score needs.
#[derive(Clone)]
struct Got {
    trace: Vec<u8>,
    span: Vec<u8>,
    parent: Vec<u8>,
    kind: i32,
    path: String,
    port: String,
    link: String,
    start: u64,
    end: u64,
    peer: String,
    /// Status code or error type.
    outcome: String,
}

fn attr(attrs: &[KeyValue], key: &str) -> String {
    match attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        _ => String::new(),
    }
}

/// An OTLP/HTTP receiver keeping every span it gets.
fn start_receiver(rt: &tokio::runtime::Runtime, store: Arc<Mutex<Vec<Got>>>) -> Result<u16> {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                if let Ok(req) = <ExportTraceServiceRequest as prost::Message>::decode(body) {
                    let mut got = store.lock().expect("lock");
                    for s in req
                        .resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .flat_map(|s| &s.spans)
                    {
                        got.push(Got {
                            trace: s.trace_id.clone(),
                            span: s.span_id.clone(),
                            parent: s.parent_span_id.clone(),
                            kind: s.kind,
                            path: attr(&s.attributes, "url.path"),
                            port: attr(&s.attributes, "server.port"),
                            link: attr(&s.attributes, "sonde.link"),
                            start: s.start_time_unix_nano,
                            end: s.end_time_unix_nano,
                            peer: attr(&s.attributes, "network.peer.port"),
                            outcome: format!(
                                "{}{}",
                                attr(&s.attributes, "http.response.status_code"),
                                attr(&s.attributes, "error.type")
                            ),
                        });
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    // Requests reach 3 MiB (the exporter's cap); axum refuses bodies over 2 MiB by default.
    let app = app.layer(axum::extract::DefaultBodyLimit::max(64 << 20));
    rt.spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}

fn spawn(cmd: &mut Command, port: u16, what: &str) -> Result<Server> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {what}"))?;
    let server = Server::new(child, port);
    wait_port(port).with_context(|| format!("{what} did not listen"))?;
    Ok(server)
}

/// Starts the middle hop of `runtime` on `port`, calling the backend on `back`.
fn start_middle(runtime: &str, dir: &Path, port: u16, back: u16) -> Result<Server> {
    let env = [("PORT", port.to_string()), ("BACK_PORT", back.to_string())];
    match runtime {
        "python" | "nginx" => spawn(
            Command::new("python3").args(["-c", PYTHON]).envs(env),
            port,
            "python3",
        ),
        "node" => spawn(
            Command::new("node").args(["-e", NODE]).envs(env),
            port,
            "node",
        ),
        "aiohttp" => spawn(
            Command::new("python3").args(["-c", AIOHTTP]).envs(env),
            port,
            "the aiohttp middle",
        ),
        "go" => {
            let src = dir.join("main.go");
            std::fs::write(&src, GO)?;
            let bin = dir.join("middle-go");
            let ok = Command::new("go")
                .arg("build")
                .arg("-o")
                .arg(&bin)
                .arg(&src)
                .env("GO111MODULE", "off")
                .status()
                .context("go build")?
                .success();
            if !ok {
                bail!("go build failed");
            }
            spawn(Command::new(&bin).envs(env), port, "the go middle")
        }
        "java" => {
            let src = dir.join("Main.java");
            std::fs::write(&src, JAVA)?;
            let server = Command::new("java")
                .arg(&src)
                .envs(env)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("start java")?;
            let server = Server::new(server, port);
            // The source launcher compiles first: give it longer than wait_port's 10 s.
            let deadline = Instant::now() + Duration::from_secs(60);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    bail!("java did not listen");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(server)
        }
        other => bail!("unknown runtime {other}"),
    }
}

fn start_nginx(dir: &Path, port: u16, upstream: u16) -> Result<Server> {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\nhttp {{ access_log off; keepalive_requests 1000000;\n\
         client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
         upstream app {{ server 127.0.0.1:{upstream}; keepalive 64; }}\n\
         server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }} }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    spawn(
        Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log")),
        port,
        "nginx",
    )
}

/// What happened to the requests of one run.
#[derive(Default)]
struct Score {
    connected: usize,
    mislinked: usize,
    orphaned: usize,
}

/// The request number in a path (`/front/17`, `/backend/front/17`).
fn request_of(path: &str) -> Option<usize> {
    path.rsplit_once("/front/")?.1.parse().ok()
}

fn score(spans: &[Got], hops: &[Hop], requests: usize) -> Score {
    // The requests each trace holds spans of.
    let mut traces: HashMap<&[u8], HashSet<usize>> = HashMap::new();
    let mut sizes: HashMap<&[u8], usize> = HashMap::new();
    for s in spans {
        *sizes.entry(&s.trace).or_default() += 1;
        if let Some(n) = request_of(&s.path) {
            traces.entry(&s.trace).or_default().insert(n);
        }
    }
    let mut out = Score::default();
    for n in 0..requests {
        let mine: Vec<&Got> = spans
            .iter()
            .filter(|s| request_of(&s.path) == Some(n))
            .collect();
        if mine
            .iter()
            .any(|s| traces.get(s.trace.as_slice()).is_some_and(|r| r.len() > 1))
        {
            out.mislinked += 1;
            continue;
        }
        let chain: Option<Vec<&Got>> = hops
            .iter()
            .map(|h| {
                let path = h.path.replace("{n}", &n.to_string());
                let found: Vec<&Got> = mine
                    .iter()
                    .filter(|s| {
                        s.kind == h.kind as i32 && s.path == path && s.port == h.port.to_string()
                    })
                    .copied()
                    .collect();
                (found.len() == 1).then(|| found[0])
            })
            .collect();
        let connected = chain.is_some_and(|c| {
            c[0].parent.is_empty()
                && c.windows(2)
                    .all(|w| w[1].trace == w[0].trace && w[1].parent == w[0].span)
                && sizes.get(c[0].trace.as_slice()) == Some(&hops.len())
        });
        if connected {
            out.connected += 1;
        } else {
            out.orphaned += 1;
            // SONDE_CONNECT_DEBUG=1 shows the first few requests that did not connect.
            if std::env::var_os("SONDE_CONNECT_DEBUG").is_some() && out.orphaned <= 5 {
                eprintln!("request {n} not connected:");
                for s in &mine {
                    eprintln!(
                        "  kind {} {} port {} peer {} {} {}..{} link {} trace {} span {} parent {}",
                        s.kind,
                        s.path,
                        s.port,
                        s.peer,
                        s.outcome,
                        s.start,
                        s.end,
                        s.link,
                        hex::encode(&s.trace),
                        hex::encode(&s.span),
                        hex::encode(&s.parent),
                    );
                }
            }
        }
    }
    out
}

/// Runs `requests` requests through curl (one process, `--parallel-max concurrency`).
fn run_curl(curl: &Path, dir: &Path, url: &str, requests: usize, concurrency: usize) -> Result<()> {
    let cfg = dir.join("curl.cfg");
    let mut text = String::new();
    for n in 0..requests {
        text.push_str(&format!(
            "url = \"{url}/front/{n}\"\noutput = \"/dev/null\"\n"
        ));
    }
    std::fs::write(&cfg, text)?;
    let mut cmd = Command::new(curl);
    cmd.args(["-s", "--no-progress-meter", "-K"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if concurrency > 1 {
        cmd.args(["-Z", "--parallel-max", &concurrency.to_string()]);
    }
    if !cmd.status().context("run curl")?.success() {
        bail!("curl failed");
    }
    Ok(())
}

struct Case<'a> {
    bin: &'a Path,
    runtime: &'a str,
    concurrency: usize,
    requests: usize,
    link_on: bool,
}

/// One run: servers, agent, requests, spans; returns the score, link counts, agent CPU
/// seconds and spans received.
fn run_case(
    case: &Case<'_>,
    receiver: u16,
    store: &Mutex<Vec<Got>>,
) -> Result<(Score, BTreeMap<String, usize>, f64, usize)> {
    store.lock().expect("lock").clear();
    let dir = tempfile::tempdir()?;
    let (edge, front, back) = (free_port()?, free_port()?, free_port()?);
    let _back = spawn(
        Command::new("python3")
            .args(["-c", PYTHON])
            .env("PORT", back.to_string()),
        back,
        "python3 backend",
    )?;
    let _middle = start_middle(case.runtime, dir.path(), front, back)?;
    let nginx = case.runtime == "nginx";
    let _edge = if nginx {
        Some(start_nginx(dir.path(), edge, front)?)
    } else {
        None
    };
    let entry = if nginx { edge } else { front };
    let mut hops = Vec::new();
    if nginx {
        hops.push(Hop {
            kind: SpanKind::Client,
            path: "/front/{n}",
            port: edge,
        });
        hops.push(Hop {
            kind: SpanKind::Server,
            path: "/front/{n}",
            port: edge,
        });
    }
    for (kind, path, port) in [
        (SpanKind::Client, "/front/{n}", front),
        (SpanKind::Server, "/front/{n}", front),
        (SpanKind::Client, "/backend/front/{n}", back),
        (SpanKind::Server, "/backend/front/{n}", back),
    ] {
        hops.push(Hop { kind, path, port });
    }
    let curl_path = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v curl"])
            .output()?
            .stdout,
    )?;
    let curl = dir.path().join("sonde-connect-curl");
    std::fs::copy(curl_path.trim(), &curl)?;
    let cfg = dir.path().join("sonde.yaml");
    std::fs::write(
        &cfg,
        format!(
            "agent:\n  link_window: {}\n",
            if case.link_on { "1s" } else { "0s" }
        ),
    )?;
    let mut ports = vec![front.to_string(), back.to_string()];
    if nginx {
        ports.push(edge.to_string());
    }
    let mut agent = Command::new(case.bin)
        .arg("agent")
        .arg("--config")
        .arg(&cfg)
        .args(["--port", &ports.join(",")])
        .arg("--exe")
        .arg(format!("{}/sonde-connect-*", dir.path().display()))
        .args(["--metrics-listen-address", ""])
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{receiver}"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("SONDE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(3));
    let (cpu_before, _) = agent_usage(agent.id())?;
    run_curl(
        &curl,
        dir.path(),
        &format!("http://127.0.0.1:{entry}"),
        case.requests,
        case.concurrency,
    )?;
    // Wait until every span came, or nothing more comes for 3 s.
    let want = hops.len() * case.requests;
    let (mut last, mut since) = (0, Instant::now());
    while since.elapsed() < Duration::from_secs(3) {
        let n = store.lock().expect("lock").len();
        if n >= want {
            std::thread::sleep(Duration::from_secs(2));
            break;
        }
        if n != last {
            (last, since) = (n, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (cpu_after, _) = agent_usage(agent.id())?;
    stop(&mut agent);
    let spans = store.lock().expect("lock").clone();
    let mut links = BTreeMap::new();
    for s in &spans {
        *links.entry(s.link.clone()).or_default() += 1;
    }
    Ok((
        score(&spans, &hops, case.requests),
        links,
        cpu_after - cpu_before,
        spans.len(),
    ))
}

pub fn run(args: &Args) -> Result<()> {
    let bin = sonde_bin()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let store = Arc::new(Mutex::new(Vec::new()));
    let receiver = start_receiver(&rt, store.clone())?;
    println!(
        "runtime  conc  requests  connected  mislinked  orphaned  agent_us/span{}  links",
        if args.compare_off {
            "  agent_us/span(link off)"
        } else {
            ""
        }
    );
    for runtime in &args.runtimes {
        for &concurrency in &args.concurrency {
            let case = Case {
                bin: &bin,
                runtime,
                concurrency,
                requests: args.requests,
                link_on: true,
            };
            let (s, links, cpu, spans) = run_case(&case, receiver, &store)?;
            let pct = |k: usize| 100.0 * k as f64 / args.requests.max(1) as f64;
            let per_span = |cpu: f64, spans: usize| 1e6 * cpu / spans.max(1) as f64;
            let off = if args.compare_off {
                let (_, _, cpu_off, spans_off) = run_case(
                    &Case {
                        link_on: false,
                        ..case
                    },
                    receiver,
                    &store,
                )?;
                format!("  {:>24.1}", per_span(cpu_off, spans_off))
            } else {
                String::new()
            };
            println!(
                "{runtime:<7}  {concurrency:>4}  {:>8}  {:>8.1}%  {:>8.1}%  {:>7.1}%  {:>13.1}{off}  {links:?}",
                args.requests,
                pct(s.connected),
                pct(s.mislinked),
                pct(s.orphaned),
                per_span(cpu, spans),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(trace: u8, span: u8, parent: Option<u8>, kind: SpanKind, path: &str, port: u16) -> Got {
        Got {
            trace: vec![trace; 16],
            span: vec![span; 8],
            parent: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            kind: kind as i32,
            path: path.into(),
            port: port.to_string(),
            link: String::new(),
            start: 0,
            end: 0,
            peer: String::new(),
            outcome: String::new(),
        }
    }

    #[test]
    fn scores_connected_orphaned_and_mislinked_requests() {
        let hops = [
            Hop {
                kind: SpanKind::Client,
                path: "/front/{n}",
                port: 1,
            },
            Hop {
                kind: SpanKind::Server,
                path: "/front/{n}",
                port: 1,
            },
        ];
        let spans = [
            // 0: connected.
            got(1, 1, None, SpanKind::Client, "/front/0", 1),
            got(1, 2, Some(1), SpanKind::Server, "/front/0", 1),
            // 1: two traces.
            got(2, 3, None, SpanKind::Client, "/front/1", 1),
            got(3, 4, None, SpanKind::Server, "/front/1", 1),
            // 2 and 3: one trace.
            got(4, 5, None, SpanKind::Client, "/front/2", 1),
            got(4, 6, Some(5), SpanKind::Server, "/front/3", 1),
        ];
        let s = score(&spans, &hops, 4);
        assert_eq!((s.connected, s.orphaned, s.mislinked), (1, 1, 2));
    }
}
