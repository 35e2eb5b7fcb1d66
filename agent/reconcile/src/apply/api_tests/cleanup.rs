//! What Sonde owned and no longer wants.
use super::*;

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
