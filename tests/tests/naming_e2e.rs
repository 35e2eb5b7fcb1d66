//! End to end on the real kernel: short-lived clients (curl, wget) that exit before the agent
//! drains their records keep their names. `OTEL_SERVICE_NAME` set in their environment names
//! them; without it, their executable does. No span is named a bare `unknown_service`.
use std::{collections::HashMap, process::Command, time::Duration};

use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value},
    trace::v1::span::SpanKind,
};
use sonde_e2e::{
    agent::start_agent,
    free_port,
    otlp::{attr, start_receiver},
    python_http_server, require_kernel,
};

const RUNS: usize = 10;

fn service_name(resource: &[KeyValue]) -> String {
    resource
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_clients_keep_their_names() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "hi").unwrap();
    let port = free_port();
    let _server = python_http_server(dir.path(), port);
    let metrics = free_port();
    let (addr, received) = start_receiver().await;
    let _agent = start_agent(
        addr,
        &["--metrics-listen-address", &format!("127.0.0.1:{metrics}")],
    );
    // (client, OTEL_SERVICE_NAME or none, path): each path tells its run apart.
    let mut want: HashMap<String, String> = HashMap::new();
    for i in 0..RUNS {
        for (client, name) in [
            ("curl", Some("nightly-export")),
            ("wget", Some("batch-wget")),
            ("curl", None),
        ] {
            let path = format!("/{client}-{}-{i}", name.unwrap_or("plain"));
            let url = format!("http://127.0.0.1:{port}{path}");
            let mut cmd = Command::new(client);
            match client {
                "curl" => cmd.args(["-s", "-o", "/dev/null", &url]),
                _ => cmd.args(["-q", "-O", "/dev/null", &url]),
            };
            cmd.env_remove("OTEL_SERVICE_NAME");
            if let Some(name) = name {
                cmd.env("OTEL_SERVICE_NAME", name);
            }
            // 404s are fine: only the client's span matters.
            let _ = cmd.status().expect("run the client");
            want.insert(path, name.unwrap_or(client).to_owned());
        }
    }
    let client_spans = || {
        received
            .spans()
            .into_iter()
            .filter(|(_, s)| {
                s.kind == SpanKind::Client as i32
                    && attr(s, "server.port") == Some(port.to_string())
            })
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while client_spans().len() < want.len() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got: HashMap<String, String> = client_spans()
        .into_iter()
        .map(|(resource, s)| {
            (
                attr(&s, "url.path").unwrap_or_default(),
                service_name(&resource),
            )
        })
        .collect();
    let wrong: Vec<String> = want
        .iter()
        .filter(|(path, name)| got.get(*path) != Some(*name))
        .map(|(path, name)| format!("{path}: want {name}, got {:?}", got.get(path)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} short-lived clients misnamed: {wrong:?}",
        wrong.len(),
        want.len()
    );
}
