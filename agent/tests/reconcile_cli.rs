//! `sonde reconcile` as a user runs it: exit codes (0 ok, 2 pending in --dry-run, 64 invalid
//! config, 1 failure), files written by --once, and secrets kept out of the output.
use std::{path::Path, process::Command};

fn sonde(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(args)
        .env_remove("SONDE_CONFIG")
        .env("SONDE_LOG", "warn")
        .output()
        .expect("run sonde");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("sonde.yaml");
    std::fs::write(&path, body).expect("write config");
    path.display().to_string()
}

/// Provisioning mode, with the user's own provisioning file for the Loki and Prometheus that
/// Sonde links back from (listed under `provisioning_files`, so Sonde keeps its entries there).
fn provisioning_config(dir: &Path) -> String {
    let user = dir.join("user-datasources.yaml");
    std::fs::write(
        &user,
        "apiVersion: 1\ndatasources:\n- name: Logs\n  uid: loki-home\n  type: loki\n  \
         url: http://loki:3100\n- name: Prometheus\n  uid: prom-home\n  type: prometheus\n  \
         url: http://prom:9090\n",
    )
    .expect("write the user's provisioning file");
    let body = format!(
        "reconcile:\n  mode: provisioning\n  output_dir: {}\n  grafanas:\n    - id: home\n      \
         provisioning_files: [{}]\n  tempos:\n    - name: Sonde traces\n      uid: sonde-traces\n      url: http://sonde:3200\n      \
         tenant:\n        value: s3cr3t-tenant\n  metrics:\n    - uid: prom-home\n      grafana: home\n  \
         logs:\n    - uid: loki-home\n      grafana: home\n",
        dir.join("out").display(),
        user.display()
    );
    write_config(dir, &body)
}

#[test]
fn missing_or_invalid_config_exits_64_with_a_clear_message() {
    let (code, _, err) = sonde(&["reconcile", "--once"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--config"), "{err}");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), "reconcile:\n  interval: 0s\n  tempos: []\n");
    let (code, _, err) = sonde(&["reconcile", "--config", &cfg, "--once"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains(&cfg)
            && err.contains("reconcile.interval: must be greater than 0")
            && err.contains("reconcile.grafanas: list at least one Grafana"),
        "{err}"
    );
    let cfg = write_config(dir.path(), "reconcile:\n  interval: often\n");
    let (code, _, err) = sonde(&["reconcile", "--config", &cfg, "--once"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("interval") && err.contains("10s"), "{err}");
    let cfg = write_config(dir.path(), "reconcile:\n  grafana: []\n");
    let (code, _, err) = sonde(&["reconcile", "--config", &cfg, "--dry-run"]);
    assert_eq!(code, 64, "unknown key: {err}");
}

#[test]
fn dry_run_exits_2_when_pending_then_once_applies_then_nothing_is_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = provisioning_config(dir.path());
    let file = dir.path().join("out/home/datasources/sonde.yaml");

    let (code, out, err) = sonde(&["reconcile", "--config", &cfg, "--dry-run"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("file would write") && out.contains("+ create tempo"),
        "{out}"
    );
    assert!(
        !out.contains("s3cr3t-tenant"),
        "secret masked in the plan: {out}"
    );
    assert!(!file.exists(), "dry run writes nothing");

    let (code, out, err) = sonde(&["reconcile", "--config", &cfg, "--once"]);
    assert_eq!(code, 0, "{out}{err}");
    let written = std::fs::read_to_string(&file).expect("provisioning file");
    assert!(written.contains("datasourceUid: prom-home") && written.contains("{$$__tags}"));
    assert!(!out.contains("s3cr3t-tenant") && !err.contains("s3cr3t-tenant"));

    let (code, out, err) = sonde(&["reconcile", "--config", &cfg, "--dry-run"]);
    assert_eq!(code, 0, "nothing pending after --once: {out}{err}");

    // --mode overrides the file.
    let (code, out, _) = sonde(&["reconcile", "--config", &cfg, "--dry-run", "--mode", "api"]);
    assert_eq!(code, 64, "api mode needs a url: {out}");
}

#[test]
fn unreachable_grafana_exits_1_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "not-a-real-token\n").expect("token");
    // Port 9 (discard) on loopback: nothing listens there in the test environment.
    let body = format!(
        "reconcile:\n  grafanas:\n    - id: far\n      url: http://127.0.0.1:9\n      token:\n        \
         file: {}\n  tempos:\n    - name: t\n      url: http://tempo:3200\n",
        token.display()
    );
    let cfg = write_config(dir.path(), &body);
    let (code, out, err) = sonde(&["reconcile", "--config", &cfg, "--once"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("grafana far: failed")
            && out.contains("cannot reach")
            && out.to_ascii_lowercase().contains("connection refused"),
        "the cause is kept: {out}"
    );
    assert!(
        out.contains("summary: 1 of 1 Grafana(s) failed: far"),
        "{out}"
    );
    assert!(!out.contains("not-a-real-token") && !err.contains("not-a-real-token"));
}
