//! Table tests for the merge and the plan.
use std::collections::{BTreeMap, BTreeSet};

use rstest::rstest;
use serde_json::{Value, json};

use super::*;
use crate::{
    desired::{DesiredDatasource, DsSummary, ListOwnership, Role, TENANT_HEADER, path},
    secret::Secret,
};

fn own(managed: &[&str], entries: &[Value]) -> ListOwnership {
    ListOwnership {
        list: path(&["jsonData", "derivedFields"]),
        managed: managed.iter().map(|s| (*s).to_string()).collect(),
        entries: entries
            .iter()
            .filter_map(|e| e.as_object().cloned())
            .collect(),
    }
}

#[rstest]
#[case::missing_list(None, &[], json!([{"name": "ours", "datasourceUid": "t1"}]))]
#[case::not_an_array(Some(json!("garbage")), &[], json!([{"name": "ours", "datasourceUid": "t1"}]))]
#[case::user_entries_kept_first(
    Some(json!([{"name": "user", "url": "x"}, {"name": "u2", "datasourceUid": "their-tempo"}])), &[],
    json!([{"name": "user", "url": "x"}, {"name": "u2", "datasourceUid": "their-tempo"},
           {"name": "ours", "datasourceUid": "t1"}]))]
#[case::ours_updated_in_place_extra_key_kept(
    Some(json!([{"name": "old", "datasourceUid": "t1", "targetBlank": true}, {"name": "user"}])), &[],
    json!([{"name": "ours", "datasourceUid": "t1", "targetBlank": true}, {"name": "user"}]))]
#[case::stale_recorded_tempo_removed(
    Some(json!([{"name": "ours", "datasourceUid": "t-old"}])), &["t-old"],
    json!([{"name": "ours", "datasourceUid": "t1"}]))]
#[case::duplicates_of_ours_dropped(
    Some(json!([{"name": "a", "datasourceUid": "t1"}, {"name": "b", "datasourceUid": "t1"}])), &[],
    json!([{"name": "ours", "datasourceUid": "t1"}]))]
#[case::garbage_items_kept(Some(json!([1, null, "x"])), &[],
    json!([1, null, "x", {"name": "ours", "datasourceUid": "t1"}]))]
fn merge_lists(#[case] observed: Option<Value>, #[case] recorded: &[&str], #[case] want: Value) {
    let o = own(&["t1"], &[json!({"name": "ours", "datasourceUid": "t1"})]);
    let recorded: BTreeSet<String> = recorded.iter().map(|s| (*s).to_string()).collect();
    assert_eq!(merge_list(observed.as_ref(), &o, &recorded), want);
}

#[rstest]
#[case::into_empty(json!({}), &["a", "b"], Some(json!(1)), json!({"a": {"b": 1}}))]
#[case::through_non_object(json!({"a": 5}), &["a", "b"], Some(json!(1)), json!({"a": {"b": 1}}))]
#[case::remove_leaf(json!({"a": {"b": 1, "c": 2}}), &["a", "b"], None, json!({"a": {"c": 2}}))]
#[case::remove_missing_is_noop(json!({"x": 1}), &["a", "b"], None, json!({"x": 1}))]
#[case::remove_under_scalar_is_noop(json!({"a": 5}), &["a", "b"], None, json!({"a": 5}))]
#[case::empty_path_is_noop(json!({"x": 1}), &[], Some(json!(2)), json!({"x": 1}))]
fn put_paths(
    #[case] mut v: Value,
    #[case] p: &[&str],
    #[case] new: Option<Value>,
    #[case] want: Value,
) {
    put(&mut v, &path(p), new);
    assert_eq!(v, want);
}

fn tempo() -> DesiredDatasource {
    let s = |p: &[&str], v: Value| (path(p), Some(v));
    DesiredDatasource {
        uid: "sonde-t".into(),
        name: "T".into(),
        kind: "tempo".into(),
        role: Role::Owned,
        sets: vec![
            s(&["name"], json!("T")),
            s(&["type"], json!("tempo")),
            s(&["url"], json!("http://tempo:3200")),
            s(&["jsonData", "serviceMap", "datasourceUid"], json!("prom")),
            s(&["jsonData", MARKER, "specHash"], json!("h1")),
            s(&["jsonData", MARKER, "secureHash"], json!("s1")),
            s(&["jsonData", MARKER, "headers"], json!([TENANT_HEADER])),
        ],
        unlink_if_dangling: vec![path(&["jsonData", "tracesToLogsV2", "datasourceUid"])],
        lists: Vec::new(),
        secure: BTreeMap::new(),
        headers: vec![(TENANT_HEADER.to_string(), Secret::new("tenant"))],
        depends_on: Vec::new(),
    }
}

/// What Grafana returns after Sonde's create.
fn stored() -> Value {
    json!({"id": 7, "uid": "sonde-t", "orgId": 1, "name": "T", "type": "tempo",
           "url": "http://tempo:3200", "version": 3, "readOnly": false,
           "jsonData": {"serviceMap": {"datasourceUid": "prom"}, "httpHeaderName1": "X-Scope-OrgID",
                        MARKER: {"specHash": "h1", "secureHash": "s1", "headers": ["X-Scope-OrgID"]}},
           "secureJsonFields": {"httpHeaderValue1": true}})
}

fn inv(uids: &[&str]) -> Vec<DsSummary> {
    uids.iter()
        .map(|u| DsSummary {
            uid: (*u).into(),
            name: format!("n-{u}"),
            kind: "x".into(),
            read_only: false,
            sonde_tempo: false,
            sonde_grafana: None,
            sonde_links: false,
        })
        .collect()
}

fn edit(mut v: Value, f: impl FnOnce(&mut Value)) -> Value {
    f(&mut v);
    v
}

#[rstest]
#[case::create(None, vec![], "create", false, &["jsonData.serviceMap.datasourceUid", "secureJsonData.httpHeaderValue1"])]
#[case::unchanged(Some(stored()), vec![], "noop", false, &[])]
#[case::user_added_unowned_field(Some(edit(stored(), |v| v["jsonData"]["spanBar"] = json!({"type": "None"}))), vec![], "noop", false, &[])]
#[case::user_edited_owned_field(Some(edit(stored(), |v| v["jsonData"]["serviceMap"]["datasourceUid"] = json!("other"))),
    vec![], "update", true, &["jsonData.serviceMap.datasourceUid"])]
#[case::user_header_kept(Some(edit(stored(), |v| v["jsonData"]["httpHeaderName2"] = json!("X"))),
    vec![], "noop", false, &[])]
#[case::our_header_after_a_gap_renumbered(Some(edit(stored(), |v| {
        v["jsonData"]["httpHeaderName2"] = json!("X-Scope-OrgID");
        v["jsonData"].as_object_mut().map(|j| j.remove("httpHeaderName1"));
    })), vec![], "update", true,
    &["jsonData.httpHeaderName1", "jsonData.httpHeaderName2", "secureJsonData.httpHeaderValue1",
      "secureJsonData.httpHeaderValue2"])]
#[case::legacy_token_header_removed(Some(edit(stored(), |v| {
        v["jsonData"]["httpHeaderName2"] = json!("Authorization");
        v["jsonData"][MARKER].as_object_mut().map(|m| m.remove("headers"));
    })), vec![], "update", true,
    &["jsonData.httpHeaderName2", "jsonData.sondeReconciler.headers",
      "secureJsonData.httpHeaderValue1", "secureJsonData.httpHeaderValue2"])]
#[case::config_changed_not_drift(Some(edit(stored(), |v| v["jsonData"][MARKER]["specHash"] = json!("h0"))),
    vec![], "update", false, &["jsonData.sondeReconciler.specHash"])]
#[case::dangling_link_removed(Some(edit(stored(), |v| v["jsonData"]["tracesToLogsV2"] = json!({"datasourceUid": "gone", "tags": []}))),
    vec!["prom"], "update", true, &["jsonData.tracesToLogsV2.datasourceUid"])]
#[case::live_user_link_kept(Some(edit(stored(), |v| v["jsonData"]["tracesToLogsV2"] = json!({"datasourceUid": "loki"}))),
    vec!["prom", "loki"], "noop", false, &[])]
#[case::secret_lost_in_grafana(Some(edit(stored(), |v| v["secureJsonFields"] = json!({}))),
    vec![], "update", true, &["secureJsonData.httpHeaderValue1"])]
#[case::secret_changed_in_config(Some(edit(stored(), |v| v["jsonData"][MARKER]["secureHash"] = json!("s0"))),
    vec![], "update", true, &["jsonData.sondeReconciler.secureHash", "secureJsonData.httpHeaderValue1"])]
#[case::read_only_with_changes(Some(edit(stored(), |v| { v["readOnly"] = json!(true); v["url"] = json!("http://old") })),
    vec![], "conflict", true, &["url"])]
#[case::read_only_without_changes(Some(edit(stored(), |v| v["readOnly"] = json!(true))), vec![], "noop", false, &[])]
#[case::uid_taken_by_other_type(Some(edit(stored(), |v| v["type"] = json!("loki"))), vec![], "conflict", false, &[])]
#[case::name_taken_by_other_uid(None, vec!["other"], "conflict", false, &[])]
fn plans(
    #[case] observed: Option<Value>,
    #[case] inventory: Vec<&str>,
    #[case] want: &str,
    #[case] drift: bool,
    #[case] paths: &[&str],
) {
    let d = tempo();
    let mut inventory = inv(&inventory);
    if want == "conflict" && observed.is_none() {
        inventory[0].name = "T".into();
    }
    let p = plan(&d, observed.as_ref(), Some(&inventory));
    let action = match &p.action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Noop => "noop",
        Action::Delete => "delete",
        Action::Conflict(_) => "conflict",
    };
    assert_eq!(action, want, "{:?}", p.changes);
    assert_eq!(p.drift, drift);
    let got: Vec<_> = p
        .changes
        .iter()
        .map(|c| c.path.as_str())
        .filter(|c| paths.is_empty() || paths.contains(c))
        .collect();
    if want != "create" {
        let all: Vec<_> = p.changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(all, paths);
    } else {
        assert_eq!(got, paths, "create lists every leaf plus the secrets");
    }
    if want == "update" {
        // The body keeps what Sonde does not own and carries the observed version.
        assert_eq!(p.version, Some(3));
        assert_eq!(p.body["id"], 7);
        let resent = p.changes.iter().any(|c| c.secret);
        assert_eq!(p.body.get("secureJsonData").is_some(), resent);
    }
}

#[test]
fn patched_missing_datasource_is_a_conflict_and_change_values_hold_no_secret() {
    let mut d = tempo();
    d.role = Role::Patched;
    assert!(matches!(plan(&d, None, None).action, Action::Conflict(_)));
    let p = plan(&tempo(), None, None);
    let text = format!("{:?}", p.changes);
    assert!(!text.contains("tenant"), "{text}");
    assert_eq!(
        p.body["secureJsonData"]["httpHeaderValue1"], "tenant",
        "sent on create"
    );
}

#[rstest]
#[case::equal(json!({"a": 1}), json!({"a": 1}), &[])]
#[case::nested(json!({"a": {"b": 1}}), json!({"a": {"b": 2}}), &["a.b"])]
#[case::array_same_len(json!({"l": [1, 2]}), json!({"l": [1, 3]}), &["l[1]"])]
#[case::array_grown(json!({"l": [1]}), json!({"l": [1, 2]}), &["l[1]"])]
#[case::array_shrunk(json!({"l": [1, 2]}), json!({"l": [2]}), &["l[0]", "l[1]"])]
#[case::object_appended(json!({"l": []}), json!({"l": [{"a": 1, "b": 2}]}), &["l[0].a", "l[0].b"])]
#[case::array_to_scalar(json!({"l": [1]}), json!({"l": 1}), &["l"])]
#[case::key_removed(json!({"a": 1, "b": 2}), json!({"a": 1}), &["b"])]
#[case::type_changed(json!({"a": {}}), json!({"a": 1}), &["a"])]
fn value_diffs(#[case] before: Value, #[case] after: Value, #[case] want: &[&str]) {
    let mut out = Vec::new();
    diff_values(Some(&before), Some(&after), "", &mut out);
    let got: Vec<_> = out.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(got, want);
}
