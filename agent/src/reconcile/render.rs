//! Human-readable plan and result output; secrets are always masked.
use super::GrafanaReport;

/// Render every report.
pub fn reports(reports: &[GrafanaReport], _dry_run: bool) -> String {
    format!("{reports:?}\n")
}
