//! `cargo xtask bench kernel`: what the kernel programs cost per hit and per request, from the
//! kernel's own BPF run-time statistics (`kernel.bpf_stats_enabled`), while wrk loads nginx or
//! python3 http.server traced by `sonde agent --no-export`. Hits include every process's
//! syscalls (wrk's too): a tracepoint program runs for all of them and filters inside.
use std::{collections::HashMap, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};

use super::overhead::{free_port, sonde_bin, start_target, stop, wrk};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of wrk load.
    #[arg(long, default_value_t = 5)]
    duration: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 2)]
    connections: u32,
    /// Targets to run (nginx, python).
    #[arg(long, value_delimiter = ',', default_value = "nginx,python")]
    targets: Vec<String>,
}

const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `(run_cnt, run_time_ns)` of every loaded tracepoint program, by program name.
fn tracepoint_stats() -> Result<HashMap<String, (u64, u64)>> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .context("run bpftool (cargo xtask setup installs it)")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let progs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    Ok(progs
        .iter()
        .filter(|p| p["type"] == "tracepoint")
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_owned(),
                (p["run_cnt"].as_u64()?, p["run_time_ns"].as_u64()?),
            ))
        })
        .collect())
}

pub fn run(args: &Args) -> Result<()> {
    let bin = sonde_bin()?;
    let before = std::fs::read_to_string(STATS).context("read kernel.bpf_stats_enabled")?;
    for target in &args.targets {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let server = start_target(target, dir.path(), port)?;
        let mut agent = Command::new(&bin)
            .args([
                "agent",
                "--port",
                &port.to_string(),
                "--no-client",
                "--no-export",
            ])
            .args(["--metrics-listen-address", ""])
            .env("SONDE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_secs(3));
        std::fs::write(STATS, "1").context("enable kernel.bpf_stats_enabled")?;
        let t0 = tracepoint_stats();
        let load = wrk(port, args.connections, args.duration);
        let t1 = tracepoint_stats();
        std::fs::write(STATS, before.trim())?;
        stop(&mut agent);
        drop(server);
        let (t0, t1, (requests, rps)) = (t0?, t1?, load?);
        println!(
            "{target}: {requests} requests ({rps:.0}/s, wrk -c{}), sonde agent --no-export",
            args.connections
        );
        println!("  program                      hits/request  ns/hit  ns/request");
        let mut rows: Vec<(String, f64, f64, f64)> = t1
            .iter()
            .filter_map(|(name, &(cnt, ns))| {
                let (c0, n0) = t0.get(name).copied().unwrap_or((0, 0));
                let hits = cnt.checked_sub(c0).filter(|&h| h > 0)?;
                let spent = ns.saturating_sub(n0);
                let per_req = |v: u64| v as f64 / requests.max(1) as f64;
                Some((
                    name.clone(),
                    per_req(hits),
                    spent as f64 / hits as f64,
                    per_req(spent),
                ))
            })
            .collect();
        rows.sort_by(|a, b| b.3.total_cmp(&a.3));
        for (name, hits, ns_hit, ns_req) in &rows {
            println!("  {name:<28} {hits:>12.2}  {ns_hit:>6.0}  {ns_req:>10.0}");
        }
        let total: f64 = rows.iter().map(|r| r.3).sum();
        println!("  total BPF ns per request: {total:.0}");
    }
    Ok(())
}
