//! A small line diff (longest common subsequence) for showing file changes in plans.
use std::fmt::Write as _;

/// Lines of `old` and `new` as `-`/`+` with one line of context, hunks headed `@@ line N`.
/// Empty when equal. Meant for config-sized files (quadratic in lines).
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (n, m) = (a.len(), b.len());
    // lcs[i][j] = LCS length of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // ops: (tag, line, new line number)
    let mut ops: Vec<(char, &str, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i], j + 1));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i], j + 1));
            i += 1;
        } else {
            ops.push(('+', b[j], j + 1));
            j += 1;
        }
    }
    let changed: Vec<bool> = ops.iter().map(|o| o.0 != ' ').collect();
    let near = |k: usize| {
        changed[k.saturating_sub(1)..(k + 2).min(changed.len())]
            .iter()
            .any(|c| *c)
    };
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for (k, (tag, line, at)) in ops.iter().enumerate() {
        if !near(k) {
            continue;
        }
        if last_shown.is_none_or(|l| l + 1 != k) {
            let _ = writeln!(out, "@@ line {at}");
        }
        let _ = writeln!(out, "{tag} {line}");
        last_shown = Some(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::diff;

    #[rstest]
    #[case::equal("a\nb\n", "a\nb\n", "")]
    #[case::both_empty("", "", "")]
    #[case::from_empty("", "x\n", "@@ line 1\n+ x\n")]
    #[case::to_empty("x\n", "", "@@ line 1\n- x\n")]
    #[case::changed_middle(
        "a\nb\nc\nd\ne\n",
        "a\nb\nC\nd\ne\n",
        "@@ line 2\n  b\n- c\n+ C\n  d\n"
    )]
    #[case::two_hunks(
        "1\n2\n3\n4\n5\n6\n7\n",
        "x\n2\n3\n4\n5\n6\ny\n",
        "@@ line 1\n- 1\n+ x\n  2\n@@ line 6\n  6\n- 7\n+ y\n"
    )]
    #[case::crlf_lines_compare_equal("a\r\nb\r\n", "a\nb\n", "")]
    fn diffs(#[case] old: &str, #[case] new: &str, #[case] want: &str) {
        assert_eq!(diff(old, new), want);
    }
}
