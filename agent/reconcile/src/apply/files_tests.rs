//! File-mode tests: golden provisioning YAML and operator manifests, idempotence, dry runs.
//! Re-bless the golden files with `UPDATE_GOLDEN=1`; a mismatch writes `<name>.actual`.
use std::{io::Write as _, path::Path};

use rstest::rstest;
use serde_json::json;

use super::*;
use crate::{
    config::{BackendRef, BasicAuth, OperatorTarget, SecretSource, TempoConfig},
    fake_grafana::FakeGrafana,
    render, resolve_tempos,
};

/// Compare `actual` with `testdata/<name>`.
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/testdata")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if want != actual {
        let out = path.with_file_name(format!("{name}.actual"));
        std::fs::write(&out, actual).expect("write .actual");
        panic!(
            "{} differs from the output (written to {}); if the change is intended, re-run \
             with UPDATE_GOLDEN=1\n{}",
            path.display(),
            out.display(),
            textdiff::diff(&want, actual)
        );
    }
}

fn uid_ref(uid: &str, grafana: &str) -> BackendRef {
    BackendRef {
        uid: Some(uid.into()),
        grafana: Some(grafana.into()),
        ..Default::default()
    }
}

struct Setup {
    section: ReconcileSection,
    _dir: tempfile::TempDir,
    _token: tempfile::NamedTempFile,
}

/// Two Grafanas without API access, disjoint backends given as exchange data.
fn setup(mode: Mode) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut token = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(token, "tempo-token").expect("write");
    let grafana = |id: &str| GrafanaConfig {
        id: id.into(),
        org_id: 1,
        operator: OperatorTarget {
            namespace: "monitoring".into(),
            instance_selector: [("dashboards".to_string(), id.to_string())].into(),
            secret_name: "sonde-datasource-secrets".into(),
        },
        ..Default::default()
    };
    let section = ReconcileSection {
        mode,
        output_dir: dir.path().into(),
        grafanas: vec![grafana("g1"), grafana("g2")],
        tempos: vec![TempoConfig {
            name: "Sonde traces".into(),
            uid: Some("sonde-traces".into()),
            url: "http://sonde:3200".into(),
            tenant: Some(SecretSource {
                value: Some("team-a".into()),
                ..Default::default()
            }),
            bearer_token: Some(SecretSource {
                file: Some(token.path().into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        metrics: vec![uid_ref("prom-1", "g1"), uid_ref("mimir-2", "g2")],
        logs: vec![uid_ref("loki-1", "g1")],
        ..Default::default()
    };
    section.validate().expect("valid");
    Setup {
        section,
        _dir: dir,
        _token: token,
    }
}

async fn run_all(section: &ReconcileSection, dry_run: bool) -> Vec<GrafanaReport> {
    let tempos = resolve_tempos(section).expect("tempos");
    let mut out = Vec::new();
    for g in &section.grafanas {
        out.push(reconcile(section.mode, g, None, section, &tempos, dry_run).await);
    }
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test]
async fn provisioning_files_match_golden_and_second_run_writes_nothing() {
    let s = setup(Mode::Provisioning);
    let reports = run_all(&s.section, false).await;
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");
    for g in &s.section.grafanas {
        let (main, back) = paths(Mode::Provisioning, &s.section.output_dir, g);
        let text = read(&main);
        assert!(
            text.contains("{$$__tags}"),
            "provisioning escapes $: {text}"
        );
        golden(&format!("provisioning_{}.yaml", g.id), &text);
        golden(
            &format!("provisioning_{}_backlinks.yaml", g.id),
            &read(&back),
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&main).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the file holds secrets");
        }
    }
    assert_eq!(reports.iter().map(|r| r.writes).sum::<usize>(), 4);
    let again = run_all(&s.section, false).await;
    assert_eq!(
        again.iter().map(|r| r.writes).sum::<usize>(),
        0,
        "idempotent"
    );
    assert!(again.iter().all(|r| !r.pending()));
    let tempo = &again[0].items[0];
    assert_eq!(
        (tempo.planned.uid.as_str(), &tempo.outcome),
        ("sonde-traces", &Outcome::Unchanged)
    );
}

#[tokio::test]
async fn operator_manifests_match_golden_and_hold_no_secret() {
    let s = setup(Mode::Operator);
    let reports = run_all(&s.section, false).await;
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");
    for g in &s.section.grafanas {
        let (main, back) = paths(Mode::Operator, &s.section.output_dir, g);
        let text = read(&main);
        assert!(
            !text.contains("team-a") && !text.contains("tempo-token"),
            "{text}"
        );
        assert!(
            text.contains("{$__tags}") && !text.contains("$$"),
            "no escaping for CRDs"
        );
        golden(&format!("operator_{}.yaml", g.id), &text);
        golden(&format!("operator_{}_backlinks.yaml", g.id), &read(&back));
    }
    let notes = reports[0].notes.join("\n");
    assert!(notes.contains("SONDE_TRACES_HTTPHEADERVALUE1"), "{notes}");
}

#[tokio::test]
async fn dry_run_shows_a_masked_diff_and_writes_nothing() {
    let mut s = setup(Mode::Provisioning);
    let plan = run_all(&s.section, true).await;
    assert!(plan.iter().all(GrafanaReport::pending));
    let (main, _) = paths(
        Mode::Provisioning,
        &s.section.output_dir,
        &s.section.grafanas[0],
    );
    assert!(!main.exists(), "dry run wrote {}", main.display());
    let text = render::reports(&plan, true);
    assert!(
        text.contains("file would write") && text.contains("+ apiVersion: 1"),
        "{text}"
    );
    assert!(
        !text.contains("team-a") && !text.contains("tempo-token"),
        "{text}"
    );
    // After a real run, changing only the secret still counts as a change, shown masked.
    run_all(&s.section, false).await;
    s.section.tempos[0].tenant = Some(SecretSource {
        value: Some("team-b".into()),
        ..Default::default()
    });
    let plan = run_all(&s.section, true).await;
    assert!(plan[0].files[0].changed);
    assert_eq!(plan[0].files[0].diff, "(secret values changed)\n");
}

#[tokio::test]
async fn with_api_access_names_are_resolved_and_grafana_is_reloaded() {
    let fake = FakeGrafana::start("tok", "admin:pw").await;
    fake.state().seed(
        json!({"uid": "loki-x", "name": "Logs", "type": "loki",
        "jsonData": {"derivedFields": [{"name": "mine", "matcherRegex": "x=(\\w+)"}]}}),
        &[],
    );
    let mut pw = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(pw, "pw").expect("write");
    let mut s = setup(Mode::Provisioning);
    s.section.grafanas.truncate(1);
    s.section.grafanas[0].url = Some(fake.url());
    s.section.grafanas[0].basic_auth = Some(BasicAuth {
        user: "admin".into(),
        password: SecretSource {
            file: Some(pw.path().into()),
            ..Default::default()
        },
    });
    s.section.logs = vec![BackendRef {
        name: Some("Logs".into()),
        ..Default::default()
    }];
    s.section.metrics = vec![uid_ref("prom-1", "g1")];
    s.section.validate().expect("valid");
    let client = crate::apply::client_for(&s.section.grafanas[0])
        .expect("c")
        .expect("url");
    let tempos = resolve_tempos(&s.section).expect("tempos");
    let g = &s.section.grafanas[0];
    let report = reconcile(
        Mode::Provisioning,
        g,
        Some(&client),
        &s.section,
        &tempos,
        false,
    )
    .await;
    assert_eq!(report.error, None);
    assert_eq!(fake.state().reloads, 1);
    assert_eq!(
        fake.state().writes,
        0,
        "file mode never writes datasources through the API"
    );
    let (_, back) = paths(Mode::Provisioning, &s.section.output_dir, g);
    let back = read(&back);
    assert!(
        back.contains("name: mine") && back.contains("datasourceUid: sonde-traces"),
        "{back}"
    );
    assert!(back.contains("$${__value.raw}"), "{back}");
    // `prom-1` is exchange data for g1 but this Grafana has no such datasource: no link.
    assert_eq!(
        report.unlinked,
        [
            "tempo \"Sonde traces\" → metrics: uid \"prom-1\" is not in this Grafana (deleted or \
             re-created?)"
        ],
    );
    let main = read(&paths(Mode::Provisioning, &s.section.output_dir, g).0);
    assert!(!main.contains("serviceMap"), "{main}");
}

#[rstest]
#[case::list_item(
    "  - name: T\n    secureJsonData:\n      k: v\n      k2: v2\n    type: tempo\n",
    "  - name: T\n    secureJsonData:\n      k: ******\n      k2: ******\n    type: tempo\n"
)]
#[case::first_key_of_item(
    "- secureJsonData:\n    k: secret\n  type: tempo\n",
    "- secureJsonData:\n    k: ******\n  type: tempo\n"
)]
#[case::nothing_secret("a: 1\nb: 2\n", "a: 1\nb: 2\n")]
#[case::empty("", "")]
fn masks_secure_blocks(#[case] input: &str, #[case] want: &str) {
    assert_eq!(mask_secure_lines(input), want);
}

/// A reload that Grafana refuses (HTTP 500) is an error with Grafana's reason, the previous
/// file is put back (a file Grafana cannot load can keep it from starting), and the next run
/// tries again.
#[tokio::test]
async fn a_failed_provisioning_reload_is_an_error_with_grafanas_reason() {
    let fake = FakeGrafana::start("tok", "admin:pw").await;
    fake.state().reload_error = Some("data source with the same uid already exists".into());
    let mut pw = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(pw, "pw").expect("write");
    let mut s = setup(Mode::Provisioning);
    s.section.grafanas.truncate(1);
    s.section.grafanas[0].url = Some(fake.url());
    s.section.grafanas[0].basic_auth = Some(BasicAuth {
        user: "admin".into(),
        password: SecretSource {
            file: Some(pw.path().into()),
            ..Default::default()
        },
    });
    s.section.metrics.truncate(1);
    s.section.validate().expect("valid");
    let client = crate::apply::client_for(&s.section.grafanas[0])
        .expect("c")
        .expect("url");
    let tempos = resolve_tempos(&s.section).expect("tempos");
    let g = &s.section.grafanas[0];
    let go = || {
        reconcile(
            Mode::Provisioning,
            g,
            Some(&client),
            &s.section,
            &tempos,
            false,
        )
    };
    let report = go().await;
    let err = report.error.clone().expect("an error");
    assert!(
        err.contains("same uid already exists") && err.contains("500"),
        "{err}"
    );
    assert!(
        !err.contains("permission"),
        "not a permission problem: {err}"
    );
    assert_eq!(crate::exit_code(&[report], false), 1);
    let main = paths(Mode::Provisioning, &s.section.output_dir, g).0;
    assert!(
        !main.exists(),
        "the file Grafana refused is not left behind"
    );
    fake.state().reload_error = None;
    let report = go().await;
    assert_eq!(report.error, None);
    assert_eq!(fake.state().reloads, 1, "retried on the next run");
    assert!(main.exists());
}

/// What Sonde provisioned and no longer wants goes under `deleteDatasources`: a renamed Tempo
/// keeping its uid (else Grafana's reload fails "data source with the same uid already
/// exists") and a Tempo removed from the config (else it stays, read-only, forever).
#[tokio::test]
async fn provisioning_deletes_what_sonde_no_longer_wants() {
    let mut s = setup(Mode::Provisioning);
    s.section.grafanas.truncate(1);
    s.section.metrics.truncate(1);
    s.section.validate().expect("valid");
    run_all(&s.section, false).await;
    let main = paths(
        Mode::Provisioning,
        &s.section.output_dir,
        &s.section.grafanas[0],
    )
    .0;
    let doc = |p: &Path| -> serde_yaml::Value { serde_yaml::from_str(&read(p)).expect("yaml") };
    assert!(doc(&main).get("deleteDatasources").is_none());
    s.section.tempos[0].name = "Renamed traces".into();
    run_all(&s.section, false).await;
    let d = doc(&main);
    assert_eq!(
        serde_yaml::to_string(&d["deleteDatasources"]).expect("yaml"),
        "- name: Sonde traces\n  orgId: 1\n",
    );
    assert_eq!(d["datasources"][0]["name"].as_str(), Some("Renamed traces"));
    assert_eq!(d["datasources"][0]["uid"].as_str(), Some("sonde-traces"));
    // Idempotent: the next run keeps the delete (a Grafana restarted later needs it too).
    assert!(!run_all(&s.section, false).await[0].files[0].changed);
    s.section.tempos.clear();
    run_all(&s.section, false).await;
    let d = doc(&main);
    let names: Vec<_> = d["deleteDatasources"]
        .as_sequence()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["Renamed traces", "Sonde traces"]);
    assert_eq!(d["datasources"].as_sequence().map(Vec::len), Some(0));
    // Wanted again: no longer deleted.
    s.section.tempos.push(TempoConfig {
        name: "Sonde traces".into(),
        url: "http://sonde:3200".into(),
        ..Default::default()
    });
    run_all(&s.section, false).await;
    let d = doc(&main);
    let names: Vec<_> = d["deleteDatasources"]
        .as_sequence()
        .expect("list")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["Renamed traces"]);
}
