//! What Sonde must not or cannot write: read-only, foreign names, uids of another type.
use super::*;

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
