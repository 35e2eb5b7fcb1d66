//! `HttpSpan`, the one internal span type: what one HTTP exchange looked like on the wire.
//! It becomes OTLP only at the export edge and storage form only at the store's ingest edge.
use std::net::SocketAddr;

pub mod assemble;
pub mod context;
pub mod resource;

/// OpenTelemetry span kind as seen from the traced process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Server,
    Client,
}

/// How a span found its parent, exported as `sonde.link` so that a user can judge a link
/// (and so that links can be counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// No parent: the request came from outside the traced processes, or its partner was
    /// not seen in time, or the choice was ambiguous.
    #[default]
    None,
    /// The request carried a W3C `traceparent`; the span joins the trace it names.
    Traceparent,
    /// Same-node stitching: the server span's client end is traced on this node.
    Connection,
    /// In-process: the client request was made by the thread serving the parent request.
    Thread,
    /// In-process: a proxy forwarded the parent request's method and path.
    Proxy,
    /// In-process, in a Go program: the client request was made by the goroutine serving
    /// the parent request (seen by uprobes on Go's HTTP client).
    Goroutine,
}

impl LinkKind {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Traceparent => "traceparent",
            Self::Connection => "connection",
            Self::Thread => "thread",
            Self::Proxy => "proxy",
            Self::Goroutine => "goroutine",
        }
    }
}

/// A link to another span (same-node stitching and batch fan-in use these later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanLink {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// One HTTP/1.x request/response exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSpan {
    pub kind: SpanKind,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Parent span (from an incoming `traceparent`, or in-process parenting later).
    pub parent_span_id: Option<[u8; 8]>,
    /// W3C `tracestate` that came with the parent, passed through unchanged.
    pub trace_state: Option<String>,
    pub links: Vec<SpanLink>,
    /// How the parent was found (set by the linking stage).
    pub link: LinkKind,
    /// Why a `traceparent` the request carried was ignored (counted by the linking stage).
    pub traceparent_rejected: Option<context::TraceParentError>,
    /// First byte of the request seen, last byte of the response seen (Unix ns).
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// In a Go program, the goroutine that wrote (client) or read (server) the request head
    /// (the linking stage's key there); meaningless in any other program.
    pub goroutine: u64,
    /// Records the host had lost when the request head's record was written.
    pub head_ring_lost: u32,
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string (never exported unless configured).
    pub query: Option<String>,
    /// Low-cardinality route template (`/users/{id}`), when one could be derived.
    pub route: Option<String>,
    /// `1.0` or `1.1`.
    pub protocol_version: &'static str,
    pub status_code: Option<u16>,
    /// `Host` header value, if any.
    pub host: Option<String>,
    pub user_agent: Option<String>,
    pub request_body_size: Option<u64>,
    pub response_body_size: Option<u64>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// Why the exchange failed when there is no status code to say so
    /// (e.g. `connection_closed`, `timeout`).
    pub error_type: Option<String>,
}
