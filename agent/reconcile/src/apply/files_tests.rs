//! File-mode tests: golden provisioning YAML and operator manifests, idempotence, dry runs.
//! Re-bless the golden files with `UPDATE_GOLDEN=1`; a mismatch writes `<name>.actual`.
use std::path::{Path, PathBuf};

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
    dir: tempfile::TempDir,
}

/// The user's own provisioning file for `grafana`: the Loki/Prometheus Sonde links back from,
/// with fields and a derived field of the user's that must survive.
fn user_file(grafana: &str) -> &'static str {
    match grafana {
        "g1" => {
            "apiVersion: 1
datasources:
- name: Logs
  uid: loki-1
  type: loki
  url: http://loki:3100
  jsonData:
    maxLines: 1000
    derivedFields:
    - name: mine
      matcherRegex: req=(\\w+)
      url: http://x/$${__value.raw}
  basicAuth: true
  basicAuthUser: loki
  secureJsonData:
    basicAuthPassword: $LOKI_PASSWORD
- name: Prometheus
  uid: prom-1
  type: prometheus
  url: http://prom:9090
"
        }
        _ => {
            "apiVersion: 1
datasources:
- name: Mimir
  uid: mimir-2
  type: prometheus
  url: http://mimir:9009/prometheus
  jsonData:
    httpMethod: POST
"
        }
    }
}

/// Two Grafanas without API access, disjoint backends given as exchange data, each with the
/// user's provisioning file that defines them.
fn setup(mode: Mode) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("secrets/tempo-token");
    std::fs::create_dir_all(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(&token, "tempo-token\n").expect("write");
    std::fs::create_dir_all(dir.path().join("user")).expect("mkdir");
    let grafana = |id: &str| {
        let file = dir.path().join(format!("user/{id}.yaml"));
        std::fs::write(&file, user_file(id)).expect("write");
        GrafanaConfig {
            id: id.into(),
            org_id: 1,
            provisioning_files: vec![file],
            operator: OperatorTarget {
                namespace: "monitoring".into(),
                instance_selector: [("dashboards".to_string(), id.to_string())].into(),
                secret_name: "sonde-datasource-secrets".into(),
            },
            ..Default::default()
        }
    };
    let section = ReconcileSection {
        mode,
        output_dir: dir.path().join("out"),
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
                file: Some(token),
                ..Default::default()
            }),
            ..Default::default()
        }],
        metrics: vec![uid_ref("prom-1", "g1"), uid_ref("mimir-2", "g2")],
        logs: vec![uid_ref("loki-1", "g1")],
        ..Default::default()
    };
    section.validate().expect("valid");
    Setup { section, dir }
}

impl Setup {
    /// A file's text with the temporary directory written `<dir>` (for golden files).
    fn read(&self, p: &Path) -> String {
        read(p).replace(&self.dir.path().display().to_string(), "<dir>")
    }

    /// Sonde's own file for the `i`th Grafana.
    fn main(&self, i: usize) -> PathBuf {
        path(
            self.section.mode,
            &self.section.output_dir,
            &self.section.grafanas[i],
        )
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

/// Provisioning mode writes the Tempo file, and Sonde's backlink entries into the user's own
/// provisioning files (their other fields and entries kept); no secret read from a file is
/// written in plain text; a second run writes nothing.
#[tokio::test]
async fn provisioning_files_match_golden_and_second_run_writes_nothing() {
    let s = setup(Mode::Provisioning);
    let reports = run_all(&s.section, false).await;
    assert!(reports.iter().all(|r| !r.failed()), "{reports:?}");
    for (i, g) in s.section.grafanas.iter().enumerate() {
        let text = s.read(&s.main(i));
        assert!(
            text.contains("{$$__tags}"),
            "provisioning escapes $: {text}"
        );
        assert!(
            !text.contains("tempo-token\n")
                && text.contains("Bearer $__file{<dir>/secrets/tempo-token}"),
            "the token is referenced, not written: {text}"
        );
        golden(&format!("provisioning_{}.yaml", g.id), &text);
        golden(
            &format!("provisioning_{}_user.yaml", g.id),
            &s.read(&g.provisioning_files[0]),
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(s.main(i)).expect("meta");
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o600,
                "may hold a tenant"
            );
        }
    }
    let user = read(&s.section.grafanas[0].provisioning_files[0]);
    for kept in [
        "name: mine",
        "maxLines: 1000",
        "$LOKI_PASSWORD",
        "basicAuthUser: loki",
    ] {
        assert!(user.contains(kept), "{kept} lost: {user}");
    }
    assert_eq!(reports.iter().map(|r| r.writes).sum::<usize>(), 4);
    let outcomes: Vec<_> = reports[0].items.iter().map(|i| &i.outcome).collect();
    assert_eq!(outcomes, [&Outcome::Applied; 3], "tempo, loki, prometheus");
    let again = run_all(&s.section, false).await;
    assert_eq!(
        again.iter().map(|r| r.writes).sum::<usize>(),
        0,
        "idempotent"
    );
    assert!(again.iter().all(|r| !r.pending() && !r.failed()));
    let tempo = &again[0].items[0];
    assert_eq!(
        (tempo.planned.uid.as_str(), &tempo.outcome),
        ("sonde-traces", &Outcome::Unchanged)
    );
}

/// A backlink to a datasource Sonde may not write (not in a listed provisioning file) fails
/// the run with what to add where; no `backlinks.yaml` is left for the user to find.
#[tokio::test]
async fn a_backlink_sonde_may_not_write_fails_saying_what_to_add_where() {
    let mut s = setup(Mode::Provisioning);
    s.section.grafanas[1].provisioning_files.clear();
    let reports = run_all(&s.section, false).await;
    assert!(!reports[0].failed(), "{:?}", reports[0].items);
    match &reports[1].items[1].outcome {
        Outcome::Conflict(m) => assert!(
            m.contains("prometheus datasource \"mimir-2\" (uid mimir-2)")
                && m.contains(
                    "under jsonData.exemplarTraceIdDestinations: \
                     [{\"datasourceUid\":\"sonde-traces\",\"name\":\"traceID\"}]"
                )
                && m.contains("grafanas[g2].provisioning_files"),
            "{m}"
        ),
        o => panic!("expected a conflict, got {o:?}"),
    }
    assert_eq!(crate::exit_code(&reports, false), 1);
    let out = &s.section.output_dir;
    assert!(!out.join("g1/backlinks.yaml").exists() && !out.join("g2/backlinks.yaml").exists());
    let text = render::reports(&reports, false);
    assert!(text.contains("! conflict prometheus \"mimir-2\""), "{text}");
}

/// Operator manifests hold no secret; without API access Sonde cannot see the Loki and
/// Prometheus resources, so each backlink fails saying what to add to which resource.
#[tokio::test]
async fn operator_manifests_match_golden_and_hold_no_secret() {
    let s = setup(Mode::Operator);
    let reports = run_all(&s.section, false).await;
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");
    for (i, g) in s.section.grafanas.iter().enumerate() {
        let text = s.read(&s.main(i));
        assert!(
            !text.contains("team-a") && !text.contains("tempo-token\n"),
            "{text}"
        );
        assert!(
            text.contains("{$__tags}") && !text.contains("$$"),
            "no escaping for CRDs"
        );
        golden(&format!("operator_{}.yaml", g.id), &text);
    }
    let notes = reports[0].notes.join("\n");
    assert!(notes.contains("SONDE_TRACES_HTTPHEADERVALUE1"), "{notes}");
    match &reports[0].items[1].outcome {
        Outcome::Conflict(m) => assert!(
            m.contains(
                "add to its GrafanaDatasource, under spec.datasource.jsonData.derivedFields"
            ) && m.contains("\"url\":\"${__value.raw}\""),
            "{m}"
        ),
        o => panic!("expected a conflict, got {o:?}"),
    }
    assert_eq!(crate::exit_code(&reports, false), 1);
}

#[tokio::test]
async fn dry_run_shows_a_masked_diff_and_writes_nothing() {
    let mut s = setup(Mode::Provisioning);
    let plan = run_all(&s.section, true).await;
    assert!(plan.iter().all(GrafanaReport::pending));
    let main = s.main(0);
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

/// Sonde's section for the first Grafana only, with API access to `fake` (basic auth: an
/// admin may reload provisioning).
fn with_api(s: &mut Setup, fake: &FakeGrafana) {
    let pw = s.dir.path().join("secrets/grafana-pw");
    std::fs::write(&pw, "pw\n").expect("write");
    s.section.grafanas.truncate(1);
    s.section.metrics.truncate(1);
    s.section.grafanas[0].url = Some(fake.url());
    s.section.grafanas[0].basic_auth = Some(BasicAuth {
        user: "admin".into(),
        password: SecretSource {
            file: Some(pw),
            ..Default::default()
        },
    });
    s.section.validate().expect("valid");
}

async fn run_api(s: &Setup) -> GrafanaReport {
    let g = &s.section.grafanas[0];
    let client = crate::apply::client_for(g).expect("c").expect("url");
    let tempos = resolve_tempos(&s.section).expect("tempos");
    reconcile(
        Mode::Provisioning,
        g,
        Some(&client),
        &s.section,
        &tempos,
        false,
    )
    .await
}

/// A Loki in Grafana's database (not in a provisioning file) cannot get its backlink in
/// provisioning mode: the run fails saying what to add where, and passes once it is there.
#[tokio::test]
async fn with_api_access_a_backlink_in_grafanas_database_fails_until_added() {
    let fake = FakeGrafana::start("tok", "admin:pw").await;
    fake.state().seed(
        json!({"uid": "loki-x", "name": "Logs", "type": "loki",
        "jsonData": {"derivedFields": [{"name": "mine", "matcherRegex": "x=(\\w+)"}]}}),
        &[],
    );
    let mut s = setup(Mode::Provisioning);
    s.section.logs = vec![BackendRef {
        name: Some("Logs".into()),
        ..Default::default()
    }];
    with_api(&mut s, &fake);
    let report = run_api(&s).await;
    assert_eq!(report.error, None);
    assert_eq!(fake.state().reloads, 1);
    assert_eq!(
        fake.state().writes,
        0,
        "file mode never writes datasources through the API"
    );
    let loki = report
        .items
        .iter()
        .find(|i| i.planned.uid == "loki-x")
        .expect("loki");
    match &loki.outcome {
        Outcome::Conflict(m) => assert!(
            m.contains("lives in Grafana's database")
                && m.contains("Data sources → \"Logs\"")
                && m.contains("\"url\":\"$${__value.raw}\"")
                && m.contains("--mode api"),
            "{m}"
        ),
        o => panic!("expected a conflict, got {o:?}"),
    }
    assert!(report.failed());
    // `prom-1` is exchange data for g1 but this Grafana has no such datasource: no link.
    assert_eq!(
        report.unlinked,
        [
            "tempo \"Sonde traces\" → metrics: uid \"prom-1\" is not in this Grafana (deleted or \
             re-created?)"
        ],
    );
    assert!(!read(&s.main(0)).contains("serviceMap"));
    // The user adds the entry as told: the next run passes.
    fake.state().edit("loki-x", |r| {
        r["jsonData"]["derivedFields"]
            .as_array_mut()
            .expect("list")
            .push(json!({"name": "traceID", "matcherType": "regex",
                "matcherRegex": "(?:traceID|trace_id|tid)=(\\w+)", "url": "${__value.raw}",
                "urlDisplayLabel": "View trace", "datasourceUid": "sonde-traces"}));
    });
    let report = run_api(&s).await;
    assert!(!report.failed(), "{:?}", report.items);
}

/// End to end through Grafana's provisioning (the fake applies the files on reload): the
/// user's provisioned Loki and Prometheus link back to Sonde's Tempo, the Tempo's secrets
/// reach Grafana through `$__file{}` expansion, a renamed Tempo keeps its uid, and a Tempo
/// removed from the config is deleted together with its backlinks.
#[tokio::test]
async fn provisioning_links_both_ways_through_grafanas_own_reload() {
    let fake = FakeGrafana::start("tok", "admin:pw").await;
    let mut s = setup(Mode::Provisioning);
    with_api(&mut s, &fake);
    let own_dir = s.main(0).parent().expect("dir").to_path_buf();
    fake.state().provisioning_dirs = vec![own_dir, s.dir.path().join("user")];
    // Grafana started with the user's files.
    let g = &s.section.grafanas[0];
    let client = crate::apply::client_for(g).expect("c").expect("url");
    client.reload_provisioning().await.expect("user files load");
    let report = run_api(&s).await;
    assert!(!report.failed(), "{:?} {:?}", report.error, report.items);
    let reloads = {
        let st = fake.state();
        let (tempo, _) = st.get("sonde-traces").expect("tempo provisioned");
        assert_eq!(tempo["readOnly"], true);
        assert_eq!(
            st.headers_sent("sonde-traces"),
            [
                ("X-Scope-OrgID".to_string(), "team-a".to_string()),
                (
                    "Authorization".to_string(),
                    "Bearer tempo-token".to_string()
                )
            ]
        );
        let (loki, _) = st.get("loki-1").expect("loki");
        assert_eq!(
            loki["jsonData"]["derivedFields"],
            json!([
                {"name": "mine", "matcherRegex": "req=(\\w+)", "url": "http://x/${__value.raw}"},
                {"name": "traceID", "matcherType": "regex",
                 "matcherRegex": "(?:traceID|trace_id|tid)=(\\w+)", "url": "${__value.raw}",
                 "urlDisplayLabel": "View trace", "datasourceUid": "sonde-traces"}
            ])
        );
        let (prom, _) = st.get("prom-1").expect("prom");
        assert_eq!(
            prom["jsonData"]["exemplarTraceIdDestinations"],
            json!([{"name": "traceID", "datasourceUid": "sonde-traces"}])
        );
        st.reloads
    };
    let again = run_api(&s).await;
    assert!(!again.failed() && again.writes == 0, "{:?}", again.items);
    assert_eq!(fake.state().reloads, reloads, "nothing changed, no reload");
    // Renamed, same uid: Grafana's reload succeeds (the old name is deleted first).
    s.section.tempos[0].name = "Renamed traces".into();
    let report = run_api(&s).await;
    assert_eq!(report.error, None);
    let (tempo, _) = fake.state().get("sonde-traces").expect("tempo");
    assert_eq!(tempo["name"], "Renamed traces");
    // Removed: the Tempo goes, and so do the backlinks to it; the user's entry stays.
    s.section.tempos.clear();
    let report = run_api(&s).await;
    assert_eq!(report.error, None);
    let st = fake.state();
    assert!(st.get("sonde-traces").is_none());
    let (loki, _) = st.get("loki-1").expect("loki");
    assert_eq!(
        loki["jsonData"]["derivedFields"],
        json!([{"name": "mine", "matcherRegex": "req=(\\w+)", "url": "http://x/${__value.raw}"}])
    );
    assert!(loki["jsonData"].get(crate::MARKER).is_none());
    let (prom, _) = st.get("prom-1").expect("prom");
    assert_eq!(prom["jsonData"]["exemplarTraceIdDestinations"], json!([]));
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
    let mut s = setup(Mode::Provisioning);
    with_api(&mut s, &fake);
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
    let main = path(Mode::Provisioning, &s.section.output_dir, g);
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
    let main = s.main(0);
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

/// Operator mode cannot delete Kubernetes objects: a Tempo dropped from the config is named,
/// with the `kubectl` command that deletes it, and the file says how to apply with `--prune`.
#[tokio::test]
async fn operator_mode_says_how_to_delete_what_sonde_no_longer_writes() {
    let mut s = setup(Mode::Operator);
    s.section.grafanas.truncate(1);
    s.section.metrics.truncate(1);
    run_all(&s.section, false).await;
    s.section.tempos[0].uid = Some("sonde-traces-2".into());
    let reports = run_all(&s.section, false).await;
    let notes = reports[0].notes.join("\n");
    assert!(
        notes.contains(
            "GrafanaDatasource \"sonde-traces\" (uid sonde-traces) is no longer written: delete \
             it with `kubectl delete grafanadatasource sonde-traces -n monitoring`"
        ) && notes.contains(
            "kubectl apply --prune -l app.kubernetes.io/managed-by=sonde,sonde/grafana=g1"
        ),
        "{notes}"
    );
    assert!(read(&s.main(0)).contains("kubectl apply --prune -l"));
}

/// Secrets from `env`/`file` become Grafana expansions, matched to the header their number
/// carries; an inline tenant stays a value.
#[test]
fn secret_sources_become_grafana_expansions() {
    let mut s = setup(Mode::Provisioning);
    let t = &mut s.section.tempos[0];
    t.bearer_token = None;
    t.tenant = Some(SecretSource {
        file: Some("/run/tenant".into()),
        ..Default::default()
    });
    t.basic_auth = Some(BasicAuth {
        user: "u".into(),
        password: SecretSource {
            env: Some("TEMPO_PW".into()),
            ..Default::default()
        },
    });
    let tempo = crate::ResolvedTempo {
        config: t.clone(),
        uid: "t".into(),
        tenant: None,
        basic_auth: None,
        bearer: None,
    };
    let body = json!({"uid": "t", "jsonData": {"httpHeaderName1": "X-Scope-OrgID"},
        "secureJsonData": {"httpHeaderValue1": "x", "basicAuthPassword": "y"}});
    let refs = secret_refs(&[tempo], &[body]);
    let get = |k: &str| {
        refs.get(&("t".to_string(), k.to_string()))
            .map(String::as_str)
    };
    assert_eq!(get("httpHeaderValue1"), Some("$__file{/run/tenant}"));
    assert_eq!(get("basicAuthPassword"), Some("$__env{TEMPO_PW}"));
}
