//! Drift in owned fields and optimistic-lock retries.
use super::*;

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
