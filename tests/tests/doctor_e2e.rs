//! `sonde doctor` on the real machine: as root it passes every check capture needs and finds a
//! live OTLP endpoint; as an unprivileged user it fails on capabilities, says how to fix it,
//! and exits 1.
use std::process::Command;

use sonde_e2e::{agent::sonde_bin, otlp::start_receiver, require_kernel};

fn doctor(prefix: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(sonde_bin());
            c
        }
        None => Command::new(sonde_bin()),
    };
    let out = cmd
        .arg("doctor")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run sonde doctor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_here_and_names_a_live_endpoint() {
    require_kernel!();
    let (addr, _received) = start_receiver().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
    ];
    let (code, out) = tokio::task::spawn_blocking(move || doctor(&[], &env))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    for line in [
        "PASS  BTF",
        "PASS  tracefs",
        "PASS  capabilities",
        "PASS  eBPF object",
        "PASS  tracepoints",
        "PASS  OTLP endpoint",
    ] {
        assert!(out.contains(line), "{line} missing:\n{out}");
    }
    assert!(out.contains("answers OTLP"), "{out}");
    assert!(out.contains("Listening processes"), "{out}");
}

#[test]
fn doctor_without_capabilities_fails_and_says_how_to_fix_it() {
    require_kernel!();
    let (code, out) = doctor(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL  capabilities"), "{out}");
    assert!(
        out.contains("fix: run as root, or grant exactly these three"),
        "{out}"
    );
}
