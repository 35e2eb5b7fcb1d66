//! What search results print on matched spans: every attribute and intrinsic the query names,
//! under Tempo's keys, with the array element that matched; live and in blocks.
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, span},
};
use rstest::rstest;

use super::{Filter, OutVal, SearchSpec};
use crate::{ManualClock, Store, ids::SINGLE_TENANT, testutil::*};

fn strs(key: &str, values: &[&str]) -> KeyValue {
    let values = values
        .iter()
        .map(|v| AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        })
        .collect();
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
        }),
        ..Default::default()
    }
}

/// One server span with an array attribute, an event, a link and an instrumentation scope.
fn request() -> ExportTraceServiceRequest {
    let mut s = with_error(with_attrs(
        span(1, 1, 0, "GET /x", 0, 10),
        vec![
            kv_s("http.method", "GET"),
            strs(
                "http.request.header.accept",
                &["text/html", "application/json"],
            ),
        ],
    ));
    s.events = vec![span::Event {
        time_unix_nano: s.start_time_unix_nano + 2_000_000,
        name: "exception".into(),
        attributes: vec![kv_s("exception.message", "timeout")],
        ..Default::default()
    }];
    s.links = vec![span::Link {
        trace_id: tid(9).to_vec(),
        span_id: 7u64.to_be_bytes().to_vec(),
        attributes: vec![kv_s("ref", "follows_from")],
        ..Default::default()
    }];
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_s("service.name", "web")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    version: "1.0".into(),
                    attributes: vec![kv_s("lang", "rust")],
                    ..Default::default()
                }),
                spans: vec![s],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn str_val(s: &str) -> OutVal {
    OutVal::Str(s.to_string())
}

#[rstest]
#[case::negated(r#"{ span.http.method != "POST" }"#, vec![("http.method", str_val("GET"))])]
#[case::array_element_that_matched(
    r#"{ span.http.request.header.accept = "application/json" }"#,
    vec![("http.request.header.accept", str_val("application/json"))]
)]
#[case::array_presence_shows_first(
    "{ span.http.request.header.accept != nil }",
    vec![("http.request.header.accept", str_val("text/html"))]
)]
#[case::status_intrinsics(
    r#"{ statusMessage = "boom" && span:status = error }"#,
    vec![("statusMessage", str_val("boom")), ("status", str_val("error"))]
)]
#[case::events(
    r#"{ event:name = "exception" && event.exception.message =~ "time.*" }"#,
    vec![("event:name", str_val("exception")), ("exception.message", str_val("timeout"))]
)]
#[case::event_time(
    "{ event:timeSinceStart > 1ms }",
    vec![("event:timeSinceStart", str_val("2ms"))]
)]
#[case::links(
    r#"{ link.ref = "follows_from" && link:spanID != nil }"#,
    vec![("ref", str_val("follows_from")), ("link:spanID", str_val("0000000000000007"))]
)]
#[case::instrumentation(
    r#"{ instrumentation:name = "lib" && instrumentation.lang = "rust" }"#,
    vec![("instrumentation:name", str_val("lib")), ("lang", str_val("rust"))]
)]
#[case::name_and_duration_are_not_attributes(
    r#"{ name = "GET /x" && duration > 1ms && kind = server }"#,
    vec![("kind", str_val("server"))]
)]
#[case::absent_fields_left_out(
    r#"{ .http.method = "GET" || .nope = 1 }"#,
    vec![("http.method", str_val("GET"))]
)]
#[case::computed_intrinsics(
    "{ nestedSetParent < 0 && span:childCount = 0 }",
    vec![("nestedSetParent", OutVal::Int(-1)), ("span:childCount", OutVal::Int(0))]
)]
#[case::unscoped_event_attribute(
    r#"{ .exception.message = "timeout" }"#,
    vec![("exception.message", str_val("timeout"))]
)]
fn span_sets_list_referenced_fields(#[case] q: &str, #[case] want: Vec<(&str, OutVal)>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&cfg(dir.path()), ManualClock::new(T0)).unwrap();
    store.ingest(SINGLE_TENANT, request()).unwrap();
    let spec = SearchSpec {
        filter: Filter::TraceQl(sonde_traceql::parse(q).unwrap()),
        min_duration_ns: None,
        max_duration_ns: None,
        start_ns: T0 - 3_600_000_000_000,
        end_ns: T0 + 3_600_000_000_000,
        limit: 20,
        spss: 3,
    };
    let want: Vec<(String, OutVal)> = want.into_iter().map(|(k, v)| (k.into(), v)).collect();
    for when in ["live", "blocks"] {
        if when == "blocks" {
            store.maintain(true);
        }
        let r = store.search(&[SINGLE_TENANT.to_string()], &spec).unwrap();
        assert_eq!(r.traces.len(), 1, "{q} ({when})");
        let spans = &r.traces[0].span_sets[0].spans;
        assert_eq!(spans[0].attrs, want, "{q} ({when})");
        let named = q.starts_with("{ name =");
        assert_eq!(spans[0].name.is_some(), named, "{q} ({when})");
    }
}

/// `tags=` search matches any element of an array attribute, as TraceQL does.
#[rstest]
#[case::first_element("text/html", 1)]
#[case::second_element("application/json", 1)]
#[case::no_element("text/plain", 0)]
fn tag_search_matches_array_elements(#[case] value: &str, #[case] want: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&cfg(dir.path()), ManualClock::new(T0)).unwrap();
    store.ingest(SINGLE_TENANT, request()).unwrap();
    let spec = SearchSpec {
        filter: Filter::Tags(vec![(
            "http.request.header.accept".to_string(),
            value.to_string(),
        )]),
        min_duration_ns: None,
        max_duration_ns: None,
        start_ns: T0 - 3_600_000_000_000,
        end_ns: T0 + 3_600_000_000_000,
        limit: 20,
        spss: 3,
    };
    let r = store.search(&[SINGLE_TENANT.to_string()], &spec).unwrap();
    assert_eq!(r.traces.len(), want, "{value}");
}
