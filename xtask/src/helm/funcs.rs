//! The few Sprig and Helm template functions the chart uses, as gtmpl functions: `toYaml`,
//! `indent`, `nindent`, `quote`, `default`, `empty`, `required`, `fail`, `trunc`,
//! `trimSuffix`, `lower`, `keys`,
//! `sortAlpha`, `sha256sum`, `include`. gtmpl ranges over a map in no set order (Go sorts the keys): the
//! chart ranges over `keys ... | sortAlpha` instead, which renders the same in both. A template calling anything else fails to parse, naming it.
use std::cell::RefCell;

use gtmpl::{Context, Func, FuncError, Template, Value};

use super::values;

/// Every function a chart template may call, on top of Go's builtins (`printf`, `eq`, `and`...).
pub const FUNCS: &[(&str, Func)] = &[
    ("toYaml", to_yaml),
    ("indent", indent),
    ("nindent", nindent),
    ("quote", quote),
    ("default", default),
    ("empty", empty),
    ("required", required),
    ("fail", fail),
    ("trunc", trunc),
    ("trimSuffix", trim_suffix),
    ("lower", lower),
    ("keys", keys),
    ("sortAlpha", sort_alpha),
    ("sha256sum", sha256sum),
    ("include", include),
];

thread_local! {
    /// The chart's template files (name, text): what `include` looks `define`s up in. gtmpl
    /// functions are plain `fn`s, so the set travels beside them rather than inside.
    static SOURCES: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// A template with the chart's functions and every file of `sources` parsed into it.
pub fn template(sources: &[(String, String)]) -> Result<Template, String> {
    SOURCES.with(|s| *s.borrow_mut() = sources.to_vec());
    let mut t = Template::default();
    t.add_funcs(FUNCS);
    for (name, text) in sources {
        t.add_template(name.clone(), text.clone())
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(t)
}

fn err(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(FuncError::ExactlyXArgs(name.to_owned(), n))
    }
}

/// Go's `fmt.Sprint` of a value as templates print it (nothing for a missing value).
fn text(v: &Value) -> String {
    match v {
        Value::NoValue | Value::Nil => String::new(),
        other => other.to_string(),
    }
}

fn int(name: &str, v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| err(format!("{name}: not an integer"))),
        other => Err(err(format!("{name}: expected an integer, got {other}"))),
    }
}

/// Sprig's `empty`: missing, nil, false, 0, "" and empty lists or maps.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Function(_) => false,
    }
}

fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    arity("toYaml", args, 1)?;
    let out = serde_yaml::to_string(&values::to_yaml(&args[0])).map_err(|e| err(e.to_string()))?;
    let lines: Vec<String> = out.trim_end_matches('\n').lines().map(go_quotes).collect();
    Ok(Value::from(lines.join("\n")))
}

/// Go's YAML encoder (Helm's `toYaml`) double-quotes a string that would read as another
/// type (`"1"`, `"true"`) where serde_yaml single-quotes it: a line ending in such a scalar
/// gets Go's quotes.
fn go_quotes(line: &str) -> String {
    let Some(body) = line.strip_suffix('\'') else {
        return line.to_owned();
    };
    let Some(open) = body.rfind(['\'']) else {
        return line.to_owned();
    };
    let (head, scalar) = (&body[..open], &body[open + 1..]);
    let starts_value = head.is_empty()
        || head.ends_with(": ")
        || head.trim_start().trim_start_matches("- ").is_empty();
    let plain = !scalar.contains(['\'', '"', '\\']);
    let other_type = serde_yaml::from_str::<serde_yaml::Value>(scalar).is_ok_and(|v| {
        matches!(
            v,
            serde_yaml::Value::Null | serde_yaml::Value::Bool(_) | serde_yaml::Value::Number(_)
        )
    });
    if starts_value && plain && other_type {
        format!("{head}\"{scalar}\"")
    } else {
        line.to_owned()
    }
}

fn pad(n: i64, s: &str) -> String {
    let pad = " ".repeat(usize::try_from(n).unwrap_or(0));
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn indent(args: &[Value]) -> Result<Value, FuncError> {
    arity("indent", args, 2)?;
    Ok(Value::from(pad(int("indent", &args[0])?, &text(&args[1]))))
}

fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    arity("nindent", args, 2)?;
    Ok(Value::from(format!(
        "\n{}",
        pad(int("nindent", &args[0])?, &text(&args[1]))
    )))
}

fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::Nil | Value::NoValue))
        .map(|v| serde_json::to_string(&text(v)).unwrap_or_default())
        .collect();
    Ok(Value::from(quoted.join(" ")))
}

fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [d] => Ok(d.clone()),
        [d, v] if is_empty(v) => Ok(d.clone()),
        [_, v] => Ok(v.clone()),
        _ => Err(FuncError::AtLeastXArgs("default".to_owned(), 1)),
    }
}

fn empty(args: &[Value]) -> Result<Value, FuncError> {
    arity("empty", args, 1)?;
    Ok(Value::Bool(is_empty(&args[0])))
}

fn required(args: &[Value]) -> Result<Value, FuncError> {
    arity("required", args, 2)?;
    match &args[1] {
        Value::NoValue | Value::Nil => Err(err(text(&args[0]))),
        Value::String(s) if s.is_empty() => Err(err(text(&args[0]))),
        v => Ok(v.clone()),
    }
}

fn fail(args: &[Value]) -> Result<Value, FuncError> {
    arity("fail", args, 1)?;
    Err(err(text(&args[0])))
}

fn trunc(args: &[Value]) -> Result<Value, FuncError> {
    arity("trunc", args, 2)?;
    let n = usize::try_from(int("trunc", &args[0])?).unwrap_or(0);
    Ok(Value::from(
        text(&args[1]).chars().take(n).collect::<String>(),
    ))
}

fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    arity("trimSuffix", args, 2)?;
    let (suffix, s) = (text(&args[0]), text(&args[1]));
    Ok(Value::from(
        s.strip_suffix(&suffix).unwrap_or(&s).to_owned(),
    ))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    arity("lower", args, 1)?;
    Ok(Value::from(text(&args[0]).to_lowercase()))
}

fn keys(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = Vec::new();
    for a in args {
        match a {
            Value::Map(m) | Value::Object(m) => out.extend(m.keys().cloned().map(Value::from)),
            other => return Err(err(format!("keys: expected a map, got {other}"))),
        }
    }
    Ok(Value::Array(out))
}

fn sort_alpha(args: &[Value]) -> Result<Value, FuncError> {
    arity("sortAlpha", args, 1)?;
    let Value::Array(items) = &args[0] else {
        return Err(err(format!("sortAlpha: expected a list, got {}", args[0])));
    };
    let mut words: Vec<String> = items.iter().map(text).collect();
    words.sort();
    Ok(Value::Array(words.into_iter().map(Value::from).collect()))
}

fn sha256sum(args: &[Value]) -> Result<Value, FuncError> {
    arity("sha256sum", args, 1)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, text(&args[0]).as_bytes());
    Ok(Value::from(hex::encode(digest.as_ref())))
}

/// Helm's `include`: render the named `define` with the given dot, as a string.
fn include(args: &[Value]) -> Result<Value, FuncError> {
    arity("include", args, 2)?;
    let name = text(&args[0]);
    let sources = SOURCES.with(|s| s.borrow().clone());
    let mut t = template(&sources).map_err(err)?;
    let entry = "sonde-xtask-include";
    t.add_template(
        entry,
        format!("{{{{ template {} . }}}}", quote(&args[..1])?),
    )
    .map_err(|e| err(e.to_string()))?;
    t.name = entry.to_owned();
    let out = t
        .render(&Context::from(args[1].clone()))
        .map_err(|e| err(format!("include {name:?}: {e}")));
    // The nested set replaced ours; put it back for the caller's later includes.
    SOURCES.with(|s| *s.borrow_mut() = sources);
    out.map(Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, dot: Value) -> Result<String, String> {
        let mut t = template(&[("t".to_owned(), src.to_owned())])?;
        t.name = "t".to_owned();
        t.render(&Context::from(dot)).map_err(|e| e.to_string())
    }

    fn dot(yaml: &str) -> Value {
        values::to_template(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn functions_behave_like_sprig() {
        let d = dot(
            "{m: {b: [1, 2], a: x}, s: 'he said \"hi\"', e: '', long: abcdefgh-,
              q: {a: '1', b: 'true', c: '*x', e: '', l: ['2', 'y: z']}}",
        );
        let cases = [
            ("{{ toYaml .m }}", "a: x\nb:\n- 1\n- 2"),
            (
                "x:{{ toYaml .m | nindent 2 }}",
                "x:\n  a: x\n  b:\n  - 1\n  - 2",
            ),
            ("{{ .s | quote }}", r#""he said \"hi\"""#),
            (
                "{{ toYaml .q }}",
                "a: \"1\"\nb: \"true\"\nc: '*x'\ne: \"\"\nl:\n- \"2\"\n- 'y: z'",
            ),
            (
                "{{ .e | default \"d\" }}/{{ .s | default \"d\" | trunc 2 }}",
                "d/he",
            ),
            ("{{ .missing | default \"d\" }}", "d"),
            ("{{ .long | trunc 8 | trimSuffix \"-\" }}", "abcdefgh"),
            ("{{ .long | trunc 9 | trimSuffix \"-\" }}", "abcdefgh"),
            ("{{ empty .e }} {{ empty .m }}", "true false"),
            (
                "{{ \"abc\" | sha256sum }}",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            ("{{ range keys .m | sortAlpha }}{{ . }},{{ end }}", "a,b,"),
            (
                "{{ range $k := keys .m | sortAlpha }}{{ index $.m $k | len }}{{ end }}",
                "12",
            ),
            ("{{ required \"need s\" .s | len }}", "12"),
            (
                "{{ define \"n\" }}[{{ .a }}]{{ end }}{{ include \"n\" .m | indent 1 }}",
                " [x]",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, d.clone()).as_deref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn required_and_fail_stop_the_render_with_their_message() {
        let d = dot("{e: ''}");
        let e = render("{{ required \"x.y is required\" .e }}", d.clone()).unwrap_err();
        assert!(e.contains("x.y is required"), "{e}");
        let e = render("{{ required \"z is required\" .nope }}", d.clone()).unwrap_err();
        assert!(e.contains("z is required"), "{e}");
        let e = render("{{ fail \"bad value\" }}", d.clone()).unwrap_err();
        assert!(e.contains("bad value"), "{e}");
        assert!(
            render("{{ upper .e }}", d).is_err(),
            "unknown functions are refused"
        );
    }
}
