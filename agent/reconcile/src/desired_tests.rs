//! Table tests for backend selection, Tempo UIDs and the desired state per Grafana.
use rstest::rstest;
use serde_json::{Value, json};

use super::*;
use crate::{
    config::{GrafanaConfig, SecretSource, TempoConfig, is_valid_uid},
    resolve_tempos,
};

fn ds(uid: &str, name: &str, kind: &str) -> DsSummary {
    DsSummary {
        uid: uid.into(),
        name: name.into(),
        kind: kind.into(),
        read_only: false,
        sonde_tempo: false,
        sonde_grafana: None,
        sonde_links: false,
    }
}

fn by_uid(uid: &str, grafana: Option<&str>) -> BackendRef {
    BackendRef {
        uid: Some(uid.into()),
        grafana: grafana.map(Into::into),
        ..Default::default()
    }
}

fn by_name(name: &str) -> BackendRef {
    BackendRef {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn by_type(kind: &str) -> BackendRef {
    BackendRef {
        kind: Some(kind.into()),
        ..Default::default()
    }
}

/// `want`: the chosen uid, or every substring the explanation of the missing link must hold.
#[rstest]
#[case::one_grafana_by_type(vec![by_type("prometheus")], "g1", Some(vec![ds("prom-a", "Prom", "prometheus")]), Ok("prom-a"), 0)]
#[case::exchange_uid_in_its_grafana(
    vec![by_uid("p1", Some("g1")), by_uid("p2", Some("g2"))], "g2",
    Some(vec![ds("p2", "Mimir", "prometheus")]), Ok("p2"), 0)]
#[case::exchange_uid_of_other_grafana_is_ignored(
    vec![by_uid("p1", Some("g1"))], "g2", Some(vec![ds("p1", "Same uid elsewhere", "prometheus")]),
    Err(&["uid \"p1\" is in grafana \"g1\"", "not this one"][..]), 0)]
#[case::backend_only_in_one_grafana(vec![by_uid("p1", Some("g1"))], "g1", Some(vec![]),
    Err(&["uid \"p1\" is not in this Grafana"][..]), 0)]
#[case::renamed_but_uid_stable(vec![by_uid("p1", Some("g1"))], "g1", Some(vec![ds("p1", "New name", "prometheus")]), Ok("p1"), 0)]
#[case::renamed_name_lookup_misses(vec![by_name("Old name")], "g1", Some(vec![ds("p1", "New name", "prometheus")]),
    Err(&["name \"Old name\": no datasource of that name", "\"New name\" (prometheus, uid \"p1\")"][..]), 0)]
#[case::recreated_new_uid_exchange_is_stale(vec![by_uid("old", Some("g1"))], "g1", Some(vec![ds("new", "Prom", "prometheus")]),
    Err(&["uid \"old\" is not in this Grafana (deleted or re-created?)"][..]), 0)]
#[case::recreated_new_uid_name_follows(vec![by_name("Prom")], "g1", Some(vec![ds("new", "Prom", "prometheus")]), Ok("new"), 0)]
#[case::several_qualify_smallest_uid(vec![by_type("prometheus")], "g1",
    Some(vec![ds("zz", "A", "prometheus"), ds("aa", "B", "prometheus")]), Ok("aa"), 1)]
#[case::config_order_wins(vec![by_name("Mimir"), by_type("prometheus")], "g1",
    Some(vec![ds("aa", "Prom", "prometheus"), ds("zz", "Mimir", "prometheus")]), Ok("zz"), 0)]
#[case::wrong_type_never_links(vec![by_uid("l1", Some("g1"))], "g1", Some(vec![ds("l1", "Loki", "loki")]),
    Err(&["uid \"l1\" is loki datasource \"Loki\", not prometheus"][..]), 0)]
#[case::name_of_another_type(vec![by_name("Logs")], "g1", Some(vec![ds("l1", "Logs", "loki")]),
    Err(&["name \"Logs\": matches \"Logs\" (loki, uid \"l1\"), not prometheus"][..]), 0)]
#[case::every_reference_explained(vec![by_uid("p1", Some("g2")), by_name("Prom")], "g1",
    Some(vec![ds("l1", "Logs", "loki")]),
    Err(&["uid \"p1\" is in grafana \"g2\"", "; name \"Prom\": no prometheus datasource here; seen: \"Logs\" (loki"][..]), 0)]
#[case::no_inventory_tagged_uid_trusted(vec![by_uid("p1", Some("g1"))], "g1", None, Ok("p1"), 0)]
#[case::no_inventory_untagged_uid_skipped(vec![by_uid("p1", None)], "g1", None,
    Err(&["uid \"p1\" has no `grafana` tag", "cannot be listed"][..]), 0)]
#[case::no_inventory_name_needs_api(vec![by_name("Prom")], "g1", None,
    Err(&["name \"Prom\": a lookup by name/type needs this Grafana's `url` and credentials"][..]), 0)]
#[case::empty_refs(vec![], "g1", Some(vec![ds("p", "P", "prometheus")]), Err(&["no candidate (`metrics` lists nothing)"][..]), 0)]
#[case::empty_inventory(vec![by_type("prometheus")], "g1", Some(vec![]),
    Err(&["type prometheus: this Grafana has no datasources"][..]), 0)]
fn select_backend(
    #[case] refs: Vec<BackendRef>,
    #[case] grafana: &str,
    #[case] inventory: Option<Vec<DsSummary>>,
    #[case] want: Result<&str, &[&str]>,
    #[case] want_notes: usize,
) {
    let mut notes = Vec::new();
    let got = select(
        &refs,
        grafana,
        inventory.as_deref(),
        &["prometheus"],
        "t",
        &mut notes,
    );
    match (got, want) {
        (Ok(got), Ok(want)) => assert_eq!(got.0, want),
        (Err(rejected), Err(parts)) => {
            let line = unlinked_line("t", "metrics", &rejected);
            for p in parts {
                assert!(line.contains(p), "{line:?} lacks {p:?}");
            }
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
    assert_eq!(notes.len(), want_notes, "{notes:?}");
}

#[rstest]
#[case::simple("traces", None, "sonde-traces")]
#[case::configured("Sonde traces", Some("my-uid"), "my-uid")]
#[case::already_prefixed("sonde-traces", None, "sonde-traces")]
#[case::lossy_gets_hash("Sonde traces", None, "sonde-traces-")]
#[case::empty("", None, "sonde-")]
#[case::garbage("!!! ???", None, "sonde-")]
#[case::oversized(
    "a-very-long-tempo-datasource-name-that-goes-on-and-on",
    None,
    "sonde-a-very-long-tempo-dataso"
)]
#[case::unicode("Tempo ñandú", None, "sonde-tempo--and-")]
fn tempo_uids(#[case] name: &str, #[case] configured: Option<&str>, #[case] prefix: &str) {
    let uid = tempo_uid(name, configured);
    assert!(uid.starts_with(prefix), "{uid} should start with {prefix}");
    assert!(is_valid_uid(&uid), "{uid} is not a valid Grafana uid");
    assert_eq!(uid, tempo_uid(name, configured), "deterministic");
}

#[test]
fn lossy_names_that_slug_alike_get_different_uids() {
    assert_ne!(tempo_uid("Traces A", None), tempo_uid("traces-a!", None));
}

fn section(grafanas: &[&str]) -> ReconcileSection {
    ReconcileSection {
        grafanas: grafanas
            .iter()
            .map(|g| GrafanaConfig {
                id: (*g).into(),
                org_id: 1,
                ..Default::default()
            })
            .collect(),
        tempos: vec![TempoConfig {
            name: "traces".into(),
            url: "http://tempo:3200".into(),
            tenant: Some(SecretSource {
                value: Some("t1".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        metrics: vec![by_uid("prom-1", Some("g1")), by_uid("prom-2", Some("g2"))],
        logs: vec![by_uid("loki-1", Some("g1"))],
        ..Default::default()
    }
}

fn value_at<'a>(d: &'a DesiredDatasource, p: &[&str]) -> Option<&'a Value> {
    d.sets
        .iter()
        .find(|(k, _)| *k == path(p))
        .and_then(|(_, v)| v.as_ref())
}

#[test]
fn one_grafana_links_both_ways() {
    let s = section(&["g1"]);
    let tempos = resolve_tempos(&s).expect("tempos");
    let inv = vec![
        ds("prom-1", "Prom", "prometheus"),
        ds("loki-1", "Loki", "loki"),
    ];
    let d = build(&s, &tempos, "g1", Some(&inv), Some(b"key"));
    let kinds: Vec<_> = d
        .datasources
        .iter()
        .map(|d| (d.kind.as_str(), d.uid.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("tempo", "sonde-traces"),
            ("loki", "loki-1"),
            ("prometheus", "prom-1")
        ]
    );
    let tempo = &d.datasources[0];
    assert_eq!(
        value_at(tempo, &["jsonData", "tracesToLogsV2", "datasourceUid"]),
        Some(&json!("loki-1"))
    );
    assert_eq!(
        value_at(tempo, &["jsonData", "serviceMap", "datasourceUid"]),
        Some(&json!("prom-1"))
    );
    assert_eq!(
        value_at(tempo, &["jsonData", MARKER, "headers"]),
        Some(&json!(["X-Scope-OrgID"]))
    );
    assert_eq!(tempo.headers[0].0, "X-Scope-OrgID");
    assert_eq!(tempo.headers[0].1.expose(), "t1");
    assert!(value_at(tempo, &["jsonData", MARKER, "secureHash"]).is_some());
    let loki = &d.datasources[1];
    assert_eq!(loki.lists[0].list, path(&["jsonData", "derivedFields"]));
    assert_eq!(loki.lists[0].entries[0]["datasourceUid"], "sonde-traces");
    assert_eq!(loki.depends_on, ["sonde-traces"]);
}

#[rstest]
#[case::unset(None)]
#[case::off(Some(false))]
#[case::on(Some(true))]
fn streaming_is_set_only_when_configured(#[case] streaming: Option<bool>) {
    let mut s = section(&["g1"]);
    s.tempos[0].streaming = streaming;
    let tempos = resolve_tempos(&s).expect("tempos");
    let d = build(&s, &tempos, "g1", Some(&[]), Some(b"key"));
    let tempo = &d.datasources[0];
    for leaf in ["search", "metrics"] {
        assert_eq!(
            value_at(tempo, &["jsonData", "streamingEnabled", leaf]),
            streaming.map(|on| json!(on)).as_ref(),
            "{leaf}"
        );
    }
}

#[test]
fn two_grafanas_with_disjoint_backends_get_their_own_links() {
    let s = section(&["g1", "g2"]);
    let tempos = resolve_tempos(&s).expect("tempos");
    let inv1 = vec![
        ds("prom-1", "Prom", "prometheus"),
        ds("loki-1", "Loki", "loki"),
    ];
    let inv2 = vec![ds("prom-2", "Prom", "prometheus")];
    let d1 = build(&s, &tempos, "g1", Some(&inv1), None);
    let d2 = build(&s, &tempos, "g2", Some(&inv2), None);
    let sm = ["jsonData", "serviceMap", "datasourceUid"];
    assert_eq!(value_at(&d1.datasources[0], &sm), Some(&json!("prom-1")));
    assert_eq!(value_at(&d2.datasources[0], &sm), Some(&json!("prom-2")));
    // Loki exists only in g1: g2's Tempo gets no logs link, and would drop a dangling one.
    let t2 = &d2.datasources[0];
    assert_eq!(
        value_at(t2, &["jsonData", "tracesToLogsV2", "datasourceUid"]),
        None
    );
    assert!(t2.unlink_if_dangling.contains(&path(&[
        "jsonData",
        "tracesToLogsV2",
        "datasourceUid"
    ])));
    assert_eq!(d2.datasources.len(), 2, "tempo + prometheus, no loki patch");
    // Without a hash key (file modes) there is no secret fingerprint.
    assert_eq!(
        value_at(&d1.datasources[0], &["jsonData", MARKER, "secureHash"]),
        None
    );
}

#[test]
fn tempo_limited_to_some_grafanas() {
    let mut s = section(&["g1", "g2"]);
    s.tempos[0].grafanas = vec!["g1".into()];
    let tempos = resolve_tempos(&s).expect("tempos");
    let inv2 = vec![ds("prom-2", "Prom", "prometheus")];
    assert!(
        build(&s, &tempos, "g2", Some(&inv2), None)
            .datasources
            .is_empty()
    );
}

#[test]
fn spec_hash_changes_with_config_not_with_secrets_source() {
    let s = section(&["g1"]);
    let tempos = resolve_tempos(&s).expect("tempos");
    let inv = vec![ds("prom-1", "Prom", "prometheus")];
    let hash = |d: &DesiredGrafana| {
        value_at(&d.datasources[0], &["jsonData", MARKER, "specHash"]).cloned()
    };
    let a = build(&s, &tempos, "g1", Some(&inv), None);
    let b = build(&s, &tempos, "g1", Some(&inv), None);
    assert_eq!(hash(&a), hash(&b));
    let mut s2 = s.clone();
    s2.correlation.span_end_time_shift = "10m".into();
    let c = build(&s2, &tempos, "g1", Some(&inv), None);
    assert_ne!(hash(&a), hash(&c));
}

#[test]
fn list_summary_reads_marker_and_skips_garbage() {
    let v = json!({"uid": "t", "name": "T", "type": "tempo", "readOnly": true,
                   "jsonData": {MARKER: {"owner": "sonde"}}});
    let s = DsSummary::from_json(&v).expect("summary");
    assert!(s.sonde_tempo && s.read_only);
    assert_eq!(DsSummary::from_json(&json!({"name": "no uid"})), None);
    assert_eq!(DsSummary::from_json(&json!("garbage")), None);
}

#[test]
fn service_map_can_use_another_prometheus_and_both_get_exemplar_links() {
    let mut s = section(&["g1"]);
    s.service_map = vec![by_name("Generator")];
    let tempos = resolve_tempos(&s).expect("tempos");
    let inv = vec![
        ds("prom-1", "Prom", "prometheus"),
        ds("gen-1", "Generator", "prometheus"),
    ];
    let d = build(&s, &tempos, "g1", Some(&inv), None);
    let tempo = &d.datasources[0];
    let uid_at = |p: &[&str]| value_at(tempo, p).cloned();
    assert_eq!(
        uid_at(&["jsonData", "serviceMap", "datasourceUid"]),
        Some(json!("gen-1"))
    );
    assert_eq!(
        uid_at(&["jsonData", "tracesToMetrics", "datasourceUid"]),
        Some(json!("prom-1"))
    );
    let patched: Vec<_> = d.datasources[1..].iter().map(|d| d.uid.as_str()).collect();
    assert_eq!(patched, ["gen-1", "prom-1"]);
    // Without that Prometheus in this Grafana, no service map link (no fallback to another).
    let inv = vec![ds("prom-1", "Prom", "prometheus")];
    let d = build(&s, &tempos, "g1", Some(&inv), None);
    assert_eq!(
        value_at(
            &d.datasources[0],
            &["jsonData", "serviceMap", "datasourceUid"]
        ),
        None
    );
}
