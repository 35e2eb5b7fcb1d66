//! API-mode tests against the in-process fake Grafana (see `fake_grafana.rs`).
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

fn outcomes(r: &GrafanaReport) -> Vec<(String, Outcome)> {
    r.items
        .iter()
        .map(|i| (i.planned.uid.clone(), i.outcome.clone()))
        .collect()
}

#[tokio::test]
async fn first_run_creates_and_links_second_run_writes_nothing() {
    let s = setup().await;
    let first = run(&s.section, false).await;
    assert_eq!(first.error, None);
    let tempo_uid = first.items[0].planned.uid.clone();
    assert!(tempo_uid.starts_with("sonde-"), "{tempo_uid}");
    assert!(
        first.items.iter().all(|i| i.outcome == Outcome::Applied),
        "{:?}",
        outcomes(&first)
    );
    assert_eq!(
        first.writes, 3,
        "create tempo, update loki, update prometheus"
    );
    {
        let st = s.fake.state();
        let (tempo, secure) = st.get(&tempo_uid).expect("tempo created");
        let jd = &tempo["jsonData"];
        assert_eq!(tempo["type"], "tempo");
        assert_eq!(jd["tracesToLogsV2"]["datasourceUid"], "loki-a");
        assert_eq!(jd["lokiSearch"]["datasourceUid"], "loki-a");
        assert_eq!(jd["tracesToMetrics"]["datasourceUid"], "prom-a");
        assert_eq!(jd["serviceMap"]["datasourceUid"], "prom-a");
        assert_eq!(jd["nodeGraph"]["enabled"], true);
        assert_eq!(jd["httpHeaderName1"], "X-Scope-OrgID");
        assert_eq!(
            secure.get("httpHeaderValue1").map(String::as_str),
            Some("team-a")
        );
        // The API gets `$__tags` literally; `$$` is only for provisioning files.
        let q = jd["tracesToMetrics"]["queries"][0]["query"]
            .as_str()
            .unwrap_or_default();
        assert!(q.contains("{$__tags}") && !q.contains("$$"), "{q}");
        let (loki, _) = st.get("loki-a").expect("loki");
        let fields = loki["jsonData"]["derivedFields"]
            .as_array()
            .expect("derived fields");
        assert_eq!(
            fields.len(),
            2,
            "user entry kept, ours appended: {fields:?}"
        );
        assert_eq!(fields[0]["name"], "user-link");
        assert_eq!(fields[1]["datasourceUid"], Value::from(tempo_uid.clone()));
        assert_eq!(fields[1]["url"], "${__value.raw}");
        assert_eq!(loki["jsonData"]["maxLines"], 1000, "unowned field kept");
        let (prom, _) = st.get("prom-a").expect("prom");
        assert_eq!(
            prom["jsonData"]["exemplarTraceIdDestinations"],
            json!([{"name": "traceID", "datasourceUid": tempo_uid}])
        );
        assert_eq!(prom["jsonData"]["httpMethod"], "POST");
    }
    let writes_before = s.fake.state().writes;
    let second = run(&s.section, false).await;
    assert!(
        second.items.iter().all(|i| i.outcome == Outcome::Unchanged),
        "{:?}",
        outcomes(&second)
    );
    assert_eq!(second.writes, 0);
    assert_eq!(
        s.fake.state().writes,
        writes_before,
        "idempotent: zero writes on the second run"
    );
    let dry = run(&s.section, true).await;
    assert!(!dry.pending());
}

#[tokio::test]
async fn dry_run_plans_without_writing() {
    let s = setup().await;
    let plan = run(&s.section, true).await;
    assert_eq!(plan.error, None);
    assert!(plan.pending());
    assert_eq!(s.fake.state().writes, 0);
    assert_eq!(plan.items[0].planned.action, Action::Create);
    assert!(
        plan.items.iter().all(|i| i.outcome == Outcome::Planned),
        "{:?}",
        outcomes(&plan)
    );
    let text = crate::render::reports(&[plan], true);
    assert!(text.contains("+ create tempo \"Sonde traces\""), "{text}");
    assert!(
        text.contains("+ jsonData.serviceMap.datasourceUid = \"prom-a\""),
        "{text}"
    );
    assert!(
        text.contains("secureJsonData.httpHeaderValue1 = ******"),
        "{text}"
    );
    assert!(
        !text.contains("team-a") && !text.contains(TOKEN),
        "secrets masked: {text}"
    );
    assert!(
        text.contains("~ update loki \"Loki\" (uid loki-a)"),
        "{text}"
    );
    assert!(
        text.contains("+ jsonData.derivedFields[1].datasourceUid = \"sonde-"),
        "{text}"
    );
}

#[tokio::test]
async fn user_edits_to_owned_fields_are_drift_and_reverted_others_kept() {
    let s = setup().await;
    let first = run(&s.section, false).await;
    let uid = first.items[0].planned.uid.clone();
    s.fake.state().edit(&uid, |r| {
        r["jsonData"]["serviceMap"]["datasourceUid"] = json!("someone-else");
        r["jsonData"]["spanBar"] = json!({"type": "Tag", "tag": "http.route"});
        r["jsonData"]["tracesToLogsV2"]["query"] = json!("{job=\"x\"}");
    });
    let plan = run(&s.section, true).await;
    let item = &plan.items[0];
    assert_eq!(item.planned.action, Action::Update);
    assert!(
        item.planned.drift,
        "config unchanged, Grafana changed: drift"
    );
    let paths: Vec<_> = item
        .planned
        .changes
        .iter()
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(paths, ["jsonData.serviceMap.datasourceUid"]);
    let applied = run(&s.section, false).await;
    assert_eq!(applied.writes, 1);
    let (tempo, secure) = s.fake.state().get(&uid).expect("tempo");
    assert_eq!(tempo["jsonData"]["serviceMap"]["datasourceUid"], "prom-a");
    assert_eq!(
        tempo["jsonData"]["spanBar"]["tag"], "http.route",
        "unowned key kept"
    );
    assert_eq!(
        tempo["jsonData"]["tracesToLogsV2"]["query"], "{job=\"x\"}",
        "unowned leaf kept"
    );
    assert_eq!(
        secure.get("httpHeaderValue1").map(String::as_str),
        Some("team-a"),
        "secret kept"
    );
}

#[tokio::test]
async fn version_conflict_is_retried_on_the_fresh_record() {
    let s = setup().await;
    let first = run(&s.section, false).await;
    let uid = first.items[0].planned.uid.clone();
    s.fake.state().edit(&uid, |r| {
        r["jsonData"]["nodeGraph"]["enabled"] = json!(false)
    });
    s.fake.state().interfere_next_put = true;
    let before = s.fake.state().writes;
    let report = run(&s.section, false).await;
    assert_eq!(report.items[0].outcome, Outcome::Applied);
    assert_eq!(
        s.fake.state().writes - before,
        2,
        "409 then a successful retry"
    );
    assert_eq!(
        s.fake.state().get(&uid).expect("tempo").0["jsonData"]["nodeGraph"]["enabled"],
        true
    );
}

#[tokio::test]
async fn secrets_are_resent_only_when_config_changes_or_grafana_lost_them() {
    let mut s = setup().await;
    let first = run(&s.section, false).await;
    let uid = first.items[0].planned.uid.clone();
    s.section.tempos[0].tenant = Some(SecretSource {
        value: Some("team-b".into()),
        ..Default::default()
    });
    let plan = run(&s.section, true).await;
    let secret_changes: Vec<_> = plan.items[0]
        .planned
        .changes
        .iter()
        .filter(|c| c.secret)
        .collect();
    assert_eq!(secret_changes.len(), 1);
    assert!(!plan.items[0].planned.drift, "a config change is not drift");
    run(&s.section, false).await;
    assert_eq!(
        s.fake.state().get(&uid).expect("tempo").1["httpHeaderValue1"],
        "team-b"
    );
    assert_eq!(run(&s.section, false).await.writes, 0);
}

#[tokio::test]
async fn read_only_datasources_are_reported_not_written() {
    let s = setup().await;
    s.fake
        .state()
        .edit("loki-a", |r| r["readOnly"] = json!(true));
    let report = run(&s.section, false).await;
    let loki = report
        .items
        .iter()
        .find(|i| i.planned.uid == "loki-a")
        .expect("loki item");
    match &loki.outcome {
        Outcome::Conflict(m) => assert!(m.contains("provisioned (read-only)"), "{m}"),
        o => panic!("expected a conflict, got {o:?}"),
    }
    assert_eq!(report.writes, 2, "tempo and prometheus only");
    // The 403 itself, as Grafana sends it, is mapped to a clear error.
    let client = client_for(&s.section.grafanas[0])
        .expect("client")
        .expect("url");
    let body = json!({"name": "Loki", "type": "loki", "version": 1});
    match client.update("loki-a", &body).await {
        Err(ApiError::ReadOnly { message, .. }) => {
            assert!(message.contains("read-only"), "{message}")
        }
        r => panic!("expected ReadOnly, got {r:?}"),
    }
}

#[tokio::test]
async fn a_foreign_datasource_with_our_name_is_a_conflict() {
    let s = setup().await;
    s.fake.state().seed(
        json!({"uid": "theirs", "name": "Sonde traces", "type": "tempo"}),
        &[],
    );
    let report = run(&s.section, false).await;
    match &report.items[0].outcome {
        Outcome::Conflict(m) => assert!(m.contains("already exists with uid theirs"), "{m}"),
        o => panic!("expected a conflict, got {o:?}"),
    }
    assert_eq!(
        report.writes, 0,
        "nothing links to a Tempo that was not written"
    );
    assert!(
        report.items[1..]
            .iter()
            .all(|i| matches!(i.outcome, Outcome::Skipped(_)))
    );
}

#[tokio::test]
async fn wrong_credentials_fail_with_a_clear_error() {
    let s = setup().await;
    let mut section = s.section.clone();
    section.grafanas[0].token = None;
    let mut pw = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(pw, "wrong").expect("write");
    section.grafanas[0].basic_auth = Some(crate::config::BasicAuth {
        user: "admin".into(),
        password: SecretSource {
            file: Some(pw.path().into()),
            ..Default::default()
        },
    });
    let report = run(&section, false).await;
    let err = report.error.expect("error");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("wrong"), "no credential in messages: {err}");
}

#[tokio::test]
async fn basic_auth_works_and_recreated_backend_is_relinked() {
    let s = setup().await;
    run(&s.section, false).await;
    // Loki deleted and re-created under a new UID (same name): the name lookup follows it.
    {
        let mut st = s.fake.state();
        st.remove("loki-a");
        st.seed(
            json!({"uid": "loki-new", "name": "Loki", "type": "loki"}),
            &[],
        );
    }
    let mut section = s.section.clone();
    let mut pw = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(pw, "pw").expect("write");
    section.grafanas[0].token = None;
    section.grafanas[0].basic_auth = Some(crate::config::BasicAuth {
        user: "admin".into(),
        password: SecretSource {
            file: Some(pw.path().into()),
            ..Default::default()
        },
    });
    let report = run(&section, false).await;
    assert_eq!(report.error, None);
    let tempo_uid = report.items[0].planned.uid.clone();
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    let (tempo, _) = s.fake.state().get(&tempo_uid).expect("tempo");
    assert_eq!(
        tempo["jsonData"]["tracesToLogsV2"]["datasourceUid"],
        "loki-new"
    );
    let (loki, _) = s.fake.state().get("loki-new").expect("loki");
    assert_eq!(
        loki["jsonData"]["derivedFields"][0]["datasourceUid"],
        Value::from(tempo_uid)
    );
}

#[tokio::test]
async fn a_sonde_tempo_no_longer_configured_is_reported_not_deleted() {
    let mut s = setup().await;
    let first = run(&s.section, false).await;
    let old_uid = first.items[0].planned.uid.clone();
    s.section.tempos[0].name = "Renamed traces".into();
    let report = run(&s.section, false).await;
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains(&old_uid) && n.contains("no longer configured"))
    );
    assert!(s.fake.state().get(&old_uid).is_some(), "never deleted");
    // The Loki entry pointing at the old Tempo is Sonde's (marker) and is replaced.
    let (loki, _) = s.fake.state().get("loki-a").expect("loki");
    let uids: Vec<_> = loki["jsonData"]["derivedFields"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["datasourceUid"].clone())
        .collect();
    assert_eq!(
        uids,
        [
            Value::Null,
            Value::from(report.items[0].planned.uid.clone())
        ]
    );
}

#[tokio::test]
async fn a_token_of_another_org_is_refused_before_any_write() {
    let s = setup().await;
    let mut section = s.section.clone();
    section.grafanas[0].org_id = 2;
    let report = run(&section, false).await;
    let err = report.error.expect("error");
    assert!(
        err.contains("act in org 1") && err.contains("org_id 2"),
        "{err}"
    );
    assert_eq!(s.fake.state().writes, 0);
}

#[tokio::test]
async fn a_provisioned_tempo_is_reported_and_still_linked_back() {
    let s = setup().await;
    let uid = crate::tempo_uid(&s.section.tempos[0]);
    s.fake.state().seed(
        json!({"uid": uid, "name": "Sonde traces", "type": "tempo", "readOnly": true}),
        &[],
    );
    let report = run(&s.section, false).await;
    match &report.items[0].outcome {
        Outcome::Conflict(m) => assert!(m.contains("--mode provisioning"), "{m}"),
        o => panic!("expected a conflict, got {o:?}"),
    }
    assert_eq!(
        report.writes,
        2,
        "links to the existing Tempo: {:?}",
        outcomes(&report)
    );
    let (loki, _) = s.fake.state().get("loki-a").expect("loki");
    assert_eq!(
        loki["jsonData"]["derivedFields"][1]["datasourceUid"],
        Value::from(uid)
    );
}

#[tokio::test]
async fn two_orgs_of_one_grafana_get_their_own_datasources() {
    let s = setup().await;
    // Org 2 (reached with basic auth and X-Grafana-Org-Id) holds its own Prometheus with the
    // same UID as org 1's: UIDs are unique per org only.
    s.fake.state().seed_in(
        2,
        json!({"uid": "prom-a", "name": "Prometheus", "type": "prometheus"}),
        &[],
    );
    let mut pw = tempfile::NamedTempFile::new().expect("tempfile");
    writeln!(pw, "pw").expect("write");
    let mut org2 = s.section.grafanas[0].clone();
    org2.id = "g1-org2".into();
    org2.org_id = 2;
    org2.token = None;
    org2.basic_auth = Some(crate::config::BasicAuth {
        user: "admin".into(),
        password: SecretSource {
            file: Some(pw.path().into()),
            ..Default::default()
        },
    });
    let mut section = s.section.clone();
    section.grafanas.push(org2);
    section.validate().expect("valid");
    let tempos = resolve_tempos(&section).expect("tempos");
    let c1 = client_for(&section.grafanas[0]).expect("c").expect("url");
    let c2 = client_for(&section.grafanas[1]).expect("c").expect("url");
    let r1 = reconcile(&c1, &section, &tempos, false).await;
    let r2 = reconcile(&c2, &section, &tempos, false).await;
    assert_eq!((r1.error.clone(), r2.error.clone()), (None, None));
    let uid = r1.items[0].planned.uid.clone();
    let st = s.fake.state();
    assert!(
        st.get_in(1, &uid).is_some() && st.get_in(2, &uid).is_some(),
        "one Tempo per org"
    );
    // Org 2 has no Loki: no logs link there, nothing dangling; its own Prometheus is linked.
    let (t2, _) = st.get_in(2, &uid).expect("org 2 tempo");
    assert!(t2["jsonData"].get("tracesToLogsV2").is_none(), "{t2}");
    assert_eq!(t2["jsonData"]["serviceMap"]["datasourceUid"], "prom-a");
    assert_eq!(t2["orgId"], 2);
    let (p2, _) = st.get_in(2, "prom-a").expect("org 2 prom");
    assert_eq!(
        p2["jsonData"]["exemplarTraceIdDestinations"][0]["datasourceUid"],
        Value::from(uid)
    );
    let (l1, _) = st.get_in(1, "loki-a").expect("org 1 loki");
    assert_eq!(
        l1["jsonData"]["derivedFields"].as_array().map(Vec::len),
        Some(2),
        "org 1 only"
    );
    assert_eq!(r2.items.len(), 2, "the Tempo and the Prometheus of org 2");
}

/// The Grafana semantics the reconciler relies on, as the client sees them through the fake.
#[tokio::test]
async fn client_maps_grafana_datasource_api_semantics() {
    let s = setup().await;
    let c = client_for(&s.section.grafanas[0])
        .expect("client")
        .expect("url");
    let create = |uid: &str, name: &str| json!({"uid": uid, "name": name, "type": "tempo"});
    for bad in ["has space", "x".repeat(41).as_str(), "dot.ted"] {
        match c.create(&create(bad, "n")).await {
            Err(ApiError::Http { status: 400, .. }) => {}
            r => panic!("uid {bad:?}: expected 400, got {r:?}"),
        }
    }
    let ok_uid = "A_b-1".to_string() + &"x".repeat(35);
    c.create(
        &json!({"uid": ok_uid, "name": "t", "type": "tempo", "jsonData": {"keep": 1},
                     "secureJsonData": {"httpHeaderValue1": "s"}}),
    )
    .await
    .expect("40-character uid of [a-zA-Z0-9_-] is accepted");
    assert!(matches!(
        c.create(&create("other", "t")).await,
        Err(ApiError::Exists { .. })
    ));
    assert!(matches!(
        c.create(&create(&ok_uid, "t2")).await,
        Err(ApiError::Exists { .. })
    ));
    let stored = c.get_by_uid(&ok_uid).await.expect("get").expect("exists");
    assert_eq!(stored["secureJsonFields"]["httpHeaderValue1"], true);
    assert!(
        stored.get("secureJsonData").is_none(),
        "secrets are never returned"
    );
    let mismatch = json!({"uid": "else", "name": "t", "type": "tempo", "version": 1});
    assert!(matches!(
        c.update(&ok_uid, &mismatch).await,
        Err(ApiError::Http { status: 400, .. })
    ));
    // Whole-record PUT: no jsonData means an empty one; secrets not sent are kept.
    let put = json!({"name": "t", "type": "tempo", "version": 1});
    c.update(&ok_uid, &put).await.expect("put");
    let (after, secure) = s.fake.state().get(&ok_uid).expect("stored");
    assert_eq!(
        (after["jsonData"].clone(), after["version"].clone()),
        (json!({}), json!(2))
    );
    assert_eq!(secure["httpHeaderValue1"], "s");
    // A stale version is refused; version 0 forces the write.
    assert!(matches!(
        c.update(&ok_uid, &put).await,
        Err(ApiError::VersionConflict { .. })
    ));
    c.update(
        &ok_uid,
        &json!({"name": "t", "type": "tempo", "version": 0}),
    )
    .await
    .expect("forced");
    assert!(c.get_by_uid("missing").await.expect("get").is_none());
    assert_eq!(
        c.get_by_name("t").await.expect("by name").expect("found")["uid"],
        Value::from(ok_uid)
    );
}

fn sent(s: &Setup, uid: &str) -> Vec<(String, String)> {
    s.fake.state().headers_sent(uid)
}

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

/// Grafana sends custom headers 1, 2, … up to the first gap: a bearer token without a
/// tenant, or after the tenant is removed, must still be sent; a user's header is kept.
#[tokio::test]
async fn custom_headers_are_numbered_without_gaps_and_user_headers_are_kept() {
    let mut s = setup().await;
    s.section.tempos[0].tenant = None;
    s.section.tempos[0].bearer_token = Some(SecretSource {
        value: Some("tok".into()),
        ..Default::default()
    });
    let first = run(&s.section, false).await;
    let uid = first.items[0].planned.uid.clone();
    assert_eq!(sent(&s, &uid), [pair("Authorization", "Bearer tok")]);
    // The user adds a header of their own in the UI, at the next index.
    {
        let mut st = s.fake.state();
        st.edit(&uid, |r| r["jsonData"]["httpHeaderName2"] = json!("X-User"));
        st.set_secure(&uid, "httpHeaderValue2", "mine");
    }
    assert_eq!(
        run(&s.section, false).await.writes,
        0,
        "user header kept as is"
    );
    // A tenant is added: it takes the first free index, the user's header stays where it is.
    s.section.tempos[0].tenant = Some(SecretSource {
        value: Some("team-a".into()),
        ..Default::default()
    });
    run(&s.section, false).await;
    assert_eq!(
        sent(&s, &uid),
        [
            pair("X-Scope-OrgID", "team-a"),
            pair("X-User", "mine"),
            pair("Authorization", "Bearer tok"),
        ]
    );
    // The tenant is removed: no gap is left, the token is still sent.
    s.section.tempos[0].tenant = None;
    run(&s.section, false).await;
    assert_eq!(
        sent(&s, &uid),
        [pair("Authorization", "Bearer tok"), pair("X-User", "mine")]
    );
    let (tempo, _) = s.fake.state().get(&uid).expect("tempo");
    assert!(
        tempo["jsonData"].get("httpHeaderName3").is_none(),
        "{tempo}"
    );
    assert_eq!(run(&s.section, false).await.writes, 0, "idempotent");
}

/// A Tempo `uid` that belongs to a datasource of another type: a conflict, and nothing may
/// link to that uid (the Prometheus would link to itself), in a dry run as well.
#[tokio::test]
async fn a_tempo_uid_taken_by_another_type_is_never_linked_to() {
    let mut s = setup().await;
    s.section.tempos[0].uid = Some("prom-a".into());
    for dry_run in [true, false] {
        let report = run(&s.section, dry_run).await;
        match &report.items[0].outcome {
            Outcome::Conflict(m) => assert!(m.contains("\"prometheus\""), "{m}"),
            o => panic!("dry run {dry_run}: expected a conflict, got {o:?}"),
        }
        assert!(
            report.items[1..]
                .iter()
                .all(|i| matches!(i.outcome, Outcome::Skipped(_))),
            "dry run {dry_run}: {:?}",
            outcomes(&report)
        );
        assert!(report.failed(), "exit 1");
    }
    assert_eq!(s.fake.state().writes, 0);
    let (loki, _) = s.fake.state().get("loki-a").expect("loki");
    assert_eq!(
        loki["jsonData"]["derivedFields"].as_array().map(Vec::len),
        Some(1)
    );
    let (prom, _) = s.fake.state().get("prom-a").expect("prom");
    assert!(
        prom["jsonData"]
            .get("exemplarTraceIdDestinations")
            .is_none(),
        "{prom}"
    );
    // A second, good Tempo is still linked both ways; only the bad one's links are left out.
    s.section.tempos.push(TempoConfig {
        name: "Other traces".into(),
        url: "http://other:3200".into(),
        ..Default::default()
    });
    let report = run(&s.section, false).await;
    assert!(report.failed(), "the conflict stays");
    let other = crate::tempo_uid(&s.section.tempos[1]);
    let (prom, _) = s.fake.state().get("prom-a").expect("prom");
    assert_eq!(
        prom["jsonData"]["exemplarTraceIdDestinations"],
        json!([{"name": "traceID", "datasourceUid": other}])
    );
    let (loki, _) = s.fake.state().get("loki-a").expect("loki");
    assert_eq!(
        loki["jsonData"]["derivedFields"][1]["datasourceUid"],
        json!(other)
    );
    assert_eq!(
        loki["jsonData"]["derivedFields"].as_array().map(Vec::len),
        Some(2)
    );
}

/// An unreachable Grafana: the cause (here: connection refused) is in the message, and the
/// run's summary counts the Grafana as failed.
#[tokio::test]
async fn an_unreachable_grafana_keeps_the_cause_and_counts_as_failed() {
    let s = setup().await;
    let mut section = s.section.clone();
    // Port 9 (discard) on loopback: nothing listens there.
    section.grafanas[0].url = Some("http://127.0.0.1:9".into());
    let reports = crate::reconcile_once(&section, false).await;
    let err = reports[0].error.clone().expect("an error");
    assert!(
        err.contains("cannot reach") && err.to_ascii_lowercase().contains("connection refused"),
        "{err}"
    );
    let text = crate::render::reports(&reports, false);
    assert!(text.contains("1 of 1 Grafana(s) failed: g1"), "{text}");
    assert!(!text.contains("0 failed or in conflict"), "{text}");
}

/// Chosen by type alone, a read-only (provisioned) Prometheus can never get its exemplar
/// link: a writable candidate is preferred, and the report says so.
#[tokio::test]
async fn a_writable_prometheus_is_preferred_over_a_read_only_one() {
    let s = setup().await;
    s.fake.state().seed(
        json!({"uid": "prom-0", "name": "Provisioned", "type": "prometheus", "readOnly": true}),
        &[],
    );
    let report = run(&s.section, false).await;
    assert!(!report.failed(), "{:?}", outcomes(&report));
    let uid = report.items[0].planned.uid.clone();
    let (tempo, _) = s.fake.state().get(&uid).expect("tempo");
    assert_eq!(
        tempo["jsonData"]["tracesToMetrics"]["datasourceUid"],
        "prom-a"
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("\"prom-a\"") && n.contains("read-only") && n.contains("prom-0")),
        "{:?}",
        report.notes
    );
}
