//! One request/response exchange in flight, and how it becomes an `HttpSpan`: attributes
//! copied out of the request head, trace ids chosen from the propagated context.
use crate::ebpf::record::Tuple;
use crate::protocol::http1::{RequestHead, split_target};
use crate::red::route;
use crate::span::context::{TraceParent, TraceParentError, incoming, new_span_id, new_trace_id};
use crate::span::{HttpSpan, LinkKind, SpanKind};

/// Longest `Host` value kept.
const MAX_HOST: usize = 256;
/// Longest `User-Agent` value kept.
const MAX_USER_AGENT: usize = 512;
/// Longest path or query kept (the head itself is already capped by the tracker).
const MAX_TARGET: usize = 2048;

/// Who read (server) or wrote (client) a request head: the thread, Go's goroutine, and the
/// host's count of lost records at that record (see `link::golang`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadCaller {
    pub tid: u32,
    pub goroutine: u64,
    pub ring_lost: u32,
}

/// A request seen on a connection, waiting for (or receiving) its response. Holds only the
/// attributes the span needs: never credentials, cookies or bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub kind: SpanKind,
    pub start_unix_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// In a Go program, the goroutine that wrote (client) or read (server) the request head.
    pub goroutine: u64,
    pub head_ring_lost: u32,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Minor HTTP version of the request (0 or 1).
    pub minor: u8,
    pub host: Option<String>,
    pub user_agent: Option<String>,
    /// A valid `traceparent` carried by the request.
    pub parent: Option<TraceParent>,
    pub trace_state: Option<String>,
    /// Why a `traceparent` the request carried was ignored.
    pub traceparent_rejected: Option<TraceParentError>,
    pub request_body_size: Option<u64>,
    /// Status of the final response, once its head was seen.
    pub status: Option<u16>,
    pub response_body_size: Option<u64>,
    /// `end_unix_ns` of the last response record seen (0 while none).
    pub response_last_unix_ns: u64,
}

impl Exchange {
    /// Copies what the span needs out of a parsed request head.
    pub fn from_request(
        head: &RequestHead<'_>,
        kind: SpanKind,
        start_unix_ns: u64,
        pid: u32,
        caller: HeadCaller,
    ) -> Self {
        let (path, query) = split_target(head.target);
        let h = &head.headers;
        let context = incoming(h.traceparent, h.tracestate);
        Self {
            kind,
            start_unix_ns,
            pid,
            tid: caller.tid,
            goroutine: caller.goroutine,
            head_ring_lost: caller.ring_lost,
            method: head.method.to_owned(),
            path: bounded(&without_params(path), MAX_TARGET),
            query: query.map(|q| bounded(q, MAX_TARGET)),
            minor: head.minor,
            host: h.host.map(|v| bounded(v, MAX_HOST)),
            user_agent: h.user_agent.map(|v| bounded(v, MAX_USER_AGENT)),
            trace_state: context.trace_state,
            parent: context.parent,
            traceparent_rejected: context.rejected,
            request_body_size: if h.chunked {
                None
            } else {
                Some(h.content_length.unwrap_or(0))
            },
            status: None,
            response_body_size: None,
            response_last_unix_ns: 0,
        }
    }

    /// Whether the response to this request never has a body, whatever its headers say.
    pub fn response_has_no_body(&self, status: u16) -> bool {
        self.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status)
    }

    /// Whether a successful response turns the connection into a tunnel.
    pub fn is_connect(&self) -> bool {
        self.method == "CONNECT"
    }

    /// Builds the span. Trace ids: a SERVER span joins the incoming trace (its parent is
    /// the caller's span); a CLIENT span whose request carried a `traceparent` takes that
    /// trace and uses the header's parent-id as its own span id (the application chose it
    /// for the outgoing call). Otherwise a new trace starts.
    pub fn into_span(self, end_unix_ns: u64, tuple: &Tuple, error_type: Option<&str>) -> HttpSpan {
        let (trace_id, span_id, parent_span_id) = match (self.kind, self.parent) {
            (SpanKind::Server, Some(p)) => (p.trace_id, new_span_id(), Some(p.parent_id)),
            (SpanKind::Client, Some(p)) => (p.trace_id, p.parent_id, None),
            (_, None) => (new_trace_id(), new_span_id(), None),
        };
        // `*` (OPTIONS *) and authorities (CONNECT host:port) have no route, nor has a
        // request that matched none (404): its span is named by its method alone.
        let route = (self.path.starts_with('/') && route::status_has_route(self.status))
            .then(|| route::template(&self.path));
        HttpSpan {
            kind: self.kind,
            trace_id,
            span_id,
            parent_span_id,
            trace_state: self.trace_state,
            links: Vec::new(),
            link: if self.parent.is_some() {
                LinkKind::Traceparent
            } else {
                LinkKind::None
            },
            traceparent_rejected: self.traceparent_rejected,
            start_unix_ns: self.start_unix_ns,
            end_unix_ns: end_unix_ns.max(self.start_unix_ns),
            pid: self.pid,
            tid: self.tid,
            goroutine: self.goroutine,
            head_ring_lost: self.head_ring_lost,
            method: self.method,
            path: self.path,
            query: self.query,
            route,
            protocol_version: if self.minor == 0 { "1.0" } else { "1.1" },
            status_code: self.status,
            host: self.host,
            user_agent: self.user_agent,
            request_body_size: self.request_body_size,
            response_body_size: self.response_body_size,
            local: tuple.local,
            peer: tuple.remote,
            error_type: error_type.map(str::to_owned),
        }
    }
}

/// The path without the `;` parameters of its segments (`/a;jsessionid=X/b;v=1` → `/a/b`).
/// RFC 3986 lets any segment carry them; servlet containers put session ids there. They are
/// neither part of the resource's route nor safe to export, like the query string.
fn without_params(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(';') || !path.starts_with('/') {
        return path.into();
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or_default());
    }
    out.into()
}

/// Copies at most `max` bytes of `s`, cut at a character boundary.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http1::{Parse, parse_request_head};
    use rstest::rstest;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn tuple() -> Tuple {
        Tuple {
            local: "10.0.0.1:8080".parse().expect("addr"),
            remote: "10.0.0.2:50000".parse().expect("addr"),
        }
    }

    fn exchange(head: &[u8], kind: SpanKind) -> Exchange {
        let Parse::Complete(h, _) = parse_request_head(head) else {
            panic!("bad head")
        };
        Exchange::from_request(
            &h,
            kind,
            100,
            7,
            HeadCaller {
                tid: 8,
                ..HeadCaller::default()
            },
        )
    }

    #[test]
    fn copies_attributes_and_no_secrets() {
        let head = b"POST /api/users/42?x=1 HTTP/1.0\r\nHost: h\r\nUser-Agent: ua\r\n\
Authorization: Basic c2VjcmV0\r\nCookie: s=secret\r\nContent-Length: 5\r\n\r\n";
        let mut ex = exchange(head, SpanKind::Server);
        ex.status = Some(201);
        let span = ex.into_span(50, &tuple(), None);
        assert_eq!(span.method, "POST");
        assert_eq!(span.path, "/api/users/42");
        assert_eq!(span.query.as_deref(), Some("x=1"));
        assert_eq!(span.route.as_deref(), Some("/api/users/{id}"));
        assert_eq!(span.protocol_version, "1.0");
        assert_eq!(
            (span.host.as_deref(), span.user_agent.as_deref()),
            (Some("h"), Some("ua"))
        );
        assert_eq!(
            (span.request_body_size, span.status_code),
            (Some(5), Some(201))
        );
        assert_eq!(
            (span.start_unix_ns, span.end_unix_ns),
            (100, 100),
            "end never before start"
        );
        assert_eq!((span.local, span.peer), (tuple().local, tuple().remote));
        let dump = format!("{span:?}");
        assert!(
            !dump.contains("secret") && !dump.contains("c2VjcmV0"),
            "{dump}"
        );
    }

    #[rstest]
    #[case::server_with_parent(SpanKind::Server, true)]
    #[case::client_with_parent(SpanKind::Client, true)]
    #[case::server_new_trace(SpanKind::Server, false)]
    #[case::client_new_trace(SpanKind::Client, false)]
    fn trace_ids(#[case] kind: SpanKind, #[case] with_parent: bool) {
        let head = if with_parent {
            format!("GET / HTTP/1.1\r\ntraceparent: {TP}\r\ntracestate: a=1\r\n\r\n")
        } else {
            "GET / HTTP/1.1\r\ntracestate: a=1\r\n\r\n".to_owned()
        };
        let span = exchange(head.as_bytes(), kind).into_span(200, &tuple(), None);
        let tp = TraceParent::parse(TP).expect("valid");
        assert_ne!(span.trace_id, [0; 16]);
        assert_ne!(span.span_id, [0; 8]);
        match (kind, with_parent) {
            (SpanKind::Server, true) => {
                assert_eq!(span.trace_id, tp.trace_id);
                assert_eq!(span.parent_span_id, Some(tp.parent_id));
                assert_ne!(span.span_id, tp.parent_id);
                assert_eq!(span.trace_state.as_deref(), Some("a=1"));
            }
            (SpanKind::Client, true) => {
                assert_eq!((span.trace_id, span.span_id), (tp.trace_id, tp.parent_id));
                assert_eq!(span.parent_span_id, None);
            }
            (_, false) => {
                assert_ne!(span.trace_id, tp.trace_id);
                assert_eq!((span.parent_span_id, span.trace_state), (None, None));
            }
        }
    }

    #[rstest]
    #[case::origin(b"GET /a/1 HTTP/1.1\r\n\r\n".as_slice(), Some("/a/{id}"))]
    #[case::connect(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n".as_slice(), None)]
    #[case::asterisk(b"OPTIONS * HTTP/1.1\r\n\r\n".as_slice(), None)]
    fn route_only_for_paths(#[case] head: &[u8], #[case] route: Option<&str>) {
        let span = exchange(head, SpanKind::Client).into_span(1, &tuple(), None);
        assert_eq!(span.route.as_deref(), route);
    }

    #[rstest]
    #[case::found(Some(200), Some("/missing/{id}"))]
    #[case::not_found(Some(404), None)]
    #[case::forbidden(Some(403), Some("/missing/{id}"))]
    #[case::no_response(None, Some("/missing/{id}"))]
    fn no_route_when_none_matched(#[case] status: Option<u16>, #[case] route: Option<&str>) {
        for kind in [SpanKind::Server, SpanKind::Client] {
            let mut ex = exchange(b"GET /missing/123 HTTP/1.1\r\n\r\n", kind);
            ex.status = status;
            let span = ex.into_span(1, &tuple(), None);
            assert_eq!(span.route.as_deref(), route, "{kind:?}");
        }
    }

    #[test]
    fn invalid_traceparent_starts_a_new_trace() {
        let head = b"GET / HTTP/1.1\r\ntraceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n\r\n";
        let span = exchange(head, SpanKind::Server).into_span(200, &tuple(), None);
        assert_eq!(span.parent_span_id, None);
        assert_ne!(span.trace_id, [0; 16]);
        assert_eq!(span.link, LinkKind::None);
        assert_eq!(
            span.traceparent_rejected,
            Some(TraceParentError::ZeroId("trace-id"))
        );
    }

    #[rstest]
    #[case::session_id("/a;jsessionid=ABC123", "/a", "/a")]
    #[case::session_id_with_query("/a;jsessionid=ABC123?x=1", "/a", "/a")]
    #[case::every_segment("/cart;v=1/items;sort=asc/42;x", "/cart/items/42", "/cart/items/{id}")]
    #[case::matrix_on_root("/;s=1", "/", "/")]
    #[case::empty_param("/a;/b;", "/a/b", "/a/b")]
    #[case::only_params_segment("/a/;x=1/b", "/a//b", "/a//b")]
    #[case::encoded_semicolon_kept("/a%3Bb", "/a%3Bb", "/{id}")]
    #[case::semicolon_in_query_only("/a?x=1;y=2", "/a", "/a")]
    #[case::absolute_form("http://h/a;jsessionid=X/b", "/a/b", "/a/b")]
    #[case::asterisk("*", "*", "")]
    fn path_parameters_are_not_exported(
        #[case] target: &str,
        #[case] path: &str,
        #[case] route: &str,
    ) {
        let method = if target == "*" { "OPTIONS" } else { "GET" };
        let head = format!("{method} {target} HTTP/1.1\r\n\r\n");
        let mut ex = exchange(head.as_bytes(), SpanKind::Server);
        ex.status = Some(200);
        let span = ex.into_span(1, &tuple(), None);
        assert_eq!(span.path, path);
        assert_eq!(span.route.as_deref().unwrap_or(""), route);
        assert!(!format!("{span:?}").contains("jsessionid"));
    }

    #[rstest]
    #[case::ascii("abcdef", 3, "abc")]
    #[case::multibyte("aéb", 2, "a")]
    #[case::short("ab", 5, "ab")]
    fn bounded_cuts_at_char_boundary(#[case] s: &str, #[case] max: usize, #[case] out: &str) {
        assert_eq!(bounded(s, max), out);
    }
}
