//! Write-only secrets and the numbering of custom headers.
use super::*;

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
