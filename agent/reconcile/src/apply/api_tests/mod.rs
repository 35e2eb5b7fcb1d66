//! API-mode tests against the in-process fake Grafana (see `fake_grafana.rs`): the shared
//! setup here, one module per concern.
use std::io::Write as _;

use serde_json::{Value, json};

use super::reconcile;
use crate::{
    GrafanaReport, Outcome,
    apply::client_for,
    config::{BackendRef, GrafanaConfig, ReconcileSection, SecretSource, TempoConfig},
    diff::Action,
    fake_grafana::FakeGrafana,
    observed::grafana::ApiError,
    resolve_tempos,
};

const TOKEN: &str = "glsa_test_token";

struct Setup {
    fake: FakeGrafana,
    section: ReconcileSection,
    _token_file: tempfile::NamedTempFile,
}

async fn setup() -> Setup {
    let fake = FakeGrafana::start(TOKEN, "admin:pw").await;
    {
        let mut st = fake.state();
        st.seed(
            json!({"uid": "loki-a", "name": "Loki", "type": "loki", "url": "http://loki:3100",
                   "jsonData": {"maxLines": 1000, "derivedFields": [
                       {"name": "user-link", "matcherRegex": "req=(\\w+)", "url": "http://x/${__value.raw}"}]}}),
            &[],
        );
        st.seed(
            json!({"uid": "prom-a", "name": "Prometheus", "type": "prometheus",
                       "url": "http://prom:9090", "jsonData": {"httpMethod": "POST"}}),
            &[],
        );
    }
    let mut token_file = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(token_file, "{TOKEN}").expect("write token");
    let section = ReconcileSection {
        grafanas: vec![GrafanaConfig {
            id: "g1".into(),
            url: Some(fake.url()),
            org_id: 1,
            token: Some(SecretSource {
                file: Some(token_file.path().into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        tempos: vec![TempoConfig {
            name: "Sonde traces".into(),
            url: "http://sonde:3200".into(),
            tenant: Some(SecretSource {
                value: Some("team-a".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        metrics: vec![BackendRef {
            kind: Some("prometheus".into()),
            ..Default::default()
        }],
        logs: vec![BackendRef {
            name: Some("Loki".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    section.validate().expect("valid test config");
    Setup {
        fake,
        section,
        _token_file: token_file,
    }
}

async fn run(section: &ReconcileSection, dry_run: bool) -> GrafanaReport {
    let client = client_for(&section.grafanas[0])
        .expect("client")
        .expect("has url");
    let tempos = resolve_tempos(section).expect("tempos");
    reconcile(&client, section, &tempos, dry_run).await
}

/// Log in as `admin` with `password` (read from the returned file) instead of the token.
fn basic_auth(section: &mut ReconcileSection, password: &str) -> tempfile::NamedTempFile {
    let mut pw = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(pw, "{password}").expect("write");
    section.grafanas[0].token = None;
    section.grafanas[0].basic_auth = Some(crate::config::BasicAuth {
        user: "admin".into(),
        password: SecretSource {
            file: Some(pw.path().into()),
            ..Default::default()
        },
    });
    pw
}

fn outcomes(r: &GrafanaReport) -> Vec<(String, Outcome)> {
    r.items
        .iter()
        .map(|i| (i.planned.uid.clone(), i.outcome.clone()))
        .collect()
}

mod cleanup;
mod client;
mod conflicts;
mod drift;
mod linking;
mod secrets;
