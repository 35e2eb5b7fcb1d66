//! Corpus test: every query in `testdata/examples.yaml` parses, fails, or is "not supported yet"
//! as its list says.

use rstest::rstest;
use serde::Deserialize;

use super::{ErrorKind, parse};

#[derive(Deserialize)]
struct Examples {
    valid: Vec<String>,
    invalid: Vec<String>,
    unsupported: Vec<String>,
}

fn examples() -> Examples {
    serde_yaml::from_str(include_str!("testdata/examples.yaml")).expect("examples.yaml parses")
}

#[rstest]
#[case::valid("valid", None)]
#[case::invalid("invalid", Some(&[ErrorKind::Syntax, ErrorKind::Invalid][..]))]
#[case::unsupported("unsupported", Some(&[ErrorKind::Unsupported][..]))]
fn corpus(#[case] list: &str, #[case] want_error: Option<&[ErrorKind]>) {
    let ex = examples();
    let queries = match list {
        "valid" => ex.valid,
        "invalid" => ex.invalid,
        _ => ex.unsupported,
    };
    assert!(
        queries.len() >= 10,
        "{list}: corpus too small ({})",
        queries.len()
    );
    let mut failures = Vec::new();
    for q in &queries {
        match (parse(q), want_error) {
            (Ok(_), None) => {}
            (Err(e), Some(kinds)) if kinds.contains(&e.kind) => {}
            (Ok(_), Some(_)) => failures.push(format!("{q:?}: parsed, expected an error")),
            (Err(e), _) => failures.push(format!("{q:?}: {e} ({:?})", e.kind)),
        }
    }
    assert!(
        failures.is_empty(),
        "{list}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Printing a parsed filter and parsing the text again gives the same tree, so the printed
/// form (used in error messages) says exactly what was understood.
#[test]
fn filters_print_and_reparse() {
    use super::ast::{RootExpr, SpansetExpr, Stage};
    let mut checked = 0;
    for q in examples().valid {
        let Ok(query) = parse(&q) else { continue };
        let RootExpr::Pipeline(p) = &query.root else {
            continue;
        };
        let [Stage::Spanset(SpansetExpr::Filter(f))] = p.stages.as_slice() else {
            continue;
        };
        let printed = format!("{{ {f} }}");
        let again = parse(&printed).unwrap_or_else(|e| panic!("{q:?} printed as {printed:?}: {e}"));
        let RootExpr::Pipeline(p2) = &again.root else {
            panic!("{printed}")
        };
        assert_eq!(p.stages, p2.stages, "{q:?} printed as {printed:?}");
        checked += 1;
    }
    assert!(checked > 50, "only {checked} filters checked");
}

/// Every prefix of every corpus query, and seeded random single-character edits of them, parse
/// or fail cleanly, and failures point inside the text.
#[test]
fn truncated_and_mangled_queries_fail_cleanly() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    const ALPHABET: &[char] = &[
        '{', '}', '(', ')', '"', '`', '.', '|', '&', '!', '=', '~', '<', '>', '-', '\\', ' ', 'é',
    ];
    let ex = examples();
    let mut rng = StdRng::seed_from_u64(7);
    let mut inputs = Vec::new();
    for q in ex.valid.iter().chain(&ex.invalid).chain(&ex.unsupported) {
        let chars: Vec<char> = q.chars().collect();
        for end in 0..=chars.len() {
            inputs.push(chars[..end].iter().collect::<String>());
        }
        for _ in 0..20 {
            let mut c = chars.clone();
            let at = rng.random_range(0..=c.len());
            let ch = ALPHABET[rng.random_range(0..ALPHABET.len())];
            match rng.random_range(0..3) {
                0 => c.insert(at, ch),
                1 if at < c.len() => c[at] = ch,
                _ if at < c.len() => {
                    c.remove(at);
                }
                _ => c.push(ch),
            }
            inputs.push(c.into_iter().collect());
        }
    }
    assert!(inputs.len() > 5000, "only {} inputs", inputs.len());
    for input in &inputs {
        let Err(e) = parse(input) else { continue };
        if input.is_empty() {
            assert_eq!((e.line, e.col), (0, 0));
            continue;
        }
        let lines: Vec<&str> = input.split('\n').collect();
        assert!(e.line >= 1 && e.line <= lines.len(), "{input:?}: {e}");
        let width = lines[e.line - 1].trim_end_matches('\r').chars().count();
        assert!(e.col >= 1 && e.col <= width + 2, "{input:?}: {e}");
    }
}
