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
