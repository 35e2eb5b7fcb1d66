//! `cargo xtask bench store`: OTLP/HTTP load on the embedded store with generated realistic
//! traces (the load of shared/research/tempo-bench.md) spread over the last hour, then by-id,
//! search and TraceQL metrics (query_range) latency and ack→findable latency, and ingest CPU
//! per million spans with the metrics generator on and off. Prints figures; it is not a
//! pass/fail test.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng, rngs::StdRng};

mod inproc;
mod load;

#[derive(clap::Args)]
pub struct Args {
    /// Spans to push.
    #[arg(long, default_value_t = 2_000_000)]
    spans: usize,
    /// Spans per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Use this `sonde` binary instead of building a release one.
    #[arg(long)]
    sonde: Option<PathBuf>,
    /// Rounds of the generator on/off comparison (each pushes every span to a fresh store with
    /// the metrics generator off and to one with it on, in alternating order); 0 skips it.
    #[arg(long, default_value_t = 3)]
    generator_rounds: usize,
    /// Keep the data directory here (default: a fresh temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Spread the traces' start times evenly over this many seconds before now (the TraceQL
    /// metrics queries read the last hour).
    #[arg(long, default_value_t = 3600)]
    spread_secs: u64,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn build_sonde() -> Result<PathBuf> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--release", "-p", "sonde", "--bin", "sonde"]);
    if std::env::var_os("AYA_BUILD_SKIP").is_none() {
        // The store needs no kernel programs.
        cmd.env("AYA_BUILD_SKIP", "1");
    }
    let st = cmd.status().context("running cargo build")?;
    if !st.success() {
        bail!("cargo build --release failed");
    }
    Ok(target_dir().join("release").join("sonde"))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("bad /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // USER_HZ, the unit of /proc/<pid>/stat times, is 100 on Linux.
    let hz = 100.0;
    Ok(ticks as f64 / hz)
}

fn status_kb(pid: u32, key: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with(key))
        .context("no such field")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad line")?
        .parse()?)
}

/// Bytes of files under `p`, leaving out blocks still being written (`.tmp-*`).
fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".tmp-"))
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[i.clamp(1, v.len()) - 1]
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// The load generator shares the machine with the store: run it optimised. A debug xtask
/// (what `cargo xtask` runs) builds the release one and hands over to it.
fn reexec_release() -> Result<Option<()>> {
    if !cfg!(debug_assertions) || std::env::var_os("SONDE_BENCH_NO_REEXEC").is_some() {
        return Ok(None);
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    let st = cmd
        .args(["build", "--release", "-p", "xtask"])
        .status()
        .context("building release xtask")?;
    if !st.success() {
        bail!("cargo build --release -p xtask failed");
    }
    let exe = target_dir().join("release").join("xtask");
    let st = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("SONDE_BENCH_NO_REEXEC", "1")
        .status()
        .context("running release xtask")?;
    if !st.success() {
        bail!("benchmark failed");
    }
    Ok(Some(()))
}

pub fn run(args: &Args) -> Result<()> {
    if reexec_release()?.is_some() {
        return Ok(());
    }
    let sonde = match &args.sonde {
        Some(p) => p.clone(),
        None => build_sonde()?,
    };
    let tmp = std::env::temp_dir().join(format!("sonde-bench-store-{}", std::process::id()));
    let data = args.data_dir.clone().unwrap_or(tmp.clone());
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let res = rt.block_on(bench(args, &sonde, &data));
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    res
}

/// A running `sonde store` and its ports.
struct Store {
    proc: Proc,
    api: String,
    ingest: String,
}

/// Start `sonde store` with its data in `dir`, the metrics generator on or off.
async fn start_store(sonde: &Path, dir: &Path, generator: bool) -> Result<Store> {
    let (a, g, h) = (free_port()?, free_port()?, free_port()?);
    let child = Command::new(sonde)
        .args(["store", "--data-dir"])
        .arg(dir)
        .args(["--http-listen-address", &format!("127.0.0.1:{a}")])
        .args(["--otlp-grpc-listen-address", &format!("127.0.0.1:{g}")])
        .args(["--otlp-http-listen-address", &format!("127.0.0.1:{h}")])
        .arg(format!("--metrics-generator={generator}"))
        .env("SONDE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting sonde store")?;
    let store = Store {
        proc: Proc(child),
        api: format!("http://127.0.0.1:{a}"),
        ingest: format!("http://127.0.0.1:{h}/v1/traces"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{}/ready", store.api))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(store)
}

/// What one push of every batch did.
#[derive(Default)]
struct Pushed {
    accepted: usize,
    seconds: f64,
    cpu: f64,
    errors: usize,
    rejected: usize,
    lat: Vec<f64>,
    rss: Vec<f64>,
    live_max: f64,
    acked: Vec<[u8; 16]>,
}

/// Push every batch over `connections` connections, sampling the store's RSS and live bytes.
async fn push(args: &Args, store: &Store, batches: &Arc<Vec<load::Batch>>) -> Result<Pushed> {
    let pid = store.proc.0.id();
    let client = reqwest::Client::new();
    let cpu0 = cpu_seconds(pid)?;
    let next = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<Vec<[u8; 16]>>> = Arc::default();
    let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let errors = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let t_push = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (batches, next, acked, lat, errors, rejected, accepted, url) = (
            batches.clone(),
            next.clone(),
            acked.clone(),
            lat.clone(),
            errors.clone(),
            rejected.clone(),
            accepted.clone(),
            store.ingest.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap_or_default();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(b) = batches.get(i) else { return };
                let t = Instant::now();
                let r = c.post(&url).header("Content-Type", "application/x-protobuf").body(b.body.clone()).send().await;
                match r {
                    Ok(resp) if resp.status() == 200 => {
                        let body = resp.bytes().await.unwrap_or_default();
                        let ps = <opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse as prost::Message>::decode(body.as_ref())
                            .ok()
                            .and_then(|r| r.partial_success);
                        lat.lock().map(|mut l| l.push(t.elapsed().as_secs_f64() * 1000.0)).ok();
                        match ps {
                            Some(p) if p.rejected_spans > 0 => {
                                rejected.fetch_add(p.rejected_spans as usize, Ordering::SeqCst);
                            }
                            _ => {
                                accepted.fetch_add(b.spans, Ordering::SeqCst);
                                acked.lock().map(|mut a| a.extend_from_slice(&b.trace_ids)).ok();
                            }
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    let mut rss = Vec::new();
    let mut live_max: f64 = 0.0;
    while !tasks.iter().all(|t| t.is_finished()) {
        rss.push(status_kb(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0);
        if let Ok(r) = client.get(format!("{}/metrics", store.api)).send().await
            && let Ok(text) = r.text().await
        {
            live_max = live_max.max(metric(&text, "sonde_store_live_bytes{"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for t in tasks {
        t.await?;
    }
    let seconds = t_push.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu0;
    let take = |m: &Arc<Mutex<Vec<f64>>>| m.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(Pushed {
        accepted: accepted.load(Ordering::SeqCst),
        seconds,
        cpu,
        errors: errors.load(Ordering::SeqCst),
        rejected: rejected.load(Ordering::SeqCst),
        lat: take(&lat),
        rss,
        live_max,
        acked: acked.lock().map(|a| a.clone()).unwrap_or_default(),
    })
}

async fn bench(args: &Args, sonde: &Path, data: &Path) -> Result<()> {
    let client = reqwest::Client::new();
    println!(
        "generating {} spans in batches of {} …",
        args.spans, args.batch
    );
    let t = Instant::now();
    let mut g = load::Gen::new(42);
    let mut batches = Vec::new();
    let mut total = 0;
    let now = now_ns();
    let spread = args.spread_secs.saturating_mul(1_000_000_000);
    while total < args.spans {
        // Oldest first, as a live system would have sent them.
        let at = now - spread + (spread as u128 * total as u128 / args.spans as u128) as u64;
        let b = g.batch(args.batch.min(args.spans - total).max(3), at);
        total += b.spans;
        batches.push(b);
    }
    let bytes: usize = batches.iter().map(|b| b.body.len()).sum();
    let traces: usize = batches.iter().map(|b| b.trace_ids.len()).sum();
    println!(
        "  {total} spans, {traces} traces, {} requests, {:.0} B/span as OTLP (generated in {:.1}s)",
        batches.len(),
        bytes as f64 / total as f64,
        t.elapsed().as_secs_f64()
    );
    let batches = Arc::new(batches);

    // 0. What the metrics generator costs: the same push to fresh stores with it off and on,
    //    alternating which goes first (the machine's other load drifts), medians compared.
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..args.generator_rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for generator in order {
            let dir = data.join(format!("store-compare-{round}-{generator}"));
            let p = {
                let store = start_store(sonde, &dir, generator).await?;
                push(args, &store, &batches).await?
            };
            let _ = std::fs::remove_dir_all(&dir);
            let per_m = p.cpu / (p.accepted.max(1) as f64 / 1e6);
            if generator { &mut on } else { &mut off }.push(per_m);
        }
    }
    let compare = (!off.is_empty()).then(|| {
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (rounds_off, rounds_on) = (show(&off), show(&on));
        // Each round's own ratio too: both halves of a round saw about the same other load.
        let mut paired: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b - 1.0).collect();
        let (m_off, m_on) = (pct(&mut off, 50.0), pct(&mut on, 50.0));
        format!(
            "  metrics generator off / on .. {m_off:.2} / {m_on:.2} CPU-s per 1M spans (median of {} rounds: off {rounds_off}; on {rounds_on}); the generator adds {:+.1}% (median of the rounds' own ratios {:+.1}%)",
            off.len(),
            (m_on / m_off - 1.0) * 100.0,
            pct(&mut paired, 50.0) * 100.0
        )
    });

    // 0b. The same, in process: only the ingesting thread's CPU, so less moved by other load.
    let inproc = if args.generator_rounds > 0 {
        let b = batches.clone();
        let (dir, rounds) = (data.to_path_buf(), args.generator_rounds);
        let (mut off, mut on) =
            tokio::task::spawn_blocking(move || inproc::generator_cost(&dir, &b, rounds)).await??;
        let mut paired: Vec<f64> = on.iter().zip(&off).map(|(a, b)| a / b - 1.0).collect();
        let (m_off, m_on) = (pct(&mut off, 50.0), pct(&mut on, 50.0));
        Some(format!(
            "  ingest path alone, off / on . {m_off:.2} / {m_on:.2} thread CPU-s per 1M spans (Store::ingest in process, median of {rounds} rounds); the generator adds {:+.1}% (rounds' own ratios: median {:+.1}%)",
            (m_on / m_off - 1.0) * 100.0,
            pct(&mut paired, 50.0) * 100.0
        ))
    } else {
        None
    };

    // 1. Push, generator on (the default).
    let store = start_store(sonde, &data.join("store"), true).await?;
    let pid = store.proc.0.id();
    let api = store.api.clone();
    let ingest = store.ingest.clone();
    let cpu0 = cpu_seconds(pid)?;
    let on = push(args, &store, &batches).await?;
    let Pushed {
        accepted: acc,
        seconds: push_s,
        cpu: cpu_push,
        errors,
        rejected,
        mut lat,
        rss: mut rss_samples,
        live_max,
        acked,
    } = on;
    let mspans = acc as f64 / 1e6;
    println!(
        "\n1. ingest (OTLP/HTTP protobuf, {} connections, {}-span requests)",
        args.connections, args.batch
    );
    println!(
        "  accepted spans/s ............ {:.0}  ({acc} spans in {push_s:.2}s)",
        acc as f64 / push_s
    );
    println!("  push errors / rejected spans  {errors} / {rejected}");
    println!(
        "  request latency p50/p99/max  {:.1} / {:.1} / {:.1} ms",
        pct(&mut lat, 50.0),
        pct(&mut lat, 99.0),
        pct(&mut lat, 100.0)
    );
    println!(
        "  store CPU during push ....... {cpu_push:.1} s = {:.2} CPU-s per 1M spans (metrics generator on)",
        cpu_push / mspans
    );
    if let Some(c) = compare {
        println!("{c}");
    }
    if let Some(c) = inproc {
        println!("{c}");
    }
    println!(
        "  store RSS during push p50/max {:.0} / {:.0} MiB",
        pct(&mut rss_samples.clone(), 50.0),
        pct(&mut rss_samples, 100.0)
    );
    println!(
        "  live traces in memory, max .. {:.0} MiB (sampled)",
        live_max / 1_048_576.0
    );

    // 2. Until every trace is in blocks.
    let t_wait = Instant::now();
    loop {
        let text = client
            .get(format!("{api}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let live = metric(&text, "sonde_store_live_traces{");
        let objects = metric(&text, "tempodb_backend_objects_total{");
        if live == 0.0 && objects >= traces as f64 {
            break;
        }
        if t_wait.elapsed() > Duration::from_secs(300) {
            bail!("traces not in blocks after 300s (live {live}, in blocks {objects})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu_cut = cpu_seconds(pid)? - cpu0;
    let blocks_dir = data.join("store").join("single-tenant").join("blocks");
    let disk = dir_bytes(&blocks_dir);
    let wal = dir_bytes(&data.join("store").join("single-tenant").join("wal"));
    println!("\n2. blocks");
    println!(
        "  every trace in blocks ....... {:.1}s after the last ack",
        t_wait.elapsed().as_secs_f64()
    );
    println!(
        "  store CPU push→all in blocks  {cpu_cut:.1} s = {:.2} CPU-s per 1M spans",
        cpu_cut / mspans
    );
    println!(
        "  blocks on disk .............. {:.1} MB = {:.1} B/span (WAL left: {wal} B)",
        disk as f64 / 1e6,
        disk as f64 / acc as f64
    );
    println!(
        "  peak RSS (VmHWM) so far ..... {:.0} MiB",
        status_kb(pid, "VmHWM:")? as f64 / 1024.0
    );

    // 3. Queries.
    if acked.is_empty() {
        bail!("no request was acknowledged; is the store running?");
    }
    let mut rng = StdRng::seed_from_u64(7);
    let mut byid = Vec::new();
    let mut found = 0;
    for _ in 0..1000 {
        let id = acked[rng.random_range(0..acked.len())];
        let t = Instant::now();
        let r = client
            .get(format!("{api}/api/traces/{}", hex::encode(id)))
            .send()
            .await?;
        let ok = r.status() == 200;
        let _ = r.bytes().await?;
        byid.push(t.elapsed().as_secs_f64() * 1000.0);
        found += usize::from(ok);
    }
    println!("\n3. queries");
    println!(
        "  trace by id (v1 JSON) p50/p99 {:.2} / {:.2} ms, {found}/1000 found",
        pct(&mut byid, 50.0),
        pct(&mut byid, 99.0)
    );
    let end = now_ns() / 1_000_000_000 + 1;
    let start = end - 3600;
    for q in [
        r#"{ resource.service.name = "svc-3" }"#,
        r#"{ span.http.response.status_code >= 500 }"#,
        r#"{ duration > 100ms && span.http.request.method = "POST" }"#,
        r#"{ kind = server } >> { status = error }"#,
        r#"{ resource.service.name = "svc-3" } | count() > 3"#,
        r#"{ span.http.route = "/api/checkout" } | select(span.http.response.status_code)"#,
    ] {
        let (mut l, v) = timed(&client, &format!("{api}/api/search"), q, start, end).await?;
        let n = v["traces"].as_array().map_or(0, Vec::len);
        println!(
            "  search {q:<58} p50/p99 {:.1} / {:.1} ms, {n} traces",
            pct(&mut l, 50.0),
            pct(&mut l, 99.0)
        );
    }
    streaming(&api, start, end).await?;
    metrics_queries(&client, &api, start, end).await?;

    // 4. Ack → findable.
    let mut by_id = Vec::new();
    let mut by_search = Vec::new();
    for trial in 0..5u64 {
        let mut g = load::Gen::new(1000 + trial);
        let b = g.batch(3, now_ns());
        let id = hex::encode(b.trace_ids[0]);
        let r = client
            .post(&ingest)
            .header("Content-Type", "application/x-protobuf")
            .body(b.body.clone())
            .send()
            .await?;
        if r.status() != 200 {
            bail!("probe push failed: {}", r.status());
        }
        let t = Instant::now();
        loop {
            if client
                .get(format!("{api}/api/traces/{id}"))
                .send()
                .await?
                .status()
                == 200
            {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("probe {id} not found by id");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        by_id.push(t.elapsed().as_secs_f64());
        let q = format!("{{ trace:id = \"{id}\" }}");
        let t = Instant::now();
        loop {
            let end = now_ns() / 1_000_000_000 + 1;
            let v: serde_json::Value = client
                .get(format!("{api}/api/search"))
                .query(&[
                    ("q", q.as_str()),
                    ("start", &(end - 600).to_string()),
                    ("end", &end.to_string()),
                ])
                .send()
                .await?
                .json()
                .await?;
            if v["traces"].as_array().is_some_and(|a| !a.is_empty()) {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("probe {id} not found by search");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        by_search.push(t.elapsed().as_secs_f64());
    }
    println!("\n4. ack → findable (5 trials)");
    println!(
        "  by id ....................... median {:.3}s, max {:.3}s",
        pct(&mut by_id, 50.0),
        pct(&mut by_id, 100.0)
    );
    println!(
        "  by search ................... median {:.3}s, max {:.3}s",
        pct(&mut by_search, 50.0),
        pct(&mut by_search, 100.0)
    );

    // 5. After compaction settles.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = client
        .get(format!("{api}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    println!("\n5. end");
    println!(
        "  blocks ...................... {:.0} (compacted away: {:.0})",
        metric(&text, "tempodb_blocklist_length{"),
        metric(&text, "tempodb_compaction_blocks_total{")
    );
    println!(
        "  blocks on disk .............. {:.1} MB = {:.1} B/span",
        dir_bytes(&blocks_dir) as f64 / 1e6,
        dir_bytes(&blocks_dir) as f64 / acc as f64
    );
    println!(
        "  peak RSS (VmHWM) ............ {:.0} MiB; RSS now {:.0} MiB",
        status_kb(pid, "VmHWM:")? as f64 / 1024.0,
        status_kb(pid, "VmRSS:")? as f64 / 1024.0
    );
    println!(
        "  store CPU total ............. {:.1} s",
        cpu_seconds(pid)? - cpu0
    );
    Ok(())
}

/// Runs query `q` over `[start, end]` (unix seconds) 20 times: latencies in ms and the last
/// answer.
async fn timed(
    client: &reqwest::Client,
    url: &str,
    q: &str,
    start: u64,
    end: u64,
) -> Result<(Vec<f64>, serde_json::Value)> {
    let mut l = Vec::new();
    let mut last = serde_json::Value::Null;
    for _ in 0..20 {
        let t = Instant::now();
        let r = client
            .get(url)
            .query(&[
                ("q", q),
                ("start", &start.to_string()),
                ("end", &end.to_string()),
            ])
            .send()
            .await?;
        if r.status() != 200 {
            bail!("{url} {q}: {} {}", r.status(), r.text().await?);
        }
        last = r.json().await?;
        l.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((l, last))
}

/// Tempo's streaming gRPC API (Grafana's default): a search, the same for the newest traces,
/// and a metrics range, each with its time to the first and the last message.
async fn streaming(api: &str, start: u64, end: u64) -> Result<()> {
    use sonde_store::tempopb::{
        QueryRangeRequest, QueryRangeResponse, SearchRequest, SearchResponse,
    };
    for q in [
        "{ kind = server } >> { status = error }",
        "{ kind = server } with (most_recent = true)",
    ] {
        let req = SearchRequest {
            query: q.into(),
            start: u32::try_from(start)?,
            end: u32::try_from(end)?,
            ..SearchRequest::default()
        };
        let count = |m: &SearchResponse| m.traces.len();
        streamed(api, "/tempopb.StreamingQuerier/Search", req, q, count).await?;
    }
    let q = "{ } | rate() by (resource.service.name)";
    let req = QueryRangeRequest {
        query: q.into(),
        start: start * 1_000_000_000,
        end: end * 1_000_000_000,
        step: 15_000_000_000,
        ..QueryRangeRequest::default()
    };
    let count = |m: &QueryRangeResponse| m.series.iter().map(|s| s.samples.len()).sum();
    streamed(
        api,
        "/tempopb.StreamingQuerier/MetricsQueryRange",
        req,
        q,
        count,
    )
    .await
}

/// One streaming call: prints the time to its first and last message, the messages, and the
/// items (`count`) they carried.
async fn streamed<Req, Resp>(
    api: &str,
    method: &'static str,
    req: Req,
    q: &str,
    count: impl Fn(&Resp) -> usize,
) -> Result<()>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let t = Instant::now();
    let channel = tonic::transport::Channel::from_shared(api.to_owned())?
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(req),
            path,
            tonic_prost::ProstCodec::<Req, Resp>::default(),
        )
        .await?
        .into_inner();
    let (mut first, mut items, mut messages) = (None, 0, 0);
    while let Some(m) = stream.message().await? {
        first.get_or_insert_with(|| t.elapsed());
        items += count(&m);
        messages += 1;
    }
    let last = t.elapsed();
    let name = method.rsplit('/').next().unwrap_or(method);
    println!(
        "  streaming {name} {q:<44} first / last message {:.1} / {:.1} ms, {messages} message(s), {items} items",
        first.unwrap_or(last).as_secs_f64() * 1000.0,
        last.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// TraceQL metrics over the last hour (what Grafana's metrics panels and Traces Drilldown run).
async fn metrics_queries(client: &reqwest::Client, api: &str, start: u64, end: u64) -> Result<()> {
    for q in [
        "{} | rate() by (resource.service.name)",
        "{ status = error } | count_over_time() by (resource.service.name)",
        "{ span.http.request.method = \"POST\" } | quantile_over_time(duration, .5, .99)",
        "{} | compare({ status = error })",
    ] {
        let url = format!("{api}/api/metrics/query_range");
        let (mut l, v) = timed(client, &url, q, start, end).await?;
        let series = v["series"].as_array().map_or(0, Vec::len);
        let spans = v["metrics"]["inspectedSpans"].as_str().unwrap_or("0");
        println!(
            "  query_range {q:<58} p50/p99 {:.1} / {:.1} ms, {series} series, {spans} spans",
            pct(&mut l, 50.0),
            pct(&mut l, 99.0)
        );
    }
    Ok(())
}
