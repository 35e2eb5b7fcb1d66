//! Durations in Go's notation (`300ms`, `1.5h`, `2h45m`), the one notation Sonde reads and
//! writes: in configuration files, in flags and in the Tempo API's query parameters. No
//! well-kept crate parses Go's grammar (fractions, `µs`, compound units) exactly, so this is
//! written here, once.
use std::time::Duration;

/// Parse a Go duration (`300ms`, `1.5h`, `2h45m`, `-1s`, `0`) into nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            u => return Err(format!("time: unknown unit \"{u}\" in duration \"{s}\"")),
        };
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let v = total.round() as i64;
    Ok(if neg { -v } else { v })
}

/// Format nanoseconds the way Go prints a `time.Duration` (`1.5s`, `100ms`, `2h0m0s`).
pub fn format_go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    let frac = |v: u64, div: u64| {
        let whole = v / div;
        let rem = v % div;
        if rem == 0 {
            whole.to_string()
        } else {
            let width = div.to_string().len() - 1;
            let s = format!("{rem:0width$}");
            format!("{whole}.{}", s.trim_end_matches('0'))
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let h = u / 3_600_000_000_000;
    let m = (u / 60_000_000_000) % 60;
    let s = frac(u % 60_000_000_000, 1_000_000_000);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

/// Parse a configuration duration: Go's notation, not negative.
pub fn parse(s: &str) -> Result<Duration, String> {
    let ns = parse_go_duration(s.trim())?;
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| format!("must not be negative, got {s:?}"))
}

/// The shortest exact form in Go's notation (`168h`, `1h30m`, `10s`, `250ms`, `0s`): what a
/// user would write, and what [`parse`] reads back to the same value.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    const UNITS: [(&str, u128); 6] = [
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    let mut out = String::new();
    let mut rest = ns;
    for (unit, size) in UNITS {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// `#[serde(with = "sonde_config::duration")]` for a [`Duration`] field written in Go's notation.
pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// See [`serialize`].
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    parse(&text).map_err(|e| {
        serde::de::Error::custom(format!("{e} (write durations like 250ms, 10s, 5m, 168h)"))
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::ms("100ms", 100_000_000)]
    #[case::frac("1.5s", 1_500_000_000)]
    #[case::compound("2h45m", 9_900_000_000_000)]
    #[case::neg("-1s", -1_000_000_000)]
    #[case::zero("0", 0)]
    #[case::micro("3µs", 3_000)]
    #[case::us("3us", 3_000)]
    #[case::ns("7ns", 7)]
    fn durations(#[case] s: &str, #[case] ns: i64) {
        assert_eq!(parse_go_duration(s), Ok(ns));
    }

    #[rstest]
    #[case::word("fast", "time: invalid duration \"fast\"")]
    #[case::empty("", "time: invalid duration \"\"")]
    #[case::no_unit("10", "time: missing unit in duration \"10\"")]
    #[case::bad_unit("10x", "time: unknown unit \"x\" in duration \"10x\"")]
    #[case::dot(".s", "time: invalid duration \".s\"")]
    fn bad_durations(#[case] s: &str, #[case] msg: &str) {
        assert_eq!(parse_go_duration(s).unwrap_err(), msg);
    }

    #[rstest]
    #[case::zero(0, "0s")]
    #[case::ns(5, "5ns")]
    #[case::ms(100_000_000, "100ms")]
    #[case::s(1_406_666_666, "1.406666666s")]
    #[case::h(604_800_000_000_000, "168h0m0s")]
    #[case::m(90_000_000_000, "1m30s")]
    fn format_durations(#[case] ns: i64, #[case] want: &str) {
        assert_eq!(format_go_duration(ns), want);
    }

    #[rstest]
    #[case::zero(Duration::ZERO, "0s")]
    #[case::week(Duration::from_secs(168 * 3600), "168h")]
    #[case::compound(Duration::from_secs(5400), "1h30m")]
    #[case::seconds(Duration::from_secs(10), "10s")]
    #[case::millis(Duration::from_millis(250), "250ms")]
    #[case::mixed(Duration::from_millis(1500), "1s500ms")]
    #[case::nanos(Duration::from_nanos(1_001), "1us1ns")]
    fn config_form_is_short_and_reads_back(#[case] d: Duration, #[case] text: &str) {
        assert_eq!(format(d), text);
        assert_eq!(parse(text), Ok(d));
    }

    #[rstest]
    #[case::negative("-1s", "must not be negative")]
    #[case::bare_number("10", "missing unit")]
    #[case::word("forever", "invalid duration")]
    #[case::days("7d", "unknown unit")]
    fn config_errors_say_why(#[case] text: &str, #[case] why: &str) {
        let e = parse(text).unwrap_err();
        assert!(e.contains(why), "{e}");
    }

    #[test]
    fn serde_round_trip_and_clear_error() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct S {
            #[serde(with = "crate::duration")]
            d: Duration,
        }
        let yaml = serde_yaml::to_string(&S {
            d: Duration::from_secs(60),
        })
        .unwrap();
        assert_eq!(yaml, "d: 1m\n");
        assert_eq!(
            serde_yaml::from_str::<S>("d: 1.5s").unwrap().d,
            Duration::from_millis(1500)
        );
        let e = serde_yaml::from_str::<S>("d: 5 minutes")
            .unwrap_err()
            .to_string();
        assert!(e.contains("250ms, 10s"), "{e}");
    }
}
