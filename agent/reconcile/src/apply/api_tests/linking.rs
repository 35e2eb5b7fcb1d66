//! Linking both ways, dry runs, orgs, and which backend is chosen.
use super::*;

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
    let _pw = basic_auth(&mut section, "pw");
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

/// Each link not made gets one line: which link, the candidates seen and why each was
/// rejected (here: the only Prometheus is in another Grafana, and no Loki has the name
/// asked for). A missing link is not a failure: nothing was written that could be wrong.
#[tokio::test]
async fn a_link_not_made_is_explained_in_one_line() {
    let mut s = setup().await;
    let mut other = s.section.grafanas[0].clone();
    other.id = "g2".into();
    s.section.grafanas.push(other);
    s.section.metrics = vec![BackendRef {
        uid: Some("prom-b".into()),
        grafana: Some("g2".into()),
        ..Default::default()
    }];
    s.section.logs = vec![BackendRef {
        name: Some("Logs".into()),
        ..Default::default()
    }];
    s.section.validate().expect("valid");
    let report = run(&s.section, false).await;
    assert_eq!(
        report.unlinked,
        [
            "tempo \"Sonde traces\" → metrics: uid \"prom-b\" is in grafana \"g2\" (exchange \
             data), not this one",
            "tempo \"Sonde traces\" → logs: name \"Logs\": no datasource of that name; loki \
             datasources here: \"Loki\" (loki, uid \"loki-a\")",
        ]
    );
    assert!(!report.failed(), "{:?}", outcomes(&report));
    let text = crate::render::reports(std::slice::from_ref(&report), false);
    assert!(
        text.contains("  not linked: tempo \"Sonde traces\" → metrics: uid \"prom-b\""),
        "{text}"
    );
    assert_eq!(report.writes, 1, "only the Tempo: {:?}", outcomes(&report));
    let (prom, _) = s.fake.state().get("prom-a").expect("prom");
    assert!(
        prom["jsonData"]
            .get("exemplarTraceIdDestinations")
            .is_none()
    );
}
