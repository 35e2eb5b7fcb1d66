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
