//! Table tests for the HTTP/1.x head parsers.
use super::*;
use rstest::rstest;

const REAL_REQUEST: &[u8] = b"GET /api/users/42?expand=true HTTP/1.1\r\n\
Host: shop.local:8080\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Authorization: Bearer secret-token\r\n\
traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
\r\n";

fn kind<T>(p: &Parse<T>) -> &'static str {
    match p {
        Parse::Complete(..) => "complete",
        Parse::Partial => "partial",
        Parse::NotHttp => "not_http",
        Parse::Invalid(_) => "invalid",
    }
}

#[rstest]
#[case::empty(b"", "partial")]
#[case::one_letter(b"G", "partial")]
#[case::method_only(b"POST", "partial")]
#[case::truncated_line(b"GET /index.html HTT", "partial")]
#[case::truncated_headers(b"GET / HTTP/1.1\r\nHost: a\r\n", "partial")]
#[case::complete_crlf(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "complete")]
#[case::complete_lf_only(b"GET / HTTP/1.1\nHost: a\n\n", "complete")]
#[case::http10(b"GET / HTTP/1.0\r\n\r\n", "complete")]
#[case::lowercase_method(b"get / HTTP/1.1\r\n\r\n", "not_http")]
#[case::unknown_method(b"FOO / HTTP/1.1\r\n\r\n", "not_http")]
#[case::http09(b"GET /\r\n", "invalid")]
#[case::http2_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "not_http")]
#[case::http2_version(b"GET / HTTP/2.0\r\n\r\n", "invalid")]
#[case::tls_client_hello(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "not_http")]
#[case::redis(b"*1\r\n$4\r\nPING\r\n", "not_http")]
#[case::postgres_startup(b"\x00\x00\x00\x08\x04\xd2\x16\x2f", "not_http")]
#[case::garbage(b"\xff\xfe\x00garbage\r\n\r\n", "not_http")]
#[case::space_in_header_name(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", "invalid")]
#[case::bad_content_length(b"POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n", "invalid")]
#[case::conflicting_length(
    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "invalid"
)]
#[case::request_gzip_only(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "invalid")]
fn request_kinds(#[case] input: &[u8], #[case] expected: &str) {
    assert_eq!(
        kind(&parse_request_head(input)),
        expected,
        "{:?}",
        parse_request_head(input)
    );
}

#[test]
fn request_fields() {
    let Parse::Complete(head, consumed) = parse_request_head(REAL_REQUEST) else {
        panic!("expected a complete head");
    };
    assert_eq!(consumed, REAL_REQUEST.len());
    assert_eq!(head.method, "GET");
    assert_eq!(head.target, "/api/users/42?expand=true");
    assert_eq!(head.minor, 1);
    assert_eq!(head.headers.host, Some("shop.local:8080"));
    assert_eq!(head.headers.user_agent, Some("curl/8.5.0"));
    assert_eq!(
        head.headers.traceparent,
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(head.headers.content_length, None);
    assert!(!head.headers.chunked);
}

#[test]
fn request_split_at_every_offset_is_partial_then_complete() {
    for cut in 0..REAL_REQUEST.len() {
        let p = parse_request_head(&REAL_REQUEST[..cut]);
        assert_eq!(p, Parse::Partial, "cut at {cut}");
    }
    assert!(
        matches!(parse_request_head(REAL_REQUEST), Parse::Complete(_, n) if n == REAL_REQUEST.len())
    );
}

#[test]
fn oversized_request_line_is_still_parsed_by_the_pure_parser() {
    // The byte cap lives in the tracker; the parser itself has no length limit.
    let mut req = b"GET /".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20_000));
    req.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert!(matches!(parse_request_head(&req), Parse::Complete(h, _) if h.target.len() == 20_001));
    assert_eq!(parse_request_head(&req[..10_000]), Parse::Partial);
}

#[test]
fn too_many_headers_is_invalid() {
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        req.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    assert_eq!(parse_request_head(&req), Parse::Invalid("too many headers"));
}

#[rstest]
#[case::length(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n", Some(10), false)]
#[case::length_list(b"POST / HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n", Some(7), false)]
#[case::chunked(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", None, true)]
#[case::chunked_wins(
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
    None,
    true
)]
#[case::none(b"GET / HTTP/1.1\r\n\r\n", None, false)]
fn request_framing(#[case] input: &[u8], #[case] length: Option<u64>, #[case] chunked: bool) {
    let Parse::Complete(head, _) = parse_request_head(input) else {
        panic!("not complete")
    };
    assert_eq!(
        (head.headers.content_length, head.headers.chunked),
        (length, chunked)
    );
}

#[rstest]
#[case::connection_close(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", true, false, false)]
#[case::keep_alive(
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    false,
    true,
    false
)]
#[case::both_tokens(
    b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
    true,
    true,
    false
)]
#[case::expect(
    b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
    false,
    false,
    true
)]
fn request_connection_headers(
    #[case] input: &[u8],
    #[case] close: bool,
    #[case] keep: bool,
    #[case] expect: bool,
) {
    let Parse::Complete(head, _) = parse_request_head(input) else {
        panic!("not complete")
    };
    let h = head.headers;
    assert_eq!(
        (
            h.connection_close,
            h.connection_keep_alive,
            h.expect_continue
        ),
        (close, keep, expect)
    );
}

#[rstest]
#[case::empty(b"", "partial")]
#[case::prefix(b"HTTP/", "partial")]
#[case::status_partial(b"HTTP/1.1 200 OK\r\n", "partial")]
#[case::complete(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "complete")]
#[case::lf_only(b"HTTP/1.1 204 No Content\n\n", "complete")]
#[case::no_reason(b"HTTP/1.1 200\r\n\r\n", "complete")]
#[case::http10(b"HTTP/1.0 200 OK\r\n\r\n", "complete")]
#[case::http2_status(b"HTTP/2 200\r\n\r\n", "not_http")]
#[case::request_not_response(b"GET / HTTP/1.1\r\n\r\n", "not_http")]
#[case::short_garbage(b"\x00\x01", "not_http")]
#[case::bad_status(b"HTTP/1.1 2x0 OK\r\n\r\n", "invalid")]
#[case::tls_alert(b"\x15\x03\x03\x00\x02\x02\x28", "not_http")]
fn response_kinds(#[case] input: &[u8], #[case] expected: &str) {
    assert_eq!(
        kind(&parse_response_head(input)),
        expected,
        "{:?}",
        parse_response_head(input)
    );
}

#[test]
fn response_fields() {
    let input = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nSet-Cookie: s=1\r\n\r\nnot found";
    let Parse::Complete(head, consumed) = parse_response_head(input) else {
        panic!()
    };
    assert_eq!(
        (head.minor, head.status, head.headers.content_length),
        (1, 404, Some(9))
    );
    assert_eq!(&input[consumed..], b"not found");
}

#[test]
fn response_split_at_every_offset() {
    let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: x\r\n\r\n";
    for cut in 0..input.len() {
        assert_eq!(
            parse_response_head(&input[..cut]),
            Parse::Partial,
            "cut at {cut}"
        );
    }
    assert!(matches!(parse_response_head(input), Parse::Complete(h, _) if h.headers.chunked));
}

#[rstest]
#[case::origin("/a/b?x=1&y=2", "/a/b", Some("x=1&y=2"))]
#[case::no_query("/a/b", "/a/b", None)]
#[case::empty_query("/a?", "/a", Some(""))]
#[case::root_query("?q", "/", Some("q"))]
#[case::fragment("/a#frag", "/a", None)]
#[case::absolute("http://example.com/x/y?z", "/x/y", Some("z"))]
#[case::absolute_no_path("http://example.com", "/", None)]
#[case::asterisk("*", "*", None)]
fn target_split(#[case] target: &str, #[case] path: &str, #[case] query: Option<&str>) {
    assert_eq!(split_target(target), (path, query));
}

#[rstest]
#[case::cut_in_headers(b"GET /x HTTP/1.1\r\nHost: a\r\nCookie: abc", true, Some("a"))]
#[case::cut_in_first_line(b"GET /xxxxxxxx", false, None)]
fn truncated_head_salvage(#[case] input: &[u8], #[case] ok: bool, #[case] host: Option<&str>) {
    let mut scratch = Vec::new();
    assert_eq!(close_truncated_head(input, &mut scratch), ok);
    if ok {
        let Parse::Complete(head, _) = parse_request_head(&scratch) else {
            panic!()
        };
        assert_eq!((head.target, head.headers.host), ("/x", host));
    }
}

#[rstest]
#[case::get(b"GET /", true)]
#[case::partial_method(b"DEL", true)]
#[case::empty(b"", false)]
#[case::response(b"HTTP/1.1 200", false)]
#[case::binary(b"\x16\x03", false)]
fn request_lookalike(#[case] input: &[u8], #[case] expected: bool) {
    assert_eq!(looks_like_request(input), expected);
}

#[rstest]
#[case::full(b"GET /", true)]
#[case::method_only(b"GET", false)]
#[case::prefix(b"G", false)]
#[case::lowercase(b"get /", false)]
fn method_and_space(#[case] input: &[u8], #[case] expected: bool) {
    assert_eq!(starts_with_method_and_space(input), expected);
}
