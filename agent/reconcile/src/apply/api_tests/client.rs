//! The API client against Grafana's semantics: credentials, orgs, errors, unreachable.
use super::*;

#[tokio::test]
async fn wrong_credentials_fail_with_a_clear_error() {
    let s = setup().await;
    let mut section = s.section.clone();
    let _pw = basic_auth(&mut section, "wrong");
    let report = run(&section, false).await;
    let err = report.error.expect("error");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("wrong"), "no credential in messages: {err}");
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
