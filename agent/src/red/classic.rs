//! OpenMetrics text in Prometheus's classic text format (0.0.4), for scrapers that do not
//! ask for OpenMetrics: prometheus-client writes only the former.
use std::fmt::Write as _;

/// OpenMetrics text (prometheus-client's output) in the classic text format: counters named
/// by their `_total` sample, no `# UNIT`, no `# EOF`, no exemplars.
pub fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)))
        {
            let (tag, rest) = rest;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if counters.contains(name) {
                let _ = writeln!(out, "{tag}{name}_total {tail}");
                continue;
            }
        }
        out.push_str(strip_exemplar(line));
        out.push('\n');
    }
    out
}

/// A sample line without its exemplar (` # {…} v t` after the value).
fn strip_exemplar(line: &str) -> &str {
    if line.starts_with('#') {
        return line;
    }
    // Skip the label set, whose quoted values may hold anything.
    let mut in_quotes = false;
    let mut escaped = false;
    let mut labels_end = 0;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => {
                labels_end = i;
                break;
            }
            ' ' if !in_quotes && !line[..i].contains('{') => break,
            _ => {}
        }
    }
    match line[labels_end..].find(" # ") {
        Some(at) => &line[..labels_end + at],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::counter(
        "# HELP a_b Help text.\n# TYPE a_b counter\na_b_total 3\n# EOF\n",
        "# HELP a_b_total Help text.\n# TYPE a_b_total counter\na_b_total 3\n"
    )]
    #[case::gauge(
        "# HELP g G.\n# TYPE g gauge\ng 1\n",
        "# HELP g G.\n# TYPE g gauge\ng 1\n"
    )]
    #[case::unit(
        "# TYPE h histogram\n# UNIT h seconds\nh_count 1\n",
        "# TYPE h histogram\nh_count 1\n"
    )]
    #[case::exemplar(
        "h_bucket{le=\"1\"} 2 # {trace_id=\"ab\"} 0.5 1.0\n",
        "h_bucket{le=\"1\"} 2\n"
    )]
    #[case::exemplar_no_labels("c_total 2 # {trace_id=\"ab\"} 1\n", "c_total 2\n")]
    #[case::hash_in_label("x{a=\"p # q}\"} 1\n", "x{a=\"p # q}\"} 1\n")]
    #[case::escaped_quote("x{a=\"p\\\" # q\"} 1 # {t=\"1\"} 1\n", "x{a=\"p\\\" # q\"} 1\n")]
    #[case::empty("", "")]
    fn classic_text(#[case] om: &str, #[case] want: &str) {
        assert_eq!(openmetrics_to_text(om), want);
    }
}
