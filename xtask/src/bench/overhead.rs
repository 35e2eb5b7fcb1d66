//! `cargo xtask bench overhead`: wrk on loopback against nginx and python3 http.server,
//! untraced vs traced by `sonde agent`, in interleaved rounds (each traced run paired with its
//! own round's untraced run). Prints the throughput ratio, agent CPU per span, agent peak RSS,
//! and completeness (spans received at an OTLP receiver / requests wrk completed).
//! Pinning follows shared/research/kernel-floor.md: server on CPU 1, wrk on CPU 0.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
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
    /// Targets to run (nginx, python).
    #[arg(long, value_delimiter = ',', default_value = "nginx,python")]
    targets: Vec<String>,
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
}

pub(super) struct Server {
    pub(super) child: Child,
    pub(super) port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        stop(&mut self.child);
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

/// Start the named target server (`nginx` or `python`) on `port`, serving from `dir`.
pub(super) fn start_target(name: &str, dir: &Path, port: u16) -> Result<Server> {
    match name {
        "nginx" => start_nginx(dir, port),
        "python" => start_python(dir, port),
        other => bail!("unknown target {other}"),
    }
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
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let child = Command::new("taskset")
        .args(["-c", "1", "nginx", "-c"])
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .spawn()
        .context("start nginx")?;
    wait_port(port)?;
    Ok(Server { child, port })
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
    Ok(Server { child, port })
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

/// Spans in an OTLP `ExportTraceServiceRequest`, counted by walking the wire format
/// (resource_spans = 1 → scope_spans = 2 → spans = 2) without decoding them: the receiver
/// stands in for a remote backend, so its CPU must not weigh on the machine under test.
/// A malformed request counts what was found before the damage.
fn count_spans(msg: &[u8]) -> u64 {
    fields(msg, 1)
        .flat_map(|rs| fields(rs, 2))
        .map(|ss| fields(ss, 2).count() as u64)
        .sum()
}

/// The length-delimited fields numbered `number` of one protobuf message.
fn fields(msg: &[u8], number: u32) -> impl Iterator<Item = &[u8]> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut buf = msg;
    std::iter::from_fn(move || {
        while !buf.is_empty() {
            let (field, wire) = decode_key(&mut buf).ok()?;
            let len = match wire {
                WireType::Varint => {
                    decode_varint(&mut buf).ok()?;
                    continue;
                }
                WireType::SixtyFourBit => 8,
                WireType::ThirtyTwoBit => 4,
                WireType::LengthDelimited => usize::try_from(decode_varint(&mut buf).ok()?).ok()?,
                WireType::StartGroup | WireType::EndGroup => return None,
            };
            let value = buf.get(..len)?;
            buf = &buf[len..];
            if field == number && wire == WireType::LengthDelimited {
                return Some(value);
            }
        }
        None
    })
}

/// An OTLP/HTTP receiver that only counts spans.
fn start_receiver(rt: &tokio::runtime::Runtime, spans: Arc<AtomicU64>) -> Result<u16> {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let spans = spans.clone();
            async move {
                spans.fetch_add(count_spans(&body), Ordering::Relaxed);
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
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

/// Agent CPU seconds (utime + stime) and peak RSS (VmHWM, KiB) from /proc.
pub(super) fn agent_usage(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the comm: state is index 0, utime 11, stime 12 (1-based 14 and 15).
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm = status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0);
    Ok((ticks as f64 / hz, hwm))
}

struct Traced {
    rps: f64,
    requests: u64,
    spans: u64,
    cpu_s: f64,
    hwm_kib: u64,
}

/// What one traced run attaches: the agent selecting `select_port`, exporting or not, or
/// the reference tracer on the server's processes.
#[derive(Clone, Copy)]
enum Tracer<'a> {
    Agent {
        bin: &'a Path,
        select_port: u16,
        export: bool,
    },
    Reference {
        bin: &'a Path,
        pids: &'a [u32],
    },
}

impl Tracer<'_> {
    fn command(&self, receiver: u16) -> Command {
        match *self {
            Tracer::Agent {
                bin,
                select_port,
                export,
            } => {
                let mut cmd = Command::new(bin);
                cmd.args(["agent", "--port", &select_port.to_string(), "--no-client"])
                    .args(if export {
                        &[][..]
                    } else {
                        &["--no-export"][..]
                    })
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

    /// Whether spans for every request are expected at the receiver.
    fn exports_server_spans(&self, server_port: u16) -> bool {
        matches!(*self, Tracer::Agent { select_port, export: true, .. } if select_port == server_port)
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

fn traced_run(
    tracer: &Tracer<'_>,
    server: &Server,
    receiver: u16,
    spans: &AtomicU64,
    c: u32,
    secs: u32,
) -> Result<Traced> {
    spans.store(0, Ordering::Relaxed);
    let mut agent = tracer
        .command(receiver)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Attach plus the first process selection take well under 3 s here.
    std::thread::sleep(Duration::from_secs(3));
    // CPU spent loading and attaching is not per-span work: count only what the load costs.
    let (cpu_before, _) = agent_usage(agent.id())?;
    let (requests, rps) = wrk(server.port, c, secs)?;
    // Let the last batch leave (batch interval 1 s) before reading the totals.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tracer.exports_server_spans(server.port)
        && spans.load(Ordering::Relaxed) < requests
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let (cpu_after, hwm_kib) = agent_usage(agent.id())?;
    stop(&mut agent);
    Ok(Traced {
        rps,
        requests,
        spans: spans.load(Ordering::Relaxed),
        cpu_s: cpu_after - cpu_before,
        hwm_kib,
    })
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
    let spans = Arc::new(AtomicU64::new(0));
    let receiver = start_receiver(&rt, spans.clone())?;
    println!(
        "target  conns  untraced_rps  traced_rps  ratio  per-round(median min-max)  completeness  agent_us/span  agent_peak_rss_MiB{}{}{}",
        if args.capture_only {
            "  capture(median)"
        } else {
            ""
        },
        if args.floor { "  floor(median)" } else { "" },
        if args.reference {
            "  reference(median)"
        } else {
            ""
        }
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
                select_port: port,
                export: true,
            };
            let run = |tracer: &Tracer<'_>| {
                traced_run(tracer, &server, receiver, &spans, c, args.duration)
            };
            let (mut base, mut traced, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            // The optional runs of each round, in column order: capture only, hooks only,
            // reference tracer.
            let extras = [
                (
                    args.capture_only,
                    Tracer::Agent {
                        bin: &bin,
                        select_port: port,
                        export: false,
                    },
                ),
                (
                    args.floor,
                    Tracer::Agent {
                        bin: &bin,
                        select_port: unused_port,
                        export: true,
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
                for ((on, tracer), out) in extras.iter().zip(&mut extra_ratios) {
                    if *on {
                        out.push(run(tracer)?.rps / b.1);
                    }
                }
                ratios.push(t.rps / b.1);
                base.push(b.1);
                traced.push(t);
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let b = mean(&base);
            let t = mean(&traced.iter().map(|t| t.rps).collect::<Vec<_>>());
            let spans_total: u64 = traced.iter().map(|t| t.spans).sum();
            let reqs_total: u64 = traced.iter().map(|t| t.requests).sum();
            let cpu_total: f64 = traced.iter().map(|t| t.cpu_s).sum();
            let hwm = traced.iter().map(|t| t.hwm_kib).max().unwrap_or(0);
            ratios.sort_by(f64::total_cmp);
            let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
            let mid = median(&ratios);
            // Each column as wide as its header.
            let extra_columns: String = extras
                .iter()
                .zip(&mut extra_ratios)
                .zip([15, 13, 17])
                .filter(|(((on, _), _), _)| *on)
                .map(|((_, v), width)| {
                    v.sort_by(f64::total_cmp);
                    format!("  {:>width$.3}", median(v))
                })
                .collect();
            println!(
                "{target:<7} {c:>5}  {b:>12.0}  {t:>10.0}  {:>5.3}  {mid:.3} {lo:.3}-{hi:.3}         {:>10.4}  {:>13.2}  {:>18.1}{extra_columns}",
                t / b,
                spans_total as f64 / reqs_total.max(1) as f64,
                cpu_total * 1e6 / spans_total.max(1) as f64,
                hwm as f64 / 1024.0,
            );
            drop(server);
        }
    }
    println!(
        "completeness = spans received / requests wrk completed (wrk does not count requests still in flight when it stops, so it can exceed 1 slightly)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
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
        assert_eq!(super::count_spans(&bytes), 7);
        assert_eq!(super::count_spans(&bytes[..bytes.len() - 3]), 3);
        assert_eq!(super::count_spans(b""), 0);
    }
}
