//! File modes: provisioning YAML and grafana-operator manifests (renderers in submodules).
use crate::{
    config::{GrafanaConfig, ReconcileSection},
    reconcile::{GrafanaReport, Mode, ResolvedTempo, observed::grafana::GrafanaClient},
};

/// One file to write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilePlan {
    pub path: std::path::PathBuf,
    pub changed: bool,
    pub diff: String,
}

/// Render and write (or diff) the files of one Grafana.
pub async fn reconcile(
    _mode: Mode,
    g: &GrafanaConfig,
    _client: Option<&GrafanaClient>,
    _section: &ReconcileSection,
    _tempos: &[ResolvedTempo],
    _dry_run: bool,
) -> GrafanaReport {
    GrafanaReport {
        error: Some("file modes: not yet".into()),
        ..GrafanaReport::new(&g.id)
    }
}
