//! Evaluator tests against an in-memory [`TraceView`] of three small traces.

use std::borrow::Cow;

use rstest::rstest;

use crate::{
    AttrScope, CompareOp, ConditionField, Intrinsic, KindValue, StatusValue, TraceView, Value,
    parse,
};

const MS: u64 = 1_000_000;

#[derive(Clone, Copy, PartialEq)]
enum Parent {
    None,
    Index(usize),
    /// The span has a parent id but the parent is not in the trace.
    Missing,
}

/// (trace id, span id, attributes) of a link.
type MemLink = (
    &'static str,
    &'static str,
    Vec<(&'static str, Value<'static>)>,
);

struct MemSpan {
    id: &'static str,
    name: &'static str,
    kind: KindValue,
    status: StatusValue,
    message: &'static str,
    parent: Parent,
    start: u64,
    end: u64,
    resource: usize,
    /// An array attribute is its key repeated once per element.
    attrs: Vec<(&'static str, Value<'static>)>,
    events: Vec<&'static str>,
    /// Attributes of the span's events, (event index, key, value).
    event_attrs: Vec<(usize, &'static str, Value<'static>)>,
    links: Vec<MemLink>,
}

pub(super) struct MemTrace {
    id: &'static str,
    resources: Vec<Vec<(&'static str, Value<'static>)>>,
    spans: Vec<MemSpan>,
    /// Answer `rootName` from the store instead of letting the evaluator compute it.
    root_name_shortcut: Option<&'static str>,
    /// The instrumentation scope of every span: name, version, attributes.
    scope: (
        &'static str,
        &'static str,
        Vec<(&'static str, Value<'static>)>,
    ),
}

impl TraceView for MemTrace {
    fn span_count(&self) -> usize {
        self.spans.len()
    }

    fn attribute(&self, span: usize, scope: AttrScope, name: &str) -> Option<Value<'_>> {
        self.attribute_values(span, scope, name).into_iter().next()
    }

    fn attribute_values(&self, span: usize, scope: AttrScope, name: &str) -> Vec<Value<'_>> {
        let s = &self.spans[span];
        let pick = |attrs: &[(&'static str, Value<'static>)]| -> Vec<Value<'static>> {
            attrs
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
                .collect()
        };
        match scope {
            AttrScope::Span => pick(&s.attrs),
            AttrScope::Resource => pick(&self.resources[s.resource]),
            AttrScope::Instrumentation => pick(&self.scope.2),
            AttrScope::Event => s
                .event_attrs
                .iter()
                .filter(|(_, k, _)| *k == name)
                .map(|(_, _, v)| v.clone())
                .collect(),
            AttrScope::Link => s.links.iter().flat_map(|(_, _, a)| pick(a)).collect(),
        }
    }

    fn intrinsic_values(&self, span: usize, which: Intrinsic) -> Vec<Value<'_>> {
        let s = &self.spans[span];
        match which {
            Intrinsic::EventName => s
                .events
                .iter()
                .map(|e| Value::Str(Cow::Borrowed(*e)))
                .collect(),
            // Events happen 1 ms apart from the span's start.
            Intrinsic::EventTimeSinceStart => (0..s.events.len() as u64)
                .map(|i| Value::Duration(i * MS))
                .collect(),
            Intrinsic::LinkTraceId => s
                .links
                .iter()
                .map(|l| Value::Str(Cow::Borrowed(l.0)))
                .collect(),
            Intrinsic::LinkSpanId => s
                .links
                .iter()
                .map(|l| Value::Str(Cow::Borrowed(l.1)))
                .collect(),
            other => self.intrinsic(span, other).into_iter().collect(),
        }
    }

    fn intrinsic(&self, span: usize, which: Intrinsic) -> Option<Value<'_>> {
        let s = &self.spans[span];
        Some(match which {
            Intrinsic::Name => Value::Str(Cow::Borrowed(s.name)),
            Intrinsic::Status => Value::Status(s.status),
            Intrinsic::StatusMessage => Value::Str(Cow::Borrowed(s.message)),
            Intrinsic::Kind => Value::Kind(s.kind),
            Intrinsic::SpanId => Value::Str(Cow::Borrowed(s.id)),
            Intrinsic::TraceId => Value::Str(Cow::Borrowed(self.id)),
            Intrinsic::ParentId => match s.parent {
                Parent::Index(p) => Value::Str(Cow::Borrowed(self.spans[p].id)),
                Parent::Missing => Value::Str(Cow::Borrowed("00000000000000ff")),
                Parent::None => return None,
            },
            Intrinsic::RootName => Value::Str(Cow::Borrowed(self.root_name_shortcut?)),
            Intrinsic::InstrumentationName => Value::Str(Cow::Borrowed(self.scope.0)),
            Intrinsic::InstrumentationVersion => Value::Str(Cow::Borrowed(self.scope.1)),
            // Duration and the other trace-level fields are left to the evaluator.
            _ => return None,
        })
    }

    fn parent_index(&self, span: usize) -> Option<usize> {
        match self.spans[span].parent {
            Parent::Index(p) => Some(p),
            _ => None,
        }
    }

    fn start_unix_nanos(&self, span: usize) -> u64 {
        self.spans[span].start
    }

    fn end_unix_nanos(&self, span: usize) -> u64 {
        self.spans[span].end
    }

    fn is_root(&self, span: usize) -> bool {
        self.spans[span].parent == Parent::None
    }

    fn event_names(&self, span: usize) -> Vec<Cow<'_, str>> {
        self.spans[span]
            .events
            .iter()
            .map(|e| Cow::Borrowed(*e))
            .collect()
    }
}

fn s(v: &'static str) -> Value<'static> {
    Value::Str(Cow::Borrowed(v))
}

fn span(id: &'static str, name: &'static str, kind: KindValue, parent: Parent) -> MemSpan {
    MemSpan {
        id,
        name,
        kind,
        status: StatusValue::Unset,
        message: "",
        parent,
        start: 0,
        end: 0,
        resource: 0,
        attrs: Vec::new(),
        events: Vec::new(),
        event_attrs: Vec::new(),
        links: Vec::new(),
    }
}

/// A web request: frontend server span → client call → payments server span (on another
/// resource). 500 ms, 290 ms and 270 ms long.
fn shop() -> MemTrace {
    let mut root = span(
        "0000000000000001",
        "GET /checkout",
        KindValue::Server,
        Parent::None,
    );
    root.end = 500 * MS;
    root.attrs = vec![
        ("http.method", s("GET")),
        ("http.response.status_code", Value::Int(200)),
        ("http.route", s("/checkout")),
        // Two arrays: header values and ports.
        ("http.request.header.accept", s("text/html")),
        ("http.request.header.accept", s("application/json")),
        ("ports", Value::Int(80)),
        ("ports", Value::Int(443)),
    ];
    let mut call = span(
        "0000000000000002",
        "POST /pay",
        KindValue::Client,
        Parent::Index(0),
    );
    call.status = StatusValue::Error;
    call.message = "boom";
    (call.start, call.end) = (10 * MS, 300 * MS);
    call.attrs = vec![
        ("http.method", s("POST")),
        ("http.response.status_code", Value::Int(503)),
        ("retry", Value::Bool(true)),
        ("ratio", Value::Float(0.5)),
        ("foo bar", s("baz")),
    ];
    call.events = vec!["exception", "retry"];
    call.event_attrs = vec![
        (0, "exception.message", s("connection timeout")),
        (1, "attempt", Value::Int(2)),
    ];
    call.links = vec![(
        "0000000000000000000000000000beef",
        "00000000000000ee",
        vec![("ref", s("follows_from"))],
    )];
    let mut pay = span(
        "0000000000000003",
        "POST /pay",
        KindValue::Server,
        Parent::Index(1),
    );
    pay.status = StatusValue::Error;
    (pay.start, pay.end) = (20 * MS, 290 * MS);
    pay.resource = 1;
    pay.attrs = vec![
        // A string where the other spans have an int: comparisons with ints are just false.
        ("http.response.status_code", s("503")),
        ("db.system", s("postgresql")),
        ("host.name", s("span-host")),
    ];
    MemTrace {
        id: "0af7651916cd43dd8448eb211c80319c",
        resources: vec![
            vec![("service.name", s("frontend")), ("host.name", s("web-1"))],
            vec![("service.name", s("payments")), ("host.name", s("db-1"))],
        ],
        spans: vec![root, call, pay],
        root_name_shortcut: None,
        scope: (
            "shop-lib",
            "1.2.0",
            vec![("telemetry.sdk.language", s("rust"))],
        ),
    }
}

/// One internal span, 2 s long, with a multi-line attribute.
fn cron() -> MemTrace {
    let mut job = span(
        "00000000000000aa",
        "cron",
        KindValue::Internal,
        Parent::None,
    );
    job.status = StatusValue::Ok;
    job.end = 2_000 * MS;
    job.attrs = vec![("job", s("nightly\nrun"))];
    MemTrace {
        id: "00000000000000000000000000000abc",
        resources: vec![vec![("service.name", s("batch"))]],
        spans: vec![job],
        root_name_shortcut: None,
        scope: ("", "", Vec::new()),
    }
}

/// Two spans whose parent never arrived: the trace has no root.
fn orphans() -> MemTrace {
    let mut a = span(
        "00000000000000b1",
        "consume",
        KindValue::Consumer,
        Parent::Missing,
    );
    a.end = 5 * MS;
    let mut b = span(
        "00000000000000b2",
        "produce",
        KindValue::Producer,
        Parent::Index(0),
    );
    (b.start, b.end) = (MS, 3 * MS);
    MemTrace {
        id: "00000000000000000000000000000def",
        resources: vec![vec![("service.name", s("queue"))]],
        spans: vec![a, b],
        root_name_shortcut: None,
        scope: ("", "", Vec::new()),
    }
}

/// Two roots and a subtree whose parent never arrived (ids are the indexes):
/// `0 gateway (server) → 1 auth (client), 2 db (client, error) → 3 query (error)`;
/// `4 cron → 5 job (error)`; `6 lost (error, parent missing) → 7 lost-child`.
fn forest() -> MemTrace {
    use KindValue::{Client, Consumer, Internal, Server};
    let shape = [
        ("gateway", Server, Parent::None, false),
        ("auth", Client, Parent::Index(0), false),
        ("db", Client, Parent::Index(0), true),
        ("query", Internal, Parent::Index(2), true),
        ("cron", Internal, Parent::None, false),
        ("job", Internal, Parent::Index(4), true),
        ("lost", Consumer, Parent::Missing, true),
        ("lost-child", Internal, Parent::Index(6), false),
    ];
    const IDS: [&str; 8] = [
        "00000000000000c0",
        "00000000000000c1",
        "00000000000000c2",
        "00000000000000c3",
        "00000000000000c4",
        "00000000000000c5",
        "00000000000000c6",
        "00000000000000c7",
    ];
    let spans = shape
        .into_iter()
        .zip(IDS)
        .map(|((name, kind, parent, error), id)| {
            let mut sp = span(id, name, kind, parent);
            sp.end = MS;
            if error {
                sp.status = StatusValue::Error;
            }
            sp
        })
        .collect();
    MemTrace {
        id: "000000000000000000000000000000f0",
        resources: vec![vec![("service.name", s("edge"))]],
        spans,
        root_name_shortcut: None,
        scope: ("", "", Vec::new()),
    }
}

pub(super) fn trace(name: &str) -> MemTrace {
    match name {
        "shop" => shop(),
        "forest" => forest(),
        "cron" => cron(),
        "orphans" => orphans(),
        "shortcut" => MemTrace {
            root_name_shortcut: Some("from-store"),
            ..shop()
        },
        other => panic!("no trace {other}"),
    }
}

#[rstest]
// match-all and constants
#[case::empty_filter("shop", "{}", &[0, 1, 2])]
#[case::true_filter("shop", "{ true }", &[0, 1, 2])]
#[case::false_filter("shop", "{ false }", &[])]
#[case::constant_comparison("shop", "{ 2 ^ 3 = 8 }", &[0, 1, 2])]
// strings and every operator
#[case::name_eq("shop", r#"{ name = "POST /pay" }"#, &[1, 2])]
#[case::name_neq("shop", r#"{ name != "POST /pay" }"#, &[0])]
#[case::name_gt("shop", r#"{ name > "P" }"#, &[1, 2])]
#[case::name_gte("shop", r#"{ name >= "POST /pay" }"#, &[1, 2])]
#[case::name_lt("shop", r#"{ name < "P" }"#, &[0])]
#[case::name_lte("shop", r#"{ name <= "GET /checkout" }"#, &[0])]
#[case::regex_prefix("shop", r#"{ name =~ "GET.*" }"#, &[0])]
#[case::regex_is_anchored_start("shop", r#"{ name =~ "checkout" }"#, &[])]
#[case::regex_is_anchored_end("shop", r#"{ name =~ "GET" }"#, &[])]
#[case::regex_suffix("shop", r#"{ name =~ ".*pay" }"#, &[1, 2])]
#[case::regex_alternation_anchored("shop", r#"{ name =~ "GET|POST" }"#, &[])]
#[case::not_regex("shop", r#"{ name !~ "POST.*" }"#, &[0])]
#[case::regex_dot_matches_newline("cron", r#"{ span.job =~ "nightly.*" }"#, &[0])]
#[case::regex_raw_string("shop", r#"{ span.http.route =~ `/\w+` }"#, &[0])]
#[case::status_message("shop", r#"{ statusMessage = "boom" }"#, &[1])]
#[case::status_message_colon("shop", r#"{ span:statusMessage =~ "bo+m" }"#, &[1])]
// status and kind keywords
#[case::status_error("shop", "{ status = error }", &[1, 2])]
#[case::status_not_error("shop", "{ status != error }", &[0])]
#[case::status_unset("shop", "{ span:status = unset }", &[0])]
#[case::status_ok("cron", "{ status = ok }", &[0])]
#[case::kind_server("shop", "{ kind = server }", &[0, 2])]
#[case::kind_client("shop", "{ span:kind = client }", &[1])]
#[case::kind_internal("cron", "{ kind = internal }", &[0])]
#[case::kind_consumer("orphans", "{ kind = consumer }", &[0])]
// durations (computed from start/end when the store does not give them)
#[case::duration_gt("shop", "{ duration > 280ms }", &[0, 1])]
#[case::duration_lte("shop", "{ span:duration <= 290ms }", &[1, 2])]
#[case::duration_eq("shop", "{ duration = 0.5s }", &[0])]
#[case::duration_vs_int_nanos("shop", "{ duration > 400000000 }", &[0])]
#[case::duration_hours("cron", "{ duration < 1h }", &[0])]
// numbers, bools, type mismatches
#[case::int_gte("shop", "{ span.http.response.status_code >= 500 }", &[1])]
#[case::string_attr_vs_int_is_false("shop", "{ span.http.response.status_code = 503 }", &[1])]
#[case::string_attr_vs_string("shop", r#"{ span.http.response.status_code = "503" }"#, &[2])]
#[case::mismatch_neq_is_false("shop", "{ span.http.method != 1 }", &[])]
#[case::int_vs_float("shop", "{ span.http.response.status_code = 200.0 }", &[0])]
#[case::float_gt("shop", "{ span.ratio > 0.25 }", &[1])]
#[case::float_eq("shop", "{ span.ratio = 0.5 }", &[1])]
#[case::bool_eq("shop", "{ span.retry = true }", &[1])]
#[case::bool_neq("shop", "{ span.retry != false }", &[1])]
#[case::bool_attr_alone("shop", "{ span.retry }", &[1])]
#[case::bool_attr_negated("shop", "{ !span.retry }", &[])]
#[case::string_attr_alone_is_false("shop", "{ span.http.method }", &[])]
#[case::quoted_name("shop", r#"{ span."foo bar" = "baz" }"#, &[1])]
// missing attributes and nil
#[case::neq_needs_the_attribute("shop", r#"{ span.db.system != "mysql" }"#, &[2])]
#[case::nil_absent("shop", "{ span.db.system = nil }", &[0, 1])]
#[case::nil_present("shop", "{ span.db.system != nil }", &[2])]
#[case::nil_on_the_left("shop", "{ nil != span.db.system }", &[2])]
#[case::missing_gt_is_false("shop", "{ span.nope > 1 }", &[])]
#[case::negated_missing_comparison("shop", r#"{ !(span.db.system = "x") }"#, &[0, 1, 2])]
// scopes
#[case::resource_scope("shop", r#"{ resource.service.name = "frontend" }"#, &[0, 1])]
#[case::unscoped_falls_back_to_resource("shop", r#"{ .service.name = "payments" }"#, &[2])]
#[case::unscoped_prefers_span("shop", r#"{ .host.name = "span-host" }"#, &[2])]
#[case::unscoped_span_shadows_resource("shop", r#"{ .host.name = "db-1" }"#, &[])]
#[case::resource_scope_explicit("shop", r#"{ resource.host.name = "db-1" }"#, &[2])]
#[case::span_scope_ignores_resource("shop", r#"{ span.service.name = "frontend" }"#, &[])]
// arithmetic
#[case::add("shop", "{ span.http.response.status_code + 1 = 201 }", &[0])]
#[case::int_division("shop", "{ span.http.response.status_code / 100 = 5 }", &[1])]
#[case::modulo("shop", "{ span.http.response.status_code % 100 = 3 }", &[1])]
#[case::division_by_zero_is_false("shop", "{ span.http.response.status_code / 0 = 1 }", &[])]
#[case::duration_times_int("shop", "{ duration * 2 > 900ms }", &[0])]
#[case::float_math("shop", "{ span.ratio * 2 = 1 }", &[1])]
#[case::negation("shop", "{ -span.ratio < 0 }", &[1])]
#[case::precedence_mul_before_add("shop", "{ 1 + 2 * 3 = 7 }", &[0, 1, 2])]
#[case::pow_right_assoc("shop", "{ 2 ^ 3 ^ 2 = 512 }", &[0, 1, 2])]
// boolean logic inside a filter
#[case::and("shop", r#"{ name = "POST /pay" && kind = server }"#, &[2])]
#[case::or("shop", "{ kind = server || status = error }", &[0, 1, 2])]
#[case::and_or_same_precedence_left_assoc(
    "shop",
    "{ kind = server || kind = client && status = unset }",
    &[0]
)]
#[case::parens("shop", "{ kind = server || (kind = client && status = unset) }", &[0, 2])]
#[case::not_parens("shop", "{ !(kind = server) }", &[1])]
// between spansets
#[case::spansets_and_union("shop", "{ kind = server } && { kind = client }", &[0, 1, 2])]
#[case::spansets_and_needs_both("shop", r#"{ kind = server } && { name = "nope" }"#, &[])]
#[case::spansets_or("shop", "{ kind = client } || { span.db.system != nil }", &[1, 2])]
#[case::spansets_or_one_side("shop", r#"{ name = "nope" } || { kind = client }"#, &[1])]
#[case::spansets_grouped(
    "shop",
    r#"({ name = "nope" } || { kind = client }) && { status = unset }"#,
    &[0, 1]
)]
#[case::spansets_other_trace("cron", r#"{ name = "cron" } && { kind = internal }"#, &[0])]
// trace-level intrinsics
#[case::root_name("shop", r#"{ rootName = "GET /checkout" }"#, &[0, 1, 2])]
#[case::root_name_colon("shop", r#"{ trace:rootName =~ "GET.*" }"#, &[0, 1, 2])]
#[case::root_service("shop", r#"{ rootServiceName = "frontend" }"#, &[0, 1, 2])]
#[case::root_service_colon("shop", r#"{ trace:rootService = "payments" }"#, &[])]
#[case::root_service_and_span("shop", r#"{ rootServiceName = "frontend" && kind = client }"#, &[1])]
#[case::trace_duration("shop", "{ traceDuration >= 500ms }", &[0, 1, 2])]
#[case::trace_duration_colon("shop", "{ trace:duration < 500ms }", &[])]
#[case::no_root_no_root_name("orphans", r#"{ rootName != "x" }"#, &[])]
#[case::no_root_root_service_absent("orphans", "{ rootServiceName != nil }", &[])]
#[case::orphans_trace_duration("orphans", "{ traceDuration = 5ms }", &[0, 1])]
#[case::store_shortcut_wins("shortcut", r#"{ rootName = "from-store" }"#, &[0, 1, 2])]
// ids, children, events
#[case::trace_id("cron", r#"{ trace:id = "00000000000000000000000000000abc" }"#, &[0])]
#[case::span_id("shop", r#"{ span:id = "0000000000000002" }"#, &[1])]
#[case::parent_id("shop", r#"{ span:parentID = "0000000000000002" }"#, &[2])]
#[case::child_count("shop", "{ span:childCount = 1 }", &[0, 1])]
#[case::child_count_leaf("shop", "{ span:childCount = 0 }", &[2])]
#[case::drilldown_root_spans("shop", "{ nestedSetParent < 0 && true }", &[0])]
#[case::nested_set_parent("shop", "{ nestedSetParent = 1 }", &[1])]
#[case::nested_set_left_right("shop", "{ nestedSetLeft = 3 && nestedSetRight = 4 }", &[2])]
#[case::nested_set_root_bounds("shop", "{ nestedSetLeft = 1 && nestedSetRight = 6 }", &[0])]
#[case::nested_set_orphans_unnumbered("orphans", "{ nestedSetLeft = 0 }", &[0, 1])]
#[case::event_name("shop", r#"{ event:name = "exception" }"#, &[1])]
#[case::event_name_any_event("shop", r#"{ event:name = "retry" }"#, &[1])]
#[case::event_name_regex("shop", r#"{ event:name =~ "exc.*" }"#, &[1])]
#[case::event_name_neq_any("shop", r#"{ event:name != "exception" }"#, &[1])]
#[case::event_name_present("shop", "{ event:name != nil }", &[1])]
#[case::event_name_flipped("shop", r#"{ "retry" = event:name }"#, &[1])]
// arrays: any element matches; `!=` and `!~` need every element
#[case::array_first_element("shop", r#"{ span.http.request.header.accept = "text/html" }"#, &[0])]
#[case::array_second_element("shop", r#"{ .http.request.header.accept = "application/json" }"#, &[0])]
#[case::array_neq_one_element_equal("shop", r#"{ span.http.request.header.accept != "text/html" }"#, &[])]
#[case::array_neq_none_equal("shop", r#"{ span.http.request.header.accept != "text/plain" }"#, &[0])]
#[case::array_regex("shop", r#"{ span.http.request.header.accept =~ "app.*" }"#, &[0])]
#[case::array_not_regex_one_matches("shop", r#"{ span.http.request.header.accept !~ "text.*" }"#, &[])]
#[case::array_ints("shop", "{ span.ports > 100 }", &[0])]
#[case::array_ints_none_greater("shop", "{ span.ports > 1000 }", &[])]
#[case::array_present("shop", "{ span.ports != nil }", &[0])]
// event, link and instrumentation scopes
#[case::event_attr("shop", r#"{ event.exception.message =~ ".*timeout" }"#, &[1])]
#[case::event_attr_any_event("shop", "{ event.attempt = 2 }", &[1])]
#[case::event_attr_neq_any_event("shop", "{ event.attempt != 3 }", &[1])]
#[case::event_attr_absent("shop", "{ event.attempt = nil }", &[0, 2])]
#[case::unscoped_finds_event_attr("shop", "{ .attempt = 2 }", &[1])]
#[case::event_time_since_start("shop", "{ event:timeSinceStart >= 1ms }", &[1])]
#[case::event_name_and_attr(
    "shop",
    r#"{ event:name = "exception" && event.exception.message != nil }"#,
    &[1]
)]
#[case::link_attr("shop", r#"{ link.ref = "follows_from" }"#, &[1])]
#[case::link_trace_id("shop", r#"{ link:traceID = "0000000000000000000000000000beef" }"#, &[1])]
#[case::link_span_id_present("shop", "{ link:spanID != nil }", &[1])]
#[case::instrumentation_name("shop", r#"{ instrumentation:name = "shop-lib" }"#, &[0, 1, 2])]
#[case::instrumentation_version("shop", r#"{ instrumentation:version =~ "1\\..*" }"#, &[0, 1, 2])]
#[case::instrumentation_attr("shop", r#"{ instrumentation.telemetry.sdk.language = "rust" }"#, &[0, 1, 2])]
#[case::instrumentation_other_trace("cron", r#"{ instrumentation:name = "shop-lib" }"#, &[])]
// the parent's attributes (beyond Tempo)
#[case::parent_service_differs(
    "shop",
    "{ parent.resource.service.name != resource.service.name }",
    &[2]
)]
#[case::parent_span_attr("shop", r#"{ parent.span.http.method = "GET" }"#, &[1])]
#[case::parent_unscoped_span_first("shop", r#"{ parent.http.method = "POST" }"#, &[2])]
#[case::parent_unscoped_resource("shop", r#"{ parent.service.name = "frontend" }"#, &[1, 2])]
#[case::root_has_no_parent_attrs("shop", "{ parent.resource.service.name = nil }", &[0])]
#[case::parent_missing_from_the_trace("orphans", "{ parent.resource.service.name != nil }", &[1])]
// structural operators over two roots and an orphaned subtree (see `forest`)
#[case::descendant("forest", r#"{ name = "gateway" } >> { status = error }"#, &[2, 3])]
#[case::descendant_of_any("forest", "{ } >> { status = error }", &[2, 3, 5])]
#[case::descendant_not_self("forest", "{ } >> { }", &[1, 2, 3, 5])]
#[case::ancestor("forest", "{ status = error } << { }", &[0, 2, 4])]
#[case::child("forest", "{ kind = client } > { }", &[3])]
#[case::child_chain("forest", r#"{ name = "gateway" } > { } > { }"#, &[3])]
#[case::parent("forest", "{ status = error } < { }", &[0, 2, 4])]
#[case::sibling("forest", r#"{ name = "auth" } ~ { }"#, &[2])]
#[case::roots_are_siblings("forest", r#"{ name = "gateway" } ~ { }"#, &[4])]
#[case::orphan_has_no_siblings("forest", r#"{ name = "lost" } ~ { }"#, &[])]
#[case::orphan_has_no_parent("forest", r#"{ } > { name = "lost-child" }"#, &[])]
#[case::orphan_is_nobodys_descendant("forest", r#"{ name = "lost" } >> { }"#, &[])]
#[case::not_descendant("forest", r#"{ name = "gateway" } !>> { status = error }"#, &[5, 6])]
#[case::not_descendant_empty_lhs("forest", r#"{ name = "nope" } !>> { status = error }"#, &[2, 3, 5, 6])]
#[case::not_child("forest", "{ kind = client } !> { status = error }", &[2, 5, 6])]
#[case::not_parent("forest", "{ status = error } !< { }", &[1, 3, 5, 6, 7])]
#[case::not_ancestor("forest", "{ status = error } !<< { }", &[1, 3, 5, 6, 7])]
#[case::not_sibling("forest", r#"{ name = "auth" } !~ { }"#, &[0, 1, 3, 4, 5, 6, 7])]
#[case::negation_needs_rhs("forest", r#"{ } !> { name = "nope" }"#, &[])]
#[case::union_descendant("forest", r#"{ name = "gateway" } &>> { status = error }"#, &[0, 2, 3])]
#[case::union_ancestor("forest", "{ status = error } &<< { }", &[0, 2, 3, 4, 5])]
#[case::union_child("forest", "{ kind = client } &> { }", &[2, 3])]
#[case::union_parent("forest", "{ status = error } &< { }", &[0, 2, 3, 4, 5])]
#[case::union_sibling("forest", r#"{ name = "auth" } &~ { }"#, &[1, 2])]
#[case::union_sibling_all("forest", "{ } &~ { }", &[0, 1, 2, 4])]
#[case::union_without_pairs("forest", r#"{ name = "lost" } &>> { }"#, &[])]
#[case::structural_then_and(
    "forest",
    r#"({ name = "gateway" } >> { status = error }) && { name = "cron" }"#,
    &[2, 3, 4]
)]
#[case::structural_in_shop("shop", "{ kind = server } >> { kind = server }", &[2])]
// Grafana search builder queries
#[case::grafana_builder(
    "shop",
    r#"{resource.service.name="frontend" && span.http.response.status_code>=500 && duration>100ms}"#,
    &[1]
)]
#[case::grafana_status("shop", "{status=error}", &[1, 2])]
#[case::grafana_name_regex("shop", r#"{name=~"GET.*"}"#, &[0])]
#[case::grafana_unscoped("shop", r#"{.http.method="GET"}"#, &[0])]
fn eval(#[case] trace_name: &str, #[case] query: &str, #[case] want: &[usize]) {
    let q = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let t = trace(trace_name);
    assert_eq!(q.eval(&t), want, "{query}");

    // Soundness of the pre-filter: a trace that matches satisfies every condition.
    if !want.is_empty() {
        for c in q.conditions() {
            let satisfied = (0..t.span_count())
                .any(|i| field_values(&t, i, &c.field).iter().any(|v| c.matches(v)));
            assert!(
                satisfied,
                "{query}: condition {c:?} would skip a matching trace"
            );
        }
    }
}

/// A field as written in a query (`.a`, `span.a`, `event:name`).
fn field_name(f: &ConditionField) -> String {
    match f {
        ConditionField::Attribute { scope: None, name } => format!(".{name}"),
        ConditionField::Attribute {
            scope: Some(scope),
            name,
        } => format!("{}.{name}", scope.as_str()),
        ConditionField::Intrinsic(i) => i.as_str().to_string(),
    }
}

/// What a store would check a condition against: every value the field has on a span.
fn field_values<'a>(t: &'a MemTrace, span: usize, field: &ConditionField) -> Vec<Value<'a>> {
    match field {
        ConditionField::Attribute {
            scope: Some(scope),
            name,
        } => t.attribute_values(span, *scope, name),
        ConditionField::Attribute { scope: None, name } => [
            AttrScope::Span,
            AttrScope::Resource,
            AttrScope::Event,
            AttrScope::Link,
            AttrScope::Instrumentation,
        ]
        .iter()
        .flat_map(|scope| t.attribute_values(span, *scope, name))
        .collect(),
        ConditionField::Intrinsic(
            i @ (Intrinsic::EventName
            | Intrinsic::EventTimeSinceStart
            | Intrinsic::LinkTraceId
            | Intrinsic::LinkSpanId),
        ) => t.intrinsic_values(span, *i),
        ConditionField::Intrinsic(Intrinsic::Duration) => {
            vec![Value::Duration(
                t.end_unix_nanos(span) - t.start_unix_nanos(span),
            )]
        }
        ConditionField::Intrinsic(Intrinsic::RootServiceName) => (0..t.span_count())
            .filter(|&i| t.is_root(i))
            .filter_map(|i| t.attribute(i, AttrScope::Resource, "service.name"))
            .collect(),
        ConditionField::Intrinsic(Intrinsic::RootName) => (0..t.span_count())
            .filter(|&i| t.is_root(i))
            .filter_map(|i| t.intrinsic(i, Intrinsic::Name))
            .chain(t.root_name_shortcut.map(s))
            .collect(),
        ConditionField::Intrinsic(Intrinsic::TraceDuration) => {
            let start = (0..t.span_count())
                .map(|i| t.start_unix_nanos(i))
                .min()
                .unwrap_or(0);
            let end = (0..t.span_count())
                .map(|i| t.end_unix_nanos(i))
                .max()
                .unwrap_or(0);
            vec![Value::Duration(end - start)]
        }
        ConditionField::Intrinsic(i) => t.intrinsic(span, *i).into_iter().collect(),
    }
}

#[rstest]
#[case::grafana_builder(
    r#"{resource.service.name="frontend" && span.http.response.status_code>=500 && duration>100ms}"#,
    &["resource.service.name Eq", "span.http.response.status_code Gte", "duration Gt"]
)]
#[case::or_gives_nothing("{ .a = 1 || .b = 2 }", &[])]
#[case::or_keeps_common("{ (.a = 1 && .c = 3) || (.a = 1 && .d = 4) }", &[".a Eq"])]
#[case::neq_gives_nothing("{ .a != 1 }", &[])]
#[case::not_regex_gives_nothing(r#"{ .a !~ "x" }"#, &[])]
#[case::negation_gives_nothing("{ !(.a = 1) }", &[])]
#[case::nil_gives_nothing("{ .a = nil }", &[])]
#[case::arithmetic_gives_nothing("{ .a + 1 = 2 }", &[])]
#[case::flipped("{ 1 < .a }", &[".a Gt"])]
#[case::regex(r#"{ name =~ "GET.*" }"#, &["name Re"])]
#[case::spanset_and("{ .a = 1 } && { .b = 2 }", &[".a Eq", ".b Eq"])]
#[case::spanset_or("{ .a = 1 } || { .b = 2 }", &[])]
#[case::match_all("{}", &[])]
#[case::intrinsics("{ rootServiceName = \"x\" && status = error }", &["rootServiceName Eq", "status Eq"])]
fn conditions(#[case] query: &str, #[case] want: &[&str]) {
    let q = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let got: Vec<String> = q
        .conditions()
        .iter()
        .map(|c| {
            let field = field_name(&c.field);
            format!("{field} {:?}", c.op)
        })
        .collect();
    assert_eq!(got, want, "{query}");
}

#[rstest]
#[case::eq_int(CompareOp::Eq, Value::Int(5), Value::Int(5), true)]
#[case::eq_int_float(CompareOp::Eq, Value::Float(5.0), Value::Int(5), true)]
#[case::eq_string_int(CompareOp::Eq, s("5"), Value::Int(5), false)]
#[case::gt_duration(CompareOp::Gt, Value::Duration(2 * MS), Value::Duration(MS), true)]
#[case::lt_string(CompareOp::Lt, s("a"), s("b"), true)]
#[case::nil_never(CompareOp::Eq, Value::Nil, Value::Int(1), false)]
fn condition_matches(
    #[case] op: CompareOp,
    #[case] value: Value<'static>,
    #[case] literal: Value<'static>,
    #[case] want: bool,
) {
    let query = format!(
        "{{ .x {} {literal} }}",
        match op {
            CompareOp::Eq => "=",
            CompareOp::Lt => "<",
            CompareOp::Lte => "<=",
            CompareOp::Gt => ">",
            CompareOp::Gte => ">=",
            CompareOp::Re => "=~",
        }
    );
    let q = parse(&query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let conds = q.conditions();
    assert_eq!(conds.len(), 1, "{query}");
    assert_eq!(conds[0].matches(&value), want, "{query} with {value:?}");
}

#[rstest]
#[case::empty("{}", true)]
#[case::true_filter("{ true }", true)]
#[case::spaces("{   }", true)]
#[case::with_hint("{} with (most_recent=true)", true)]
#[case::condition("{ .a = 1 }", false)]
#[case::false_filter("{ false }", false)]
#[case::two_spansets("{} && {}", false)]
fn match_all(#[case] query: &str, #[case] want: bool) {
    let q = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    assert_eq!(q.is_match_all(), want, "{query}");
    if want {
        assert_eq!(q.eval(&shop()), vec![0, 1, 2]);
    }
}

#[test]
fn hints_are_readable() {
    let q = parse("{ } with (most_recent=true, sample=0.1)").expect("parses");
    assert_eq!(q.hint_bool("most_recent"), Some(true));
    assert_eq!(q.hint_bool("sample"), None);
    assert_eq!(q.hint_bool("absent"), None);
}

#[test]
fn empty_trace_matches_nothing() {
    let empty = MemTrace {
        id: "",
        resources: vec![],
        spans: vec![],
        root_name_shortcut: None,
        scope: ("", "", Vec::new()),
    };
    for query in ["{}", "{ traceDuration = 0s }", "{ true } || { true }"] {
        let q = parse(query).expect("parses");
        assert!(q.eval(&empty).is_empty(), "{query}");
    }
}

#[rstest]
#[case::long_and_chain(format!("{{ {} }}", vec!["span.retry = true"; 500].join(" && ")), &[1][..])]
#[case::long_or_chain(format!("{{ {} }}", vec![".nope = 1"; 500].join(" || ")), &[][..])]
#[case::deep_negation(format!("{{ {}(kind = client) }}", "!".repeat(250)), &[1][..])]
#[case::deep_parens(format!("{{ {}kind = client{} }}", "(".repeat(250), ")".repeat(250)), &[1][..])]
fn deepest_accepted_trees_evaluate(#[case] query: String, #[case] want: &[usize]) {
    let q = parse(&query).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(q.eval(&shop()), want);
}

#[rstest]
#[case::grafana_builder(
    r#"{resource.service.name="frontend" && span.http.response.status_code>=500 && duration>100ms}"#,
    &["resource.service.name", "span.http.response.status_code", "duration"]
)]
#[case::dedup_and_order(r#"{ .a = 1 || status = error } && { .a = 2 && name = "x" }"#, &[".a", "status", "name"])]
#[case::inside_negation_and_math("{ !(.a + span.b = 1) }", &[".a", "span.b"])]
#[case::match_all("{}", &[])]
#[case::intrinsics_colon("{ span:kind = server && trace:rootService = \"x\" }", &["kind", "rootServiceName"])]
fn referenced_fields(#[case] query: &str, #[case] want: &[&str]) {
    let q = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let got: Vec<String> = q.referenced_fields().iter().map(field_name).collect();
    assert_eq!(got, want, "{query}");
}
