//! Metrics functions over a fixed data set: three traces, seven spans, a 60 s range in 10 s
//! steps. Every expected value below is worked out by hand from the table in `data()`.
use std::borrow::Cow;

use rstest::rstest;

use super::finish::log2_quantile;
use super::*;
use crate::{AttrScope, Intrinsic, KindValue, StatusValue, TraceView};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

struct Span {
    id: &'static str,
    name: &'static str,
    service: Option<&'static str>,
    /// Seconds after 1000 s (the range starts at 1000 s).
    at: u64,
    dur: u64,
    kind: KindValue,
    status: StatusValue,
    code: Option<i64>,
}

struct Trace {
    id: &'static str,
    spans: Vec<Span>,
}

impl TraceView for Trace {
    fn span_count(&self) -> usize {
        self.spans.len()
    }

    fn attribute(&self, span: usize, scope: AttrScope, name: &str) -> Option<Value<'_>> {
        let s = &self.spans[span];
        match (scope, name) {
            (AttrScope::Resource, "service.name") => {
                s.service.map(|v| Value::Str(Cow::Borrowed(v)))
            }
            (AttrScope::Span, "http.status_code") => s.code.map(Value::Int),
            _ => None,
        }
    }

    fn intrinsic(&self, span: usize, which: Intrinsic) -> Option<Value<'_>> {
        let s = &self.spans[span];
        Some(match which {
            Intrinsic::Name => Value::Str(Cow::Borrowed(s.name)),
            Intrinsic::Kind => Value::Kind(s.kind),
            Intrinsic::Status => Value::Status(s.status),
            Intrinsic::Duration => Value::Duration(s.dur),
            Intrinsic::TraceId => Value::Str(Cow::Borrowed(self.id)),
            Intrinsic::SpanId => Value::Str(Cow::Borrowed(s.id)),
            _ => return None,
        })
    }

    fn parent_index(&self, span: usize) -> Option<usize> {
        (span > 0).then_some(0)
    }

    fn start_unix_nanos(&self, span: usize) -> u64 {
        (1000 + self.spans[span].at) * S
    }

    fn end_unix_nanos(&self, span: usize) -> u64 {
        self.start_unix_nanos(span) + self.spans[span].dur
    }

    fn resource_key(&self, span: usize) -> Option<(u64, u32)> {
        // One resource per service and trace.
        let trace = u64::from_str_radix(&self.id[16..], 16).ok()?;
        let service = match self.spans[span].service {
            None => 0,
            Some(s) => u32::from(s.as_bytes()[0]),
        };
        Some((trace, service))
    }

    fn for_each_attribute(&self, span: usize, f: &mut dyn FnMut(AttrScope, &str, Value<'_>)) {
        let s = &self.spans[span];
        if let Some(v) = s.service {
            f(
                AttrScope::Resource,
                "service.name",
                Value::Str(Cow::Borrowed(v)),
            );
        }
        if let Some(c) = s.code {
            f(AttrScope::Span, "http.status_code", Value::Int(c));
        }
    }
}

#[expect(clippy::too_many_arguments, reason = "one table row")]
fn span(
    id: &'static str,
    name: &'static str,
    service: Option<&'static str>,
    at: u64,
    dur_ms: u64,
    kind: KindValue,
    status: StatusValue,
    code: Option<i64>,
) -> Span {
    Span {
        id,
        name,
        service,
        at,
        dur: dur_ms * MS,
        kind,
        status,
        code,
    }
}

/// | trace | span | service | start (s after 1000) | duration | kind | status | code |
/// | t1 | GET / | a | 1 | 100 ms | server | ok | 200 |
/// | t1 | call | b | 5 | 300 ms | client | error | 500 |
/// | t1 | edge | a | 0 (= range start: not counted) | 1 ms | server | ok | - |
/// | t2 | GET / | a | 10 (interval boundary: first interval) | 1 s | server | ok | 200 |
/// | t2 | GET /x | a | 25 | 50 ms | server | unset | 404 |
/// | t3 | POST | b | 59 | 2 s | server | error | 500 |
/// | t3 | work | - | 30 | 10 ms | internal | unset | - |
/// | t3 | late | b | 61 (after the range: not counted) | 5 ms | server | ok | - |
fn data() -> Vec<Trace> {
    use KindValue::{Client, Internal, Server};
    use StatusValue::{Error, Ok, Unset};
    vec![
        Trace {
            id: "00000000000000000000000000000001",
            spans: vec![
                span("01", "GET /", Some("a"), 1, 100, Server, Ok, Some(200)),
                span("02", "call", Some("b"), 5, 300, Client, Error, Some(500)),
                span("03", "edge", Some("a"), 0, 1, Server, Ok, None),
            ],
        },
        Trace {
            id: "00000000000000000000000000000002",
            spans: vec![
                span("11", "GET /", Some("a"), 10, 1000, Server, Ok, Some(200)),
                span("12", "GET /x", Some("a"), 25, 50, Server, Unset, Some(404)),
            ],
        },
        Trace {
            id: "00000000000000000000000000000003",
            spans: vec![
                span("21", "POST", Some("b"), 59, 2000, Server, Error, Some(500)),
                span("22", "work", None, 30, 10, Internal, Unset, None),
                span("23", "late", Some("b"), 61, 5, Server, Ok, None),
            ],
        },
    ]
}

fn req() -> MetricsRequest {
    MetricsRequest {
        start_ns: 1000 * S,
        end_ns: 1060 * S,
        step_ns: 10 * S,
        instant: false,
        exemplars: 0,
        max_series: 1000,
    }
}

fn run_with(q: &str, req: &MetricsRequest) -> MetricsResult {
    let mq = parse_metrics(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    let mut acc = mq.partial(req);
    for t in data() {
        mq.observe(&t, &mut acc);
    }
    mq.finish(acc)
}

fn show(v: &LabelValue) -> String {
    match v {
        LabelValue::Str(s) => s.clone(),
        LabelValue::Int(n) => n.to_string(),
        LabelValue::Float(f) => f.to_string(),
        LabelValue::Bool(b) => b.to_string(),
    }
}

/// Series as `{k=v,...}` and their values per interval (`-` = no sample).
fn table(r: &MetricsResult, req: &MetricsRequest) -> Vec<(String, Vec<Option<f64>>)> {
    r.series
        .iter()
        .map(|s| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={}", show(v)))
                .collect();
            let values = (0..req.intervals())
                .map(|i| {
                    s.samples
                        .iter()
                        .find(|(t, _)| *t == req.timestamp_ms(i))
                        .map(|(_, v)| *v)
                })
                .collect();
            (format!("{{{}}}", labels.join(",")), values)
        })
        .collect()
}

const N: Option<f64> = None;

fn close(got: &[(String, Vec<Option<f64>>)], want: &[(&str, Vec<Option<f64>>)]) {
    assert_eq!(
        got.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
        want.iter().map(|(l, _)| *l).collect::<Vec<_>>()
    );
    for ((l, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "{l}");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{l}[{i}]: {a} != {b}"),
                _ => assert_eq!(a, b, "{l}[{i}]"),
            }
        }
    }
}

fn s(v: f64) -> Option<f64> {
    Some(v)
}

#[rstest]
#[case::count("{} | count_over_time()", vec![
    ("{__name__=count_over_time}", vec![s(3.0), s(0.0), s(2.0), s(0.0), s(0.0), s(1.0)]),
])]
#[case::rate_divides_by_step_seconds("{} | rate()", vec![
    ("{__name__=rate}", vec![s(0.3), s(0.0), s(0.2), s(0.0), s(0.0), s(0.1)]),
])]
#[case::rate_by_service_nil_group_last("{} | rate() by (resource.service.name)", vec![
    ("{resource.service.name=a}", vec![s(0.2), s(0.0), s(0.1), s(0.0), s(0.0), s(0.0)]),
    ("{resource.service.name=b}", vec![s(0.1), s(0.0), s(0.0), s(0.0), s(0.0), s(0.1)]),
    ("{resource.service.name=nil}", vec![s(0.0), s(0.0), s(0.1), s(0.0), s(0.0), s(0.0)]),
])]
#[case::filtered("{ status = error } | count_over_time() by (resource.service.name)", vec![
    ("{resource.service.name=b}", vec![s(1.0), s(0.0), s(0.0), s(0.0), s(0.0), s(1.0)]),
])]
#[case::two_labels_drop_nil("{ kind = server } | count_over_time() by (resource.service.name, span.http.status_code)", vec![
    ("{resource.service.name=a,span.http.status_code=200}", vec![s(2.0), s(0.0), s(0.0), s(0.0), s(0.0), s(0.0)]),
    ("{resource.service.name=a,span.http.status_code=404}", vec![s(0.0), s(0.0), s(1.0), s(0.0), s(0.0), s(0.0)]),
    ("{resource.service.name=b,span.http.status_code=500}", vec![s(0.0), s(0.0), s(0.0), s(0.0), s(0.0), s(1.0)]),
])]
#[case::label_as_written("{ resource.service.name = \"b\" } | count_over_time() by (span:name)", vec![
    ("{span:name=POST}", vec![s(0.0), s(0.0), s(0.0), s(0.0), s(0.0), s(1.0)]),
    ("{span:name=call}", vec![s(1.0), s(0.0), s(0.0), s(0.0), s(0.0), s(0.0)]),
])]
#[case::sum_seconds("{} | sum_over_time(duration)", vec![
    ("{__name__=sum_over_time}", vec![s(1.4), N, s(0.06), N, N, s(2.0)]),
])]
#[case::min("{} | min_over_time(duration)", vec![
    ("{__name__=min_over_time}", vec![s(0.1), N, s(0.01), N, N, s(2.0)]),
])]
#[case::max_by("{} | max_over_time(duration) by (resource.service.name)", vec![
    ("{resource.service.name=a}", vec![s(1.0), N, s(0.05), N, N, N]),
    ("{resource.service.name=b}", vec![s(0.3), N, N, N, N, s(2.0)]),
    ("{resource.service.name=nil}", vec![N, N, s(0.01), N, N, N]),
])]
#[case::avg_skips_spans_without_value("{} | avg_over_time(span.http.status_code)", vec![
    ("{__name__=avg_over_time}", vec![s(300.0), N, s(404.0), N, N, s(500.0)]),
])]
#[case::quantiles_from_power_of_two_buckets("{} | quantile_over_time(duration, .5, .9)", vec![
    ("{p=0.5}", vec![s(0.536870912), s(0.0), s(0.016777216), s(0.0), s(0.0), s(2.147483648)]),
    ("{p=0.9}", vec![s(1.073741824), s(0.0), s(0.067108864), s(0.0), s(0.0), s(2.147483648)]),
])]
#[case::histogram("{ resource.service.name = \"a\" } | histogram_over_time(duration)", vec![
    ("{__bucket=0.067108864}", vec![s(0.0), s(0.0), s(1.0), s(0.0), s(0.0), s(0.0)]),
    ("{__bucket=0.134217728}", vec![s(1.0), s(0.0), s(0.0), s(0.0), s(0.0), s(0.0)]),
    ("{__bucket=1.073741824}", vec![s(1.0), s(0.0), s(0.0), s(0.0), s(0.0), s(0.0)]),
])]
#[case::filter_second_stage("{} | count_over_time() by (resource.service.name) > 1", vec![
    ("{resource.service.name=a}", vec![s(2.0), N, N, N, N, N]),
])]
#[case::topk_per_interval("{ status != unset } | max_over_time(duration) by (resource.service.name) | topk(1)", vec![
    ("{resource.service.name=a}", vec![s(1.0), N, N, N, N, N]),
    ("{resource.service.name=b}", vec![N, N, N, N, N, s(2.0)]),
])]
#[case::bottomk_per_interval("{} | max_over_time(duration) by (resource.service.name) | bottomk(1)", vec![
    ("{resource.service.name=b}", vec![s(0.3), N, N, N, N, s(2.0)]),
    ("{resource.service.name=nil}", vec![N, N, s(0.01), N, N, N]),
])]
#[case::structural("{ resource.service.name = \"b\" } >> { } | count_over_time()", vec![
    ("{__name__=count_over_time}", vec![s(0.0), s(0.0), s(1.0), s(0.0), s(0.0), s(0.0)]),
])]
#[case::nothing_matches("{ name = \"none\" } | rate()", vec![
    ("{__name__=rate}", vec![s(0.0), s(0.0), s(0.0), s(0.0), s(0.0), s(0.0)]),
])]
fn functions(#[case] q: &str, #[case] want: Vec<(&str, Vec<Option<f64>>)>) {
    let r = run_with(q, &req());
    close(&table(&r, &req()), &want);
    assert_eq!(r.truncated, None);
}

#[test]
fn no_data_gives_no_series() {
    let mq = parse_metrics("{} | rate()").unwrap();
    assert_eq!(mq.finish(mq.partial(&req())), MetricsResult::default());
}

#[test]
fn samples_are_stamped_with_interval_ends() {
    let r = run_with("{} | count_over_time()", &req());
    let stamps: Vec<i64> = r.series[0].samples.iter().map(|s| s.0).collect();
    assert_eq!(
        stamps,
        vec![
            1_010_000, 1_020_000, 1_030_000, 1_040_000, 1_050_000, 1_060_000
        ]
    );
}

#[test]
fn instant_is_one_interval_over_the_range() {
    let mut r = req();
    r.instant = true;
    r.step_ns = r.end_ns - r.start_ns;
    let got = run_with("{} | rate() by (resource.service.name)", &r);
    let values: Vec<(String, Vec<(i64, f64)>)> = got
        .series
        .iter()
        .map(|s| (show(&s.labels[0].1), s.samples.clone()))
        .collect();
    // a: 3 spans, b: 2, no service: 1; over 60 s.
    assert_eq!(
        values,
        vec![
            ("a".to_string(), vec![(1_060_000, 3.0 / 60.0)]),
            ("b".to_string(), vec![(1_060_000, 2.0 / 60.0)]),
            ("nil".to_string(), vec![(1_060_000, 1.0 / 60.0)]),
        ]
    );
}

#[test]
fn partials_merge_to_the_same_result() {
    for q in [
        "{} | rate() by (resource.service.name)",
        "{} | quantile_over_time(duration, .5, .99) by (kind)",
        "{} | avg_over_time(duration) by (status)",
        "{} | min_over_time(duration)",
        "{} | compare({ status = error })",
    ] {
        let mq = parse_metrics(q).unwrap();
        let mut whole = mq.partial(&req());
        let mut parts: Vec<Partial> = Vec::new();
        for t in data() {
            mq.observe(&t, &mut whole);
            let mut p = mq.partial(&req());
            mq.observe(&t, &mut p);
            parts.push(p);
        }
        let mut merged = mq.partial(&req());
        for p in parts.into_iter().rev() {
            merged.merge(p);
        }
        assert_eq!(merged.spans(), whole.spans(), "{q}");
        assert_eq!(mq.finish(merged), mq.finish(whole), "{q}");
    }
}

#[test]
fn compare_counts_values_inside_and_outside_the_selection() {
    let r = run_with("{} | compare({ status = error })", &req());
    let t = table(&r, &req());
    let get = |l: &str| t.iter().find(|(k, _)| k == l).map(|(_, v)| v.clone());
    let v = |xs: [f64; 6]| Some(xs.iter().map(|x| Some(*x)).collect::<Vec<_>>());
    assert_eq!(
        get("{__meta_type=selection,resource.service.name=b}"),
        v([1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    );
    assert_eq!(
        get("{__meta_type=baseline,resource.service.name=a}"),
        v([2.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    );
    assert_eq!(
        get("{__meta_type=baseline,kind=internal}"),
        v([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    );
    assert_eq!(
        get("{__meta_type=selection_total,status=nil}"),
        v([1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    );
    assert_eq!(
        get("{__meta_type=baseline_total,name=nil}"),
        v([2.0, 0.0, 2.0, 0.0, 0.0, 0.0])
    );
    // Errors are the selection, never the baseline.
    assert_eq!(get("{__meta_type=baseline,status=error}"), None);
    // Durations are not broken down.
    assert!(t.iter().all(|(k, _)| !k.contains("duration")));
}

#[test]
fn compare_keeps_the_top_n_values() {
    let r = run_with("{} | compare({ status = error }, 1)", &req());
    let names: Vec<String> = table(&r, &req())
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("{__meta_type=baseline,name="))
        .collect();
    // Baseline names: "GET /" twice, "GET /x" and "work" once.
    assert_eq!(names, vec!["{__meta_type=baseline,name=GET /}".to_string()]);
}

#[test]
fn compare_window_limits_the_selection() {
    // Only the error span in (1050 s, 1060 s] is selected; the one at 1005 s is baseline.
    let r = run_with(
        "{} | compare({ status = error }, 10, 1050000000000, 1060000000000)",
        &req(),
    );
    let t = table(&r, &req());
    let get = |l: &str| t.iter().find(|(k, _)| k == l).map(|(_, v)| v.clone());
    assert_eq!(
        get("{__meta_type=selection,status=error}"),
        Some(vec![s(0.0), s(0.0), s(0.0), s(0.0), s(0.0), s(1.0)])
    );
    assert_eq!(
        get("{__meta_type=baseline,status=error}"),
        Some(vec![s(1.0), s(0.0), s(0.0), s(0.0), s(0.0), s(0.0)])
    );
}

#[test]
fn exemplars_carry_the_sample_or_the_span_value() {
    let mut r = req();
    r.exemplars = 100;
    let got = run_with("{} | count_over_time() by (resource.service.name)", &r);
    // One exemplar per trace, from its first counted span: t1 → a at 1001 s, t2 → a at
    // 1010 s, t3 → b at 1059 s.
    let ex: Vec<(String, i64, f64, String)> = got
        .series
        .iter()
        .flat_map(|s| {
            s.exemplars.iter().map(|e| {
                let trace = e
                    .labels
                    .iter()
                    .find(|(k, _)| k == "trace:id")
                    .map(|(_, v)| show(v))
                    .unwrap_or_default();
                (show(&s.labels[0].1), e.timestamp_ms, e.value, trace)
            })
        })
        .collect();
    assert_eq!(
        ex,
        vec![
            (
                "a".into(),
                1_001_000,
                2.0,
                "00000000000000000000000000000001".into()
            ),
            (
                "a".into(),
                1_010_000,
                2.0,
                "00000000000000000000000000000002".into()
            ),
            (
                "b".into(),
                1_059_000,
                1.0,
                "00000000000000000000000000000003".into()
            ),
        ]
    );
    let got = run_with("{} | max_over_time(duration)", &r);
    let values: Vec<f64> = got.series[0].exemplars.iter().map(|e| e.value).collect();
    assert_eq!(values, vec![0.1, 1.0, 2.0]);
    r.exemplars = 0;
    let got = run_with("{} | max_over_time(duration)", &r);
    assert!(got.series[0].exemplars.is_empty());
}

#[test]
fn series_past_the_limit_are_dropped_and_reported() {
    let mut r = req();
    r.max_series = 2;
    let got = run_with("{} | count_over_time() by (name)", &r);
    assert_eq!(got.series.len(), 2);
    assert_eq!(got.truncated, Some(2));
}

#[rstest]
#[case::not_metrics("{ }", "not a metrics query")]
#[case::quantile_range(
    "{} | quantile_over_time(duration, 1.5)",
    "compiling query: quantile must be between 0 and 1: 1.5"
)]
#[case::too_many_groups(
    "{} | rate() by (.a, .b, .c, .d, .e, .f)",
    "compiling query: metrics group by 6 values not yet supported"
)]
#[case::histogram_groups(
    "{} | histogram_over_time(duration) by (.a, .b, .c, .d, .e)",
    "compiling query: metrics group by 5 values not yet supported"
)]
#[case::compare_top(
    "{} | compare({ status = error }, 0)",
    "compiling query: compare() top number of values must be integer greater than 0"
)]
#[case::compare_window(
    "{} | compare({ status = error }, 5, 20, 10)",
    "compiling query: compare() end timestamp must be greater than start timestamp"
)]
#[case::math(
    "({} | rate()) + ({} | rate())",
    "compiling query: metrics math not yet supported"
)]
#[case::syntax(
    "{} | rate(",
    "parse error at line 1, col 11: syntax error: unexpected $end"
)]
fn bad_queries(#[case] q: &str, #[case] want: &str) {
    let err = parse_metrics(q).expect_err(q);
    assert_eq!(err.to_string(), want);
}

#[test]
fn exemplars_hint() {
    let q = |s: &str| parse_metrics(s).map(|m| m.exemplars_hint()).ok().flatten();
    assert_eq!(q("{} | rate() with (exemplars = 7)"), Some(7));
    assert_eq!(q("{} | rate() with (exemplars = false)"), Some(0));
    assert_eq!(q("{} | rate()"), None);
}

#[rstest]
#[case::hour(3600, 15 * S)]
#[case::day(86_400, 300 * S)]
#[case::half_minute(30, 100 * MS)]
#[case::ten_seconds(10, 50 * MS)]
#[case::six_hours(6 * 3600, 60 * S)]
fn default_steps(#[case] range_s: u64, #[case] want: u64) {
    assert_eq!(
        default_step(1_700_000_000 * S, (1_700_000_000 + range_s) * S),
        want
    );
}

#[test]
fn alignment_adds_an_interval_before_the_start() {
    let mut r = MetricsRequest {
        start_ns: 1000 * S,
        end_ns: 4600 * S + 1,
        step_ns: 15 * S,
        ..req()
    };
    align(&mut r);
    assert_eq!((r.start_ns, r.end_ns), (975 * S, 4605 * S));
    let mut i = MetricsRequest { instant: true, ..r };
    align(&mut i);
    assert_eq!(i, MetricsRequest { instant: true, ..r });
}

#[rstest]
#[case::after_start(1000 * S + 1, Some(0))]
#[case::on_boundary(1010 * S, Some(0))]
#[case::just_after(1010 * S + 1, Some(1))]
#[case::at_end(1060 * S, Some(5))]
#[case::at_start(1000 * S, None)]
#[case::after_end(1060 * S + 1, None)]
fn intervals_are_right_closed(#[case] ts: u64, #[case] want: Option<usize>) {
    assert_eq!(req().interval(ts), want);
}

#[rstest]
#[case::exact(0.5, &[(1.0, 1.0), (2.0, 1.0), (4.0, 2.0)], 2.0)]
#[case::interpolated(0.6, &[(1.0, 1.0), (2.0, 1.0), (4.0, 2.0)], 2f64.powf(1.5))]
#[case::inside_the_first_bucket(0.25, &[(8.0, 4.0)], 2f64.powf(2.25))]
#[case::max(1.0, &[(1.0, 1.0), (2.0, 1.0), (4.0, 2.0)], 4.0)]
#[case::empty(0.5, &[], 0.0)]
fn quantile_interpolation(#[case] p: f64, #[case] buckets: &[(f64, f64)], #[case] want: f64) {
    assert!((log2_quantile(p, buckets) - want).abs() < 1e-12);
}

#[test]
fn compare_keeps_an_attributes_first_values_and_counts_every_span_in_totals() {
    let spans: Vec<Span> = (0..600)
        .map(|i| {
            let mut s = span(
                "01",
                "op",
                Some("a"),
                1,
                1,
                KindValue::Server,
                StatusValue::Ok,
                None,
            );
            s.code = Some(i);
            s
        })
        .collect();
    let t = Trace {
        id: "00000000000000000000000000000009",
        spans,
    };
    let q = parse_metrics("{} | compare({ status = error }, 1000)").unwrap();
    let mut acc = q.partial(&req());
    q.observe(&t, &mut acc);
    let r = q.finish(acc);
    let t = table(&r, &req());
    let codes = t
        .iter()
        .filter(|(k, _)| k.starts_with("{__meta_type=baseline,span.http.status_code="))
        .count();
    assert_eq!(codes, super::compare::MAX_VALUES_PER_ATTRIBUTE);
    let get = |l: &str| t.iter().find(|(k, _)| k == l).map(|(_, v)| v[0]);
    assert_eq!(
        get("{__meta_type=baseline_total,span.http.status_code=nil}"),
        Some(s(600.0))
    );
    // The other attributes still have their values.
    assert_eq!(
        get("{__meta_type=baseline,resource.service.name=a}"),
        Some(s(600.0))
    );
    assert_eq!(r.truncated, None);
}

#[test]
fn compare_exemplars_go_with_the_totals_of_their_spans_attributes() {
    let mut r = req();
    r.exemplars = 100;
    let got = run_with("{} | compare({ status = error })", &r);
    let series = |meta: &str, attr: &str| {
        got.series
            .iter()
            .find(|s| s.labels[0].1 == LabelValue::Str(meta.into()) && s.labels[1].0 == attr)
            .unwrap_or_else(|| panic!("no {meta} {attr}"))
    };
    // t3's first counted span (1059 s, an error) is the selection's exemplar.
    let e = &series("selection_total", "kind").exemplars;
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].timestamp_ms, e[0].value), (1_059_000, 1.0));
    assert!(e[0].labels.contains(&(
        "trace:id".into(),
        LabelValue::Str("00000000000000000000000000000003".into())
    )));
    assert!(
        e[0].labels
            .contains(&("kind".into(), LabelValue::Str("server".into())))
    );
    // t1's (1001 s) and t2's (1010 s) first spans are the baseline's.
    let stamps: Vec<i64> = series("baseline_total", "kind")
        .exemplars
        .iter()
        .map(|e| e.timestamp_ms)
        .collect();
    assert_eq!(stamps, vec![1_001_000, 1_010_000]);
}
