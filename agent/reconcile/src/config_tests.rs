//! Tests for the `reconcile:` section: validation table, the interval, the example config.
use rstest::rstest;

use super::*;

fn base() -> ReconcileSection {
    ReconcileSection {
        grafanas: vec![GrafanaConfig {
            id: "g1".into(),
            url: Some("http://grafana:3000".into()),
            org_id: 1,
            token: Some(SecretSource {
                env: Some("GRAFANA_TOKEN".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        tempos: vec![TempoConfig {
            name: "traces".into(),
            url: "http://tempo:3200".into(),
            ..Default::default()
        }],
        logs: vec![BackendRef {
            kind: Some("loki".into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn base_is_valid() {
    assert_eq!(base().validate(), Ok(()));
}

#[rstest]
#[case::zero_interval(|s: &mut ReconcileSection| s.interval = Duration::ZERO, "reconcile.interval")]
#[case::no_grafanas(|s: &mut ReconcileSection| s.grafanas.clear(), "list at least one Grafana")]
#[case::no_tempos(|s: &mut ReconcileSection| s.tempos.clear(), "list at least one Tempo")]
#[case::bad_grafana_id(|s: &mut ReconcileSection| s.grafanas[0].id = "a b".into(), "id must be")]
#[case::duplicate_grafana(|s: &mut ReconcileSection| { let g = s.grafanas[0].clone(); s.grafanas.push(g) }, "used twice")]
#[case::org_zero(|s: &mut ReconcileSection| s.grafanas[0].org_id = 0, "org_id")]
#[case::url_scheme(|s: &mut ReconcileSection| s.grafanas[0].url = Some("grafana:3000".into()), "http://")]
#[case::api_needs_url(|s: &mut ReconcileSection| s.grafanas[0].url = None, "url is required in api mode")]
#[case::no_credentials(|s: &mut ReconcileSection| s.grafanas[0].token = None, "set `token` or `basic_auth`")]
#[case::inline_token(|s: &mut ReconcileSection| s.grafanas[0].token = Some(SecretSource { value: Some("t".into()), ..Default::default() }), "must not be written in the config")]
#[case::two_sources(|s: &mut ReconcileSection| s.grafanas[0].token = Some(SecretSource { env: Some("A".into()), file: Some("/f".into()), ..Default::default() }), "only one of")]
#[case::empty_source(|s: &mut ReconcileSection| s.grafanas[0].token = Some(SecretSource::default()), "set one of")]
#[case::tempo_url(|s: &mut ReconcileSection| s.tempos[0].url = String::new(), "must start with http")]
#[case::tempo_uid_long(|s: &mut ReconcileSection| s.tempos[0].uid = Some("x".repeat(41)), "not a Grafana UID")]
#[case::tempo_uid_chars(|s: &mut ReconcileSection| s.tempos[0].uid = Some("a.b".into()), "not a Grafana UID")]
#[case::tempo_unknown_grafana(|s: &mut ReconcileSection| s.tempos[0].grafanas = vec!["nope".into()], "not one of the `grafanas` ids")]
#[case::tempo_name_twice(|s: &mut ReconcileSection| { let mut t = s.tempos[0].clone(); t.uid = Some("other".into()); s.tempos.push(t) }, "name is used twice")]
#[case::empty_ref(|s: &mut ReconcileSection| s.metrics = vec![BackendRef::default()], "set `uid`")]
#[case::uid_and_name(|s: &mut ReconcileSection| s.metrics = vec![BackendRef { uid: Some("u".into()), name: Some("n".into()), ..Default::default() }], "not both")]
#[case::grafana_without_uid(|s: &mut ReconcileSection| s.logs = vec![BackendRef { grafana: Some("g1".into()), kind: Some("loki".into()), ..Default::default() }], "needs `uid`")]
#[case::ref_unknown_grafana(|s: &mut ReconcileSection| s.logs = vec![BackendRef { uid: Some("l".into()), grafana: Some("zz".into()), ..Default::default() }], "\"zz\" is not one of")]
#[case::regex_two_groups(|s: &mut ReconcileSection| s.correlation.derived_field_regex = "(a)(b)".into(), "exactly one capture group")]
#[case::regex_garbage(|s: &mut ReconcileSection| s.correlation.derived_field_regex = "(".into(), "derived_field_regex")]
#[case::operator_needs_selector(|s: &mut ReconcileSection| s.mode = Mode::Operator, "instance_selector")]
#[case::env_name(|s: &mut ReconcileSection| s.grafanas[0].token = Some(SecretSource { env: Some("$TOKEN".into()), ..Default::default() }),
    "reconcile.grafanas[0] (g1).token.env: \"$TOKEN\" is not an environment variable name")]
#[case::provisioning_relative_file(|s: &mut ReconcileSection| { s.mode = Mode::Provisioning; s.tempos[0].bearer_token = Some(SecretSource { file: Some("token".into()), ..Default::default() }) },
    "reconcile.tempos[0] (traces).bearer_token.file: provisioning mode writes it as $__file{token}")]
#[case::provisioning_brace_in_file(|s: &mut ReconcileSection| { s.mode = Mode::Provisioning; s.tempos[0].basic_auth = Some(BasicAuth { user: "u".into(), password: SecretSource { file: Some("/a}b".into()), ..Default::default() } }) },
    "reconcile.tempos[0] (traces).basic_auth.password.file: provisioning mode")]
fn invalid(#[case] edit: fn(&mut ReconcileSection), #[case] want: &str) {
    let mut s = base();
    edit(&mut s);
    let err = s.validate().expect_err("should be invalid");
    assert!(
        err.iter().any(|e| e.to_string().contains(want)),
        "{err:?} should mention {want:?}"
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let mut s = base();
    s.interval = Duration::ZERO;
    s.tempos[0].url = "ftp://x".into();
    let keys: Vec<String> = s
        .validate()
        .expect_err("invalid")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["reconcile.interval", "reconcile.tempos[0] (traces)"]);
}

#[test]
fn interval_is_a_go_duration() {
    let s: ReconcileSection = serde_yaml::from_str("interval: 1h30m\n").expect("parses");
    assert_eq!(s.interval, Duration::from_secs(5400));
    let err = serde_yaml::from_str::<ReconcileSection>("interval: soon\n").expect_err("invalid");
    assert!(
        err.to_string().contains("invalid duration \"soon\""),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let err = serde_yaml::from_str::<ReconcileSection>("grafanas: []\nbogus: 1\n")
        .expect_err("unknown key");
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn example_config_parses_and_validates() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/reconcile.example.yaml"
    );
    let text = std::fs::read_to_string(path).expect("read the example");
    let mut file: serde_yaml::Mapping = serde_yaml::from_str(&text).expect("YAML");
    let section: ReconcileSection =
        serde_yaml::from_value(file.remove("reconcile").expect("a reconcile: section"))
            .expect("parses");
    assert_eq!(section.validate(), Ok(()));
    assert_eq!(section.grafanas.len(), 2);
    assert_eq!(section.tempos[0].uid.as_deref(), Some("sonde-traces"));
    assert_eq!(
        section.correlation,
        CorrelationConfig::default(),
        "example shows the defaults"
    );
}
