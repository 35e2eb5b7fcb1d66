//! Parser tests: Tempo-compatible error messages and positions, precedence, AST shapes.

use rstest::rstest;

use crate::ast::{
    AttrRef, BinaryOp, FieldExpr, MetricsExpr, MetricsKind, RootExpr, ScalarExpr, SecondStage,
    SpansetExpr, SpansetOp, Stage,
};
use crate::{AttrScope, ErrorKind, Intrinsic, Query, Value, parse};

/// The filter expression of a single-filter query.
fn filter(query: &str) -> FieldExpr {
    let q = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    match q.root {
        RootExpr::Pipeline(mut p) => match p.stages.pop() {
            Some(Stage::Spanset(SpansetExpr::Filter(f))) => f,
            other => panic!("{query}: not a single filter: {other:?}"),
        },
        other => panic!("{query}: not a pipeline: {other:?}"),
    }
}

fn spanset(q: &Query) -> &SpansetExpr {
    match &q.root {
        RootExpr::Pipeline(p) => match p.stages.as_slice() {
            [Stage::Spanset(e)] => e,
            other => panic!("not a single spanset stage: {other:?}"),
        },
        other => panic!("not a pipeline: {other:?}"),
    }
}

// Positions and wording follow Tempo's parser tests (`pkg/traceql/parse_test.go`) and
// observed `/api/search` 400 bodies.
#[rstest]
#[case::empty("", 0, 0, "syntax error: unexpected $end")]
#[case::unclosed_stage("{ .a } | { .b", 1, 14, "syntax error: unexpected $end")]
#[case::pipe_inside_filter("{ .a | .b }", 1, 6, "syntax error: unexpected |")]
#[case::dangling_and(
    "{ true } &&",
    1,
    12,
    "syntax error: unexpected $end, expecting { or ("
)]
#[case::bare_word("wharblgarbl", 1, 1, "syntax error: unexpected IDENTIFIER")]
#[case::diamond("{ 2 <> 3}", 1, 6, "syntax error: unexpected >")]
#[case::unclosed_filter("{ 2 = .b ", 1, 10, "syntax error: unexpected $end")]
#[case::lone_plus("{ + }", 1, 3, "syntax error: unexpected +")]
#[case::missing_value("{ span.foo = }", 1, 14, "syntax error: unexpected }")]
#[case::dot_space(
    "{ . foo }",
    1,
    3,
    "syntax error: unexpected END_ATTRIBUTE, expecting IDENTIFIER"
)]
#[case::two_attributes("{ .foo .bar }", 1, 8, "syntax error: unexpected .")]
#[case::float_then_word(".3foo", 1, 3, "syntax error: unexpected IDENTIFIER")]
#[case::empty_by("by()", 1, 4, "syntax error: unexpected )")]
#[case::coalesce_first("coalesce()", 1, 1, "syntax error: unexpected coalesce")]
#[case::open_count("count(", 1, 7, "syntax error: unexpected $end, expecting )")]
#[case::count_keyword("count(avg)", 1, 7, "syntax error: unexpected avg, expecting )")]
#[case::count_attribute("count(.thing)", 1, 7, "syntax error: unexpected ., expecting )")]
#[case::unquoted_attr_eof(r#"{ ."foo }"#, 1, 3, r#"unexpected EOF, expecting ""#)]
#[case::second_line("{ .a = 1 &&\n  = 2 }", 2, 3, "syntax error: unexpected =")]
#[case::third_line("{\n  .a =\n}", 3, 1, "syntax error: unexpected }")]
#[case::columns_count_chars(r#"{ .ü = "é" "x" }"#, 1, 12, "syntax error: unexpected STRING")]
#[case::trailing_filter("{ .a = 1 } {}", 1, 12, "syntax error: unexpected {")]
#[case::unclosed_string(r#"{ .a = "x }"#, 1, 8, "literal not terminated")]
#[case::unknown_colon_intrinsic("{ span:foo = 1 }", 1, 8, "syntax error: unexpected IDENTIFIER")]
#[case::keyword_as_value("{ .a = count }", 1, 8, "syntax error: unexpected count")]
#[case::constant_scalar_filter("3 = 2", 1, 3, "syntax error: unexpected =")]
#[case::topk_without_metrics("{} | topk(10)", 1, 6, "syntax error: unexpected topk")]
#[case::grouped_then_and("by(.a) && { .b }", 1, 8, "syntax error: unexpected &&")]
#[case::metrics_math_needs_parens("{} | rate() + 5", 1, 13, "syntax error: unexpected +")]
#[case::metrics_duration_scalar("({} | rate()) * 10s", 1, 15, "syntax error: unexpected *")]
#[case::topk_needs_int(
    "{} | rate() | topk(-1)",
    1,
    20,
    "syntax error: unexpected -, expecting INTEGER"
)]
fn syntax_errors(
    #[case] query: &str,
    #[case] line: usize,
    #[case] col: usize,
    #[case] message: &str,
) {
    let err = parse(query).expect_err(query);
    assert_eq!(err.kind, ErrorKind::Syntax, "{query}: {err}");
    assert_eq!(
        (err.line, err.col, err.message.as_str()),
        (line, col, message),
        "{query}"
    );
}

#[rstest]
#[case::display_with_position(
    "{ span.foo = }",
    "parse error at line 1, col 14: syntax error: unexpected }"
)]
#[case::display_without_position("", "parse error : syntax error: unexpected $end")]
fn display(#[case] query: &str, #[case] want: &str) {
    assert_eq!(parse(query).expect_err(query).to_string(), want);
}

#[rstest]
#[case::string_vs_int(r#"{ "a" = 1 }"#, "binary operations must operate on the same type")]
#[case::status_vs_string(
    r#"{ status = "error" }"#,
    "binary operations must operate on the same type"
)]
#[case::kind_vs_status("{ kind = error }", "binary operations must operate on the same type")]
#[case::duration_vs_string(
    r#"{ duration > "1s" }"#,
    "binary operations must operate on the same type"
)]
#[case::regex_on_int("{ 1 =~ 2 }", "illegal operation for the given types")]
#[case::ordering_on_status("{ status > ok }", "illegal operation for the given types")]
#[case::bool_arith("{ true + 1 = 2 }", "binary operations must operate on the same type")]
#[case::bad_regex(r#"{ .a =~ "(" }"#, "invalid regex")]
#[case::regex_needs_literal("{ .a =~ .b }", "invalid type for =~ or !~")]
#[case::intrinsic_nil("{ name = nil }", "intrinsics cannot be nil")]
#[case::intrinsic_nil_left("{ nil = span:status }", "intrinsics cannot be nil")]
#[case::service_name_nil("{ resource.service.name = nil }", "cannot be nil")]
#[case::non_boolean_filter("{ 1 }", "span filter field expressions must resolve to a boolean")]
#[case::string_filter(
    r#"{ "a" }"#,
    "span filter field expressions must resolve to a boolean"
)]
#[case::arith_filter(
    "{ .a + 1 }",
    "span filter field expressions must resolve to a boolean"
)]
#[case::negate_string(r#"{ -"a" = 1 }"#, "illegal operation for the given type")]
#[case::not_int("{ !1 }", "illegal operation for the given type")]
fn invalid(#[case] query: &str, #[case] needle: &str) {
    let err = parse(query).expect_err(query);
    assert_eq!(err.kind, ErrorKind::Invalid, "{query}: {err}");
    assert!(err.message.contains(needle), "{query}: {err}");
}

#[rstest]
#[case::count_vs_count(
    "({ .a } | count()) > ({ .b } | count())",
    20,
    "a scalar filter other than `aggregate op number` is not supported yet"
)]
#[case::aggregate_math(
    "{ .a } | count() + 1 > 2",
    22,
    "a scalar filter other than `aggregate op number` is not supported yet"
)]
#[case::rate("{ .a } | rate()", 10, "metrics function rate() is not supported yet")]
#[case::quantile(
    "{} | quantile_over_time(duration, .5, .9) by (span.http.route)",
    6,
    "metrics function quantile_over_time() is not supported yet"
)]
#[case::parent_intrinsic("{ parent = nil }", 3, "intrinsic parent is not supported yet")]
#[case::first_one_wins(
    "{ parent = nil } | count() + 1 > 2",
    3,
    "intrinsic parent is not supported yet"
)]
fn unsupported(#[case] query: &str, #[case] col: usize, #[case] message: &str) {
    let err = parse(query).expect_err(query);
    assert_eq!(err.kind, ErrorKind::Unsupported, "{query}: {err}");
    assert_eq!((err.col, err.message.as_str()), (col, message), "{query}");
}

#[rstest]
#[case::syntax_beats_unsupported("{ .a } >> { .b")]
#[case::syntax_beats_invalid(r#"{ "a" = 1 } {"#)]
fn syntax_errors_come_first(#[case] query: &str) {
    assert_eq!(parse(query).expect_err(query).kind, ErrorKind::Syntax);
}

#[rstest]
#[case::filter("{} | compare({status=error}) > 10")]
#[case::topk("{} | compare({status=error}) | topk(10)")]
#[case::math("({} | compare({status=error})) * ({} | compare({status=error}))")]
fn compare_stands_alone(#[case] query: &str) {
    let err = crate::parse_search(query).expect_err(query);
    assert_eq!(err.kind, ErrorKind::Invalid, "{query}: {err}");
    assert!(err.message.contains("compare()"), "{err}");
}

#[rstest]
#[case::filter_with_duration("({} | max_over_time(duration)) > 10s")]
#[case::math_then_filter("({} | rate()) * 10 + 5 > 50 | topk(1)")]
#[case::scalar_first("-1.5 * ({} | rate())")]
#[case::chained_second_stages("{} | rate() | topk(5) > 20 | bottomk (10) <= 10")]
fn metrics_queries_parse_for_search(#[case] query: &str) {
    assert!(crate::parse_search(query).is_ok(), "{query}");
    assert_eq!(parse(query).expect_err(query).kind, ErrorKind::Unsupported);
}

#[test]
fn topk_limit_must_be_positive() {
    let err = crate::parse_search("{} | rate() | topk(0)").expect_err("k = 0");
    assert_eq!((err.kind, err.col), (ErrorKind::Invalid, 20), "{err}");
}

// Tempo's precedence: `&&` and `||` share a level (left associative); `!` binds tighter than
// `+` but looser than `*`; `^` is right associative.
#[rstest]
#[case::and_or_left_assoc("{ .a || .b && .c }", "(.a || .b) && .c")]
#[case::or_and_left_assoc("{ .a && .b || .c }", "(.a && .b) || .c")]
#[case::comparison_over_and("{ .a = 1 && .b = 2 }", "(.a = 1) && (.b = 2)")]
#[case::mul_over_add("{ 1 + 2 * 3 = 7 }", "(1 + (2 * 3)) = 7")]
#[case::sub_left_assoc("{ .a - 1 - 1 = 0 }", "((.a - 1) - 1) = 0")]
#[case::pow_right_assoc("{ 2 ^ 3 ^ 2 = 1 }", "(2 ^ (3 ^ 2)) = 1")]
#[case::not_over_comparison("{ !.a = .b }", "(!.a) = .b")]
#[case::not_under_mul("{ !.a * .b }", "!(.a * .b)")]
#[case::neg_under_mul("{ -.a * 2 = 1 }", "(-(.a * 2)) = 1")]
#[case::neg_over_add("{ -.a + 2 = 1 }", "((-.a) + 2) = 1")]
#[case::parens("{ .a || (.b && .c) }", ".a || (.b && .c)")]
#[case::negative_literal_folded("{ .a > -1 }", ".a > -1")]
#[case::quoted_name(r#"{ span."x y" = "z" }"#, r#"span."x y" = "z""#)]
#[case::durations(
    "{ duration > 1h30m && duration < 1.5ms }",
    "(duration > 1h30m0s) && (duration < 1.5ms)"
)]
#[case::colon_intrinsics("{ span:name = trace:rootName }", "name = rootName")]
fn precedence(#[case] query: &str, #[case] want: &str) {
    assert_eq!(filter(query).to_string(), want, "{query}");
}

#[rstest]
#[case::span_scope(
    "{ span.http.method = 1 }",
    AttrRef::Scoped(AttrScope::Span),
    "http.method"
)]
#[case::resource_scope(
    "{ resource.service.name = 1 }",
    AttrRef::Scoped(AttrScope::Resource),
    "service.name"
)]
#[case::unscoped("{ .foo = 1 }", AttrRef::Unscoped, "foo")]
#[case::quoted(r#"{ .a."b c" = 1 }"#, AttrRef::Unscoped, "a.b c")]
#[case::no_spaces("{span.x=1}", AttrRef::Scoped(AttrScope::Span), "x")]
fn attributes(#[case] query: &str, #[case] scope: AttrRef, #[case] name: &str) {
    match filter(query) {
        FieldExpr::Binary {
            op: BinaryOp::Eq,
            lhs,
            ..
        } => {
            assert_eq!(
                *lhs,
                FieldExpr::Attribute {
                    scope,
                    name: name.to_string()
                }
            );
        }
        other => panic!("{query}: {other:?}"),
    }
}

#[rstest]
#[case::name("name", Intrinsic::Name)]
#[case::span_name("span:name", Intrinsic::Name)]
#[case::status("status", Intrinsic::Status)]
#[case::span_status("span:status", Intrinsic::Status)]
#[case::status_message("statusMessage", Intrinsic::StatusMessage)]
#[case::span_status_message("span:statusMessage", Intrinsic::StatusMessage)]
#[case::kind("kind", Intrinsic::Kind)]
#[case::span_kind("span:kind", Intrinsic::Kind)]
#[case::duration("duration", Intrinsic::Duration)]
#[case::span_duration("span:duration", Intrinsic::Duration)]
#[case::trace_duration("traceDuration", Intrinsic::TraceDuration)]
#[case::trace_colon_duration("trace:duration", Intrinsic::TraceDuration)]
#[case::root_name("rootName", Intrinsic::RootName)]
#[case::trace_root_name("trace:rootName", Intrinsic::RootName)]
#[case::root_service_name("rootServiceName", Intrinsic::RootServiceName)]
#[case::trace_root_service("trace:rootService", Intrinsic::RootServiceName)]
#[case::event_name("event:name", Intrinsic::EventName)]
#[case::trace_id("trace:id", Intrinsic::TraceId)]
#[case::span_id("span:id", Intrinsic::SpanId)]
#[case::parent_id("span:parentID", Intrinsic::ParentId)]
#[case::child_count("span:childCount", Intrinsic::ChildCount)]
fn intrinsics(#[case] text: &str, #[case] want: Intrinsic) {
    let query = format!("{{ {text} != nil }}");
    match filter(&query) {
        FieldExpr::Binary { lhs, .. } => assert_eq!(*lhs, FieldExpr::Intrinsic(want), "{query}"),
        other => panic!("{query}: {other:?}"),
    }
}

#[rstest]
#[case::string(r#""a\"b""#, Value::Str("a\"b".into()))]
#[case::int("42", Value::Int(42))]
#[case::negative_int("-42", Value::Int(-42))]
#[case::float("2.5", Value::Float(2.5))]
#[case::duration("100ms", Value::Duration(100_000_000))]
#[case::true_("true", Value::Bool(true))]
#[case::false_("false", Value::Bool(false))]
#[case::nil("nil", Value::Nil)]
#[case::ok("ok", Value::Status(crate::StatusValue::Ok))]
#[case::error("error", Value::Status(crate::StatusValue::Error))]
#[case::unset("unset", Value::Status(crate::StatusValue::Unset))]
#[case::server("server", Value::Kind(crate::KindValue::Server))]
#[case::client("client", Value::Kind(crate::KindValue::Client))]
#[case::producer("producer", Value::Kind(crate::KindValue::Producer))]
#[case::consumer("consumer", Value::Kind(crate::KindValue::Consumer))]
#[case::internal("internal", Value::Kind(crate::KindValue::Internal))]
#[case::unspecified("unspecified", Value::Kind(crate::KindValue::Unspecified))]
fn literals(#[case] text: &str, #[case] want: Value<'static>) {
    let query = format!("{{ .a = {text} }}");
    match filter(&query) {
        FieldExpr::Binary { rhs, .. } => assert_eq!(*rhs, FieldExpr::Static(want), "{query}"),
        other => panic!("{query}: {other:?}"),
    }
}

/// Parses without the final "not supported yet" check, to look at trees the evaluator rejects.
fn parse_tree(query: &str) -> (Query, Option<crate::ParseError>) {
    let mut p = super::Parser {
        tokens: crate::lexer::lex(query).expect("lexes"),
        i: 0,
        deferred: None,
        metrics: None,
        depth: 0,
    };
    let q = p.query().unwrap_or_else(|e| panic!("{query}: {e}"));
    (q, p.deferred.or(p.metrics))
}

#[test]
fn spanset_operators_bind_tighter_than_and_or() {
    let (q, _) = parse_tree("{ .a } && { .b } >> { .c }");
    let SpansetExpr::Binary {
        op: SpansetOp::And,
        rhs,
        ..
    } = spanset(&q)
    else {
        panic!("{q:?}");
    };
    assert!(matches!(
        rhs.as_ref(),
        SpansetExpr::Binary {
            op: SpansetOp::Descendant,
            ..
        }
    ));
}

#[test]
fn spanset_and_or_are_left_associative() {
    let q = parse("{ .a } || { .b } && { .c }").expect("parses");
    let SpansetExpr::Binary {
        op: SpansetOp::And,
        lhs,
        ..
    } = spanset(&q)
    else {
        panic!("{q:?}");
    };
    assert!(matches!(
        lhs.as_ref(),
        SpansetExpr::Binary {
            op: SpansetOp::Or,
            ..
        }
    ));
}

#[test]
fn wrapped_pipelines_keep_their_stages() {
    let (q, _) = parse_tree("({ .a } | by(.b)) && { .c }");
    let SpansetExpr::Binary {
        op: SpansetOp::And,
        lhs,
        ..
    } = spanset(&q)
    else {
        panic!("{q:?}");
    };
    let SpansetExpr::Pipeline(p) = lhs.as_ref() else {
        panic!("{lhs:?}")
    };
    assert_eq!(p.stages.len(), 2);
    assert!(matches!(p.stages[1], Stage::GroupBy(_)));
    // A lone non-spanset stage stays wrapped too.
    let (q, _) = parse_tree("(by(.b)) && { .c }");
    let SpansetExpr::Binary { lhs, .. } = spanset(&q) else {
        panic!("{q:?}")
    };
    assert!(matches!(lhs.as_ref(), SpansetExpr::Pipeline(p) if p.stages.len() == 1));
}

#[test]
fn parenthesised_pipelines_combine() {
    let q = parse("({ .a } | by(.b)) && { .c }").expect("parses");
    let SpansetExpr::Binary { lhs, .. } = spanset(&q) else {
        panic!("{q:?}")
    };
    assert!(matches!(lhs.as_ref(), SpansetExpr::Pipeline(p) if p.stages.len() == 2));
}

#[rstest]
#[case::plain("{ .a } | count() > 2", vec!["spanset", "count() > 2"])]
#[case::flipped("{ .a } | 2 < count()", vec!["spanset", "2 < count()"])]
#[case::parenthesised_pipeline("({ .a } | by(.b)) > 2", vec![])]
#[case::wrapped_aggregate("({ .a } | by(.b) | avg(duration)) > 1s", vec!["spanset", "by", "avg > 1s"])]
fn scalar_filters_become_stages(#[case] query: &str, #[case] want: Vec<&str>) {
    let Ok(q) = parse(query) else {
        assert!(want.is_empty(), "{query} should parse");
        return;
    };
    let RootExpr::Pipeline(p) = &q.root else {
        panic!("{q:?}")
    };
    let got: Vec<String> = p
        .stages
        .iter()
        .map(|st| match st {
            Stage::Spanset(_) => "spanset".to_string(),
            Stage::GroupBy(_) => "by".to_string(),
            Stage::ScalarFilter { op, lhs, rhs } => match (lhs, rhs) {
                (ScalarExpr::Aggregate { field: None, .. }, ScalarExpr::Static(v)) => {
                    format!("count() {} {v}", op.as_str())
                }
                (ScalarExpr::Static(v), ScalarExpr::Aggregate { field: None, .. }) => {
                    format!("{v} {} count()", op.as_str())
                }
                (ScalarExpr::Aggregate { field: Some(_), .. }, ScalarExpr::Static(v)) => {
                    format!("avg {} {v}", op.as_str())
                }
                other => format!("{other:?}"),
            },
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(got, want, "{query}");
}

#[test]
fn metrics_shape() {
    // Metrics are unsupported, so inspect the tree the parser builds before rejecting it.
    let (q, deferred) = parse_tree("({} | rate() by (name)) * 100 > 5 | topk(3)");
    let RootExpr::Metrics(MetricsExpr::SecondStage { expr, stage }) = q.root else {
        panic!("{q:?}");
    };
    assert_eq!(
        stage,
        SecondStage::TopK {
            bottom: false,
            k: 3
        }
    );
    let MetricsExpr::SecondStage {
        expr,
        stage: SecondStage::Filter { op, value },
    } = *expr
    else {
        panic!("filter expected");
    };
    assert_eq!((op, value), (BinaryOp::Gt, Value::Int(5)));
    let MetricsExpr::Binary {
        op: BinaryOp::Mul,
        lhs,
        rhs,
    } = *expr
    else {
        panic!("math expected");
    };
    assert_eq!(*rhs, MetricsExpr::Scalar(Value::Int(100)));
    let MetricsExpr::Function { function, .. } = *lhs else {
        panic!("function expected")
    };
    assert_eq!(function.kind, MetricsKind::Rate);
    assert_eq!(function.by, vec![FieldExpr::Intrinsic(Intrinsic::Name)]);
    assert!(deferred.is_some_and(|e| e.kind == ErrorKind::Unsupported));
}

// Each level of parentheses costs two levels of recursion at the top, one inside a filter.
#[rstest]
#[case::parens("", "(", "{ .a = 1 }", ")", "", 125, true)]
#[case::parens_too_deep("", "(", "{ .a = 1 }", ")", "", 129, false)]
#[case::field_parens("{ ", "(", "true", ")", " }", 250, true)]
#[case::field_parens_too_deep("{ ", "(", "true", ")", " }", 300, false)]
#[case::negations("{ ", "!", ".a", "", " }", 250, true)]
#[case::negations_too_deep("{ ", "!", ".a", "", " }", 300, false)]
#[case::minus("", "-", "1 * ({} | rate())", "", "", 300, false)]
fn nesting_is_bounded(
    #[case] prefix: &str,
    #[case] open: &str,
    #[case] inner: &str,
    #[case] close: &str,
    #[case] suffix: &str,
    #[case] depth: usize,
    #[case] ok: bool,
) {
    let query = format!(
        "{prefix}{}{inner}{}{suffix}",
        open.repeat(depth),
        close.repeat(depth)
    );
    match parse(&query) {
        Ok(q) => {
            assert!(ok, "depth {depth} should be rejected");
            // Evaluating and dropping the deepest accepted tree must not exhaust the stack.
            let _ = q.conditions();
        }
        Err(e) if !ok => assert!(e.message.contains("too deeply"), "{e}"),
        Err(e) => panic!("depth {depth}: {e}"),
    }
}

#[test]
fn long_chains_are_bounded_and_evaluate() {
    // The longest accepted chain parses and evaluates without exhausting the test stack.
    let chain = vec![".a = 1"; 500].join(" && ");
    let q = parse(&format!("{{ {chain} }}")).expect("500 comparisons parse");
    assert!(q.conditions().len() == 500);
    let too_long = vec![".a = 1"; 1000].join(" && ");
    let err = parse(&format!("{{ {too_long} }}")).expect_err("too long");
    assert!(err.message.contains("too long"), "{err}");
}

#[rstest]
#[case::rate("{ .a = 1 } | rate()", true)]
#[case::math("({ .a = 1 } | rate()) / ({} | rate())", true)]
#[case::plain_search("{ .a = 1 }", true)]
#[case::structural_spanset_part("{ .a = 1 } >> { .b = 2 } | rate()", true)]
#[case::parent_intrinsic_still_unsupported("{ parent = nil } | rate()", false)]
#[case::syntax_still_an_error("{ .a = 1 } | rate(", false)]
fn search_accepts_metrics_queries(#[case] query: &str, #[case] accepted: bool) {
    use crate::parse_search;
    if query.contains('|') {
        assert!(
            parse(query).is_err(),
            "{query}: plain parse must reject metrics"
        );
    }
    match parse_search(query) {
        Ok(q) => {
            assert!(accepted, "{query} should be rejected");
            let p = q.search_pipeline().expect("has a spanset part");
            assert!(matches!(
                p.stages.as_slice(),
                [Stage::Spanset(
                    SpansetExpr::Filter(_) | SpansetExpr::Binary { .. }
                )]
            ));
        }
        Err(e) => assert!(!accepted, "{query}: {e}"),
    }
}
