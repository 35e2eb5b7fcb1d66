//! Pure: which Loki/Prometheus datasource a Tempo links to in one Grafana, and, when none,
//! why each candidate seen was rejected.
use super::DsSummary;
use crate::config::BackendRef;

/// Pick the datasource for `refs` in Grafana `grafana`: the first reference with a match wins;
/// among several matches of one reference, a writable one (a provisioned datasource cannot get
/// Sonde's backlink), then the smallest UID. Returns the choice (notes say why it won), or
/// why each candidate seen was rejected.
pub(crate) fn select(
    refs: &[BackendRef],
    grafana: &str,
    inventory: Option<&[DsSummary]>,
    default_types: &[&str],
    what: &str,
    notes: &mut Vec<String>,
) -> Result<(String, String), Vec<String>> {
    let mut rejected = Vec::new();
    for r in refs {
        let type_ok = |kind: &str| match &r.kind {
            Some(k) => k == kind,
            None => default_types.contains(&kind),
        };
        let wanted = r.kind.clone().unwrap_or_else(|| default_types.join(" or "));
        // (read-only, uid, name): writable candidates sort first.
        let mut matches: Vec<(bool, String, String)> = match (&r.uid, inventory) {
            (Some(uid), _) if r.grafana.as_deref().is_some_and(|g| g != grafana) => {
                let g = r.grafana.as_deref().unwrap_or_default();
                rejected.push(format!(
                    "uid {uid:?} is in grafana {g:?} (exchange data), not this one"
                ));
                Vec::new()
            }
            (Some(uid), Some(inv)) => {
                let same_uid: Vec<_> = inv.iter().filter(|d| &d.uid == uid).collect();
                for d in same_uid.iter().filter(|d| !type_ok(&d.kind)) {
                    rejected.push(format!(
                        "uid {uid:?} is {} datasource {:?}, not {wanted}",
                        d.kind, d.name
                    ));
                }
                if same_uid.is_empty() {
                    rejected.push(format!(
                        "uid {uid:?} is not in this Grafana (deleted or re-created?)"
                    ));
                }
                same_uid
                    .iter()
                    .filter(|d| type_ok(&d.kind))
                    .map(|d| (d.read_only, d.uid.clone(), d.name.clone()))
                    .collect()
            }
            (Some(uid), None) if r.grafana.as_deref() == Some(grafana) => {
                vec![(false, uid.clone(), uid.clone())]
            }
            (Some(uid), None) => {
                rejected.push(format!(
                    "uid {uid:?} has no `grafana` tag and this Grafana cannot be listed (no \
                     `url`/credentials), so it might not exist here"
                ));
                Vec::new()
            }
            (None, Some(inv)) => {
                let found: Vec<_> = inv
                    .iter()
                    .filter(|d| r.name.as_ref().is_none_or(|n| n == &d.name) && type_ok(&d.kind))
                    .map(|d| (d.read_only, d.uid.clone(), d.name.clone()))
                    .collect();
                if found.is_empty() {
                    rejected.push(no_match(r, &wanted, inv, &type_ok));
                }
                found
            }
            (None, None) => {
                rejected.push(format!(
                    "{}: a lookup by name/type needs this Grafana's `url` and credentials",
                    describe(r)
                ));
                Vec::new()
            }
        };
        matches.sort();
        matches.dedup();
        // A provisioned (read-only) candidate cannot get its backlink: prefer a writable one.
        let read_only: Vec<String> = matches
            .iter()
            .filter(|m| m.0)
            .map(|m| m.1.clone())
            .collect();
        if matches.first().is_some_and(|m| !m.0) && !read_only.is_empty() {
            matches.retain(|m| !m.0);
            notes.push(format!(
                "{what}: chose writable uid {:?} over read-only (provisioned) {read_only:?}, \
                 whose backlink Sonde cannot write",
                matches[0].1
            ));
        }
        if let Some((_, uid, name)) = matches.first() {
            if matches.len() > 1 {
                let others: Vec<_> = matches[1..].iter().map(|m| m.1.as_str()).collect();
                notes.push(format!(
                    "{what}: {} candidates; chose uid {uid:?} (smallest uid), not {others:?}",
                    matches.len(),
                ));
            }
            return Ok((uid.clone(), name.clone()));
        }
    }
    Err(rejected)
}

/// A reference as the config writes it, e.g. `name "Prom"` or `type prometheus`.
fn describe(r: &BackendRef) -> String {
    match (&r.name, &r.kind) {
        (Some(n), Some(k)) => format!("name {n:?} type {k}"),
        (Some(n), None) => format!("name {n:?}"),
        (None, Some(k)) => format!("type {k}"),
        (None, None) => "reference".into(),
    }
}

/// Why a name/type reference matched nothing, naming what this Grafana holds instead.
fn no_match(
    r: &BackendRef,
    wanted: &str,
    inv: &[DsSummary],
    type_ok: &dyn Fn(&str) -> bool,
) -> String {
    let show = |ds: &[&DsSummary]| {
        let mut shown: Vec<String> = ds
            .iter()
            .take(5)
            .map(|d| format!("{:?} ({}, uid {:?})", d.name, d.kind, d.uid))
            .collect();
        if ds.len() > 5 {
            shown.push(format!("{} more", ds.len() - 5));
        }
        shown.join(", ")
    };
    let named: Vec<&DsSummary> = match &r.name {
        Some(n) => inv.iter().filter(|d| &d.name == n).collect(),
        None => Vec::new(),
    };
    let typed: Vec<&DsSummary> = inv.iter().filter(|d| type_ok(&d.kind)).collect();
    let head = describe(r);
    if !named.is_empty() {
        format!("{head}: matches {}, not {wanted}", show(&named))
    } else if r.name.is_some() && !typed.is_empty() {
        format!(
            "{head}: no datasource of that name; {wanted} datasources here: {}",
            show(&typed)
        )
    } else if inv.is_empty() {
        format!("{head}: this Grafana has no datasources")
    } else {
        let all: Vec<&DsSummary> = inv.iter().collect();
        format!("{head}: no {wanted} datasource here; seen: {}", show(&all))
    }
}

/// The line for a link not made: which link, and why each candidate was rejected.
pub(super) fn unlinked_line(what: &str, key: &str, rejected: &[String]) -> String {
    if rejected.is_empty() {
        format!("{what}: no candidate (`{key}` lists nothing)")
    } else {
        format!("{what}: {}", rejected.join("; "))
    }
}
