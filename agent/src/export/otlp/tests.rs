//! Table tests for the OTLP conversion.
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind as OtlpKind, status::StatusCode};
use rstest::rstest;

use super::*;
use crate::{
    export::testutil::{attr, i, resource, s, server_span},
    span::SpanLink,
};

fn client_span() -> HttpSpan {
    HttpSpan {
        kind: SpanKind::Client,
        local: "10.0.0.1:40000".parse().unwrap(),
        peer: "10.0.0.2:9000".parse().unwrap(),
        host: Some("api.internal:9000".to_owned()),
        route: None,
        ..server_span()
    }
}

#[rstest]
#[case::plain("example.com", Some(("example.com", None)))]
#[case::with_port("example.com:8080", Some(("example.com", Some(8080))))]
#[case::ipv6_port("[::1]:80", Some(("::1", Some(80))))]
#[case::ipv6_no_port("[::1]", Some(("::1", None)))]
#[case::bare_ipv6("::1", Some(("::1", None)))]
#[case::spaces("  a.b:1  ", Some(("a.b", Some(1))))]
#[case::empty("", None)]
#[case::only_port(":80", None)]
#[case::bad_port("a.b:http", None)]
#[case::port_overflow("a.b:99999", None)]
#[case::unclosed_bracket("[::1:80", None)]
#[case::empty_brackets("[]:80", None)]
#[case::junk_after_bracket("[::1]x", None)]
fn host_header(#[case] input: &str, #[case] want: Option<(&str, Option<u16>)>) {
    assert_eq!(split_host(input), want);
}

#[rstest]
#[case::route("GET", Some("/items/{id}"), "GET /items/{id}")]
#[case::no_route("POST", None, "POST")]
#[case::empty_route("PUT", Some(""), "PUT")]
#[case::unknown_method("FOO", Some("/x"), "HTTP /x")]
#[case::lowercase_is_unknown("get", None, "HTTP")]
fn name(#[case] method: &str, #[case] route: Option<&str>, #[case] want: &str) {
    let span = HttpSpan {
        method: method.into(),
        route: route.map(Into::into),
        ..server_span()
    };
    assert_eq!(span_name(&span), want);
}

#[rstest]
#[case::server_ok(SpanKind::Server, Some(200), None, StatusCode::Unset, None)]
#[case::server_404(SpanKind::Server, Some(404), None, StatusCode::Unset, None)]
#[case::server_500(SpanKind::Server, Some(500), None, StatusCode::Error, Some("500"))]
#[case::server_503(SpanKind::Server, Some(503), None, StatusCode::Error, Some("503"))]
#[case::client_404(SpanKind::Client, Some(404), None, StatusCode::Error, Some("404"))]
#[case::client_302(SpanKind::Client, Some(302), None, StatusCode::Unset, None)]
#[case::client_502(SpanKind::Client, Some(502), None, StatusCode::Error, Some("502"))]
#[case::no_status_error_type(
    SpanKind::Server,
    None,
    Some("timeout"),
    StatusCode::Error,
    Some("timeout")
)]
#[case::status_wins_over_error_type(
    SpanKind::Server,
    Some(500),
    Some("x"),
    StatusCode::Error,
    Some("500")
)]
#[case::ok_status_with_error_type(
    SpanKind::Server,
    Some(200),
    Some("connection_closed"),
    StatusCode::Error,
    Some("connection_closed")
)]
#[case::empty_error_type(SpanKind::Client, None, Some(""), StatusCode::Unset, None)]
#[case::invalid_code(SpanKind::Server, Some(999), None, StatusCode::Error, Some("999"))]
#[case::zero_code(SpanKind::Server, Some(0), None, StatusCode::Error, Some("0"))]
#[case::nothing(SpanKind::Client, None, None, StatusCode::Unset, None)]
fn status(
    #[case] kind: SpanKind,
    #[case] code: Option<u16>,
    #[case] error_type: Option<&str>,
    #[case] want_code: StatusCode,
    #[case] want_error_type: Option<&str>,
) {
    let span = HttpSpan {
        kind,
        status_code: code,
        error_type: error_type.map(Into::into),
        ..server_span()
    };
    let otlp = to_otlp_span(&span, ConvertOptions::default());
    assert_eq!(otlp.status.as_ref().unwrap().code, want_code as i32);
    assert_eq!(
        attr(&otlp.attributes, "error.type").cloned(),
        want_error_type.and_then(s)
    );
    assert_eq!(
        attr(&otlp.attributes, "http.response.status_code").cloned(),
        code.and_then(|c| i(i64::from(c)))
    );
}

#[test]
fn server_span_fields() {
    let mut span = server_span();
    span.parent_span_id = Some([0x33; 8]);
    span.trace_state = Some("vendor=x".into());
    span.link = crate::span::LinkKind::Connection;
    span.links = vec![SpanLink {
        trace_id: [0x44; 16],
        span_id: [0x55; 8],
    }];
    let o = to_otlp_span(&span, ConvertOptions::default());
    assert_eq!(o.name, "GET /items/{id}");
    assert_eq!(o.kind, OtlpKind::Server as i32);
    assert_eq!(o.trace_id, vec![0x11; 16]);
    assert_eq!(o.span_id, vec![0x22; 8]);
    assert_eq!(o.parent_span_id, vec![0x33; 8]);
    assert_eq!(o.trace_state, "vendor=x");
    assert_eq!(o.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(o.end_time_unix_nano, 1_700_000_000_001_230_000);
    assert_eq!(o.links.len(), 1);
    assert_eq!(o.links[0].trace_id, vec![0x44; 16]);
    assert_eq!(o.links[0].span_id, vec![0x55; 8]);
    let a = &o.attributes;
    assert_eq!(attr(a, "http.request.method").cloned(), s("GET"));
    assert_eq!(attr(a, "url.path").cloned(), s("/items/42"));
    assert_eq!(attr(a, "url.scheme").cloned(), s("http"));
    assert_eq!(attr(a, "url.query"), None, "query is off by default");
    assert_eq!(attr(a, "url.full"), None, "url.full is for client spans");
    assert_eq!(attr(a, "http.route").cloned(), s("/items/{id}"));
    assert_eq!(attr(a, "http.response.status_code").cloned(), i(200));
    assert_eq!(attr(a, "server.address").cloned(), s("localhost"));
    assert_eq!(attr(a, "server.port").cloned(), i(8000));
    assert_eq!(attr(a, "client.address").cloned(), s("127.0.0.1"));
    assert_eq!(attr(a, "client.port").cloned(), i(50000));
    assert_eq!(attr(a, "network.peer.address").cloned(), s("127.0.0.1"));
    assert_eq!(attr(a, "network.peer.port").cloned(), i(50000));
    assert_eq!(attr(a, "network.protocol.version").cloned(), s("1.1"));
    assert_eq!(attr(a, "user_agent.original").cloned(), s("curl/8.5.0"));
    assert_eq!(attr(a, "http.request.body.size").cloned(), i(0));
    assert_eq!(attr(a, "http.response.body.size").cloned(), i(17));
    assert_eq!(attr(a, "error.type"), None);
    assert_eq!(attr(a, "sonde.link").cloned(), s("connection"));
}

#[test]
fn server_span_without_host_or_extras() {
    let span = HttpSpan {
        host: None,
        route: None,
        user_agent: None,
        request_body_size: None,
        response_body_size: None,
        protocol_version: "",
        local: "[::1]:8443".parse().unwrap(),
        peer: "[::1]:1".parse().unwrap(),
        start_unix_ns: 10,
        end_unix_ns: 5,
        ..server_span()
    };
    let o = to_otlp_span(&span, ConvertOptions::default());
    assert_eq!(o.name, "GET");
    assert_eq!(o.end_time_unix_nano, 10, "end never precedes start");
    assert!(o.parent_span_id.is_empty());
    let a = &o.attributes;
    assert_eq!(attr(a, "http.route"), None);
    assert_eq!(attr(a, "server.address").cloned(), s("::1"));
    assert_eq!(attr(a, "server.port").cloned(), i(8443));
    assert_eq!(attr(a, "network.protocol.version"), None);
    assert_eq!(attr(a, "user_agent.original"), None);
    assert_eq!(attr(a, "http.request.body.size"), None);
    assert_eq!(attr(a, "http.response.body.size"), None);
    assert_eq!(attr(a, "sonde.link").cloned(), s("none"));
}

#[rstest]
#[case::host_with_port(
    Some("api.internal:9000"),
    "api.internal",
    9000,
    "http://api.internal:9000/items/42"
)]
#[case::host_without_port(
    Some("api.internal"),
    "api.internal",
    9000,
    "http://api.internal:9000/items/42"
)]
#[case::default_port(
    Some("api.internal:80"),
    "api.internal",
    80,
    "http://api.internal/items/42"
)]
#[case::no_host(None, "10.0.0.2", 9000, "http://10.0.0.2:9000/items/42")]
#[case::garbage_host(Some(":::x]"), ":::x]", 9000, "http://[:::x]]:9000/items/42")]
#[case::ipv6_host(Some("[fe80::1]:81"), "fe80::1", 81, "http://[fe80::1]:81/items/42")]
fn client_addresses(
    #[case] host: Option<&str>,
    #[case] want_addr: &str,
    #[case] want_port: i64,
    #[case] want_url: &str,
) {
    let span = HttpSpan {
        host: host.map(Into::into),
        ..client_span()
    };
    let o = to_otlp_span(&span, ConvertOptions::default());
    assert_eq!(o.kind, OtlpKind::Client as i32);
    assert_eq!(o.name, "GET");
    let a = &o.attributes;
    assert_eq!(attr(a, "server.address").cloned(), s(want_addr));
    assert_eq!(attr(a, "server.port").cloned(), i(want_port));
    assert_eq!(attr(a, "url.full").cloned(), s(want_url));
    assert_eq!(attr(a, "client.address"), None);
    assert_eq!(attr(a, "http.route"), None);
    assert_eq!(attr(a, "network.peer.address").cloned(), s("10.0.0.2"));
    assert_eq!(attr(a, "network.peer.port").cloned(), i(9000));
}

#[rstest]
#[case::off_server(SpanKind::Server, false, Some("q=1"), None, None)]
#[case::on_server(SpanKind::Server, true, Some("q=1"), Some("q=1"), None)]
#[case::on_empty(SpanKind::Server, true, Some(""), None, None)]
#[case::on_none(SpanKind::Server, true, None, None, None)]
#[case::off_client(
    SpanKind::Client,
    false,
    Some("token=x"),
    None,
    Some("http://api.internal:9000/items/42")
)]
#[case::on_client(
    SpanKind::Client,
    true,
    Some("a=b"),
    Some("a=b"),
    Some("http://api.internal:9000/items/42?a=b")
)]
fn query_option(
    #[case] kind: SpanKind,
    #[case] export_query: bool,
    #[case] query: Option<&str>,
    #[case] want_query: Option<&str>,
    #[case] want_full: Option<&str>,
) {
    let span = HttpSpan {
        kind,
        query: query.map(Into::into),
        ..client_span()
    };
    let a = span_attributes(&span, ConvertOptions { export_query });
    assert_eq!(attr(&a, "url.query").cloned(), want_query.and_then(s));
    assert_eq!(attr(&a, "url.full").cloned(), want_full.and_then(s));
}

#[test]
fn unknown_method_is_other() {
    let span = HttpSpan {
        method: "PROPFIND".into(),
        ..server_span()
    };
    let a = span_attributes(&span, ConvertOptions::default());
    assert_eq!(attr(&a, "http.request.method").cloned(), s("_OTHER"));
    assert_eq!(
        attr(&a, "http.request.method_original").cloned(),
        s("PROPFIND")
    );
}

#[test]
fn oversized_body_size_saturates() {
    let span = HttpSpan {
        response_body_size: Some(u64::MAX),
        ..server_span()
    };
    let a = span_attributes(&span, ConvertOptions::default());
    assert_eq!(attr(&a, "http.response.body.size").cloned(), i(i64::MAX));
}

#[test]
fn batch_groups_by_resource_in_order() {
    let a = resource(1, "a");
    let b = resource(2, "b");
    // Equal content behind a different Arc groups with `a`.
    let a2 = Arc::new((*a).clone());
    let span = |n: u8| HttpSpan {
        span_id: [n; 8],
        ..server_span()
    };
    let batch = vec![
        (a.clone(), span(1)),
        (b.clone(), span(2)),
        (a2, span(3)),
        (b.clone(), span(4)),
        (a.clone(), span(5)),
    ];
    let req = build_request(&batch, ConvertOptions::default());
    assert_eq!(span_count(&req), 5);
    assert_eq!(req.resource_spans.len(), 2);
    let names: Vec<Option<Value>> = req
        .resource_spans
        .iter()
        .map(|rs| attr(&rs.resource.as_ref().unwrap().attributes, "service.name").cloned())
        .collect();
    assert_eq!(names, vec![s("a"), s("b")]);
    let ids = |k: usize| -> Vec<u8> {
        req.resource_spans[k].scope_spans[0]
            .spans
            .iter()
            .map(|sp| sp.span_id[0])
            .collect()
    };
    assert_eq!(ids(0), vec![1, 3, 5]);
    assert_eq!(ids(1), vec![2, 4]);
    for rs in &req.resource_spans {
        assert_eq!(rs.scope_spans.len(), 1);
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(scope.name, "sonde");
        assert_eq!(scope.version, SDK_VERSION);
        let pid = attr(&rs.resource.as_ref().unwrap().attributes, "process.pid");
        assert!(matches!(pid, Some(Value::IntValue(1 | 2))), "{pid:?}");
    }
}

#[test]
fn empty_batch_is_empty_request() {
    let req = build_request(&[], ConvertOptions::default());
    assert!(req.resource_spans.is_empty());
    assert_eq!(span_count(&req), 0);
}
