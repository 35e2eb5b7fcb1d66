//! Pipeline tests: the span sets each query returns over the evaluator tests' traces (`shop`:
//! 0 frontend server 500 ms, 1 frontend client 290 ms, 2 payments server 270 ms, 1 and 2 in
//! error; `forest`: errors 2, 3, 5 and 6, see `tests::forest`).

use std::borrow::Cow;

use rstest::rstest;

use super::tests::trace;
use crate::{SpanSet, Value, parse};

const MS: u64 = 1_000_000;

fn set(spans: &[usize], attributes: &[(&str, Value<'static>)]) -> SpanSet {
    SpanSet {
        spans: spans.to_vec(),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

fn s(v: &'static str) -> Value<'static> {
    Value::Str(Cow::Borrowed(v))
}

#[rstest]
// count()
#[case::count_kept("shop", "{ } | count() > 2", vec![set(&[0, 1, 2], &[("count()", Value::Int(3))])])]
#[case::count_dropped("shop", "{ } | count() > 3", vec![])]
#[case::count_after_filter("shop", "{ status = error } | count() = 2", vec![set(&[1, 2], &[("count()", Value::Int(2))])])]
#[case::count_flipped("shop", "{ } | 2 < count()", vec![set(&[0, 1, 2], &[("count()", Value::Int(3))])])]
#[case::count_constant_math("shop", "{ } | count() >= 1 + 2", vec![set(&[0, 1, 2], &[("count()", Value::Int(3))])])]
#[case::count_parenthesised("shop", "({ kind = server } | count()) = 2", vec![set(&[0, 2], &[("count()", Value::Int(2))])])]
// avg, min, max, sum
#[case::avg_duration(
    "shop",
    "{ } | avg(duration) > 300ms",
    vec![set(&[0, 1, 2], &[("avg(duration)", Value::Duration(353_333_333))])]
)]
#[case::avg_duration_dropped("shop", "{ } | avg(duration) > 400ms", vec![])]
#[case::min_duration("shop", "{ } | min(duration) < 280ms", vec![set(&[0, 1, 2], &[("min(duration)", Value::Duration(270 * MS))])])]
#[case::max_duration("shop", "{ } | max(duration) >= 500ms", vec![set(&[0, 1, 2], &[("max(duration)", Value::Duration(500 * MS))])])]
#[case::sum_skips_non_numbers(
    "shop",
    "{ } | sum(span.http.response.status_code) = 703",
    vec![set(&[0, 1, 2], &[("sum(span.http.response.status_code)", Value::Int(703))])]
)]
#[case::avg_of_ints_is_float(
    "shop",
    "{ } | avg(span.http.response.status_code) > 351",
    vec![set(&[0, 1, 2], &[("avg(span.http.response.status_code)", Value::Float(351.5))])]
)]
#[case::aggregate_of_nothing_drops_the_set("shop", "{ } | max(span.nope) > 1", vec![])]
// by, coalesce, select, later filters
#[case::by_service(
    "shop",
    "{ } | by(resource.service.name)",
    vec![
        set(&[0, 1], &[("by(resource.service.name)", s("frontend"))]),
        set(&[2], &[("by(resource.service.name)", s("payments"))]),
    ]
)]
#[case::by_then_count(
    "shop",
    "{ } | by(resource.service.name) | count() > 1",
    vec![set(&[0, 1], &[("by(resource.service.name)", s("frontend")), ("count()", Value::Int(2))])]
)]
#[case::by_missing_value_is_a_group(
    "shop",
    "{ } | by(span.db.system)",
    vec![
        set(&[0, 1], &[("by(span.db.system)", Value::Nil)]),
        set(&[2], &[("by(span.db.system)", s("postgresql"))]),
    ]
)]
#[case::coalesce("shop", "{ } | by(kind) | coalesce()", vec![set(&[0, 1, 2], &[])])]
#[case::select_keeps_the_set("shop", "{ status = error } | select(span.db.system)", vec![set(&[1, 2], &[])])]
#[case::later_filter("shop", "{ } | { kind = server }", vec![set(&[0, 2], &[])])]
#[case::later_filter_narrows("shop", "{ status = error } | { kind = server }", vec![set(&[2], &[])])]
#[case::later_filter_per_group(
    "shop",
    "{ } | by(resource.service.name) | { kind = client }",
    vec![set(&[1], &[("by(resource.service.name)", s("frontend"))])]
)]
#[case::pipeline_operand(
    "shop",
    "({ status = error } | count() > 1) && { kind = server }",
    vec![set(&[0, 1, 2], &[])]
)]
#[case::pipeline_operand_fails("shop", "({ status = error } | count() > 2) && { kind = server }", vec![])]
// with structural operators
#[case::structural_then_count(
    "forest",
    "{ } >> { status = error } | count() > 2",
    vec![set(&[2, 3, 5], &[("count()", Value::Int(3))])]
)]
// A later stage sees only the spans of each set, as in Tempo: `gateway` is not among them.
#[case::later_structural_within_the_set(
    "forest",
    r#"{ status = error } | by(resource.service.name) | { name = "db" } >> { }"#,
    vec![set(&[3], &[("by(resource.service.name)", s("edge"))])]
)]
#[case::later_structural_outside_the_set(
    "forest",
    r#"{ status = error } | { name = "gateway" } >> { }"#,
    vec![]
)]
fn pipelines(#[case] trace_name: &str, #[case] query: &str, #[case] want: Vec<SpanSet>) {
    let q = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let t = trace(trace_name);
    let got = q.eval_spansets(&t);
    assert_eq!(got, want, "{query}");
    let mut spans: Vec<usize> = want.into_iter().flat_map(|ss| ss.spans).collect();
    spans.sort_unstable();
    spans.dedup();
    assert_eq!(q.eval(&t), spans, "{query}: eval is the union of the sets");
}

/// What a store prints for computed intrinsics on a matched span.
#[rstest]
#[case::child_count("forest", 0, crate::Intrinsic::ChildCount, vec![Value::Int(2)])]
#[case::nested_set_parent_of_root("forest", 4, crate::Intrinsic::NestedSetParent, vec![Value::Int(-1)])]
#[case::nested_set_left_of_orphan("forest", 6, crate::Intrinsic::NestedSetLeft, vec![Value::Int(0)])]
#[case::root_service("shop", 2, crate::Intrinsic::RootServiceName, vec![s("frontend")])]
#[case::every_event("shop", 1, crate::Intrinsic::EventName, vec![s("exception"), s("retry")])]
#[case::no_parent_id("shop", 0, crate::Intrinsic::ParentId, vec![])]
fn field_reader_computes_intrinsics(
    #[case] trace_name: &str,
    #[case] span: usize,
    #[case] which: crate::Intrinsic,
    #[case] want: Vec<Value<'static>>,
) {
    let t = trace(trace_name);
    let reader = crate::FieldReader::new(&t);
    assert_eq!(reader.intrinsic_values(span, which), want);
}
