//! Shared helpers for the store integration tests: run the built `sonde store` binary on free
//! loopback ports with a temp data dir, wait for readiness, build OTLP requests.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `sonde store`.
pub struct StoreProc {
    pub child: Child,
    pub api: String,
    pub grpc: String,
    pub http: String,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl StoreProc {
    /// Start with `extra` YAML lines appended under `store:` (two-space indented).
    pub fn start(dir: &Path, extra: &str) -> Self {
        let (a, g, h) = (free_port(), free_port(), free_port());
        let config = dir.join("sonde.yaml");
        let yaml = format!(
            "store:\n  data_dir: {}\n  http_listen_address: 127.0.0.1:{a}\n  otlp_grpc_listen_address: 127.0.0.1:{g}\n  otlp_http_listen_address: 127.0.0.1:{h}\n{extra}",
            dir.join("data").display()
        );
        std::fs::write(&config, yaml).expect("write config");
        let mut p = Self {
            child: spawn(&config),
            api: format!("http://127.0.0.1:{a}"),
            grpc: format!("127.0.0.1:{g}"),
            http: format!("http://127.0.0.1:{h}"),
            dir: dir.to_path_buf(),
            config,
        };
        p.wait_ready();
        p
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = self.api.trim_start_matches("http://").to_string();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sonde store exited early: {status}");
            }
            if std::net::TcpStream::connect(&addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sonde store did not become ready on {addr}");
    }

    /// `kill -9`, then start again on the same ports and data.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.child = spawn(&self.config);
        self.wait_ready();
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sonde"))
        .args(["store", "--config"])
        .arg(config)
        .env("SONDE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sonde store")
}

impl Drop for StoreProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn kv_s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// A request with one resource (service) and the given spans.
pub fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_s("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Run `agent/tests/store/send_traces.py`; returns its JSON output.
pub fn python_send(
    kind: &str,
    endpoint: &str,
    service: &str,
    n: usize,
    tenant: Option<&str>,
) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/store/send_traces.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args([kind, endpoint, service, &n.to_string()]);
    if let Some(t) = tenant {
        cmd.arg(t);
    }
    let out = cmd.output().expect(
        "python3 must be installed with: pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http",
    );
    assert!(
        out.status.success(),
        "send_traces.py failed (pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("send_traces.py prints JSON")
}
