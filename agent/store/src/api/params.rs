//! Query-string parsing for the search API: durations, logfmt `tags`, and the `/api/search`
//! request with Tempo's defaults, limits and error texts.
use sonde_config::duration::{format_go_duration, parse_go_duration};

/// Parse logfmt `k=v k2="v 2"` pairs. A key twice is an error, like Tempo.
pub fn parse_logfmt(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' && b[i] != b'"' {
            i += 1;
        }
        if i < b.len() && b[i] == b'"' {
            return Err(format!(
                "logfmt syntax error at pos {}: unexpected '\"'",
                i + 1
            ));
        }
        let key = &s[ks..i];
        if key.is_empty() {
            return Err(format!(
                "logfmt syntax error at pos {}: unexpected '='",
                i + 1
            ));
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut closed = false;
                let mut chars = s[i..].char_indices();
                while let Some((off, c)) = chars.next() {
                    match c {
                        '"' => {
                            i += off + 1;
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, 't')) => value.push('\t'),
                            Some((_, e)) => value.push(e),
                            None => break,
                        },
                        c => value.push(c),
                    }
                }
                if !closed {
                    return Err(format!(
                        "logfmt syntax error at pos {}: unterminated quoted value",
                        b.len() + 1
                    ));
                }
            } else {
                let vs = i;
                while i < b.len() && b[i] != b' ' {
                    if b[i] == b'"' || b[i] == b'=' {
                        return Err(format!(
                            "logfmt syntax error at pos {}: unexpected '{}'",
                            i + 1,
                            b[i] as char
                        ));
                    }
                    i += 1;
                }
                value = s[vs..i].to_string();
            }
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(format!("duplicate key: {key}"));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// Limits that shape search parsing (from the config).
#[derive(Debug, Clone, Copy)]
pub struct SearchLimits {
    pub default_limit: u32,
    pub max_limit: u32,
    pub default_spss: u32,
    pub max_spss: u32,
    /// Newest data visible to search: `now - cutoff` (Tempo: 30 s).
    pub query_end_cutoff_ns: u64,
    /// Longest allowed `end - start` (Tempo: 168h).
    pub max_duration_ns: u64,
    /// Window used when neither start nor end is given (Tempo: 15m).
    pub default_window_ns: u64,
}

/// A parsed `/api/search` request.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub q: Option<String>,
    pub tags: Vec<(String, String)>,
    pub min_duration_ns: Option<u64>,
    pub max_duration_ns: Option<u64>,
    pub limit: u32,
    pub spss: u32,
    /// Window in unix nanoseconds, already clamped and defaulted.
    pub start_ns: u64,
    pub end_ns: u64,
}

fn get<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn parse_u32(params: &[(String, String)], key: &str) -> Result<Option<u32>, String> {
    match get(params, key) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
            format!("invalid {key}: strconv.ParseUint: parsing \"{v}\": invalid syntax")
        }),
    }
}

/// Parse and check `start`/`end` (unix seconds) into a nanosecond window, Tempo-style.
pub fn parse_window(
    params: &[(String, String)],
    now_ns: u64,
    lim: &SearchLimits,
) -> Result<(u64, u64), String> {
    let start = parse_u32(params, "start")?.unwrap_or(0);
    let end = parse_u32(params, "end")?.unwrap_or(0);
    let latest = now_ns.saturating_sub(lim.query_end_cutoff_ns);
    if start == 0 && end == 0 {
        return Ok((latest.saturating_sub(lim.default_window_ns), latest));
    }
    if end <= start {
        return Err(format!(
            "http parameter start must be before end. received start={start} end={end}"
        ));
    }
    let (s, e) = (
        u64::from(start) * 1_000_000_000,
        u64::from(end) * 1_000_000_000,
    );
    if e - s > lim.max_duration_ns {
        return Err(format!(
            "range specified by start and end exceeds {}. received start={start} end={end}",
            format_go_duration(lim.max_duration_ns as i64)
        ));
    }
    Ok((s, e.min(latest)))
}

/// Parse a `/api/search` query string (already split into pairs).
pub fn parse_search(
    params: &[(String, String)],
    now_ns: u64,
    lim: &SearchLimits,
) -> Result<SearchRequest, String> {
    let q = get(params, "q")
        .filter(|q| !q.trim().is_empty())
        .map(str::to_string);
    let tags_raw = get(params, "tags").filter(|t| !t.trim().is_empty());
    if q.is_some() && tags_raw.is_some() {
        return Err("invalid request: can't specify tags and q in the same query".to_string());
    }
    let mut tags = match tags_raw {
        Some(t) => parse_logfmt(t).map_err(|e| format!("invalid tags: {e}"))?,
        None => Vec::new(),
    };
    let known = [
        "q",
        "tags",
        "minDuration",
        "maxDuration",
        "limit",
        "start",
        "end",
        "spss",
    ];
    let legacy = ["q", "tags", "start", "end"]
        .iter()
        .all(|k| get(params, k).is_none());
    if legacy {
        for (k, v) in params {
            if !known.contains(&k.as_str()) && !tags.iter().any(|(tk, _)| tk == k) {
                tags.push((k.clone(), v.clone()));
            }
        }
    }
    let dur = |key: &str| -> Result<Option<u64>, String> {
        match get(params, key) {
            None | Some("") => Ok(None),
            Some(v) => {
                let ns = parse_go_duration(v).map_err(|e| format!("invalid {key}: {e}"))?;
                Ok(Some(ns.max(0) as u64 / 1_000_000 * 1_000_000))
            }
        }
    };
    let min_duration_ns = dur("minDuration")?;
    let max_duration_ns = dur("maxDuration")?;
    if let (Some(a), Some(b)) = (min_duration_ns, max_duration_ns)
        && b != 0
        && a > b
    {
        return Err("invalid maxDuration: must be greater than minDuration".to_string());
    }
    let limit = match get(params, "limit") {
        None | Some("") => lim.default_limit,
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| {
                format!("invalid limit: strconv.Atoi: parsing \"{v}\": invalid syntax")
            })?;
            if n <= 0 {
                return Err("invalid limit: must be a positive number".to_string());
            }
            if n > i64::from(lim.max_limit) {
                return Err(format!("limit {n} exceeds max limit {}", lim.max_limit));
            }
            n as u32
        }
    };
    let spss = match parse_u32(params, "spss")? {
        None => lim.default_spss,
        Some(n) if n > lim.max_spss => {
            return Err(format!(
                "spans per span set exceeds {}. received {n}",
                lim.max_spss
            ));
        }
        Some(n) => n,
    };
    let (start_ns, end_ns) = parse_window(params, now_ns, lim)?;
    Ok(SearchRequest {
        q,
        tags,
        min_duration_ns,
        max_duration_ns,
        limit,
        spss,
        start_ns,
        end_ns,
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::simple("a=b c=d", vec![("a", "b"), ("c", "d")])]
    #[case::quoted("k=\"v with space\"", vec![("k", "v with space")])]
    #[case::escaped("k=\"a\\\"b\"", vec![("k", "a\"b")])]
    #[case::empty("", vec![])]
    #[case::spaces("  a=1   ", vec![("a", "1")])]
    #[case::bare_key("flag", vec![("flag", "")])]
    fn logfmt_ok(#[case] s: &str, #[case] want: Vec<(&str, &str)>) {
        let got = parse_logfmt(s).unwrap();
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[rstest]
    #[case::dup("a=1 a=2")]
    #[case::unterminated("a=\"open")]
    #[case::eq_first("=x")]
    #[case::quote_in_value("a=b\"c")]
    fn logfmt_bad(#[case] s: &str) {
        assert!(parse_logfmt(s).is_err());
    }

    fn lim() -> SearchLimits {
        SearchLimits {
            default_limit: 20,
            max_limit: 10_000,
            default_spss: 3,
            max_spss: 100,
            query_end_cutoff_ns: 0,
            max_duration_ns: 168 * 3600 * 1_000_000_000,
            default_window_ns: 15 * 60 * 1_000_000_000,
        }
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const NOW: u64 = 1_700_000_000_000_000_000;

    #[rstest]
    #[case::q_and_tags(&[("q", "{}"), ("tags", "a=b")], "invalid request: can't specify tags and q in the same query")]
    #[case::limit_zero(&[("limit", "0")], "invalid limit: must be a positive number")]
    #[case::limit_big(&[("limit", "999999999")], "limit 999999999 exceeds max limit 10000")]
    #[case::start_after_end(&[("start", "20"), ("end", "10")], "http parameter start must be before end. received start=20 end=10")]
    #[case::only_start(&[("start", "10")], "http parameter start must be before end. received start=10 end=0")]
    #[case::bad_min(&[("minDuration", "fast")], "invalid minDuration: time: invalid duration \"fast\"")]
    #[case::spss(&[("spss", "1000")], "spans per span set exceeds 100. received 1000")]
    #[case::min_gt_max(&[("minDuration", "2s"), ("maxDuration", "1s")], "invalid maxDuration: must be greater than minDuration")]
    #[case::bad_tags(&[("tags", "a=1 a=2")], "invalid tags: duplicate key: a")]
    fn search_errors(#[case] pairs: &[(&str, &str)], #[case] msg: &str) {
        assert_eq!(parse_search(&p(pairs), NOW, &lim()).unwrap_err(), msg);
    }

    #[test]
    fn search_defaults() {
        let r = parse_search(&p(&[]), NOW, &lim()).unwrap();
        assert_eq!((r.limit, r.spss), (20, 3));
        assert_eq!(r.end_ns, NOW);
        assert_eq!(r.start_ns, NOW - 15 * 60 * 1_000_000_000);
    }

    #[test]
    fn legacy_params_become_tags() {
        let r = parse_search(&p(&[("service.name", "x"), ("limit", "5")]), NOW, &lim()).unwrap();
        assert_eq!(r.tags, vec![("service.name".to_string(), "x".to_string())]);
        assert_eq!(r.limit, 5);
    }

    #[test]
    fn window_and_durations() {
        let r = parse_search(
            &p(&[("start", "100"), ("end", "200"), ("minDuration", "1.5ms")]),
            NOW,
            &lim(),
        )
        .unwrap();
        assert_eq!((r.start_ns, r.end_ns), (100_000_000_000, 200_000_000_000));
        assert_eq!(r.min_duration_ns, Some(1_000_000));
    }
}
