//! The wire encoder writes the same message as the struct conversion: every case is encoded
//! both ways and compared after prost decodes the bytes.
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use rstest::rstest;

use super::*;
use crate::{
    export::{
        otlp::build_request,
        testutil::{resource, server_span},
    },
    span::{
        SpanLink,
        resource::{AttrValue, ResourceAttr},
    },
};

fn client_span() -> HttpSpan {
    HttpSpan {
        kind: SpanKind::Client,
        local: "10.0.0.1:40000".parse().expect("addr"),
        peer: "10.0.0.2:9000".parse().expect("addr"),
        host: Some("api.internal:9000".to_owned()),
        route: None,
        ..server_span()
    }
}

fn same_as_structs(batch: &[(Arc<ProcessResource>, HttpSpan)], opts: ConvertOptions) {
    let bytes = WireEncoder::default().encode(batch, opts);
    let decoded = ExportTraceServiceRequest::decode(bytes.as_ref()).expect("valid protobuf");
    let want = build_request(batch, opts);
    assert_eq!(decoded, want);
    // Field order aside, the sizes agree too: nothing extra, nothing missing.
    assert_eq!(bytes.len(), want.encoded_len());
}

#[rstest]
#[case::server(server_span())]
#[case::client(client_span())]
#[case::client_no_host(HttpSpan { host: None, ..client_span() })]
#[case::client_default_port(HttpSpan { host: Some("a.b".into()), ..client_span() })]
#[case::client_ipv6(HttpSpan { host: None, peer: "[::1]:8080".parse().expect("addr"), ..client_span() })]
#[case::client_404(HttpSpan { status_code: Some(404), ..client_span() })]
#[case::server_ipv6_no_host(HttpSpan {
    host: None,
    local: "[fe80::1]:80".parse().expect("addr"),
    peer: "[fe80::2]:5000".parse().expect("addr"),
    ..server_span()
})]
#[case::server_500(HttpSpan { status_code: Some(500), ..server_span() })]
#[case::invalid_status(HttpSpan { status_code: Some(999), ..server_span() })]
#[case::timeout(HttpSpan { status_code: None, error_type: Some("timeout".into()), ..server_span() })]
#[case::unknown_method(HttpSpan { method: "BREW".into(), ..server_span() })]
#[case::no_route(HttpSpan { route: None, ..server_span() })]
#[case::empty_route(HttpSpan { route: Some(String::new()), ..server_span() })]
#[case::empty_strings(HttpSpan {
    path: String::new(),
    protocol_version: "",
    user_agent: Some(String::new()),
    ..server_span()
})]
#[case::no_sizes(HttpSpan { request_body_size: None, response_body_size: None, ..server_span() })]
#[case::huge_size(HttpSpan { response_body_size: Some(u64::MAX), ..server_span() })]
#[case::parent_state_links(HttpSpan {
    parent_span_id: Some([7; 8]),
    trace_state: Some("vendor=a".into()),
    links: vec![SpanLink { trace_id: [1; 16], span_id: [2; 8] }; 2],
    ..server_span()
})]
#[case::end_before_start(HttpSpan { end_unix_ns: 5, start_unix_ns: 10, ..server_span() })]
#[case::zero_times(HttpSpan { end_unix_ns: 0, start_unix_ns: 0, ..server_span() })]
fn one_span(#[case] span: HttpSpan) {
    for export_query in [false, true] {
        same_as_structs(
            &[(resource(1234, "svc"), span.clone())],
            ConvertOptions { export_query },
        );
    }
}

#[test]
fn groups_by_process_in_order_of_first_appearance() {
    let a = resource(1, "a");
    let b = resource(2, "b");
    let a_again = resource(1, "a");
    let batch = vec![
        (a.clone(), server_span()),
        (b.clone(), client_span()),
        (a_again, server_span()),
        (b, server_span()),
        (a, client_span()),
    ];
    same_as_structs(&batch, ConvertOptions::default());
}

#[test]
fn resource_values_of_every_kind() {
    let r = Arc::new(ProcessResource {
        pid: 9,
        service_name: "svc".into(),
        attributes: vec![
            ResourceAttr {
                key: "service.name".into(),
                value: AttrValue::Str("svc".into()),
            },
            ResourceAttr {
                key: "process.pid".into(),
                value: AttrValue::Int(9),
            },
            ResourceAttr {
                key: "negative".into(),
                value: AttrValue::Int(-3),
            },
            ResourceAttr {
                key: "empty".into(),
                value: AttrValue::Str(String::new()),
            },
            ResourceAttr {
                key: String::new(),
                value: AttrValue::Int(0),
            },
        ],
    });
    same_as_structs(&[(r, server_span())], ConvertOptions::default());
}

#[test]
fn empty_batch_is_an_empty_request() {
    let bytes = WireEncoder::default().encode(&[], ConvertOptions::default());
    assert!(bytes.is_empty());
}

#[test]
fn the_encoder_can_be_reused() {
    let mut enc = WireEncoder::default();
    let big: Vec<_> = (0..300)
        .map(|_| (resource(1, "a"), server_span()))
        .collect();
    let first = enc.encode(&big, ConvertOptions::default());
    let small = [(resource(2, "b"), client_span())];
    let second = enc.encode(&small, ConvertOptions::default());
    assert_eq!(
        ExportTraceServiceRequest::decode(second.as_ref()).expect("valid"),
        build_request(&small, ConvertOptions::default())
    );
    assert_eq!(
        ExportTraceServiceRequest::decode(first.as_ref()).expect("valid"),
        build_request(&big, ConvertOptions::default())
    );
}

#[rstest]
#[case::exact(2, 300)]
#[case::shrinks(3, 5)]
#[case::shrinks_to_zero(2, 0)]
#[case::grows(1, 20_000)]
#[case::grows_a_lot(1, 3_000_000)]
fn nested_lengths_are_minimal_varints(#[case] guess: usize, #[case] len: usize) {
    let mut out = vec![0xAA];
    nested(&mut out, 2, guess, |o| {
        o.extend(std::iter::repeat_n(7u8, len))
    });
    let mut buf = &out[1..];
    let (tag, wire) = prost::encoding::decode_key(&mut buf).expect("key");
    assert_eq!((tag, wire), (2, WireType::LengthDelimited));
    let n = prost::encoding::decode_varint(&mut buf).expect("length");
    assert_eq!(n as usize, len);
    assert_eq!(buf.len(), len, "the body follows the length directly");
    assert!(buf.iter().all(|&b| b == 7));
    assert_eq!(out.len(), 1 + 1 + encoded_len_varint(len as u64) + len);
    assert_eq!(out[0], 0xAA);
}

#[rstest]
#[case::zero([0, 0, 0, 0])]
#[case::loopback([127, 0, 0, 1])]
#[case::private([10, 0, 0, 1])]
#[case::all_widths([1, 22, 203, 4])]
#[case::tens_with_zero([100, 10, 9, 250])]
#[case::broadcast([255, 255, 255, 255])]
fn ipv4_text_matches_display(#[case] octets: [u8; 4]) {
    let ip = std::net::Ipv4Addr::from(octets);
    let mut s = String::new();
    push_ipv4(&mut s, ip);
    assert_eq!(s, ip.to_string());
}
