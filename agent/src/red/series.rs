//! The RED series of one service and one side (server or client): their labels, histograms
//! and exemplars, and the hard series limit that turns only the offending label into
//! `__cardinality_overflow__` once a table is full.
use std::{net::SocketAddr, sync::Arc};

use rustc_hash::FxHashMap as HashMap;

use crate::span::{HttpSpan, SpanKind, resource::ProcessResource};

/// The value an overflowed label takes.
pub const OVERFLOW: &str = "__cardinality_overflow__";

/// OpenTelemetry semantic-convention buckets for `http.*.request.duration` (seconds).
pub const DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Body-size buckets (bytes): powers of 4 from 64 B to 16 MiB.
pub const SIZE_BOUNDS: [f64; 10] = [
    64.0,
    256.0,
    1024.0,
    4096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
];

/// Methods kept as they are (semantic conventions); anything else is `_OTHER`.
const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY",
];

/// The `http.request.method` label of a raw method.
pub fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("_OTHER")
}

/// A classic histogram: `B` counts (the last one is +Inf) and the sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Hist<const B: usize> {
    pub counts: [u64; B],
    pub sum: f64,
}

impl<const B: usize> Default for Hist<B> {
    fn default() -> Self {
        Self {
            counts: [0; B],
            sum: 0.0,
        }
    }
}

impl<const B: usize> Hist<B> {
    /// Count `v`; returns the index of its bucket. `bounds` has `B - 1` finite bounds.
    pub fn observe(&mut self, bounds: &[f64], v: f64) -> usize {
        debug_assert_eq!(bounds.len() + 1, B);
        let i = bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.sum += v;
        i
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// A trace the latency bucket links to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub value: f64,
    pub unix_ms: u64,
}

pub type DurationHist = Hist<15>;
pub type SizeHist = Hist<11>;

/// One series: the duration histogram with its exemplars, and both body sizes.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub duration: DurationHist,
    pub request_size: SizeHist,
    pub response_size: SizeHist,
    /// The latest exemplar per duration bucket (allocated only when exemplars are on).
    pub exemplars: Option<Box<[Option<Exemplar>; 15]>>,
}

/// Labels of one series (resource labels live on the service). Overflowed labels are
/// marked in `overflow`, their value is gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Labels {
    pub method: &'static str,
    pub status: Option<u16>,
    pub error_type: Option<Box<str>>,
    pub version: &'static str,
    pub scheme: &'static str,
    /// `http.route` (server side).
    pub route: Option<Box<str>>,
    /// `server.address` and `server.port` (client side).
    pub server_address: Option<Box<str>>,
    pub server_port: Option<u16>,
    pub overflow: u8,
}

/// Which labels of a series were overflowed.
pub mod overflowed {
    pub const ROUTE: u8 = 1;
    pub const SERVER_ADDRESS: u8 = 2;
    pub const SERVER_PORT: u8 = 4;
    /// Every label but the resource's.
    pub const ALL: u8 = 8;
}

/// The label names of each overflow bit, as the overflow counter reports them.
pub fn overflow_label_name(bit: u8) -> &'static str {
    match bit {
        overflowed::ROUTE => "http.route",
        overflowed::SERVER_ADDRESS => "server.address",
        overflowed::SERVER_PORT => "server.port",
        _ => "*",
    }
}

/// `error.type` as the semantic conventions define it: the status code for a server's 5xx
/// and a client's 4xx/5xx, else why the exchange failed, else none.
pub fn error_type(span: &HttpSpan) -> Option<Box<str>> {
    let threshold = match span.kind {
        SpanKind::Server => 500,
        SpanKind::Client => 400,
    };
    match span.status_code {
        Some(s) if s >= threshold => Some(s.to_string().into()),
        Some(_) => None,
        None => Some(span.error_type.as_deref().unwrap_or("_OTHER").into()),
    }
}

/// `server.address`/`server.port` of a client span: the `Host` header, else the peer.
pub fn server_address(span: &HttpSpan) -> (Box<str>, u16) {
    if let Some(host) = span.host.as_deref().filter(|h| !h.is_empty()) {
        // `[::1]:8080`, `example.com:8080`, `example.com`.
        if let Some(rest) = host.strip_prefix('[')
            && let Some((ip, after)) = rest.split_once(']')
        {
            let port = after
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(span.peer.port());
            return (ip.into(), port);
        }
        if let Some((name, port)) = host.rsplit_once(':')
            && let Ok(port) = port.parse()
        {
            return (name.to_ascii_lowercase().into(), port);
        }
        return (host.to_ascii_lowercase().into(), span.peer.port());
    }
    (span.peer.ip().to_string().into(), span.peer.port())
}

impl Labels {
    /// The labels of `span`; `route` is the template already collapsed for its service.
    pub fn of(span: &HttpSpan, route: Option<Box<str>>) -> Self {
        let (server_address, server_port) = match span.kind {
            SpanKind::Server => (None, None),
            SpanKind::Client => {
                let (a, p) = server_address(span);
                (Some(a), Some(p))
            }
        };
        Self {
            method: method_label(&span.method),
            status: span.status_code,
            error_type: error_type(span),
            version: span.protocol_version,
            scheme: "http",
            route: match span.kind {
                SpanKind::Server => route,
                SpanKind::Client => None,
            },
            server_address,
            server_port,
            overflow: 0,
        }
    }

    fn overflow(&mut self, bit: u8) {
        self.overflow |= bit;
        match bit {
            overflowed::ROUTE => self.route = None,
            overflowed::SERVER_ADDRESS => self.server_address = None,
            overflowed::SERVER_PORT => self.server_port = None,
            _ => {
                *self = Self {
                    method: "",
                    status: None,
                    error_type: None,
                    version: "",
                    scheme: "",
                    route: None,
                    server_address: None,
                    server_port: None,
                    overflow: overflowed::ALL,
                }
            }
        }
    }
}

/// What the RED stage keeps of one finished span: built on the capture thread (one
/// allocation or two), recorded on the RED thread.
#[derive(Debug, Clone)]
pub struct Observation {
    pub resource: Arc<ProcessResource>,
    pub kind: SpanKind,
    pub labels: Labels,
    pub seconds: f64,
    pub request_size: Option<u64>,
    pub response_size: Option<u64>,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub end_unix_ns: u64,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

impl Observation {
    pub fn of(resource: &Arc<ProcessResource>, span: &HttpSpan) -> Self {
        Self {
            resource: resource.clone(),
            kind: span.kind,
            labels: Labels::of(span, span.route.as_deref().map(Into::into)),
            seconds: span.end_unix_ns.saturating_sub(span.start_unix_ns) as f64 / 1e9,
            request_size: span.request_body_size,
            response_size: span.response_body_size,
            trace_id: span.trace_id,
            span_id: span.span_id,
            end_unix_ns: span.end_unix_ns,
            local: span.local,
            peer: span.peer,
        }
    }

    /// Whether the exchange failed for the service graph (a server's 5xx, no response).
    pub fn failed(&self) -> bool {
        self.labels.status.is_none_or(|s| s >= 500)
    }
}

/// What admitting a series did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admitted {
    /// Overflow bits applied to the span's labels (0: kept as they were).
    pub overflowed: u8,
}

/// The series of one service and side, at most `limit` of them.
///
/// Below `limit - reserve` any new series is admitted. Past it, the offending label (the
/// route on a server, the address then the port on a client: the only unbounded ones)
/// becomes `__cardinality_overflow__` and the others are kept, in the reserve. When even
/// that is full, every label but the resource's overflows: one catch-all series whose slot
/// is always kept, so the table never holds more than `limit` series.
#[derive(Debug, Default)]
pub struct Table {
    pub series: HashMap<Labels, Series>,
}

impl Table {
    /// The series `labels` goes to, created if the limit allows, with the overflow bits
    /// applied. `room` says whether the agent-wide budget still has room for a new series.
    pub fn admit(
        &mut self,
        mut labels: Labels,
        limit: usize,
        room: bool,
        exemplars: bool,
    ) -> (&mut Series, Admitted) {
        let limit = limit.max(4);
        let reserve = (limit / 10).max(2);
        let mut applied = 0u8;
        if !self.series.contains_key(&labels) {
            let n = self.series.len();
            let fits_normal = room && n < limit - reserve;
            if !fits_normal {
                for bit in [
                    overflowed::ROUTE,
                    overflowed::SERVER_ADDRESS,
                    overflowed::SERVER_PORT,
                ] {
                    let present = match bit {
                        overflowed::ROUTE => labels.route.is_some(),
                        overflowed::SERVER_ADDRESS => labels.server_address.is_some(),
                        _ => labels.server_port.is_some(),
                    };
                    if present {
                        labels.overflow(bit);
                        applied |= bit;
                        if self.series.contains_key(&labels) {
                            break;
                        }
                    }
                }
                let reserved_left = room && n < limit - 1;
                if !(self.series.contains_key(&labels) || reserved_left) {
                    labels.overflow(overflowed::ALL);
                    applied |= overflowed::ALL;
                }
            }
        }
        let series = self.series.entry(labels).or_insert_with(|| Series {
            exemplars: exemplars.then(|| Box::new([None; 15])),
            ..Series::default()
        });
        (
            series,
            Admitted {
                overflowed: applied,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::server_span as span;
    use rstest::rstest;

    fn server(route: &str) -> Labels {
        Labels {
            method: "GET",
            status: Some(200),
            error_type: None,
            version: "1.1",
            scheme: "http",
            route: Some(route.into()),
            server_address: None,
            server_port: None,
            overflow: 0,
        }
    }

    #[rstest]
    #[case::get("GET", "GET")]
    #[case::patch("PATCH", "PATCH")]
    #[case::lower("get", "_OTHER")]
    #[case::custom("PURGE", "_OTHER")]
    #[case::empty("", "_OTHER")]
    fn methods(#[case] raw: &str, #[case] want: &str) {
        assert_eq!(method_label(raw), want);
    }

    #[rstest]
    #[case::ok(SpanKind::Server, Some(200), None, None)]
    #[case::server_404(SpanKind::Server, Some(404), None, None)]
    #[case::server_503(SpanKind::Server, Some(503), None, Some("503"))]
    #[case::client_404(SpanKind::Client, Some(404), None, Some("404"))]
    #[case::closed(
        SpanKind::Client,
        None,
        Some("connection_closed"),
        Some("connection_closed")
    )]
    #[case::unknown(SpanKind::Server, None, None, Some("_OTHER"))]
    fn error_types(
        #[case] kind: SpanKind,
        #[case] status: Option<u16>,
        #[case] why: Option<&str>,
        #[case] want: Option<&str>,
    ) {
        let mut s = span();
        s.kind = kind;
        s.status_code = status;
        s.error_type = why.map(Into::into);
        assert_eq!(error_type(&s).as_deref(), want);
    }

    #[rstest]
    #[case::name_port(Some("Api.Example.com:8080"), "api.example.com", 8080)]
    #[case::name(Some("example.com"), "example.com", 9)]
    #[case::ipv6(Some("[::1]:81"), "::1", 81)]
    #[case::ipv6_no_port(Some("[::1]"), "::1", 9)]
    #[case::no_host(None, "10.0.0.2", 9)]
    #[case::empty_host(Some(""), "10.0.0.2", 9)]
    #[case::bad_port(Some("h:x"), "h:x", 9)]
    fn server_addresses(#[case] host: Option<&str>, #[case] addr: &str, #[case] port: u16) {
        let mut s = span();
        s.kind = SpanKind::Client;
        s.host = host.map(Into::into);
        s.peer = "10.0.0.2:9".parse().unwrap();
        assert_eq!(server_address(&s), (addr.into(), port));
    }

    #[test]
    fn buckets_are_upper_inclusive() {
        let mut h = DurationHist::default();
        assert_eq!(h.observe(&DURATION_BOUNDS, 0.005), 0);
        assert_eq!(h.observe(&DURATION_BOUNDS, 0.0051), 1);
        assert_eq!(h.observe(&DURATION_BOUNDS, 10.0), 13);
        assert_eq!(h.observe(&DURATION_BOUNDS, 11.0), 14);
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn past_the_limit_only_the_route_overflows_then_everything() {
        let mut t = Table::default();
        let limit = 20; // reserve 2: 18 normal series
        for i in 0..18 {
            let (_, a) = t.admit(server(&format!("/r{i}")), limit, true, false);
            assert_eq!(a.overflowed, 0);
        }
        // The 19th route: its route overflows, method and status stay.
        let (_, a) = t.admit(server("/r18"), limit, true, false);
        assert_eq!(a.overflowed, overflowed::ROUTE);
        let mut want = server("/x");
        want.route = None;
        want.overflow = overflowed::ROUTE;
        assert!(t.series.contains_key(&want));
        // More routes with the same other labels share that series.
        for i in 19..1000 {
            t.admit(server(&format!("/r{i}")), limit, true, false);
        }
        assert_eq!(t.series.len(), 19);
        // A new status past the limit, with the reserve taken: every label overflows, in
        // the catch-all series whose slot was kept.
        let mut post = server("/new");
        post.status = Some(500);
        let (_, a) = t.admit(post.clone(), limit, true, false);
        assert_eq!(a.overflowed, overflowed::ROUTE | overflowed::ALL);
        post.method = "POST";
        let (_, a) = t.admit(post, limit, true, false);
        assert_eq!(a.overflowed, overflowed::ROUTE | overflowed::ALL);
        assert_eq!(t.series.len(), limit);
        for s in 0..600u16 {
            let mut l = server(&format!("/z{s}"));
            l.status = Some(s);
            t.admit(l, limit, true, false);
        }
        assert_eq!(t.series.len(), limit, "never more than the limit");
        // Known series keep counting under their own labels.
        let (_, a) = t.admit(server("/r3"), limit, true, false);
        assert_eq!(a.overflowed, 0);
    }

    #[test]
    fn without_global_room_new_series_overflow() {
        let mut t = Table::default();
        let (_, a) = t.admit(server("/a"), 100, false, false);
        assert_eq!(a.overflowed, overflowed::ROUTE | overflowed::ALL);
        assert_eq!(t.series.len(), 1);
    }
}
