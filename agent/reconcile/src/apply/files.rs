//! File modes: write the Tempo datasources as Grafana provisioning YAML or as grafana-operator
//! manifests, plus a `backlinks.yaml` with the entries to merge into Loki/Prometheus
//! datasources that Sonde does not own in these modes. A file is only rewritten when its
//! content changes, atomically; a dry run shows a line diff with secrets masked. A provisioned
//! datasource Sonde no longer wants is listed under `deleteDatasources`.
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{render_files, textdiff};
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

/// Where the files of one Grafana go: the main file and the backlinks file.
pub fn paths(mode: Mode, out: &Path, g: &GrafanaConfig) -> (PathBuf, PathBuf) {
    let dir = out.join(&g.id);
    let main = match mode {
        Mode::Operator => dir.join("grafanadatasources.yaml"),
        _ => dir.join("datasources").join("sonde.yaml"),
    };
    (main, dir.join("backlinks.yaml"))
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

fn write_atomic(path: &Path, content: &str, private: bool) -> Result<(), Error> {
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
        let mode = if private { 0o600 } else { 0o644 };
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

/// Compare, and unless `dry_run`, write one file.
fn sync_file(
    path: &Path,
    content: &str,
    shown: &str,
    private: bool,
    dry_run: bool,
    report: &mut GrafanaReport,
) {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let changed = old != content;
    let mut diff = textdiff::diff(&mask_secure_lines(&old), shown);
    if changed && diff.is_empty() {
        diff = "(secret values changed)\n".into();
    }
    if changed && !dry_run {
        if let Err(e) = write_atomic(path, content, private) {
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
}

/// Render and write (or diff) the files of one Grafana. With a client, the Grafana is listed
/// to resolve names/types and to show the merged backlink lists.
pub async fn reconcile(
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
    let want = desired::build(section, tempos, &g.id, inventory.as_deref(), None);
    report.notes = want.notes.clone();
    report.unlinked = want.unlinked.clone();
    let mut bodies = Vec::new();
    let mut patches = Vec::new();
    let mut pending_items = Vec::new();
    for ds in &want.datasources {
        if ds.role == Role::Owned {
            let planned = diff::plan(ds, None, inventory.as_deref());
            if let Action::Conflict(m) = &planned.action {
                let m = m.clone();
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
        let observed = match client {
            Some(c) => match c.get_by_uid(&ds.uid).await {
                Ok(o) => o,
                Err(e) => {
                    report.items.push(Item::failed(ds, e.to_string()));
                    continue;
                }
            },
            None => Some(json!({"uid": ds.uid, "name": ds.name, "type": ds.kind})),
        };
        let planned = diff::plan(ds, observed.as_ref(), inventory.as_deref());
        let outcome = match &planned.action {
            Action::Noop => Outcome::Unchanged,
            Action::Conflict(m) => Outcome::Conflict(m.clone()),
            _ => {
                let lists = ds
                    .lists
                    .iter()
                    .filter_map(|l| l.list.last().cloned())
                    .collect();
                patches.push((planned.body.clone(), lists));
                Outcome::Skipped(format!(
                    "not owned in {} mode: merge its entry from backlinks.yaml",
                    mode_name(mode)
                ))
            }
        };
        report.items.push(Item { planned, outcome });
    }
    let (main_path, back_path) = paths(mode, &section.output_dir, g);
    let (main, private) = match mode {
        Mode::Operator => (render_files::operator(g, &bodies), false),
        _ => {
            let previous = std::fs::read_to_string(&main_path).unwrap_or_default();
            let deletes = no_longer_wanted(&previous, &bodies);
            (render_files::provisioning(g, &bodies, &deletes), true)
        }
    };
    let shown = mask_secure_lines(&main);
    let previous = std::fs::read_to_string(&main_path).ok();
    sync_file(&main_path, &main, &shown, private, dry_run, &mut report);
    let main_changed = report.files.last().is_some_and(|f| f.changed);
    let back = render_files::backlinks(g, &patches, mode == Mode::Provisioning);
    sync_file(&back_path, &back, &back, false, dry_run, &mut report);
    for planned in pending_items {
        let outcome = match (main_changed, dry_run) {
            (false, _) => Outcome::Unchanged,
            (true, true) => Outcome::Planned,
            (true, false) => Outcome::Applied,
        };
        report.items.insert(0, Item { planned, outcome });
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
    if mode == Mode::Provisioning && main_changed && !dry_run && report.error.is_none() {
        match client {
            Some(c) => match c.reload_provisioning().await {
                Ok(()) => {}
                // Not allowed to reload: the file is fine, Grafana reads it at start-up.
                Err(e @ (ApiError::Unauthorized { .. } | ApiError::Http { status: 403, .. })) => {
                    report.notes.push(format!(
                        "wrote {} but could not ask Grafana to reload ({e}); reloading needs a \
                         server admin with basic auth, or restart Grafana",
                        main_path.display()
                    ))
                }
                // Grafana could not apply the file; a restart would fail the same way (and
                // may keep Grafana from starting), so the previous file is put back and the
                // next run tries again.
                Err(e) => {
                    let restored = match &previous {
                        Some(old) => write_atomic(&main_path, old, private),
                        None => std::fs::remove_file(&main_path).map_err(|source| Error::Write {
                            path: main_path.display().to_string(),
                            source,
                        }),
                    };
                    let restored = match restored {
                        Ok(()) => "the previous file was put back".to_string(),
                        Err(r) => format!("and the previous file could not be put back: {r}"),
                    };
                    report.error = Some(format!(
                        "Grafana could not load {} ({e}); {restored}. Fix the cause (Grafana's \
                         log has the details) and run again",
                        main_path.display()
                    ));
                }
            },
            None => report.notes.push(format!(
                "wrote {}; Grafana reads it at start-up or on POST \
                 /api/admin/provisioning/datasources/reload",
                main_path.display()
            )),
        }
    }
    report
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

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Api => "api",
        Mode::Provisioning => "provisioning",
        Mode::Operator => "operator",
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
