//! Provisioning mode's backlinks: the user's own provisioning files that define the Loki and
//! Prometheus datasources Sonde links back from (`grafanas[].provisioning_files`). Sonde adds
//! its `derivedFields` / `exemplarTraceIdDestinations` entries (and its marker) to those
//! datasources there, drops its entries that are no longer wanted, and changes nothing else.
//! Where Sonde may not write, [`missing_backlink`] says exactly what to add where.
use std::path::PathBuf;

use serde_json::Value;
use serde_yaml::Value as Yaml;

use super::render_files::escape_dollars;
use crate::{
    MARKER, Mode,
    config::GrafanaConfig,
    desired::{DesiredDatasource, ListOwnership},
    diff::merge_list,
};

/// One user provisioning file as read at the start of the run.
#[derive(Debug)]
pub(crate) struct UserFile {
    pub path: PathBuf,
    /// The text on disk (the file is rewritten only when its content changes).
    pub original: String,
    before: Yaml,
    pub doc: Yaml,
}

impl UserFile {
    /// Whether Sonde changed a datasource in this file.
    pub fn changed(&self) -> bool {
        self.before != self.doc
    }

    /// The new text: the document as YAML (comments are not kept).
    pub fn render(&self) -> String {
        serde_yaml::to_string(&self.doc).unwrap_or_default()
    }
}

/// Read every file listed under `provisioning_files`; the error names the file.
pub(crate) fn load(g: &GrafanaConfig) -> Result<Vec<UserFile>, String> {
    g.provisioning_files
        .iter()
        .map(|path| {
            let original = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "grafanas[{}].provisioning_files: cannot read {}: {e}",
                    g.id,
                    path.display()
                )
            })?;
            let doc: Yaml = serde_yaml::from_str(&original).map_err(|e| {
                format!(
                    "grafanas[{}].provisioning_files: {} is not YAML: {e}",
                    g.id,
                    path.display()
                )
            })?;
            Ok(UserFile {
                path: path.clone(),
                original,
                before: doc.clone(),
                doc,
            })
        })
        .collect()
}

fn org_of(entry: &Yaml) -> u64 {
    entry.get("orgId").and_then(Yaml::as_u64).unwrap_or(1)
}

/// The datasource definitions of one file, mutable.
fn datasources(doc: &mut Yaml) -> impl Iterator<Item = &mut Yaml> {
    doc.get_mut("datasources")
        .and_then(Yaml::as_sequence_mut)
        .into_iter()
        .flatten()
}

/// Whether a definition is the datasource `uid` (or, without a uid, named `name`) in `org`.
fn is(entry: &Yaml, uid: &str, name: &str, org: u64) -> bool {
    let s = |k: &str| entry.get(k).and_then(Yaml::as_str);
    org_of(entry) == org
        && match s("uid") {
            Some(u) => u == uid,
            None => s("name") == Some(name),
        }
}

/// Write Sonde's entries for `ds` into the file that defines it. Returns the file's path and
/// whether the definition changed, or `None` when no listed file defines it.
pub(crate) fn merge(
    files: &mut [UserFile],
    ds: &DesiredDatasource,
    org: u64,
) -> Option<(PathBuf, bool)> {
    for f in files.iter_mut() {
        if let Some(entry) = datasources(&mut f.doc).find(|e| is(e, &ds.uid, &ds.name, org)) {
            let before = entry.clone();
            write_entries(entry, &ds.lists, &ds.depends_on);
            return Some((f.path.clone(), before != *entry));
        }
    }
    None
}

/// Drop Sonde's entries and marker from every datasource in these files that Sonde no longer
/// links back from (`wanted` lists the uids it still does, in `org`).
pub(crate) fn clean(files: &mut [UserFile], wanted: &[&str], managed: &[String], org: u64) {
    for f in files.iter_mut() {
        for entry in datasources(&mut f.doc) {
            let uid = entry.get("uid").and_then(Yaml::as_str).unwrap_or_default();
            let marked = entry.get("jsonData").and_then(|j| j.get(MARKER)).is_some();
            if !marked || org_of(entry) != org || wanted.contains(&uid) {
                continue;
            }
            let lists = ["derivedFields", "exemplarTraceIdDestinations"].map(|l| ListOwnership {
                list: vec!["jsonData".into(), l.into()],
                managed: managed.iter().cloned().collect(),
                entries: Vec::new(),
            });
            write_entries(entry, &lists, &[]);
        }
    }
}

/// Merge the lists into one definition (escaped for a provisioning file) and record the
/// linked Tempo UIDs in the marker; without any, the marker goes.
fn write_entries(entry: &mut Yaml, lists: &[ListOwnership], tempo_uids: &[String]) {
    let Some(map) = entry.as_mapping_mut() else {
        return;
    };
    let jd = map
        .entry(Yaml::from("jsonData"))
        .or_insert_with(|| Yaml::Mapping(Default::default()));
    if !jd.is_mapping() {
        *jd = Yaml::Mapping(Default::default());
    }
    let Some(jd) = jd.as_mapping_mut() else {
        return;
    };
    let recorded: std::collections::BTreeSet<String> = jd
        .get(MARKER)
        .and_then(|m| m.get("tempoUids"))
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect();
    for own in lists {
        let Some(key) = own.list.last() else { continue };
        let mut escaped = own.clone();
        for e in &mut escaped.entries {
            let mut v = Value::Object(std::mem::take(e));
            escape_dollars(&mut v);
            if let Value::Object(m) = v {
                *e = m;
            }
        }
        // The user's entries are written back as they were read (key order included).
        let originals: Vec<(Value, Yaml)> = jd
            .get(key.as_str())
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|y| Some((serde_json::to_value(y).ok()?, y.clone())))
            .collect();
        let current: Option<Value> = jd
            .get(key.as_str())
            .and_then(|v| serde_json::to_value(v).ok());
        let merged = merge_list(current.as_ref(), &escaped, &recorded);
        let items = merged.as_array().cloned().unwrap_or_default();
        if items.is_empty() && current.is_none() {
            continue;
        }
        let items: Vec<Yaml> = items
            .iter()
            .filter_map(|item| match originals.iter().find(|(j, _)| j == item) {
                Some((_, y)) => Some(y.clone()),
                None => serde_yaml::to_value(item).ok(),
            })
            .collect();
        jd.insert(Yaml::from(key.as_str()), Yaml::Sequence(items));
    }
    if tempo_uids.is_empty() {
        jd.remove(MARKER);
    } else {
        let marker =
            serde_yaml::to_value(serde_json::json!({"tempoUids": tempo_uids})).unwrap_or_default();
        jd.insert(Yaml::from(MARKER), marker);
    }
}

/// Every entry Sonde wants in `ds` is already in the observed record (added by hand, say).
pub(crate) fn entries_present(observed: &Value, ds: &DesiredDatasource) -> bool {
    ds.lists.iter().all(|own| {
        let have = crate::diff::get(observed, &own.list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        own.entries.iter().all(|want| {
            have.iter()
                .any(|h| want.iter().all(|(k, v)| h.get(k) == Some(v)))
        })
    })
}

/// The failure for a backlink Sonde may not write: what to add, where.
pub(crate) fn missing_backlink(
    mode: Mode,
    g: &GrafanaConfig,
    ds: &DesiredDatasource,
    observed: Option<&Value>,
) -> String {
    let prefix = if mode == Mode::Operator {
        "spec.datasource."
    } else {
        ""
    };
    let mut what = Vec::new();
    for own in &ds.lists {
        let mut entries = Value::Array(own.entries.iter().cloned().map(Value::Object).collect());
        if mode == Mode::Provisioning {
            escape_dollars(&mut entries);
        }
        let list = own.list.join(".");
        what.push(format!("under {prefix}{list}: {entries}"));
    }
    let what = what.join("; ");
    let head = format!(
        "{} datasource {:?} (uid {}) does not link back to Sonde's Tempo and Sonde may not write \
         it",
        ds.kind, ds.name, ds.uid
    );
    let listed = format!("grafanas[{}].provisioning_files", g.id);
    let read_only = observed
        .and_then(|o| o.get("readOnly"))
        .and_then(Value::as_bool);
    match (mode, read_only) {
        (Mode::Operator, _) => format!("{head}: add to its GrafanaDatasource, {what}"),
        (_, Some(false)) => format!(
            "{head} (it lives in Grafana's database, not in a provisioning file): add in Grafana \
             (Connections → Data sources → {:?}) {what}; or run with --mode api",
            ds.name
        ),
        _ => format!(
            "{head}: add to its definition in your provisioning file {what}; or list that file \
             under {listed} and Sonde keeps the entry in sync"
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::desired::{Role, path};

    fn loki_patch(tempos: &[&str]) -> DesiredDatasource {
        DesiredDatasource {
            uid: "loki-1".into(),
            name: "Logs".into(),
            kind: "loki".into(),
            role: Role::Patched,
            sets: Vec::new(),
            unlink_if_dangling: Vec::new(),
            lists: vec![ListOwnership {
                list: path(&["jsonData", "derivedFields"]),
                managed: ["sonde-a", "sonde-b"].map(String::from).into(),
                entries: tempos
                    .iter()
                    .map(|t| {
                        json!({"name": "traceID", "url": "${__value.raw}", "datasourceUid": t})
                            .as_object()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect(),
            }],
            secure: Default::default(),
            headers: Vec::new(),
            depends_on: tempos.iter().map(|t| (*t).to_string()).collect(),
        }
    }

    fn file(text: &str) -> UserFile {
        let doc: Yaml = serde_yaml::from_str(text).expect("yaml");
        UserFile {
            path: "user.yaml".into(),
            original: text.into(),
            before: doc.clone(),
            doc,
        }
    }

    const USER: &str = "apiVersion: 1\ndatasources:\n- name: Logs\n  uid: loki-1\n  type: loki\n  \
                        url: http://loki:3100\n  jsonData:\n    maxLines: 1000\n    \
                        derivedFields:\n    - name: mine\n      matcherRegex: x=(\\w+)\n      \
                        url: http://x/$${__value.raw}\n  secureJsonData:\n    password: \
                        $LOKI_PASSWORD\n";

    #[test]
    fn entries_are_added_escaped_and_everything_else_is_kept() {
        let mut files = vec![file(USER)];
        let found = merge(&mut files, &loki_patch(&["sonde-a"]), 1);
        assert_eq!(found, Some((PathBuf::from("user.yaml"), true)));
        assert!(files[0].changed());
        let text = files[0].render();
        assert_eq!(
            text,
            "apiVersion: 1\ndatasources:\n- name: Logs\n  uid: loki-1\n  type: loki\n  url: \
             http://loki:3100\n  jsonData:\n    maxLines: 1000\n    derivedFields:\n    - name: \
             mine\n      matcherRegex: x=(\\w+)\n      url: http://x/$${__value.raw}\n    - \
             datasourceUid: sonde-a\n      name: traceID\n      url: $${__value.raw}\n    \
             sondeReconciler:\n      tempoUids:\n      - sonde-a\n  secureJsonData:\n    \
             password: $LOKI_PASSWORD\n"
        );
        // Idempotent: the same entries again change nothing.
        let mut again = vec![file(&text)];
        merge(&mut again, &loki_patch(&["sonde-a"]), 1);
        assert!(!again[0].changed());
        // Another Tempo replaces Sonde's entry; the user's stays.
        merge(&mut again, &loki_patch(&["sonde-b"]), 1);
        let text = again[0].render();
        assert!(!text.contains("sonde-a") && text.contains("sonde-b") && text.contains("mine"));
        // No longer linked back: Sonde's entry and marker go, the user's stays.
        let mut cleaned = vec![file(&text)];
        clean(&mut cleaned, &[], &["sonde-b".into()], 1);
        let text = cleaned[0].render();
        assert!(
            !text.contains("sonde-b") && !text.contains(MARKER),
            "{text}"
        );
        assert!(text.contains("name: mine"), "{text}");
    }

    #[test]
    fn a_datasource_of_another_org_or_uid_is_not_found() {
        let mut files = vec![file(USER)];
        assert_eq!(merge(&mut files, &loki_patch(&["sonde-a"]), 2), None);
        let mut other = loki_patch(&["sonde-a"]);
        other.uid = "loki-2".into();
        assert_eq!(merge(&mut files, &other, 1), None);
        assert!(!files[0].changed());
    }

    #[test]
    fn the_message_says_what_to_add_where() {
        let g = GrafanaConfig {
            id: "g1".into(),
            ..Default::default()
        };
        let ds = loki_patch(&["sonde-a"]);
        let m = missing_backlink(Mode::Provisioning, &g, &ds, None);
        assert!(
            m.contains("jsonData.derivedFields: [{\"datasourceUid\":\"sonde-a\"")
                && m.contains("$${__value.raw}")
                && m.contains("grafanas[g1].provisioning_files"),
            "{m}"
        );
        let db = json!({"readOnly": false});
        let m = missing_backlink(Mode::Provisioning, &g, &ds, Some(&db));
        assert!(
            m.contains("Data sources → \"Logs\"") && m.contains("--mode api"),
            "{m}"
        );
        let m = missing_backlink(Mode::Operator, &g, &ds, None);
        assert!(
            m.contains("GrafanaDatasource, under spec.datasource.jsonData.derivedFields")
                && m.contains("\"${__value.raw}\""),
            "{m}"
        );
    }
}
