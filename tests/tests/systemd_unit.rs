//! The systemd unit in deploy/systemd: systemd accepts it, its hardening rates at most 3.0 on
//! `systemd-analyze security`, and the capability set it grants is enough: the agent run as an
//! unprivileged user holding exactly those capabilities (what `DynamicUser=` and
//! `AmbientCapabilities=` give it) captures a request, and says once that it cannot put its
//! Go client uprobes on a Go program of another user (that takes CAP_SYS_PTRACE and
//! CAP_SYS_ADMIN, which the unit leaves out). (No systemd runs as PID 1 here, so the unit
//! itself is checked offline; its seccomp filter is not exercised.)
use std::{path::PathBuf, process::Command, time::Duration};

use sonde_e2e::{
    Proc,
    agent::sonde_bin,
    curl, free_port,
    otlp::{attr, start_receiver},
    python_http_server, require_kernel,
    servers::hop,
};

fn unit_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/sonde.service")
}

/// The unit with `ExecStart` pointing at the binary built for these tests (`verify` wants
/// the executable to exist).
fn unit_for_test(dir: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(unit_file()).unwrap();
    let path = dir.join("sonde.service");
    std::fs::write(
        &path,
        text.replace("/usr/local/bin/sonde", &sonde_bin().display().to_string()),
    )
    .unwrap();
    path
}

#[test]
fn systemd_accepts_the_unit_and_rates_it_at_most_3() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (apt install systemd)");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for sonde.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(exposure <= 3.0, "exposure {exposure} > 3.0:\n{text}");
}

/// The capabilities the unit grants, as `setpriv` names them (`+bpf,+perfmon,…`).
fn unit_capabilities() -> String {
    let text = std::fs::read_to_string(unit_file()).unwrap();
    let caps = text
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities= in the unit");
    caps.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_units_capabilities_are_enough_for_an_unprivileged_agent() {
    require_kernel!();
    let caps = unit_capabilities();
    assert_eq!(caps, "+bpf,+perfmon,+dac_read_search");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "hi").unwrap();
    let port = free_port();
    let _server = python_http_server(dir.path(), port);
    // A Go program run by root, another user than the agent's.
    let go_port = free_port();
    let _go = hop("go", dir.path(), go_port, Some(port), false);
    let log = dir.path().join("agent.log");
    let (addr, received) = start_receiver().await;
    let metrics = free_port();
    // `nobody`, with the unit's capabilities as ambient ones and no others.
    let agent = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &format!("--inh-caps=-all,{caps}"),
            &format!("--ambient-caps=-all,{caps}"),
            &format!("--bounding-set=-all,{caps}"),
        ])
        .arg(sonde_bin())
        .args([
            "agent",
            "--port",
            &format!("{port},{go_port}"),
            "--metrics-listen-address",
            &format!("127.0.0.1:{metrics}"),
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("setpriv (util-linux)");
    let mut agent = Proc(agent);
    // The agent is up once its metrics answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", metrics)).is_err() {
        assert!(
            agent.0.try_wait().unwrap().is_none(),
            "the agent exited as an unprivileged user with the unit's capabilities"
        );
        assert!(std::time::Instant::now() < deadline, "agent not up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, _) = curl(&[&format!("http://127.0.0.1:{port}/index.html")]);
    assert!(ok);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let found = received
            .spans()
            .iter()
            .any(|(_, s)| attr(s, "url.path").as_deref() == Some("/index.html"));
        if found {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no span captured");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Root's Go program cannot be probed by `nobody` without CAP_SYS_PTRACE and
    // CAP_SYS_ADMIN: the agent says so, once, and goes on capturing.
    for _ in 0..2 {
        let (ok, _) = curl(&[&format!("http://127.0.0.1:{go_port}/go")]);
        assert!(ok);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Go client probes off") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no word on the Go probes:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(text.matches("Go client probes off").count(), 1, "{text}");
    assert!(text.contains("CAP_SYS_PTRACE"), "{text}");
    assert!(!text.contains("Go client probes attached"), "{text}");
}
