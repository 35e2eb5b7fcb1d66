//! Grafana's datasource provisioning, applied by the fake's reload.
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{FakeState, Stored, org_of_record};

/// Expand one provisioning value as Grafana does: `$$` is a literal `$`; `$__env{V}`,
/// `${V}`, `$V` and `$__file{path}` are replaced.
pub fn expand(value: &str) -> Result<String, String> {
    let re = regex::Regex::new(r"\$(__env|__file)?\{([^}]+)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
        .map_err(|e| e.to_string())?;
    let mut parts = Vec::new();
    for part in value.split("$$") {
        let mut out = String::new();
        let mut last = 0;
        for c in re.captures_iter(part) {
            let m = c.get(0).map_or(0..0, |m| m.range());
            out.push_str(&part[last..m.start]);
            last = m.end;
            let kind = c.get(1).map(|k| k.as_str());
            let arg = c.get(2).or(c.get(3)).map_or("", |a| a.as_str());
            out.push_str(&match kind {
                Some("__file") => std::fs::read_to_string(arg)
                    .map_err(|e| format!("$__file{{{arg}}}: {e}"))?
                    .trim()
                    .to_string(),
                _ => std::env::var(arg).unwrap_or_default(),
            });
        }
        out.push_str(&part[last..]);
        parts.push(out);
    }
    Ok(parts.join("$"))
}

fn expand_all(v: &mut Value) -> Result<(), String> {
    match v {
        Value::String(s) => *s = expand(s)?,
        Value::Array(a) => a.iter_mut().try_for_each(expand_all)?,
        Value::Object(m) => m.values_mut().try_for_each(expand_all)?,
        _ => {}
    }
    Ok(())
}

fn files(dirs: &[PathBuf]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for p in paths.iter().filter(|p| is_yaml(p)) {
            let text = std::fs::read_to_string(p).map_err(|e| e.to_string())?;
            let doc: Value =
                serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            out.push(doc);
        }
    }
    Ok(out)
}

fn is_yaml(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

fn list<'a>(doc: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    doc.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn org(v: &Value) -> u64 {
    v.get("orgId").and_then(Value::as_u64).unwrap_or(1)
}

fn named(st: &FakeState, name: &str, org: u64) -> Option<usize> {
    st.stored.iter().position(|d| {
        d.record.get("name").and_then(Value::as_str) == Some(name) && org_of_record(d) == org
    })
}

/// Apply every provisioning file in `dirs`; the error is the cause Grafana reports.
pub fn apply(st: &mut FakeState, dirs: &[PathBuf]) -> Result<(), String> {
    let docs = files(dirs)?;
    for d in docs.iter().flat_map(|doc| list(doc, "deleteDatasources")) {
        let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
        if let Some(i) = named(st, name, org(d)) {
            st.stored.remove(i);
        }
    }
    let mut listed = Vec::new();
    for d in docs.iter().flat_map(|doc| list(doc, "datasources")) {
        let mut d = d.clone();
        expand_all(&mut d)?;
        let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
        let org = org(&d);
        listed.push((name.to_string(), org));
        let existing = named(st, name, org);
        if let Some(uid) = d.get("uid").and_then(Value::as_str)
            && let Some(j) = st.find_in(org, uid)
            && Some(j) != existing
        {
            return Err("data source with the same uid already exists".into());
        }
        let secure = super::secure_of(&d);
        let mut record: Map<String, Value> = d.as_object().cloned().unwrap_or_default();
        record.remove("secureJsonData");
        record.remove("editable");
        record.insert("orgId".into(), json!(org));
        record.insert("readOnly".into(), json!(true));
        record.insert("provisioned".into(), json!(true));
        record.entry("jsonData").or_insert(json!({}));
        match existing {
            Some(i) => {
                let old = &st.stored[i].record;
                for k in ["id", "uid"] {
                    if let (Some(v), false) = (old.get(k).cloned(), record.contains_key(k)) {
                        record.insert(k.into(), v);
                    }
                }
                let v = old.get("version").and_then(Value::as_i64).unwrap_or(0);
                record.insert("version".into(), json!(v + 1));
                st.stored[i] = Stored { record, secure };
            }
            None => {
                st.next_id += 1;
                record.insert("id".into(), json!(st.next_id));
                let generated = json!(format!("gen{:05}", st.next_id));
                record.entry("uid").or_insert(generated);
                record.insert("version".into(), json!(1));
                st.stored.push(Stored { record, secure });
            }
        }
    }
    if docs.iter().any(|d| d.get("prune") == Some(&json!(true))) {
        st.stored.retain(|d| {
            let provisioned = d.record.get("provisioned") == Some(&json!(true));
            let name = d
                .record
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            !provisioned || listed.contains(&(name.to_string(), org_of_record(d)))
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::escaped_dollar("a$$b", "a$b")]
    #[case::escaped_template("$${__value.raw}", "${__value.raw}")]
    #[case::unset_env("x$__env{SONDE_SURELY_UNSET_VAR}y", "xy")]
    #[case::unset_plain("$SONDE_SURELY_UNSET_VAR", "")]
    #[case::nothing("plain", "plain")]
    #[case::empty("", "")]
    fn expansion(#[case] input: &str, #[case] want: &str) {
        assert_eq!(expand(input).expect("expands"), want);
    }

    #[test]
    fn file_expansion_is_trimmed_and_a_missing_file_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("token");
        std::fs::write(&f, "  tok\n").expect("write");
        let got = expand(&format!("Bearer $__file{{{}}}", f.display())).expect("expands");
        assert_eq!(got, "Bearer tok");
        assert!(expand("$__file{/surely/missing}").is_err());
    }
}
