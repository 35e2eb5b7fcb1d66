//! Human-readable plan and result output. Secret values never reach it: changes carry no
//! secret values, and anything under `secureJsonData` is printed as the mask.
use std::fmt::Write as _;

use serde_json::Value;

use super::{
    GrafanaReport, Outcome,
    diff::{Action, Change},
    secret::MASK,
};

fn value(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.len() > 160 {
        format!("{}…", &s[..s.floor_char_boundary(157)])
    } else {
        s
    }
}

/// One change line, e.g. `~ jsonData.serviceMap.datasourceUid: "a" → "b"`.
pub fn change(c: &Change) -> String {
    if c.secret || c.path.starts_with("secureJsonData") {
        return format!("~ {} = {MASK} (write-only, sent)", c.path);
    }
    match (&c.before, &c.after) {
        (None, Some(a)) => format!("+ {} = {}", c.path, value(a)),
        (Some(b), None) => format!("- {} (was {})", c.path, value(b)),
        (Some(b), Some(a)) => format!("~ {}: {} → {}", c.path, value(b), value(a)),
        (None, None) => format!("~ {}", c.path),
    }
}

/// Render every report: a header per Grafana, then one block per datasource and file.
pub fn reports(reports: &[GrafanaReport], dry_run: bool) -> String {
    let mut out = String::new();
    for r in reports {
        let count = |f: &dyn Fn(&Outcome) -> bool| r.items.iter().filter(|i| f(&i.outcome)).count();
        let pending = count(&|o| matches!(o, Outcome::Planned | Outcome::Applied));
        let same = count(&|o| *o == Outcome::Unchanged);
        let trouble = count(&|o| matches!(o, Outcome::Conflict(_) | Outcome::Failed(_)));
        let manual = count(&|o| matches!(o, Outcome::Skipped(_)));
        let verb = if dry_run { "to change" } else { "changed" };
        match &r.error {
            Some(e) => {
                let _ = writeln!(
                    out,
                    "grafana {}: failed, {pending} {verb}, {} write(s)",
                    r.grafana, r.writes
                );
                let _ = writeln!(out, "  error: {e}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "grafana {}: {pending} {verb}, {same} unchanged, {trouble} failed or in \
                     conflict, {manual} skipped, {} write(s)",
                    r.grafana, r.writes
                );
            }
        }
        for item in &r.items {
            let p = &item.planned;
            let what = format!("{} {:?} (uid {})", p.kind, p.name, p.uid);
            let head = match (&item.outcome, &p.action) {
                (Outcome::Unchanged, _) => format!("  = unchanged {what}"),
                (Outcome::Planned | Outcome::Applied, Action::Create) => {
                    format!("  + create {what}")
                }
                (Outcome::Planned | Outcome::Applied, Action::Delete) => {
                    format!("  - delete {what}: Sonde created it and no longer wants it")
                }
                (Outcome::Planned | Outcome::Applied, _) => {
                    let drift = if p.drift {
                        " [drift: changed outside Sonde]"
                    } else {
                        ""
                    };
                    format!("  ~ update {what}{drift}")
                }
                (Outcome::Conflict(m), _) => format!("  ! conflict {what}: {m}"),
                (Outcome::Skipped(m), _) => format!("  - skipped {what}: {m}"),
                (Outcome::Failed(m), _) => format!("  ! failed {what}: {m}"),
            };
            let _ = writeln!(out, "{head}");
            // In file modes the file diff below shows the changes.
            if r.files.is_empty()
                && matches!(
                    item.outcome,
                    Outcome::Planned | Outcome::Applied | Outcome::Conflict(_)
                )
            {
                for c in &p.changes {
                    let _ = writeln!(out, "      {}", change(c));
                }
            }
        }
        for f in &r.files {
            let state = if f.changed {
                if dry_run { "would write" } else { "wrote" }
            } else {
                "unchanged"
            };
            let _ = writeln!(out, "  file {state}: {}", f.path.display());
            for line in f.diff.lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
        for u in &r.unlinked {
            let _ = writeln!(out, "  not linked: {u}");
        }
        for n in &r.notes {
            let _ = writeln!(out, "  note: {n}");
        }
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.grafana.as_str())
        .collect();
    if failed.is_empty() {
        let _ = writeln!(out, "summary: {} Grafana(s), none failed", reports.len());
    } else {
        let _ = writeln!(
            out,
            "summary: {} of {} Grafana(s) failed: {}",
            failed.len(),
            reports.len(),
            failed.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn c(path: &str, before: Option<Value>, after: Option<Value>, secret: bool) -> Change {
        Change {
            path: path.into(),
            before,
            after,
            secret,
        }
    }

    #[rstest]
    #[case::added(c("jsonData.a", None, Some(json!("x")), false), "+ jsonData.a = \"x\"")]
    #[case::removed(c("jsonData.a", Some(json!(1)), None, false), "- jsonData.a (was 1)")]
    #[case::changed(c("url", Some(json!("a")), Some(json!("b")), false), "~ url: \"a\" → \"b\"")]
    #[case::secret(
        c("secureJsonData.k", None, None, true),
        "~ secureJsonData.k = ****** (write-only, sent)"
    )]
    #[case::secret_path_even_with_value(
        c("secureJsonData.k", None, Some(json!("hunter2")), false),
        "~ secureJsonData.k = ****** (write-only, sent)"
    )]
    #[case::long_value_truncated(
        c("x", None, Some(json!("é".repeat(200))), false),
        &format!("+ x = \"{}…", "é".repeat(78))
    )]
    fn change_lines(#[case] input: Change, #[case] want: &str) {
        assert_eq!(change(&input), want);
    }
}
