//! Apply a Grafana's desired state through the HTTP API: read, merge, write the whole record
//! with the observed `version`, retry on version conflicts, never touch read-only datasources.
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::{
    GrafanaReport, Item, Outcome, ResolvedTempo,
    config::ReconcileSection,
    desired::{self, DsSummary},
    diff::{self, Action},
    observed::grafana::{ApiError, GrafanaClient},
};

/// How many times a write is retried after a 409 version conflict.
pub const MAX_ATTEMPTS: usize = 3;

/// Fields of a datasource record that a PUT/POST accepts; the rest (`id`, `orgId`,
/// `readOnly`, `secureJsonFields`, `typeLogoUrl`, …) is read-only state.
const WRITABLE: &[&str] = &[
    "uid",
    "name",
    "type",
    "access",
    "url",
    "user",
    "database",
    "basicAuth",
    "basicAuthUser",
    "withCredentials",
    "isDefault",
    "jsonData",
    "secureJsonData",
    "version",
];

/// The body to send: writable fields only, with the version to lock on.
fn write_body(body: &Value, version: Option<i64>) -> Value {
    let mut out = Map::new();
    if let Some(obj) = body.as_object() {
        for k in WRITABLE {
            if let Some(v) = obj.get(*k) {
                out.insert((*k).to_string(), v.clone());
            }
        }
    }
    if let Some(v) = version {
        out.insert("version".into(), Value::from(v));
    }
    Value::Object(out)
}

/// Reconcile one Grafana through its API (or only plan, when `dry_run`).
pub async fn reconcile(
    client: &GrafanaClient,
    section: &ReconcileSection,
    tempos: &[ResolvedTempo],
    dry_run: bool,
) -> GrafanaReport {
    let mut report = GrafanaReport::new(client.id());
    if let Err(e) = client.check_org().await {
        report.error = Some(e.to_string());
        return report;
    }
    let listed = match client.list().await {
        Ok(l) => l,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    let inventory: Vec<DsSummary> = listed.iter().filter_map(DsSummary::from_json).collect();
    let want = desired::build(
        section,
        tempos,
        client.id(),
        Some(&inventory),
        Some(client.auth().key()),
    );
    report.notes = want.notes.clone();
    report.unlinked = want.unlinked.clone();
    let mut failed_tempos = BTreeSet::new();
    for ds in &want.datasources {
        let failed: Vec<&String> = ds
            .depends_on
            .iter()
            .filter(|t| failed_tempos.contains(*t))
            .collect();
        let narrowed;
        let ds = match (
            failed.is_empty(),
            desired::without_links_to(ds, &failed_tempos),
        ) {
            (true, _) => ds,
            (false, Some(d)) => {
                narrowed = d;
                &narrowed
            }
            (false, None) => {
                report.items.push(Item::skipped(
                    ds,
                    format!("Tempo {failed:?} was not written; not linking to it"),
                ));
                continue;
            }
        };
        let item = apply_one(client, ds, &inventory, dry_run, &mut report.writes).await;
        if item.planned.drift {
            let paths: Vec<_> = item
                .planned
                .changes
                .iter()
                .map(|c| c.path.as_str())
                .collect();
            tracing::warn!(grafana = client.id(), uid = %ds.uid, ?paths, "drift: changed outside Sonde");
        }
        // A Tempo that could not be written is linked to only if a Tempo with its uid exists
        // anyway (e.g. a read-only one): never leave a link to a UID that is not there, nor
        // to a datasource of another type that holds the uid.
        let ok = matches!(
            item.outcome,
            Outcome::Applied | Outcome::Unchanged | Outcome::Planned
        );
        let exists = inventory
            .iter()
            .any(|d| d.uid == ds.uid && d.kind == ds.kind);
        if !ok && !exists && ds.role == desired::Role::Owned {
            failed_tempos.insert(ds.uid.clone());
        }
        report.items.push(item);
    }
    // What Sonde owned and no longer wants: its entries first (no link may dangle), then the
    // Tempos it created for this Grafana.
    let (gone, unlinks) = desired::unwanted(&want, &inventory);
    for ds in &unlinks {
        let item = apply_one(client, ds, &inventory, dry_run, &mut report.writes).await;
        report.items.push(item);
    }
    for d in &gone {
        let item = delete_one(client, d, dry_run, &mut report.writes).await;
        report.items.push(item);
    }
    report
}

/// Delete a Tempo Sonde created for this Grafana and no longer wants.
async fn delete_one(
    client: &GrafanaClient,
    d: &DsSummary,
    dry_run: bool,
    writes: &mut usize,
) -> Item {
    let planned = diff::Planned {
        uid: d.uid.clone(),
        name: d.name.clone(),
        kind: d.kind.clone(),
        role: desired::Role::Owned,
        action: Action::Delete,
        changes: Vec::new(),
        body: Value::Null,
        version: None,
        drift: false,
    };
    let read_only = || {
        "Sonde created it for this Grafana and it is no longer configured, but it is \
         provisioned (read-only): remove it from its provisioning file, or list it under \
         `deleteDatasources` there (Sonde's provisioning mode does this for its own file)"
            .to_string()
    };
    let outcome = if d.read_only {
        Outcome::Conflict(read_only())
    } else if dry_run {
        Outcome::Planned
    } else {
        *writes += 1;
        match client.delete(&d.uid).await {
            Ok(_) => Outcome::Applied,
            Err(ApiError::ReadOnly { .. }) => Outcome::Conflict(read_only()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    };
    Item { planned, outcome }
}

async fn apply_one(
    client: &GrafanaClient,
    ds: &desired::DesiredDatasource,
    inventory: &[DsSummary],
    dry_run: bool,
    writes: &mut usize,
) -> Item {
    let mut last = None;
    for _ in 0..MAX_ATTEMPTS {
        let observed = match client.get_by_uid(&ds.uid).await {
            Ok(o) => o,
            Err(e) => return Item::failed(ds, e.to_string()),
        };
        let planned = diff::plan(ds, observed.as_ref(), Some(inventory));
        if dry_run {
            let outcome = match &planned.action {
                Action::Conflict(m) => Outcome::Conflict(m.clone()),
                Action::Create | Action::Update | Action::Delete => Outcome::Planned,
                Action::Noop => Outcome::Unchanged,
            };
            return Item { planned, outcome };
        }
        let result = match &planned.action {
            // `plan` never deletes; deletions go through `delete_one`.
            Action::Noop | Action::Delete => {
                return Item {
                    planned,
                    outcome: Outcome::Unchanged,
                };
            }
            Action::Conflict(msg) => {
                let msg = msg.clone();
                return Item {
                    planned,
                    outcome: Outcome::Conflict(msg),
                };
            }
            Action::Create => {
                *writes += 1;
                client.create(&write_body(&planned.body, None)).await
            }
            Action::Update => {
                *writes += 1;
                client
                    .update(&ds.uid, &write_body(&planned.body, planned.version))
                    .await
            }
        };
        match result {
            Ok(_) => {
                return Item {
                    planned,
                    outcome: Outcome::Applied,
                };
            }
            // Someone wrote in between: read again and merge onto the new record.
            Err(ApiError::VersionConflict { .. }) => {
                tracing::info!(grafana = client.id(), uid = %ds.uid, "version conflict; retrying");
                last = Some(planned);
            }
            // Created meanwhile under our uid: the next round updates it. A name clash
            // with another uid is reported.
            Err(ApiError::Exists { message, .. }) => match client.get_by_uid(&ds.uid).await {
                Ok(Some(_)) => last = Some(planned),
                Ok(None) => {
                    let msg = format!(
                        "Grafana refused to create {:?} (uid {}): {message}; another datasource \
                         already uses this name: rename it or this Tempo",
                        ds.name, ds.uid
                    );
                    return Item {
                        planned,
                        outcome: Outcome::Conflict(msg),
                    };
                }
                Err(e) => {
                    return Item {
                        planned,
                        outcome: Outcome::Failed(e.to_string()),
                    };
                }
            },
            Err(ApiError::ReadOnly { .. }) => {
                let msg = diff::read_only_message(ds);
                return Item {
                    planned,
                    outcome: Outcome::Conflict(msg),
                };
            }
            Err(e) => {
                return Item {
                    planned,
                    outcome: Outcome::Failed(e.to_string()),
                };
            }
        }
    }
    let msg = format!("gave up after {MAX_ATTEMPTS} version conflicts; someone keeps editing it");
    match last {
        Some(planned) => Item {
            planned,
            outcome: Outcome::Failed(msg),
        },
        None => Item::failed(ds, msg),
    }
}

#[cfg(test)]
#[path = "api_tests/mod.rs"]
mod tests;
