//! What Sonde owned and no longer wants: its Tempos and its backlink entries are deleted;
//! what it did not create is left alone.
use super::*;

fn derived_uids(s: &Setup) -> Vec<Value> {
    let (loki, _) = s.fake.state().get("loki-a").expect("loki");
    loki["jsonData"]["derivedFields"]
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["datasourceUid"].clone())
        .collect()
}

#[tokio::test]
async fn a_sonde_tempo_no_longer_configured_is_deleted_with_its_backlinks() {
    let mut s = setup().await;
    let first = run(&s.section, false).await;
    let old_uid = first.items[0].planned.uid.clone();
    // Not Sonde's to delete: a user's Tempo, and one Sonde made for another Grafana id.
    s.fake.state().seed(
        json!({"uid": "user-tempo", "name": "User traces", "type": "tempo"}),
        &[],
    );
    s.fake.state().seed(
        json!({"uid": "other-tempo", "name": "Other traces", "type": "tempo",
               "jsonData": {"sondeReconciler": {"owner": "sonde", "grafana": "elsewhere"}}}),
        &[],
    );
    s.section.tempos[0].name = "Renamed traces".into();
    let plan = run(&s.section, true).await;
    let text = crate::render::reports(std::slice::from_ref(&plan), true);
    assert!(
        text.contains(&format!(
            "  - delete tempo \"Sonde traces\" (uid {old_uid}): Sonde created it and no longer \
             wants it"
        )),
        "{text}"
    );
    assert!(
        s.fake.state().get(&old_uid).is_some(),
        "a dry run deletes nothing"
    );
    let report = run(&s.section, false).await;
    assert!(!report.failed(), "{:?}", outcomes(&report));
    let new_uid = report.items[0].planned.uid.clone();
    let deleted = report.items.last().expect("items");
    assert_eq!(
        (
            &deleted.planned.uid,
            &deleted.planned.action,
            &deleted.outcome
        ),
        (&old_uid, &Action::Delete, &Outcome::Applied)
    );
    {
        let st = s.fake.state();
        assert!(st.get(&old_uid).is_none(), "deleted");
        assert!(st.get("user-tempo").is_some() && st.get("other-tempo").is_some());
    }
    // The Loki entry pointing at the old Tempo is Sonde's (marker) and is replaced.
    assert_eq!(
        derived_uids(&s),
        [Value::Null, Value::from(new_uid.clone())]
    );
    assert_eq!(run(&s.section, false).await.writes, 0, "idempotent");
    // The Loki is no longer linked: Sonde's entry and marker go, the user's entry stays.
    s.section.logs.clear();
    let report = run(&s.section, false).await;
    assert!(!report.failed(), "{:?}", outcomes(&report));
    assert_eq!(derived_uids(&s), [Value::Null]);
    let (loki, _) = s.fake.state().get("loki-a").expect("loki");
    assert!(loki["jsonData"].get(crate::MARKER).is_none(), "{loki}");
    assert_eq!(loki["jsonData"]["maxLines"], 1000);
    // No Tempo at all: the last one goes, and the Prometheus exemplar link with it.
    s.section.tempos.clear();
    run(&s.section, false).await;
    assert!(s.fake.state().get(&new_uid).is_none());
    let (prom, _) = s.fake.state().get("prom-a").expect("prom");
    assert_eq!(prom["jsonData"]["exemplarTraceIdDestinations"], json!([]));
    assert_eq!(prom["jsonData"]["httpMethod"], "POST");
}

/// A Sonde Tempo that became provisioned (read-only) cannot be deleted through the API: the
/// run fails saying where to remove it.
#[tokio::test]
async fn a_provisioned_sonde_tempo_no_longer_wanted_is_a_conflict() {
    let s = setup().await;
    s.fake.state().seed(
        json!({"uid": "old-tempo", "name": "Old traces", "type": "tempo", "readOnly": true,
               "jsonData": {"sondeReconciler": {"owner": "sonde", "grafana": "g1"}}}),
        &[],
    );
    let report = run(&s.section, false).await;
    let item = report.items.last().expect("items");
    match &item.outcome {
        Outcome::Conflict(m) => assert!(m.contains("deleteDatasources"), "{m}"),
        o => panic!("expected a conflict, got {o:?}"),
    }
    assert!(report.failed());
    assert!(s.fake.state().get("old-tempo").is_some());
}
