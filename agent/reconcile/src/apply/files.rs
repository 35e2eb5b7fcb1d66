//! File modes: write the Tempo datasources as Grafana provisioning YAML or as grafana-operator
//! manifests. Links back from Loki/Prometheus go into the user's own provisioning files where
//! Sonde may write them (see `user_files`); elsewhere the run fails saying what to add where.
//! A file is only rewritten when its content changes, atomically; a dry run shows a line diff
//! with secrets masked. A provisioned datasource Sonde no longer wants is listed under
//! `deleteDatasources`, and the file sets `prune: true`.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde::Deserialize as _;
use serde_json::json;

use super::{render_files, textdiff, user_files};
use crate::{
    Error, GrafanaReport, Item, Mode, Outcome, ResolvedTempo,
    config::{GrafanaConfig, ReconcileSection},
    desired::{self, DsSummary, Role},
    diff::{self, Action},
    observed::grafana::{ApiError, GrafanaClient},
    secret::MASK,
};

/// One file to write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilePlan {
    pub path: PathBuf,
    pub changed: bool,
    /// Line diff against the current file, secrets masked.
    pub diff: String,
}

/// Where the file of one Grafana goes: `<output_dir>/<grafana id>/datasources/sonde.yaml`
/// (provisioning: `<output_dir>/<grafana id>` is a provisioning root) or
/// `<output_dir>/<grafana id>/grafanadatasources.yaml` (operator).
pub(crate) fn path(mode: Mode, out: &Path, g: &GrafanaConfig) -> PathBuf {
    let dir = out.join(&g.id);
    match mode {
        Mode::Operator => dir.join("grafanadatasources.yaml"),
        _ => dir.join("datasources").join("sonde.yaml"),
    }
}

/// Mask values under `secureJsonData:` in a rendered file (for showing old content).
pub fn mask_secure_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut block: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if block.is_some_and(|b| indent <= b) {
            block = None;
        }
        match (block, line.split_once(": ")) {
            (Some(_), Some((key, _))) => out.push_str(&format!("{key}: {MASK}")),
            _ => out.push_str(line),
        }
        out.push('\n');
        if line.trim_start().trim_start_matches("- ") == "secureJsonData:" {
            block = Some(indent + usize::from(line.trim_start().starts_with("- ")) * 2);
        }
    }
    out
}

/// File permissions: Sonde's own provisioning file is private (it may hold a tenant); a
/// user's file keeps its mode.
fn write_atomic(path: &Path, content: &str, mode: u32) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, content).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The permission bits of an existing file (0o644 when it cannot be read).
fn mode_of(path: &Path) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(m) = std::fs::metadata(path) {
            return m.permissions().mode() & 0o777;
        }
    }
    let _ = path;
    0o644
}

/// Compare, and unless `dry_run`, write one file. Returns whether it changed.
fn sync_file(
    path: &Path,
    content: &str,
    shown: &str,
    mode: u32,
    dry_run: bool,
    report: &mut GrafanaReport,
) -> bool {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let changed = old != content;
    let mut diff = textdiff::diff(&mask_secure_lines(&old), shown);
    if changed && diff.is_empty() {
        diff = "(secret values changed)\n".into();
    }
    if changed && !dry_run {
        if let Err(e) = write_atomic(path, content, mode) {
            report.error = Some(e.to_string());
        } else {
            report.writes += 1;
        }
    }
    report.files.push(FilePlan {
        path: path.to_path_buf(),
        changed,
        diff,
    });
    changed
}

/// Render and write (or diff) the files of one Grafana. With a client, the Grafana is listed
/// to resolve names/types and to see the backlinks it already holds.
pub(crate) async fn reconcile(
    mode: Mode,
    g: &GrafanaConfig,
    client: Option<&GrafanaClient>,
    section: &ReconcileSection,
    tempos: &[ResolvedTempo],
    dry_run: bool,
) -> GrafanaReport {
    let mut report = GrafanaReport::new(&g.id);
    let inventory: Option<Vec<DsSummary>> = match client {
        Some(c) => match c.list().await {
            Ok(l) => Some(l.iter().filter_map(DsSummary::from_json).collect()),
            Err(e) => {
                report.error = Some(e.to_string());
                return report;
            }
        },
        None => None,
    };
    let mut user = match mode {
        Mode::Provisioning => match user_files::load(g) {
            Ok(f) => f,
            Err(e) => {
                report.error = Some(e);
                return report;
            }
        },
        _ => Vec::new(),
    };
    let want = desired::build(section, tempos, &g.id, inventory.as_deref(), None);
    report.notes = want.notes.clone();
    report.unlinked = want.unlinked.clone();
    let mut bodies = Vec::new();
    let mut pending_items = Vec::new();
    let mut not_written = BTreeSet::new();
    for ds in &want.datasources {
        if ds.role == Role::Owned {
            let planned = diff::plan(ds, None, inventory.as_deref());
            if let Action::Conflict(m) = &planned.action {
                let m = m.clone();
                not_written.insert(ds.uid.clone());
                report.items.push(Item {
                    planned,
                    outcome: Outcome::Conflict(m),
                });
                continue;
            }
            bodies.push(planned.body.clone());
            pending_items.push(planned);
            continue;
        }
        // A link back to a Tempo that is not written would dangle.
        let narrowed;
        let ds = match desired::without_links_to(ds, &not_written) {
            _ if !ds.depends_on.iter().any(|t| not_written.contains(t)) => ds,
            Some(d) => {
                narrowed = d;
                &narrowed
            }
            None => {
                let msg = format!(
                    "Tempo {:?} is not written; not linking to it",
                    ds.depends_on
                );
                report.items.push(Item::skipped(ds, msg));
                continue;
            }
        };
        let item = backlink(
            mode,
            g,
            client,
            ds,
            inventory.as_deref(),
            &mut user,
            dry_run,
        )
        .await;
        report.items.push(item);
    }
    if mode == Mode::Provisioning {
        let wanted: Vec<&str> = want
            .datasources
            .iter()
            .filter(|d| d.role == Role::Patched)
            .map(|d| d.uid.as_str())
            .collect();
        let managed: Vec<String> = tempos.iter().map(|t| t.uid.clone()).collect();
        user_files::clean(&mut user, &wanted, &managed, g.org_id);
    }
    let main_path = path(mode, &section.output_dir, g);
    let previous = std::fs::read_to_string(&main_path).ok();
    let main = match mode {
        Mode::Operator => render_files::operator(g, &bodies),
        _ => {
            let deletes = no_longer_wanted(previous.as_deref().unwrap_or_default(), &bodies);
            let refs = secret_refs(tempos, &bodies);
            render_files::provisioning(g, &bodies, &deletes, &refs)
        }
    };
    let own_mode = if mode == Mode::Operator { 0o644 } else { 0o600 };
    let shown = mask_secure_lines(&main);
    let main_changed = sync_file(&main_path, &main, &shown, own_mode, dry_run, &mut report);
    let mut written = Vec::new();
    if main_changed {
        written.push((main_path.clone(), previous.clone(), own_mode));
    }
    for f in user.iter().filter(|f| f.changed()) {
        let text = f.render();
        let mode = mode_of(&f.path);
        let shown = mask_secure_lines(&text);
        if sync_file(&f.path, &text, &shown, mode, dry_run, &mut report) {
            written.push((f.path.clone(), Some(f.original.clone()), mode));
        }
    }
    for planned in pending_items.into_iter().rev() {
        let outcome = match (main_changed, dry_run) {
            (false, _) => Outcome::Unchanged,
            (true, true) => Outcome::Planned,
            (true, false) => Outcome::Applied,
        };
        report.items.insert(0, Item { planned, outcome });
    }
    if mode == Mode::Operator {
        for (name, uid) in dropped_manifests(previous.as_deref().unwrap_or_default(), &bodies) {
            report.notes.push(format!(
                "GrafanaDatasource {name:?} (uid {uid}) is no longer written: delete it with \
                 `kubectl delete grafanadatasource {name} -n {}`, or apply the file with \
                 `kubectl apply --prune -l {} -f {}`",
                g.operator.namespace,
                render_files::operator_selector(g),
                main_path.display()
            ));
        }
    }
    if mode == Mode::Operator && !bodies.is_empty() {
        let keys = render_files::operator_secret_keys(&bodies);
        if !keys.is_empty() {
            report.notes.push(format!(
                "the manifests read secrets from Secret {:?} in namespace {:?}, keys {keys:?}",
                g.operator.secret_name, g.operator.namespace
            ));
        }
    }
    if mode == Mode::Provisioning && !written.is_empty() && !dry_run && report.error.is_none() {
        reload(client, &written, &mut report).await;
    }
    report
}

/// One Loki/Prometheus backlink in a file mode: written into the user's provisioning file
/// that defines the datasource, already present in Grafana, or a failure saying what to add
/// where.
async fn backlink(
    mode: Mode,
    g: &GrafanaConfig,
    client: Option<&GrafanaClient>,
    ds: &desired::DesiredDatasource,
    inventory: Option<&[DsSummary]>,
    user: &mut [user_files::UserFile],
    dry_run: bool,
) -> Item {
    let observed = match client {
        Some(c) => match c.get_by_uid(&ds.uid).await {
            Ok(o) => o,
            Err(e) => return Item::failed(ds, e.to_string()),
        },
        None => Some(json!({"uid": ds.uid, "name": ds.name, "type": ds.kind})),
    };
    let planned = diff::plan(ds, observed.as_ref(), inventory);
    if observed.is_none() {
        let outcome = match &planned.action {
            Action::Conflict(m) => Outcome::Conflict(m.clone()),
            _ => Outcome::Failed("not found".into()),
        };
        return Item { planned, outcome };
    }
    let outcome = match user_files::merge(user, ds, g.org_id) {
        Some((_, false)) => Outcome::Unchanged,
        Some((_, true)) if dry_run => Outcome::Planned,
        Some((_, true)) => Outcome::Applied,
        None => {
            let seen = observed.as_ref().filter(|_| client.is_some());
            match seen {
                Some(o) if user_files::entries_present(o, ds) => Outcome::Unchanged,
                _ => Outcome::Conflict(user_files::missing_backlink(mode, g, ds, seen)),
            }
        }
    };
    Item { planned, outcome }
}

/// Ask Grafana to read the files again. Grafana could not apply them: a restart would fail
/// the same way (and may keep Grafana from starting), so the previous files are put back and
/// the next run tries again.
async fn reload(
    client: Option<&GrafanaClient>,
    written: &[(PathBuf, Option<String>, u32)],
    report: &mut GrafanaReport,
) {
    let paths: Vec<String> = written.iter().map(|w| w.0.display().to_string()).collect();
    let Some(c) = client else {
        report.notes.push(format!(
            "wrote {}; Grafana reads provisioning files at start-up or on POST \
             /api/admin/provisioning/datasources/reload",
            paths.join(", ")
        ));
        return;
    };
    match c.reload_provisioning().await {
        Ok(()) => {}
        // Not allowed to reload: the file is fine, Grafana reads it at start-up.
        Err(e @ (ApiError::Unauthorized { .. } | ApiError::Http { status: 403, .. })) => {
            report.notes.push(format!(
                "wrote {} but could not ask Grafana to reload ({e}); reloading needs a server \
                 admin with basic auth, or restart Grafana",
                paths.join(", ")
            ))
        }
        Err(e) => {
            let mut problems = Vec::new();
            for (path, old, mode) in written {
                let restored = match old {
                    Some(old) => write_atomic(path, old, *mode),
                    None => std::fs::remove_file(path).map_err(|source| Error::Write {
                        path: path.display().to_string(),
                        source,
                    }),
                };
                if let Err(r) = restored {
                    problems.push(r.to_string());
                }
            }
            let restored = if problems.is_empty() {
                "the previous files were put back".to_string()
            } else {
                format!(
                    "and the previous files could not be put back: {}",
                    problems.join("; ")
                )
            };
            report.error = Some(format!(
                "Grafana could not load {} ({e}); {restored}. Fix the cause (Grafana's log has \
                 the details) and run again",
                paths.join(", ")
            ));
        }
    }
}

/// How each Tempo secret is written into a provisioning file: one Sonde reads from a file or
/// an environment variable becomes Grafana's `$__file{path}` / `$__env{VAR}`, which Grafana
/// expands when it reads the file (the file or variable must be visible to Grafana under the
/// same name); an inline `value` (a tenant) is written as is. Header values are matched by
/// the header name their number carries in the body.
fn secret_refs(tempos: &[ResolvedTempo], bodies: &[serde_json::Value]) -> render_files::SecretRefs {
    let mut out = render_files::SecretRefs::new();
    for b in bodies {
        let uid = b
            .get("uid")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let Some(t) = tempos.iter().find(|t| t.uid == uid) else {
            continue;
        };
        let Some(secure) = b
            .get("secureJsonData")
            .and_then(serde_json::Value::as_object)
        else {
            continue;
        };
        for field in secure.keys() {
            let header = field
                .strip_prefix("httpHeaderValue")
                .and_then(|n| b.pointer(&format!("/jsonData/httpHeaderName{n}")))
                .and_then(serde_json::Value::as_str);
            let source = match (field.as_str(), header) {
                ("basicAuthPassword", _) => t.config.basic_auth.as_ref().map(|b| (&b.password, "")),
                (_, Some(desired::TENANT_HEADER)) => t.config.tenant.as_ref().map(|s| (s, "")),
                (_, Some(desired::AUTH_HEADER)) => {
                    t.config.bearer_token.as_ref().map(|s| (s, "Bearer "))
                }
                _ => None,
            };
            let expansion = source.and_then(|(s, prefix)| {
                let e = match (&s.env, &s.file) {
                    (Some(var), _) => format!("$__env{{{var}}}"),
                    (None, Some(path)) => format!("$__file{{{}}}", path.display()),
                    (None, None) => return None,
                };
                Some(format!("{prefix}{e}"))
            });
            if let Some(e) = expansion {
                out.insert((uid.to_string(), field.clone()), e);
            }
        }
    }
    out
}

/// (name, uid) of the `GrafanaDatasource` objects in Sonde's previous manifests that the new
/// ones do not hold: Sonde cannot delete Kubernetes objects, so the report says how.
fn dropped_manifests(previous: &str, bodies: &[serde_json::Value]) -> Vec<(String, String)> {
    let wanted: Vec<&str> = bodies
        .iter()
        .filter_map(|b| b.get("uid")?.as_str())
        .collect();
    serde_yaml::Deserializer::from_str(previous)
        .filter_map(|d| serde_yaml::Value::deserialize(d).ok())
        .filter_map(|doc| {
            let name = doc.get("metadata")?.get("name")?.as_str()?.to_string();
            let uid = doc.get("spec")?.get("uid")?.as_str()?.to_string();
            (!wanted.contains(&uid.as_str())).then_some((name, uid))
        })
        .collect()
}

/// The datasource names Sonde's previous provisioning file created or deleted that the new
/// one does not create: Grafana never removes a provisioned datasource by itself, so these go
/// under `deleteDatasources` (kept there, for a Grafana that reads the file later).
pub fn no_longer_wanted(previous: &str, bodies: &[serde_json::Value]) -> Vec<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(previous).unwrap_or_default();
    let names = |key: &str| -> Vec<String> {
        doc.get(key)
            .and_then(serde_yaml::Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|d| d.get("name")?.as_str())
            .map(|n| n.replace("$$", "$"))
            .collect()
    };
    let wanted: Vec<&str> = bodies
        .iter()
        .filter_map(|b| b.get("name")?.as_str())
        .collect();
    let mut out: Vec<String> = names("datasources")
        .into_iter()
        .chain(names("deleteDatasources"))
        .filter(|n| !wanted.contains(&n.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
