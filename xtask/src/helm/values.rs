//! Chart values: YAML files merged the way Helm merges them, `--set a.b=c` overrides, and the
//! conversion between YAML and the template engine's values.
use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};
use gtmpl_value::{Number, Value};
use serde_yaml::{Mapping, Value as Yaml};

/// `over` on top of `base`: maps merge key by key, anything else replaces, and a null in
/// `over` deletes the key (as `helm --set key=null` does).
pub fn merge(base: &mut Yaml, over: Yaml) {
    match (base, over) {
        (Yaml::Mapping(b), Yaml::Mapping(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(slot) = b.get_mut(&k) {
                    merge(slot, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// One `--set` argument (`a.b.c=value`, comma-separated pairs allowed) as a YAML tree.
/// Values are typed like Helm's: `true`/`false`, integers and `null`; `{x,y}` is a list of
/// values typed the same way; anything else is a string. List indexes (`a[0]`) are not supported.
pub fn parse_set(arg: &str) -> Result<Yaml> {
    let mut out = Yaml::Mapping(Mapping::new());
    for pair in split_pairs(arg) {
        let (path, raw) = pair
            .split_once('=')
            .with_context(|| format!("--set {pair:?}: expected key=value"))?;
        if path.is_empty() || path.contains('[') || path.split('.').any(str::is_empty) {
            bail!("--set {pair:?}: keys are dot-separated names (list indexes are not supported)");
        }
        let mut tree = typed(raw);
        for key in path.rsplit('.') {
            let mut m = Mapping::new();
            m.insert(Yaml::String(key.to_owned()), tree);
            tree = Yaml::Mapping(m);
        }
        merge(&mut out, tree);
    }
    Ok(out)
}

/// Split on commas that are not inside `{...}`.
fn split_pairs(arg: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0usize, 0, Vec::new());
    for (i, c) in arg.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&arg[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&arg[start..]);
    out
}

fn typed(raw: &str) -> Yaml {
    match raw {
        "true" => Yaml::Bool(true),
        "false" => Yaml::Bool(false),
        "null" => Yaml::Null,
        _ if raw.starts_with('{') && raw.ends_with('}') => Yaml::Sequence(
            raw[1..raw.len() - 1]
                .split(',')
                .filter(|s| !s.is_empty())
                .map(typed)
                .collect(),
        ),
        _ => match raw.parse::<i64>() {
            // Helm keeps a leading zero as a string ("007").
            Ok(n) if !(raw.starts_with('0') && raw.len() > 1) => Yaml::Number(n.into()),
            _ => Yaml::String(raw.to_owned()),
        },
    }
}

/// YAML → template value (maps keyed by their keys as strings).
pub fn to_template(y: &Yaml) -> Value {
    match y {
        Yaml::Null => Value::Nil,
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Number(n) => Value::Number(if let Some(i) = n.as_i64() {
            Number::from(i)
        } else if let Some(u) = n.as_u64() {
            Number::from(u)
        } else {
            Number::from(n.as_f64().unwrap_or(f64::NAN))
        }),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Sequence(s) => Value::Array(s.iter().map(to_template).collect()),
        Yaml::Mapping(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (key_string(k), to_template(v)))
                .collect::<HashMap<_, _>>(),
        ),
        Yaml::Tagged(t) => to_template(&t.value),
    }
}

fn key_string(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_owned(),
    }
}

/// Template value → YAML, map keys sorted (Helm's `toYaml` sorts them too).
pub fn to_yaml(v: &Value) -> Yaml {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => Yaml::Null,
        Value::Bool(b) => Yaml::Bool(*b),
        Value::String(s) => Yaml::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Yaml::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Yaml::Number(u.into())
            } else {
                Yaml::Number(n.as_f64().unwrap_or(f64::NAN).into())
            }
        }
        Value::Array(a) => Yaml::Sequence(a.iter().map(to_yaml).collect()),
        Value::Map(m) | Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Yaml::Mapping(
                keys.into_iter()
                    .map(|k| (Yaml::String(k.clone()), to_yaml(&m[k])))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Yaml {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn set_builds_typed_nested_values() {
        assert_eq!(
            parse_set("a.b=1,a.c=true,d=x,e={p,2},f=007").unwrap(),
            y("{a: {b: 1, c: true}, d: x, e: [p, 2], f: '007'}")
        );
        assert!(parse_set("a[0]=x").is_err());
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("a..b=1").is_err());
    }

    #[test]
    fn merge_replaces_leaves_merges_maps_and_null_deletes() {
        let mut base = y("{a: {b: 1, c: 2}, l: [1, 2], k: v}");
        merge(&mut base, y("{a: {c: 3}, l: [9], k: null}"));
        assert_eq!(base, y("{a: {b: 1, c: 3}, l: [9]}"));
    }
}
