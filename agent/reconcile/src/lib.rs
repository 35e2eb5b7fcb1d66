//! The Grafana datasource-correlation reconciler: config → desired state per Grafana →
//! observed (Grafana HTTP API) → diff → apply (API | provisioning files | operator manifests).
//!
//! Each Grafana is handled on its own, so one failing Grafana never blocks the others. Links
//! are only made to datasources of the same Grafana, chosen deterministically.
//!
//! Ownership: Sonde owns only the fields it sets (see `desired`); a datasource record is always
//! read, merged and written whole, so user changes elsewhere survive, and an unchanged run
//! writes nothing. Drift is a difference in an owned field while the hash of the desired
//! fields recorded in the `jsonData` marker still matches: the change came from outside.
//!
//! Secrets (`secureJsonData`: tenant header, Tempo basic-auth password or token) are
//! write-only in Grafana and cannot be diffed. Sonde sends them on create, and otherwise only
//! when (a) the keyed hash of the desired secrets stored in the marker differs — the config or
//! the secret file/env changed; the HMAC key is the Grafana credential, so the hash does not
//! help someone who can read `jsonData` guess a low-entropy value — or (b) Grafana's
//! `secureJsonFields` no longer lists a key (reset in the UI). A secret overwritten with
//! another value in the UI cannot be detected; provisioning files, which replace the whole
//! secure set on every load, are the mode for users who need that guarantee.
use std::{path::Path, time::SystemTime};

use serde::{Deserialize, Serialize};

// The public surface is what `sonde reconcile` needs: the `reconcile:` section (`config`),
// the apply `Mode` and `run`; the fake Grafana for other crates' tests. The stages below are
// the crate's own.
pub(crate) mod apply;
pub mod config;
pub(crate) mod desired;
pub(crate) mod diff;
pub(crate) mod observed;
pub(crate) mod render;
pub(crate) mod secret;

pub use config::{
    BackendRef, BasicAuth, CorrelationConfig, GrafanaConfig, MetricsQuery, OperatorTarget,
    ReconcileSection, SecretSource, TagMapping, TempoConfig, is_valid_uid,
};

#[cfg(any(test, feature = "test-util"))]
pub mod fake_grafana;

use desired::DesiredDatasource;
use diff::{Action, Planned};
use secret::Secret;

/// The `jsonData` key holding Sonde's marker: owner, Grafana id, linked Tempo UIDs, a hash of
/// the owned fields (drift vs config change) and a keyed hash of the secrets sent.
pub(crate) const MARKER: &str = "sondeReconciler";

/// How the desired state is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Grafana HTTP API.
    #[default]
    Api,
    /// Grafana provisioning YAML files.
    Provisioning,
    /// grafana-operator `GrafanaDatasource` manifests.
    Operator,
}

/// Reconciler errors outside a single Grafana's API calls.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("cannot read secret {what}: {reason}")]
    Secret { what: String, reason: String },
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Api(#[from] observed::grafana::ApiError),
}

/// The UID of a Tempo's datasource (configured or derived from its name).
pub(crate) fn tempo_uid(t: &TempoConfig) -> String {
    desired::tempo_uid(&t.name, t.uid.as_deref())
}

/// A Tempo entry with its secrets read.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedTempo {
    pub config: TempoConfig,
    pub uid: String,
    pub tenant: Option<Secret>,
    pub basic_auth: Option<(String, Secret)>,
    pub bearer: Option<Secret>,
}

/// Read the Tempo secrets (each run, so rotated files are picked up).
pub(crate) fn resolve_tempos(section: &ReconcileSection) -> Result<Vec<ResolvedTempo>, Error> {
    section
        .tempos
        .iter()
        .map(|t| {
            let what = |s: &str| format!("tempos[{}].{s}", t.name);
            Ok(ResolvedTempo {
                uid: tempo_uid(t),
                tenant: t
                    .tenant
                    .as_ref()
                    .map(|s| secret::load(s, &what("tenant")))
                    .transpose()?,
                basic_auth: t
                    .basic_auth
                    .as_ref()
                    .map(|b| {
                        Ok::<_, Error>((
                            b.user.clone(),
                            secret::load(&b.password, &what("basic_auth"))?,
                        ))
                    })
                    .transpose()?,
                bearer: t
                    .bearer_token
                    .as_ref()
                    .map(|s| secret::load(s, &what("bearer_token")))
                    .transpose()?,
                config: t.clone(),
            })
        })
        .collect()
}

/// What happened to one datasource.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Dry run: a write is pending.
    Planned,
    Applied,
    Unchanged,
    Conflict(String),
    Skipped(String),
    Failed(String),
}

/// One datasource's plan and outcome.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub planned: Planned,
    pub outcome: Outcome,
}

impl Item {
    fn bare(ds: &DesiredDatasource, outcome: Outcome) -> Self {
        let planned = Planned {
            uid: ds.uid.clone(),
            name: ds.name.clone(),
            kind: ds.kind.clone(),
            role: ds.role,
            action: Action::Noop,
            changes: Vec::new(),
            body: serde_json::Value::Null,
            version: None,
            drift: false,
        };
        Self { planned, outcome }
    }

    pub fn failed(ds: &DesiredDatasource, msg: String) -> Self {
        Self::bare(ds, Outcome::Failed(msg))
    }

    pub fn skipped(ds: &DesiredDatasource, msg: String) -> Self {
        Self::bare(ds, Outcome::Skipped(msg))
    }
}

/// The result for one Grafana.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GrafanaReport {
    pub grafana: String,
    pub items: Vec<Item>,
    /// Files written or planned (file modes).
    pub files: Vec<apply::files::FilePlan>,
    pub notes: Vec<String>,
    /// One line per link not made: which link, the candidates seen and why each was rejected.
    pub unlinked: Vec<String>,
    /// The Grafana could not be reconciled at all.
    pub error: Option<String>,
    /// Write requests sent.
    pub writes: usize,
}

impl GrafanaReport {
    pub fn new(grafana: &str) -> Self {
        Self {
            grafana: grafana.into(),
            ..Default::default()
        }
    }

    /// Changes are pending (dry run) or were just made.
    pub fn pending(&self) -> bool {
        self.items.iter().any(|i| i.outcome == Outcome::Planned)
            || self.files.iter().any(|f| f.changed)
    }

    /// Something could not be done.
    pub fn failed(&self) -> bool {
        self.error.is_some()
            || self
                .items
                .iter()
                .any(|i| matches!(i.outcome, Outcome::Failed(_) | Outcome::Conflict(_)))
    }
}

/// One pass over every Grafana.
pub(crate) async fn reconcile_once(
    section: &ReconcileSection,
    dry_run: bool,
) -> Vec<GrafanaReport> {
    let tempos = match resolve_tempos(section) {
        Ok(t) => t,
        Err(e) => {
            return section
                .grafanas
                .iter()
                .map(|g| GrafanaReport {
                    error: Some(e.to_string()),
                    ..GrafanaReport::new(&g.id)
                })
                .collect();
        }
    };
    let mut reports = Vec::new();
    for g in &section.grafanas {
        let client = match (&g.url, apply::client_for(g)) {
            (None, _) => None,
            (Some(_), Ok(c)) => c,
            (Some(_), Err(e)) => {
                reports.push(GrafanaReport {
                    error: Some(e.to_string()),
                    ..GrafanaReport::new(&g.id)
                });
                continue;
            }
        };
        let report = match (section.mode, &client) {
            (Mode::Api, Some(c)) => apply::api::reconcile(c, section, &tempos, dry_run).await,
            (Mode::Api, None) => GrafanaReport {
                error: Some("api mode needs `url` and credentials".into()),
                ..GrafanaReport::new(&g.id)
            },
            (mode, client) => {
                apply::files::reconcile(mode, g, client.as_ref(), section, &tempos, dry_run).await
            }
        };
        reports.push(report);
    }
    reports
}

/// How `sonde reconcile` runs, and where its configuration comes from when it changes.
pub struct Run<'a> {
    /// One pass, then exit.
    pub once: bool,
    /// Plan only: print the diff, write nothing.
    pub dry_run: bool,
    /// The configuration file, polled for changes in the loop.
    pub config: Option<&'a Path>,
    /// Reads and checks the configuration again after the file changed.
    pub reload: &'a (dyn Fn() -> Result<ReconcileSection, String> + Sync),
}

/// `sonde reconcile`: once (`--once`, `--dry-run`) or in a loop until Ctrl-C.
pub async fn run(how: Run<'_>, section: ReconcileSection) -> u8 {
    if how.once || how.dry_run {
        let reports = reconcile_once(&section, how.dry_run).await;
        print!("{}", render::reports(&reports, how.dry_run));
        return exit_code(&reports, how.dry_run);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    // In the loop, print passes that wrote or failed; a quiet pass is one log line.
    run_loop(&how, section, &stop, |reports| {
        let (loud, quiet): (Vec<_>, Vec<_>) = reports
            .iter()
            .cloned()
            .partition(|r| r.writes > 0 || r.failed());
        if !loud.is_empty() {
            print!("{}", render::reports(&loud, false));
        }
        for r in quiet {
            tracing::info!(grafana = %r.grafana, "in sync, nothing written");
        }
    })
    .await;
    0
}

/// Exit code when `--dry-run` finds pending changes.
pub(crate) const EXIT_PENDING: u8 = 2;

/// The exit code of one pass: 1 when something failed or conflicted, 2 when a dry run found
/// pending changes, else 0.
pub(crate) fn exit_code(reports: &[GrafanaReport], dry_run: bool) -> u8 {
    if reports.iter().any(GrafanaReport::failed) {
        1
    } else if dry_run && reports.iter().any(GrafanaReport::pending) {
        EXIT_PENDING
    } else {
        0
    }
}

/// What identifies a version of the config file (mtime and size, polled).
fn stamp(path: Option<&Path>) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path?).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reconcile every `interval` and whenever the config file changes (an invalid new config is
/// logged and the previous one kept), until `stop` is cancelled.
pub(crate) async fn run_loop(
    how: &Run<'_>,
    mut section: ReconcileSection,
    stop: &tokio_util::sync::CancellationToken,
    mut on_pass: impl FnMut(&[GrafanaReport]),
) {
    let mut seen = stamp(how.config);
    loop {
        let reports = reconcile_once(&section, false).await;
        on_pass(&reports);
        let interval = section.interval;
        let deadline = tokio::time::Instant::now() + interval;
        loop {
            let poll = tokio::time::sleep(CONFIG_POLL.min(interval));
            tokio::select! {
                () = stop.cancelled() => return,
                () = poll => {}
            }
            let now = stamp(how.config);
            if now != seen {
                seen = now;
                match (how.reload)() {
                    Ok(s) => {
                        tracing::info!("config changed; reconciling");
                        section = s;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("config changed but is invalid; keeping the old one: {e}")
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
    }
}

/// How often the config file is checked for changes.
const CONFIG_POLL: std::time::Duration = std::time::Duration::from_millis(500);

#[cfg(test)]
#[path = "loop_tests.rs"]
mod loop_tests;
