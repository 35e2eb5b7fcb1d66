//! Runs the real `sonde agent` binary as a child process, exporting to an in-test receiver.
use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::Proc;

/// The `sonde` binary built for these tests (`cargo xtask test` builds it first; when running
/// these tests by hand, run `cargo build -p sonde` before).
pub fn sonde_bin() -> PathBuf {
    // tests/ is a workspace member; the binary sits in the same target dir as this test.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = dir.join("sonde");
    assert!(
        bin.exists(),
        "{} missing: build the sonde binary first (cargo build -p sonde)",
        bin.display()
    );
    bin
}

/// The release build of `sonde`, for tests that measure what users run (`cargo xtask test`
/// builds it right before the tests; by hand: `cargo build --release -p sonde --bin sonde`).
pub fn release_sonde_bin() -> PathBuf {
    let bin = sonde_bin()
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("release/sonde");
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p sonde --bin sonde",
        bin.display()
    );
    bin
}

/// Start `sonde agent <args>` exporting OTLP/gRPC to `receiver`; returns once it is capturing.
pub fn start_agent(receiver: SocketAddr, args: &[&str]) -> Proc {
    start_agent_with_env(receiver, args, &[])
}

/// [`start_agent`] with more environment variables.
pub fn start_agent_with_env(receiver: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> Proc {
    spawn_agent(&sonde_bin(), receiver, args, env)
}

/// [`start_agent`] with a given `sonde` binary.
pub fn start_agent_bin(bin: &std::path::Path, receiver: SocketAddr, args: &[&str]) -> Proc {
    spawn_agent(bin, receiver, args, &[])
}

/// A learnt-routes file no other agent of these tests uses (in the temporary directory).
fn fresh_routes_file() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "sonde-e2e-routes-{}-{n}/learnt-routes.json",
        std::process::id()
    ))
}

fn spawn_agent(
    bin: &std::path::Path,
    receiver: SocketAddr,
    args: &[&str],
    env: &[(&str, &str)],
) -> Proc {
    let child = Command::new(bin)
        .arg("agent")
        .args(args)
        // Each agent learns its own routes: nothing kept between agents (or in the host's
        // state directory).
        .env("SONDE_LEARNT_ROUTES_FILE", fresh_routes_file())
        .envs(env.iter().copied())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{receiver}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env(
            "SONDE_LOG",
            std::env::var("SONDE_E2E_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env(
            "SONDE_PRINT",
            std::env::var("SONDE_E2E_PRINT").unwrap_or_else(|_| "off".into()),
        )
        .stdout(if std::env::var("SONDE_E2E_PRINT").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sonde agent");
    until_logged(child, "agent", "capturing")
}

/// Start `sonde <job> <args>` (`all` or `store`) with the store's data in `data` and its three
/// listeners (Tempo API, OTLP gRPC, OTLP HTTP) on `ports`; returns once its log shows `ready`.
pub fn start_sonde(job: &str, args: &[String], data: &Path, ports: [u16; 3], ready: &str) -> Proc {
    let [api, grpc, http] = ports;
    let child = Command::new(sonde_bin())
        .arg(job)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(["--http-listen-address", &format!("127.0.0.1:{api}")])
        .args(["--otlp-grpc-listen-address", &format!("127.0.0.1:{grpc}")])
        .args(["--otlp-http-listen-address", &format!("127.0.0.1:{http}")])
        .env("SONDE_LEARNT_ROUTES_FILE", fresh_routes_file())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start sonde {job}: {e}"));
    until_logged(child, job, ready)
}

/// Echo `child`'s stderr (prefixed with `[name]`) and return once a line contains `ready`
/// (within 30 s).
fn until_logged(mut child: std::process::Child, name: &str, ready: &str) -> Proc {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let (name, ready) = (name.to_owned(), ready.to_owned());
    let label = name.clone();
    let wanted = ready.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{label}] {line}");
            if line.contains(&wanted) {
                let _ = tx.send(());
            }
        }
    });
    let proc = Proc(child);
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("sonde {name} did not log {ready:?}"));
    proc
}

/// The agent's `/metrics` text on `port`.
pub async fn scrape(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// One sample's value in a Prometheus text exposition (panics when absent).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing in {text}"))
}
