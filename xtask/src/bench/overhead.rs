//! `cargo xtask bench overhead`: wrk on loopback against nginx, python3 http.server and a Go
//! `net/http` server, untraced vs traced by `sonde agent`, in interleaved rounds (each traced
//! run paired with its own round's untraced run). Prints the throughput ratio, agent CPU per
//! span, agent peak RSS, completeness (spans received at an OTLP receiver / spans expected
//! for the requests wrk completed) and the ring buffer's bytes per request, for the agent
//! selecting the server's port alone and for its default selection (every process, both
//! sides: wrk's client spans are expected too).
//! Pinning follows shared/research/kernel-floor.md: server on CPU 1, wrk on CPU 0.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

#[derive(clap::Args)]
pub struct Args {
    /// Interleaved rounds per (target, connections).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
    duration: u32,
    /// wrk connection counts to run.
    #[arg(long, value_delimiter = ',', default_value = "2,16")]
    connections: Vec<u32>,
    /// Targets to run (nginx, python, go, proxy: nginx proxying to Node).
    #[arg(long, value_delimiter = ',', default_value = "nginx,python,go")]
    targets: Vec<String>,
    /// Skip the run with the default selection (every process, both sides).
    #[arg(long)]
    no_default_selection: bool,
    /// Also run, in each round, the agent attached but selecting another port: the cost of
    /// the hooks alone on a process that is not traced (this machine's floor, side by side).
    #[arg(long)]
    floor: bool,
    /// Also run, in each round, the agent tracing the server with `--no-export`: the kernel
    /// capture and span building without OTLP export (splits the cost in two).
    #[arg(long)]
    capture_only: bool,
    /// Also run, in each round, the reference tracer (`sonde-reference-tracer`, a benchmark-only binary): config C3 of
    /// shared/research/kernel-floor.md, which copies 1 KiB of every data syscall of the server
    /// into a ring drained every 100 ms and does nothing else: the floor of a capturing tracer.
    #[arg(long)]
    reference: bool,
    /// Also run, in each round, the agent tracing the server with RED metrics off
    /// (`--no-red`): agent CPU per span with and without metrics, side by side. The traced
    /// runs otherwise derive RED metrics and export them over OTLP every second.
    #[arg(long)]
    without_red: bool,
}

pub(super) struct Server {
    pub(super) child: Child,
    pub(super) port: u16,
    /// What the server depends on (the proxy target's upstream), stopped after it.
    upstream: Option<Box<Server>>,
}

impl Server {
    /// A server with nothing behind it.
    pub(super) fn new(child: Child, port: u16) -> Self {
        Self {
            child,
            port,
            upstream: None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
        self.upstream.take();
    }
}

pub(super) fn stop(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub(super) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(super) fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listens on {port}")
}

/// Start the named target server (`nginx`, `python` or `go`) on `port`, serving from `dir`.
pub(super) fn start_target(name: &str, dir: &Path, port: u16) -> Result<Server> {
    match name {
        "nginx" => start_nginx(dir, port),
        "python" => start_python(dir, port),
        "go" => start_go(dir, port),
        "proxy" => start_proxy(dir, port),
        other => bail!("unknown target {other}"),
    }
}

/// nginx (one worker, CPU 1) proxying over kept-alive upstream connections to a Node.js
/// `http` server (CPU 0, beside wrk) answering the same 695 bytes: two traced hops per
/// request, four with the default selection's client sides.
fn start_proxy(dir: &Path, port: u16) -> Result<Server> {
    let upstream_port = free_port()?;
    let node = Command::new("taskset")
        .args(["-c", "0", "node", "-e"])
        .arg(
            "const b = 'x'.repeat(695); require('http').createServer((q, r) => { q.resume(); \
             q.on('end', () => r.end(b)); }).listen(+process.argv[1], '127.0.0.1');",
        )
        .arg(upstream_port.to_string())
        .spawn()
        .context("start node (apt install nodejs)")?;
    wait_port(upstream_port)?;
    let upstream = Server {
        child: node,
        port: upstream_port,
        upstream: None,
    };
    let d = dir.display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\nhttp {{ access_log off; keepalive_requests 1000000;\n\
         client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
         upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 32; keepalive_requests 1000000; }}\n\
         server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app; proxy_http_version 1.1; \
         proxy_set_header Connection \"\"; }} }} }}\n"
    );
    run_nginx(dir, &conf, port, Some(upstream))
}

/// A Go `net/http` server answering every request with the same 695 bytes as the others
/// serve, built with Debian's Go (`golang-go`) and run on one CPU.
fn start_go(dir: &Path, port: u16) -> Result<Server> {
    let src = dir.join("main.go");
    std::fs::write(
        &src,
        "package main\n\nimport (\n\t\"net/http\"\n\t\"os\"\n\t\"strings\"\n)\n\n\
         func main() {\n\tbody := []byte(strings.Repeat(\"x\", 695))\n\t\
         http.HandleFunc(\"/\", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })\n\t\
         http.ListenAndServe(\"127.0.0.1:\"+os.Args[1], nil)\n}\n",
    )?;
    let bin = dir.join("server");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .status()
        .context("run go build (apt install golang-go)")?;
    if !status.success() {
        bail!("go build failed");
    }
    let child = Command::new("taskset")
        .args(["-c", "1"])
        .arg(&bin)
        .arg(port.to_string())
        .env("GOMAXPROCS", "1")
        .spawn()
        .context("start the Go server")?;
    wait_port(port)?;
    Ok(Server {
        child,
        port,
        upstream: None,
    })
}

fn start_nginx(dir: &Path, port: u16) -> Result<Server> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "x".repeat(695))?;
    let d = dir.display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\nhttp {{ access_log off; sendfile on; keepalive_requests 1000000;\n\
         client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
         server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}\n"
    );
    run_nginx(dir, &conf, port, None)
}

/// nginx on CPU 1 with `conf` (written into `dir`); returns once it listens on `port`.
fn run_nginx(dir: &Path, conf: &str, port: u16, upstream: Option<Server>) -> Result<Server> {
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let child = Command::new("taskset")
        .args(["-c", "1", "nginx", "-c"])
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .spawn()
        .context("start nginx")?;
    wait_port(port)?;
    Ok(Server {
        child,
        port,
        upstream: upstream.map(Box::new),
    })
}

fn start_python(dir: &Path, port: u16) -> Result<Server> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "x".repeat(695))?;
    let child = Command::new("taskset")
        .args([
            "-c",
            "1",
            "python3",
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start python3 http.server")?;
    wait_port(port)?;
    Ok(Server {
        child,
        port,
        upstream: None,
    })
}

/// Run wrk; returns (requests completed, requests/s).
pub(super) fn wrk(port: u16, connections: u32, secs: u32) -> Result<(u64, f64)> {
    let out = Command::new("taskset")
        .args([
            "-c",
            "0",
            "wrk",
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
        ])
        .arg(format!("http://127.0.0.1:{port}/index.html"))
        .output()
        .context("run wrk (apt install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let requests = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .and_then(|(n, _)| n.trim().parse::<u64>().ok())
        })
        .with_context(|| format!("wrk output: {text}"))?;
    let rps = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Requests/sec:")
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .with_context(|| format!("wrk output: {text}"))?;
    Ok((requests, rps))
}

/// Spans in an OTLP `ExportTraceServiceRequest` whose `server.port` is `port` (other
/// processes on the machine may be traced too), counted by walking the wire format
/// (resource_spans = 1 → scope_spans = 2 → spans = 2 → attributes = 9) without decoding
/// them: the receiver stands in for a remote backend, so its CPU must not weigh on the
/// machine under test. A malformed request counts what was found before the damage.
fn count_spans(msg: &[u8], port: u16) -> u64 {
    fields(msg, 1)
        .flat_map(|rs| fields(rs, 2))
        .flat_map(|ss| fields(ss, 2))
        .filter(|span| {
            // KeyValue { key = 1, value = 2: AnyValue { int_value = 3 } }.
            fields(span, 9).any(|kv| {
                fields(kv, 1).next() == Some(b"server.port".as_slice())
                    && fields(kv, 2).next().and_then(|v| varint(v, 3)) == Some(u64::from(port))
            })
        })
        .count() as u64
}

/// The first varint field numbered `number` of one protobuf message.
fn varint(msg: &[u8], number: u32) -> Option<u64> {
    scan(msg).find_map(|(field, value)| match value {
        Field::Varint(v) if field == number => Some(v),
        _ => None,
    })
}

/// The length-delimited fields numbered `number` of one protobuf message.
fn fields(msg: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    scan(msg).filter_map(move |(field, value)| match value {
        Field::Bytes(b) if field == number => Some(b),
        _ => None,
    })
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Every field of one protobuf message, in order; stops at the first malformed one.
fn scan(msg: &[u8]) -> impl Iterator<Item = (u32, Field<'_>)> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut buf = msg;
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let (field, wire) = decode_key(&mut buf).ok()?;
        let len = match wire {
            WireType::Varint => return Some((field, Field::Varint(decode_varint(&mut buf).ok()?))),
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => usize::try_from(decode_varint(&mut buf).ok()?).ok()?,
            WireType::StartGroup | WireType::EndGroup => return None,
        };
        let value = buf.get(..len)?;
        buf = &buf[len..];
        Some((
            field,
            if wire == WireType::LengthDelimited {
                Field::Bytes(value)
            } else {
                Field::Fixed
            },
        ))
    })
}

/// An OTLP/HTTP receiver that only counts spans.
fn start_receiver(rt: &tokio::runtime::Runtime, received: Arc<Received>) -> Result<u16> {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .route(
            "/v1/metrics",
            axum::routing::post(|| async {
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }),
        )
        .route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    let port = received.port.load(Ordering::Relaxed);
                    received
                        .spans
                        .fetch_add(count_spans(&body, port), Ordering::Relaxed);
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

pub(super) fn sonde_bin() -> Result<PathBuf> {
    release_bin(&["--bin", "sonde"], "sonde")
}

/// The benchmark-only reference tracer, which the `sonde` binary does not carry.
fn reference_bin() -> Result<PathBuf> {
    release_bin(
        &[
            "--features",
            "reference-tracer",
            "--bin",
            "sonde-reference-tracer",
        ],
        "sonde-reference-tracer",
    )
}

fn release_bin(build_args: &[&str], name: &str) -> Result<PathBuf> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "sonde"])
        .args(build_args)
        .status()?;
    if !status.success() {
        bail!("building {name} failed");
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    Ok(PathBuf::from(target).join("release").join(name))
}

/// Agent CPU seconds (all its threads' run time) and peak RSS (VmHWM, KiB) from /proc.
pub(super) fn agent_usage(pid: u32) -> Result<(f64, u64)> {
    // CPU time in ns from each live thread's schedstat (the first field): /proc/PID/stat
    // counts in 10 ms ticks, too coarse for a few thousand spans.
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        ns += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm = status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0);
    Ok((ns as f64 / 1e9, hwm))
}

struct Traced {
    rps: f64,
    requests: u64,
    spans: u64,
    cpu_s: f64,
    hwm_kib: u64,
    /// Bytes the agent's records took in the ring buffer, and records the kernel lost.
    ring_bytes: u64,
    lost: u64,
}

/// Which processes the agent traces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Select {
    /// The processes listening on this port, server side only (`--port P --no-client`).
    Port(u16),
    /// The default: every process, both sides.
    Default,
}

/// What one traced run attaches: the agent with a selection, exporting or not, or the
/// reference tracer on the server's processes.
#[derive(Clone, Copy)]
enum Tracer<'a> {
    Agent {
        bin: &'a Path,
        select: Select,
        export: bool,
        /// RED metrics derived and exported over OTLP every second.
        red: bool,
    },
    Reference {
        bin: &'a Path,
        pids: &'a [u32],
    },
}

impl Tracer<'_> {
    fn command(&self, receiver: u16, metrics: u16) -> Command {
        match *self {
            Tracer::Agent {
                bin,
                select,
                export,
                red,
            } => {
                let mut cmd = Command::new(bin);
                cmd.arg("agent");
                if let Select::Port(port) = select {
                    cmd.args(["--port", &port.to_string(), "--no-client"]);
                }
                if !export {
                    cmd.arg("--no-export");
                }
                if red {
                    cmd.env("OTEL_METRICS_EXPORTER", "otlp")
                        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000");
                } else {
                    cmd.arg("--no-red");
                }
                cmd.args(["--metrics-listen-address", &format!("127.0.0.1:{metrics}")])
                    .env(
                        "OTEL_EXPORTER_OTLP_ENDPOINT",
                        format!("http://127.0.0.1:{receiver}"),
                    )
                    .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                    .env("SONDE_LOG", "warn");
                cmd
            }
            Tracer::Reference { bin, pids } => {
                let mut cmd = Command::new(bin);
                for pid in pids {
                    cmd.args(["--pid", &pid.to_string()]);
                }
                cmd
            }
        }
    }

    /// Spans expected at the receiver per request wrk completed: the server's, and wrk's
    /// own client span when every process is traced.
    fn spans_per_request(&self, server_port: u16) -> u64 {
        match *self {
            Tracer::Agent {
                select: Select::Port(p),
                export: true,
                ..
            } if p == server_port => 1,
            Tracer::Agent {
                select: Select::Default,
                export: true,
                ..
            } => 2,
            _ => 0,
        }
    }
}

/// `pid` and all its descendants (nginx's master and worker), from /proc.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while let Some(&p) = out.get(i) {
        let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            out.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    out
}

/// What the OTLP receiver counts: spans whose `server.port` is the target's.
#[derive(Default)]
struct Received {
    spans: AtomicU64,
    port: AtomicU16,
}

fn traced_run(
    tracer: &Tracer<'_>,
    server: &Server,
    receiver: (u16, &Received),
    c: u32,
    secs: u32,
) -> Result<Traced> {
    let (receiver_port, received) = receiver;
    received.spans.store(0, Ordering::Relaxed);
    received.port.store(server.port, Ordering::Relaxed);
    let metrics = free_port()?;
    let mut agent = tracer
        .command(receiver_port, metrics)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Attach plus the first process selection take well under 3 s here.
    std::thread::sleep(Duration::from_secs(3));
    // CPU spent loading and attaching is not per-span work: count only what the load costs.
    let (cpu_before, _) = agent_usage(agent.id())?;
    let before = agent_counters(metrics);
    let (requests, rps) = wrk(server.port, c, secs)?;
    // Let the last batch leave (batch interval 1 s) before reading the totals.
    let expected = requests * tracer.spans_per_request(server.port);
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.spans.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let (cpu_after, hwm_kib) = agent_usage(agent.id())?;
    let after = agent_counters(metrics);
    stop(&mut agent);
    Ok(Traced {
        rps,
        requests,
        spans: received.spans.load(Ordering::Relaxed),
        cpu_s: cpu_after - cpu_before,
        hwm_kib,
        ring_bytes: after.0.saturating_sub(before.0),
        lost: after.1.saturating_sub(before.1),
    })
}

/// The agent's ring-buffer bytes and lost records so far, from its `/metrics` (zeros for
/// the reference tracer, which serves none).
fn agent_counters(port: u16) -> (u64, u64) {
    use std::io::{Read as _, Write as _};
    let text = (|| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    })()
    .unwrap_or_default();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (
        value("sonde_agent_ring_bytes_total"),
        value("sonde_agent_kernel_lost_records_total"),
    )
}

/// The median of sorted values (the machine is shared: a median of paired per-round ratios
/// shrugs off a round another job disturbed).
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Totals of a series of traced runs.
struct Totals {
    rps: f64,
    /// Spans received / spans expected.
    completeness: f64,
    cpu_us_per_span: f64,
    hwm_mib: f64,
    ring_bytes_per_request: f64,
    lost: u64,
}

fn totals(runs: &[Traced], spans_per_request: u64) -> Totals {
    let n = runs.len().max(1) as f64;
    let spans: u64 = runs.iter().map(|t| t.spans).sum();
    let requests: u64 = runs.iter().map(|t| t.requests).sum();
    Totals {
        rps: runs.iter().map(|t| t.rps).sum::<f64>() / n,
        completeness: spans as f64 / (requests * spans_per_request).max(1) as f64,
        cpu_us_per_span: runs.iter().map(|t| t.cpu_s).sum::<f64>() * 1e6 / spans.max(1) as f64,
        hwm_mib: runs.iter().map(|t| t.hwm_kib).max().unwrap_or(0) as f64 / 1024.0,
        ring_bytes_per_request: runs.iter().map(|t| t.ring_bytes).sum::<u64>() as f64
            / requests.max(1) as f64,
        lost: runs.iter().map(|t| t.lost).sum(),
    }
}

pub fn run(args: &Args) -> Result<()> {
    let bin = sonde_bin()?;
    let reference = if args.reference {
        reference_bin()?
    } else {
        PathBuf::new()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let received = Arc::new(Received::default());
    let receiver_port = start_receiver(&rt, received.clone())?;
    let receiver = (receiver_port, &*received);
    println!(
        "Agent selecting the server's port (server side); 'default' = every process, both sides \
         (wrk's client spans expected too). Ratios are per-round medians of traced/untraced req/s."
    );
    println!(
        "target  conns  untraced_rps  traced_rps  ratio(min-max)       complete  us/span  rss_MiB  ringB/req  lost{}{}{}{}{}",
        if args.no_default_selection {
            ""
        } else {
            "  default:ratio  complete  us/span  ringB/req  lost"
        },
        if args.without_red {
            "  noRED:us/span  RED:+us"
        } else {
            ""
        },
        if args.capture_only { "  capture" } else { "" },
        if args.floor { "  floor" } else { "" },
        if args.reference { "  reference" } else { "" }
    );
    // Nothing listens here: with it selected, the traced server is not.
    let unused_port = free_port()?;
    for target in &args.targets {
        for &c in &args.connections {
            let dir = tempfile::tempdir()?;
            let port = free_port()?;
            let server = start_target(target, dir.path(), port)?;
            let pids = process_tree(server.child.id());
            let traced_agent = Tracer::Agent {
                bin: &bin,
                select: Select::Port(port),
                export: true,
                red: true,
            };
            let default_agent = Tracer::Agent {
                bin: &bin,
                select: Select::Default,
                export: true,
                red: true,
            };
            let no_red_agent = Tracer::Agent {
                bin: &bin,
                select: Select::Port(port),
                export: true,
                red: false,
            };
            let mut no_red_runs = Vec::new();
            let run = |tracer: &Tracer<'_>| traced_run(tracer, &server, receiver, c, args.duration);
            let (mut ratios, mut traced) = (Vec::new(), Vec::new());
            let (mut default_ratios, mut default_runs) = (Vec::new(), Vec::new());
            let mut base = Vec::new();
            // The optional runs of each round, in column order: capture only, hooks only,
            // reference tracer.
            let extras = [
                (
                    args.capture_only,
                    Tracer::Agent {
                        bin: &bin,
                        select: Select::Port(port),
                        export: false,
                        red: true,
                    },
                ),
                (
                    args.floor,
                    Tracer::Agent {
                        bin: &bin,
                        select: Select::Port(unused_port),
                        export: true,
                        red: true,
                    },
                ),
                (
                    args.reference,
                    Tracer::Reference {
                        bin: &reference,
                        pids: &pids,
                    },
                ),
            ];
            let mut extra_ratios: [Vec<f64>; 3] = Default::default();
            for round in 0..args.rounds {
                // Alternate which goes first so drift does not favour one side.
                let (b, t) = if round % 2 == 0 {
                    let b = wrk(port, c, args.duration)?;
                    (b, run(&traced_agent)?)
                } else {
                    let t = run(&traced_agent)?;
                    (wrk(port, c, args.duration)?, t)
                };
                if !args.no_default_selection {
                    let d = run(&default_agent)?;
                    default_ratios.push(d.rps / b.1);
                    default_runs.push(d);
                }
                if args.without_red {
                    no_red_runs.push(run(&no_red_agent)?);
                }
                for ((on, tracer), out) in extras.iter().zip(&mut extra_ratios) {
                    if *on {
                        out.push(run(tracer)?.rps / b.1);
                    }
                }
                ratios.push(t.rps / b.1);
                base.push(b.1);
                traced.push(t);
            }
            let b = base.iter().sum::<f64>() / base.len() as f64;
            let t = totals(&traced, 1);
            ratios.sort_by(f64::total_cmp);
            let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
            let default_columns = if args.no_default_selection {
                String::new()
            } else {
                default_ratios.sort_by(f64::total_cmp);
                let d = totals(&default_runs, 2);
                format!(
                    "  {:>13.3}  {:>8.4}  {:>7.2}  {:>9.0}  {:>4}",
                    median(&default_ratios),
                    d.completeness,
                    d.cpu_us_per_span,
                    d.ring_bytes_per_request,
                    d.lost
                )
            };
            let no_red_columns = if args.without_red {
                let n = totals(&no_red_runs, 1);
                format!(
                    "  {:>12.2}  {:>+9.2}",
                    n.cpu_us_per_span,
                    t.cpu_us_per_span - n.cpu_us_per_span
                )
            } else {
                String::new()
            };
            let extra_columns: String = extras
                .iter()
                .zip(&mut extra_ratios)
                .filter(|((on, _), _)| *on)
                .map(|(_, v)| {
                    v.sort_by(f64::total_cmp);
                    format!("  {:>.3}", median(v))
                })
                .collect();
            println!(
                "{target:<7} {c:>5}  {b:>12.0}  {:>10.0}  {:.3} ({lo:.3}-{hi:.3})  {:>8.4}  {:>7.2}  {:>7.1}  {:>9.0}  {:>4}{default_columns}{no_red_columns}{extra_columns}",
                t.rps,
                median(&ratios),
                t.completeness,
                t.cpu_us_per_span,
                t.hwm_mib,
                t.ring_bytes_per_request,
                t.lost,
            );
            drop(server);
        }
    }
    println!(
        "complete = spans received / spans expected for the requests wrk completed (wrk does not \
         count requests still in flight when it stops, so it can exceed 1 slightly); \
         us/span = agent CPU per span with RED metrics derived and exported over OTLP every \
         second (noRED: with --no-red; RED:+us the difference); \
         ringB/req = ring-buffer bytes per request (records of every traced process); lost = \
         records the kernel could not queue"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
        common::v1::{AnyValue, KeyValue, any_value},
        trace::v1::{ResourceSpans, ScopeSpans, Span},
    };
    use prost::Message as _;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(super::median(&[0.5, 0.7, 0.9]), 0.7);
        assert_eq!(super::median(&[0.5, 0.7, 0.8, 0.9]), 0.75);
        assert!(super::median(&[]).is_nan());
    }

    #[test]
    fn counts_spans_across_resources_and_scopes() {
        let scope = |n: usize| ScopeSpans {
            spans: vec![
                Span {
                    name: "GET".into(),
                    attributes: vec![
                        KeyValue {
                            key: "url.path".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("/".into())),
                            }),
                            ..Default::default()
                        },
                        KeyValue {
                            key: "server.port".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(8080)),
                            }),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                };
                n
            ],
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    scope_spans: vec![scope(3), scope(0)],
                    ..Default::default()
                },
                ResourceSpans {
                    scope_spans: vec![scope(4)],
                    ..Default::default()
                },
            ],
        };
        let bytes = req.encode_to_vec();
        assert_eq!(super::count_spans(&bytes, 8080), 7);
        assert_eq!(super::count_spans(&bytes[..bytes.len() - 3], 8080), 3);
        assert_eq!(super::count_spans(&bytes, 9090), 0);
        assert_eq!(super::count_spans(b"", 8080), 0);
    }
}
