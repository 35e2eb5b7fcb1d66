//! Pure: desired fields + the observed Grafana record → the action and the full record to write.
//!
//! The record to write starts from the observed record (Grafana's PUT replaces the whole
//! record), so everything Sonde does not own is carried over untouched; then Sonde's leaves,
//! list entries and marker are written in. The change list is the difference between the two.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{
    MARKER,
    desired::{AUTH_HEADER, DesiredDatasource, DsSummary, ListOwnership, Role, TENANT_HEADER},
};

/// What to do with one datasource.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create,
    Update,
    Noop,
    /// Sonde created it and no longer wants it.
    Delete,
    /// Sonde must not or cannot write it; the reason says what to do.
    Conflict(String),
}

/// One changed field. Secret values are never stored here.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Dotted path, e.g. `jsonData.serviceMap.datasourceUid`.
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// A `secureJsonData` key being (re)sent; values are masked.
    pub secret: bool,
}

/// The plan for one datasource.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub uid: String,
    pub name: String,
    pub kind: String,
    pub role: Role,
    pub action: Action,
    pub changes: Vec<Change>,
    /// The record to POST/PUT (without `secureJsonData` unless secrets must be sent).
    pub body: Value,
    /// The observed `version` (for the PUT's optimistic lock).
    pub version: Option<i64>,
    /// Sonde configured this datasource before with the same config: the change was made
    /// outside Sonde.
    pub drift: bool,
}

/// Read the value at `p`.
pub fn get<'a>(v: &'a Value, p: &[String]) -> Option<&'a Value> {
    p.iter().try_fold(v, |cur, k| cur.get(k))
}

/// Write (`Some`) or remove (`None`) the value at `p`, creating objects on the way.
pub fn put(v: &mut Value, p: &[String], new: Option<Value>) {
    let Some((last, parents)) = p.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        if new.is_none() && cur.get(k).is_none() {
            return;
        }
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        cur = obj
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        if new.is_none() {
            return;
        }
        *cur = Value::Object(Map::new());
    }
    if let Some(obj) = cur.as_object_mut() {
        match new {
            Some(n) => {
                obj.insert(last.clone(), n);
            }
            None => {
                obj.remove(last);
            }
        }
    }
}

fn uid_of(entry: &Value) -> Option<&str> {
    entry.get("datasourceUid").and_then(Value::as_str)
}

/// Merge Sonde's list entries into the observed list: user entries keep their place, Sonde's
/// entries are updated in place (keeping keys Sonde does not set), stale ones are dropped and
/// new ones appended.
pub fn merge_list(
    observed: Option<&Value>,
    own: &ListOwnership,
    recorded: &BTreeSet<String>,
) -> Value {
    let mut out = Vec::new();
    let mut used = BTreeSet::new();
    let items = observed
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for item in items {
        let Some(uid) = uid_of(&item).map(str::to_string) else {
            out.push(item);
            continue;
        };
        if !own.managed.contains(&uid) && !recorded.contains(&uid) {
            out.push(item);
            continue;
        }
        let want = own
            .entries
            .iter()
            .find(|e| e.get("datasourceUid").and_then(Value::as_str) == Some(&uid));
        match want {
            Some(fields) if used.insert(uid.clone()) => {
                let mut merged = item.as_object().cloned().unwrap_or_default();
                for (k, v) in fields {
                    merged.insert(k.clone(), v.clone());
                }
                out.push(Value::Object(merged));
            }
            _ => {} // stale or duplicate Sonde entry
        }
    }
    for e in &own.entries {
        let uid = e
            .get("datasourceUid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !used.contains(uid) {
            out.push(Value::Object(e.clone()));
        }
    }
    Value::Array(out)
}

/// Append the leaf differences between `before` and `after` under `prefix`.
pub fn diff_values(
    before: Option<&Value>,
    after: Option<&Value>,
    prefix: &str,
    out: &mut Vec<Change>,
) {
    if before == after {
        return;
    }
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                diff_values(b.get(k), a.get(k), &join(k), out);
            }
        }
        // Element by element: a grown list shows its new entries, a shrunk one its removals.
        (Some(Value::Array(b)), Some(Value::Array(a))) => {
            for i in 0..b.len().max(a.len()) {
                diff_values(b.get(i), a.get(i), &format!("{prefix}[{i}]"), out);
            }
        }
        (None, Some(Value::Object(a))) if !a.is_empty() => {
            for (k, v) in a {
                diff_values(None, Some(v), &join(k), out);
            }
        }
        _ => out.push(Change {
            path: prefix.to_string(),
            before: before.cloned(),
            after: after.cloned(),
            secret: false,
        }),
    }
}

fn recorded_tempos(observed: &Value) -> BTreeSet<String> {
    observed
        .pointer(&format!("/jsonData/{MARKER}/tempoUids"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn name_taken(inv: Option<&[DsSummary]>, name: &str, uid: &str) -> Option<String> {
    inv?.iter()
        .find(|d| d.name == name && d.uid != uid)
        .map(|d| d.uid.clone())
}

/// Plan one datasource. `observed` is the full record from `GET /api/datasources/uid/…`.
pub fn plan(
    desired: &DesiredDatasource,
    observed: Option<&Value>,
    inv: Option<&[DsSummary]>,
) -> Planned {
    let mut planned = Planned {
        uid: desired.uid.clone(),
        name: desired.name.clone(),
        kind: desired.kind.clone(),
        role: desired.role,
        action: Action::Noop,
        changes: Vec::new(),
        body: Value::Null,
        version: observed
            .and_then(|o| o.get("version"))
            .and_then(Value::as_i64),
        drift: false,
    };
    let base = match (observed, desired.role) {
        (None, Role::Patched) => {
            planned.action = Action::Conflict(format!(
                "{} datasource {:?} (uid {}) was not found; nothing to link",
                desired.kind, desired.name, desired.uid
            ));
            return planned;
        }
        (None, Role::Owned) => {
            if let Some(other) = name_taken(inv, &desired.name, &desired.uid) {
                planned.action = Action::Conflict(name_conflict(&desired.name, &other));
                return planned;
            }
            let mut v = Value::Object(Map::new());
            put(
                &mut v,
                &["uid".to_string()],
                Some(Value::String(desired.uid.clone())),
            );
            v
        }
        (Some(o), _) => o.clone(),
    };
    if let Some(o) = observed {
        let kind = o.get("type").and_then(Value::as_str).unwrap_or_default();
        if desired.role == Role::Owned && kind != desired.kind {
            planned.action = Action::Conflict(format!(
                "uid {} is taken by a {kind:?} datasource {:?}; set another `uid` for this Tempo",
                desired.uid,
                o.get("name").and_then(Value::as_str).unwrap_or_default()
            ));
            return planned;
        }
        if desired.role == Role::Owned
            && let Some(other) = name_taken(inv, &desired.name, &desired.uid)
        {
            planned.action = Action::Conflict(name_conflict(&desired.name, &other));
            return planned;
        }
    }
    let mut body = base.clone();
    for (p, v) in &desired.sets {
        put(&mut body, p, v.clone());
    }
    for p in &desired.unlink_if_dangling {
        let dangling = match (get(&body, p).and_then(Value::as_str), inv) {
            (Some(uid), Some(inv)) => !inv.iter().any(|d| d.uid == uid),
            _ => false,
        };
        if dangling {
            put(&mut body, p, None);
        }
    }
    let (header_secure, renumbered) = number_headers(desired, &base, &mut body);
    let recorded = observed.map(recorded_tempos).unwrap_or_default();
    for own in &desired.lists {
        let merged = merge_list(get(&base, &own.list), own, &recorded);
        put(&mut body, &own.list, Some(merged));
    }
    let mut changes = Vec::new();
    diff_values(observed.map(|_| &base), Some(&body), "", &mut changes);
    let secrets_needed =
        observed.is_none() || renumbered || secrets_stale(desired, &base, &body, &header_secure);
    if secrets_needed && !(desired.secure.is_empty() && header_secure.is_empty()) {
        let mut secure = Map::new();
        let values = desired
            .secure
            .iter()
            .map(|(k, v)| (k, v.expose()))
            .chain(header_secure.iter().map(|(k, v)| (k, v.as_str())));
        for (k, v) in values {
            secure.insert(k.clone(), Value::String(v.to_string()));
            changes.push(Change {
                path: format!("secureJsonData.{k}"),
                before: None,
                after: None,
                secret: true,
            });
        }
        put(
            &mut body,
            &["secureJsonData".to_string()],
            Some(Value::Object(secure)),
        );
    }
    planned.drift = observed.is_some()
        && !changes.is_empty()
        && spec_hash(&base).is_some()
        && spec_hash(&base) == spec_hash(&body);
    planned.changes = changes;
    planned.body = body;
    planned.action = match observed {
        None => Action::Create,
        Some(_) if planned.changes.is_empty() => Action::Noop,
        Some(o) if o.get("readOnly").and_then(Value::as_bool) == Some(true) => {
            Action::Conflict(read_only_message(desired))
        }
        Some(_) => Action::Update,
    };
    planned
}

/// The hash of Sonde's desired fields recorded in the marker: equal before and after means
/// the config did not change since Sonde last wrote, so any change found is drift.
fn spec_hash(v: &Value) -> Option<&Value> {
    get(v, &super::desired::path(&["jsonData", MARKER, "specHash"]))
}

/// Secrets must be re-sent when the hash of the desired secrets changed, or when Grafana no
/// longer lists one of the keys in `secureJsonFields` (reset in the UI). A secret changed in
/// the UI to another value cannot be seen: Grafana never returns secret values.
fn secrets_stale(
    desired: &DesiredDatasource,
    base: &Value,
    body: &Value,
    headers: &BTreeMap<String, String>,
) -> bool {
    let hash_path = super::desired::path(&["jsonData", MARKER, "secureHash"]);
    if get(base, &hash_path) != get(body, &hash_path) {
        return true;
    }
    let header_keys = headers
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k);
    desired.secure.keys().chain(header_keys).any(|k| {
        base.get("secureJsonFields")
            .and_then(|f| f.get(k))
            .and_then(Value::as_bool)
            != Some(true)
    })
}

/// Number Sonde's custom headers in `body` (Grafana reads `httpHeaderName1`, `2`, … and stops
/// at the first gap). A header that is not Sonde's keeps its number (its value is write-only
/// and cannot be moved); Sonde's take the lowest free numbers, in order. Returns the
/// `httpHeaderValue<N>` values to send (an empty one wipes a number Sonde no longer uses) and
/// whether any number changed, in which case the values must be sent again.
fn number_headers(
    desired: &DesiredDatasource,
    base: &Value,
    body: &mut Value,
) -> (BTreeMap<String, String>, bool) {
    let mut secure = BTreeMap::new();
    if desired.role != Role::Owned {
        return (secure, false);
    }
    let observed: BTreeMap<usize, String> = base
        .get("jsonData")
        .and_then(Value::as_object)
        .map(|jd| {
            jd.iter()
                .filter_map(|(k, v)| {
                    let n = k.strip_prefix("httpHeaderName")?.parse().ok()?;
                    Some((n, v.as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    // The names Sonde set last time; before it recorded them, it only ever set these two.
    let recorded: Vec<String> = base
        .pointer(&format!("/jsonData/{MARKER}/headers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_else(|| vec![TENANT_HEADER.into(), AUTH_HEADER.into()]);
    let ours = |name: &str| {
        let names = desired.headers.iter().map(|(n, _)| n).chain(&recorded);
        names.into_iter().any(|n| n.eq_ignore_ascii_case(name))
    };
    let user: BTreeSet<usize> = observed
        .iter()
        .filter(|(_, name)| !ours(name))
        .map(|(n, _)| *n)
        .collect();
    let key = |prefix: &str, n: usize| vec!["jsonData".to_string(), format!("{prefix}{n}")];
    for n in observed.keys().filter(|n| !user.contains(n)) {
        put(body, &key("httpHeaderName", *n), None);
    }
    let mut renumbered = false;
    let mut used = BTreeSet::new();
    let mut free = (1usize..).filter(|n| !user.contains(n));
    for ((name, value), n) in desired.headers.iter().zip(&mut free) {
        put(
            body,
            &key("httpHeaderName", n),
            Some(Value::String(name.clone())),
        );
        secure.insert(format!("httpHeaderValue{n}"), value.expose().to_string());
        renumbered |= observed.get(&n) != Some(name);
        used.insert(n);
    }
    for n in observed
        .keys()
        .filter(|n| !user.contains(n) && !used.contains(n))
    {
        secure.insert(format!("httpHeaderValue{n}"), String::new());
        renumbered = true;
    }
    (secure, renumbered)
}

fn name_conflict(name: &str, other: &str) -> String {
    format!(
        "a datasource named {name:?} already exists with uid {other}; Sonde never renames or \
         adopts it: rename it, or give this Tempo another `name`"
    )
}

/// The message for a datasource Grafana will not let the API change.
pub fn read_only_message(desired: &DesiredDatasource) -> String {
    match desired.role {
        Role::Owned => format!(
            "datasource {:?} (uid {}) is provisioned (read-only): Grafana answers 403 \"Cannot \
             update read-only data source\". Manage it with --mode provisioning, or remove it \
             from the provisioning files",
            desired.name, desired.uid
        ),
        Role::Patched => format!(
            "{} datasource {:?} (uid {}) is provisioned (read-only): add Sonde's {} entry to \
             its provisioning file yourself (see the plan), or make it editable",
            desired.kind,
            desired.name,
            desired.uid,
            desired
                .lists
                .first()
                .and_then(|l| l.list.last())
                .map_or("link", String::as_str)
        ),
    }
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
