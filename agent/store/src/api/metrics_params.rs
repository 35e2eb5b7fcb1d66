//! Query-string parsing for the TraceQL metrics API, as Tempo's `ParseQueryRangeRequest`:
//! `q`/`query`, `start`/`end` (unix seconds, nanoseconds, fractional seconds or RFC 3339),
//! `since` (Prometheus duration, default 1h), `step` (seconds or Go duration, default from the
//! range), `exemplars`, `maxSeries`; with Tempo's error texts.
use sonde_config::duration::parse_go_duration;
use sonde_traceql::metrics::default_step;

const S: i128 = 1_000_000_000;

/// Parsed parameters, times in unix nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsParams {
    pub query: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// Absent on instant queries.
    pub step_ns: Option<u64>,
    pub exemplars: u32,
    pub max_series: u32,
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter()
        .find(|(pk, _)| pk == k)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Tempo wraps these in an httpgrpc error, whose text is what its 400 body carries.
fn rpc400(msg: String) -> String {
    format!("rpc error: code = Code(400) desc = {msg}")
}

/// Parses the parameters of `/api/metrics/query_range` (`range`) or `/api/metrics/query`.
pub fn parse(p: &[(String, String)], now_ns: u64, range: bool) -> Result<MetricsParams, String> {
    // `q` wins over `query` (Prometheus' name, which Grafana once sent).
    let query = get(p, "q").or(get(p, "query")).unwrap_or("").to_string();
    let (start_ns, end_ns) = bounds(p, now_ns).map_err(rpc400)?;
    let step_ns = if range {
        Some(match get(p, "step") {
            None => default_step(start_ns, end_ns),
            Some(v) => seconds_or_duration(v).map_err(rpc400)?,
        })
    } else {
        None
    };
    let uint = |k: &str| get(p, k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    Ok(MetricsParams {
        query,
        start_ns,
        end_ns,
        step_ns,
        exemplars: uint("exemplars"),
        max_series: uint("maxSeries"),
    })
}

/// `start`, `end` and `since`: end defaults to now, start to `min(end, now) - since`.
fn bounds(p: &[(String, String)], now_ns: u64) -> Result<(u64, u64), String> {
    let since = match get(p, "since") {
        None => 3600 * S,
        Some(v) => {
            prom_duration(v).map_err(|e| format!("could not parse 'since' parameter: {e}"))?
        }
    };
    let now = i128::from(now_ns);
    let end = match get(p, "end") {
        None => now,
        Some(v) => timestamp(v).map_err(|e| format!("could not parse 'end' parameter: {e}"))?,
    };
    let start = match get(p, "start") {
        None => end.min(now) - since,
        Some(v) => timestamp(v).map_err(|e| format!("could not parse 'start' parameter: {e}"))?,
    };
    let clamp = |t: i128| u64::try_from(t.max(0)).unwrap_or(u64::MAX);
    Ok((clamp(start), clamp(end)))
}

/// Unix seconds (up to 10 digits), nanoseconds (more digits), fractional seconds (kept to the
/// millisecond) or RFC 3339, in nanoseconds.
pub fn timestamp(v: &str) -> Result<i128, String> {
    if v.contains('.')
        && let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        let secs = f.trunc();
        let ms = ((f - secs) * 1000.0).round();
        return Ok(secs as i128 * S + ms as i128 * 1_000_000);
    }
    match v.parse::<i64>() {
        Ok(n) if v.len() <= 10 => Ok(i128::from(n) * S),
        Ok(n) => Ok(i128::from(n)),
        Err(e) => rfc3339(v).ok_or_else(|| {
            let why = if matches!(
                e.kind(),
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
            ) {
                "value out of range"
            } else {
                "invalid syntax"
            };
            format!("strconv.ParseInt: parsing \"{v}\": {why}")
        }),
    }
}

/// `2023-10-15T10:00:00Z`, `2023-10-15T10:00:00.5+02:00` → unix nanoseconds.
fn rfc3339(v: &str) -> Option<i128> {
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i128> {
        let s = v.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ns: i128 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = v.get(start..i)?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        frac_ns = digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32);
    }
    let offset = match v.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6
            && matches!(tz.as_bytes()[0], b'+' | b'-')
            && tz.as_bytes()[3] == b':' =>
        {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = (oh * 3600 + om * 60) * S;
            if tz.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + s) * S + frac_ns - offset)
}

/// A Prometheus duration (`90s`, `1h30m`, `2d`, `1w`, `1y`, `0`), in nanoseconds. Units come
/// largest first, each at most once, as Prometheus requires.
pub fn prom_duration(v: &str) -> Result<i128, String> {
    let invalid = || format!("not a valid duration string: \"{v}\"");
    if v == "0" {
        return Ok(0);
    }
    if v.is_empty() {
        return Err(invalid());
    }
    let mut rest = v;
    let mut total: i128 = 0;
    let mut last: Option<u8> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let n: i128 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        // (rank: larger units first, nanoseconds per unit, length of the unit)
        let (rank, scale, len) = if rest.starts_with("ms") {
            (6, 1_000_000, 2)
        } else {
            match rest.as_bytes().first() {
                Some(b'y') => (0, 365 * 86_400 * S, 1),
                Some(b'w') => (1, 7 * 86_400 * S, 1),
                Some(b'd') => (2, 86_400 * S, 1),
                Some(b'h') => (3, 3600 * S, 1),
                Some(b'm') => (4, 60 * S, 1),
                Some(b's') => (5, S, 1),
                _ => return Err(invalid()),
            }
        };
        if last.is_some_and(|l| rank <= l) {
            return Err(invalid());
        }
        last = Some(rank);
        total = n
            .checked_mul(scale)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(invalid)?;
        rest = &rest[len..];
    }
    if total > i128::from(i64::MAX) {
        return Err(invalid());
    }
    Ok(total)
}

/// `step`: float seconds (`30`, `0.5`) or a Go duration (`30s`, `1m`).
fn seconds_or_duration(v: &str) -> Result<u64, String> {
    let invalid = || format!("cannot parse \"{v}\" to a valid duration");
    if let Ok(secs) = v.parse::<f64>() {
        let ns = secs * 1e9;
        if !ns.is_finite() || ns.abs() > i64::MAX as f64 {
            return Err(format!(
                "cannot parse \"{v}\" to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns.max(0.0) as u64);
    }
    parse_go_duration(v)
        .map(|ns| ns.max(0) as u64)
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const NOW: u64 = 1_700_000_000 * 1_000_000_000;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[rstest]
    #[case::seconds("1700000000", 1_700_000_000 * S)]
    #[case::nanos("1700000000123456789", 1_700_000_000_123_456_789)]
    #[case::fraction_to_ms("1700000000.5004", 1_700_000_000 * S + 500_000_000)]
    #[case::rfc3339("2023-11-14T22:13:20Z", 1_700_000_000 * S)]
    #[case::rfc3339_offset("2023-11-15T00:13:20.25+02:00", 1_700_000_000 * S + 250_000_000)]
    #[case::epoch("1970-01-01T00:00:00Z", 0)]
    fn timestamps(#[case] v: &str, #[case] want: i128) {
        assert_eq!(timestamp(v), Ok(want));
    }

    #[rstest]
    #[case::word("yesterday", "strconv.ParseInt: parsing \"yesterday\": invalid syntax")]
    #[case::overflow(
        "99999999999999999999",
        "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
    )]
    #[case::bad_date(
        "2023-13-14T22:13:20Z",
        "strconv.ParseInt: parsing \"2023-13-14T22:13:20Z\": invalid syntax"
    )]
    fn bad_timestamps(#[case] v: &str, #[case] want: &str) {
        assert_eq!(timestamp(v), Err(want.to_string()));
    }

    #[rstest]
    #[case::minutes("15m", 15 * 60 * S)]
    #[case::compound("1h30m", 90 * 60 * S)]
    #[case::days("2d", 2 * 86_400 * S)]
    #[case::millis("1s500ms", 1_500_000_000)]
    #[case::zero("0", 0)]
    fn prom_durations(#[case] v: &str, #[case] want: i128) {
        assert_eq!(prom_duration(v), Ok(want));
    }

    #[rstest]
    #[case::fraction("1.5h")]
    #[case::order("30m1h")]
    #[case::unit("10x")]
    #[case::no_unit("10")]
    #[case::empty_number("h")]
    fn bad_prom_durations(#[case] v: &str) {
        assert_eq!(
            prom_duration(v),
            Err(format!("not a valid duration string: \"{v}\""))
        );
    }

    #[test]
    fn defaults_are_the_last_hour_and_its_step() {
        let got = parse(&p(&[("q", "{} | rate()")]), NOW, true).unwrap();
        assert_eq!(got.end_ns, NOW);
        assert_eq!(got.start_ns, NOW - 3600 * 1_000_000_000);
        assert_eq!(got.step_ns, Some(15_000_000_000));
        let got = parse(
            &p(&[("query", "a"), ("q", "b"), ("since", "15m")]),
            NOW,
            false,
        )
        .unwrap();
        assert_eq!(got.query, "b");
        assert_eq!(got.start_ns, NOW - 900 * 1_000_000_000);
        assert_eq!(got.step_ns, None);
    }

    #[test]
    fn a_future_end_keeps_since_from_now() {
        let end = (NOW / 1_000_000_000 + 600).to_string();
        let got = parse(&p(&[("end", &end), ("since", "1h")]), NOW, true).unwrap();
        assert_eq!(got.start_ns, NOW - 3600 * 1_000_000_000);
    }

    #[rstest]
    #[case::step_seconds("30", 30_000_000_000)]
    #[case::step_fraction("0.5", 500_000_000)]
    #[case::step_go("1m", 60_000_000_000)]
    fn steps(#[case] v: &str, #[case] want: u64) {
        let got = parse(&p(&[("step", v)]), NOW, true).unwrap();
        assert_eq!(got.step_ns, Some(want));
    }

    #[rstest]
    #[case::start(&[("start", "x")], "rpc error: code = Code(400) desc = could not parse 'start' parameter: strconv.ParseInt: parsing \"x\": invalid syntax")]
    #[case::end(&[("end", "x")], "rpc error: code = Code(400) desc = could not parse 'end' parameter: strconv.ParseInt: parsing \"x\": invalid syntax")]
    #[case::since(&[("since", "1 hour")], "rpc error: code = Code(400) desc = could not parse 'since' parameter: not a valid duration string: \"1 hour\"")]
    #[case::step(&[("step", "fast")], "rpc error: code = Code(400) desc = cannot parse \"fast\" to a valid duration")]
    fn errors(#[case] pairs: &[(&str, &str)], #[case] want: &str) {
        assert_eq!(parse(&p(pairs), NOW, true), Err(want.to_string()));
    }
}
