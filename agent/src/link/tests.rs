//! The linker's cases: arrival orders, keep-alive pairing, the window, ambiguity, headers,
//! the memory bound. Spans are built as the tracker makes them (fresh ids, times of the
//! syscalls), and every case checks that each span leaves exactly once.
use std::net::SocketAddr;

use rstest::rstest;

use super::*;
use crate::ebpf::record::{GoCall, GoStep};
use crate::span::context::{TraceParent, new_trace_id};

const MS: u64 = 1_000_000;
const HOLD: u64 = 1000 * MS;
const T0: u64 = 1_700_000_000_000_000_000;
/// When `run` starts pushing, after every span's end.
const ARRIVALS: u64 = 100 * MS;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

/// A span as the tracker makes it: new ids, no parent.
fn span(kind: SpanKind, pid: u32, tid: u32, local: &str, peer: &str, at: (u64, u64)) -> HttpSpan {
    HttpSpan {
        kind,
        trace_id: new_trace_id(),
        span_id: new_span_id(),
        parent_span_id: None,
        trace_state: None,
        links: Vec::new(),
        link: LinkKind::None,
        traceparent_rejected: None,
        start_unix_ns: T0 + at.0,
        end_unix_ns: T0 + at.1,
        pid,
        tid,
        goroutine: 0,
        head_ring_lost: 0,
        method: "GET".into(),
        path: "/x".into(),
        query: None,
        route: None,
        protocol_version: "1.1",
        status_code: Some(200),
        host: None,
        user_agent: None,
        request_body_size: Some(0),
        response_body_size: Some(0),
        local: addr(local),
        peer: addr(peer),
        error_type: None,
    }
}

/// The same span as a request carrying `tp` makes it (see `span::assemble`).
fn with_header(mut s: HttpSpan, tp: &TraceParent) -> HttpSpan {
    s.link = LinkKind::Traceparent;
    s.trace_id = tp.trace_id;
    match s.kind {
        SpanKind::Server => s.parent_span_id = Some(tp.parent_id),
        SpanKind::Client => s.span_id = tp.parent_id,
    }
    s
}

/// curl → front (thread per request) → backend: the four spans, outermost first.
fn chain() -> [HttpSpan; 4] {
    [
        span(
            SpanKind::Client,
            1,
            1,
            "127.0.0.1:40000",
            "127.0.0.1:8000",
            (0, 1000),
        ),
        span(
            SpanKind::Server,
            2,
            21,
            "127.0.0.1:8000",
            "127.0.0.1:40000",
            (100, 900),
        ),
        span(
            SpanKind::Client,
            2,
            21,
            "127.0.0.1:40001",
            "127.0.0.1:9000",
            (200, 800),
        ),
        span(
            SpanKind::Server,
            3,
            31,
            "127.0.0.1:9000",
            "127.0.0.1:40001",
            (300, 700),
        ),
    ]
}

/// Pushes `(arrival offset, span)`s in order, polling as time goes, then polls until
/// everything left; returns the spans in the order they left, each tagged with its index.
fn run(linker: &mut Linker<usize>, arrivals: Vec<(u64, HttpSpan)>) -> Vec<(usize, HttpSpan)> {
    let n = arrivals.len();
    let mut out = Vec::new();
    let mut now = T0;
    for (i, (at, s)) in arrivals.into_iter().enumerate() {
        // A span arrives after it ended: offsets count from after the spans' times.
        now = T0 + ARRIVALS + at;
        linker.poll(now, &mut out);
        linker.push(now, i, s);
    }
    linker.poll(now, &mut out);
    for _ in 0..4 {
        now += HOLD;
        linker.poll(now, &mut out);
    }
    let mut seen: Vec<usize> = out.iter().map(|(i, _)| *i).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..n).collect::<Vec<_>>(),
        "every span leaves exactly once"
    );
    assert_eq!(linker.stats().held, 0);
    out
}

fn by_index(out: &[(usize, HttpSpan)], i: usize) -> &HttpSpan {
    &out.iter().find(|(j, _)| *j == i).expect("span").1
}

fn assert_child(child: &HttpSpan, parent: &HttpSpan, link: LinkKind) {
    assert_eq!(child.trace_id, parent.trace_id, "same trace");
    assert_eq!(child.parent_span_id, Some(parent.span_id), "parent id");
    assert_eq!(child.link, link);
}

fn assert_chain(out: &[(usize, HttpSpan)], idx: [usize; 4]) {
    let [c0, s1, c1, s2] = idx.map(|i| by_index(out, i));
    assert_eq!((c0.parent_span_id, c0.link), (None, LinkKind::None));
    assert_child(s1, c0, LinkKind::Connection);
    assert_child(c1, s1, LinkKind::Thread);
    assert_child(s2, c1, LinkKind::Connection);
}

#[rstest]
fn chain_links_whatever_the_arrival_order(
    #[values(
        [3, 2, 1, 0], [0, 1, 2, 3], [2, 3, 1, 0], [1, 0, 3, 2], [3, 1, 2, 0], [0, 3, 1, 2]
    )]
    order: [usize; 4],
) {
    let spans = chain();
    let mut linker = Linker::new(LinkConfig::default());
    // Index i of the pushes is order[i]'s span; arrivals 1 ms apart.
    let arrivals = order
        .iter()
        .enumerate()
        .map(|(k, &i)| (k as u64 * MS, spans[i].clone()))
        .collect();
    let out = run(&mut linker, arrivals);
    let pos = |want: usize| order.iter().position(|&i| i == want).expect("pushed");
    assert_chain(&out, [pos(0), pos(1), pos(2), pos(3)]);
    let s = linker.stats();
    assert_eq!(
        (
            s.linked_connection,
            s.linked_thread,
            s.unlinked,
            s.ambiguous
        ),
        (2, 1, 1, 0)
    );
}

#[test]
fn nothing_is_held_longer_than_the_window() {
    let mut linker = Linker::new(LinkConfig::default());
    let mut out = Vec::new();
    // The backend's span arrives; its callers stay silent (their requests are long).
    let [_, _, c1, s2] = chain();
    linker.push(T0, 0, s2);
    linker.push(T0, 1, c1);
    linker.poll(T0 + HOLD / 2 - 1, &mut out);
    assert!(out.is_empty(), "a server waits for its local client");
    linker.poll(T0 + HOLD, &mut out);
    assert_eq!(out.len(), 2, "both leave by the window's end");
    let (c1, s2) = (by_index(&out, 1), by_index(&out, 0));
    assert_child(s2, c1, LinkKind::Connection);
    assert_eq!((c1.parent_span_id, c1.link), (None, LinkKind::None));
}

#[test]
fn server_from_outside_the_node_leaves_at_once() {
    let mut linker = Linker::new(LinkConfig::default());
    let mut out = Vec::new();
    let s = span(
        SpanKind::Server,
        2,
        2,
        "10.0.0.1:80",
        "203.0.113.9:5000",
        (0, 10),
    );
    linker.push(T0, 0, s);
    linker.poll(T0, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.link, LinkKind::None);
    assert_eq!(linker.stats().expired_unlinked, 0);
}

#[test]
fn server_whose_client_never_comes_expires_unlinked() {
    let mut linker = Linker::new(LinkConfig::default());
    let s = span(
        SpanKind::Server,
        2,
        2,
        "127.0.0.1:80",
        "127.0.0.1:5000",
        (0, 10),
    );
    let out = run(&mut linker, vec![(0, s)]);
    assert_eq!(out[0].1.link, LinkKind::None);
    assert_eq!(linker.stats().expired_unlinked, 1);
}

/// Three requests on one keep-alive connection pair in order, by time, whichever side
/// arrives first.
#[rstest]
fn keep_alive_pairs_the_nth_request_with_the_nth_exchange(
    #[values(false, true)] servers_first: bool,
) {
    let (c, s) = ("127.0.0.1:40000", "127.0.0.1:8000");
    let clients: Vec<HttpSpan> = (0..3)
        .map(|n| span(SpanKind::Client, 1, 1, c, s, (n * 100, n * 100 + 50)))
        .collect();
    let servers: Vec<HttpSpan> = (0..3)
        .map(|n| span(SpanKind::Server, 2, 2, s, c, (n * 100 + 10, n * 100 + 40)))
        .collect();
    let mut arrivals = Vec::new();
    for (n, (a, b)) in clients.into_iter().zip(servers.iter().cloned()).enumerate() {
        if servers_first {
            arrivals.push((n as u64 * MS, b));
            arrivals.push((n as u64 * MS, a));
        } else {
            arrivals.push((n as u64 * MS, a));
            arrivals.push((n as u64 * MS, b));
        }
    }
    let mut linker = Linker::new(LinkConfig::default());
    let out = run(&mut linker, arrivals);
    for (n, server) in servers.iter().enumerate() {
        let (ci, si) = if servers_first {
            (2 * n + 1, 2 * n)
        } else {
            (2 * n, 2 * n + 1)
        };
        assert_child(by_index(&out, si), by_index(&out, ci), LinkKind::Connection);
        assert_eq!(by_index(&out, si).start_unix_ns, server.start_unix_ns);
    }
}

#[test]
fn client_after_the_server_span_ended_is_not_its_child() {
    let mut linker = Linker::new(LinkConfig::default());
    let server = span(
        SpanKind::Server,
        2,
        21,
        "10.0.0.1:80",
        "203.0.113.9:5000",
        (0, 100),
    );
    let late = span(
        SpanKind::Client,
        2,
        21,
        "127.0.0.1:40001",
        "127.0.0.1:9000",
        (101, 200),
    );
    let out = run(&mut linker, vec![(0, server), (MS, late)]);
    assert_eq!(by_index(&out, 1).parent_span_id, None);
    assert_eq!(by_index(&out, 1).link, LinkKind::None);
}

/// An event loop serves two requests on one thread at once: the thread says nothing, and
/// with different paths neither does the proxy rule.
#[test]
fn event_loop_thread_is_ambiguous_and_not_linked() {
    let mut linker = Linker::new(LinkConfig::default());
    let a = span(
        SpanKind::Server,
        2,
        2,
        "10.0.0.1:80",
        "203.0.113.9:5000",
        (0, 100),
    );
    let mut b = span(
        SpanKind::Server,
        2,
        2,
        "10.0.0.1:80",
        "203.0.113.9:5001",
        (10, 120),
    );
    b.path = "/other".into();
    let mut c = span(
        SpanKind::Client,
        2,
        2,
        "127.0.0.1:40001",
        "127.0.0.1:9000",
        (20, 50),
    );
    c.path = "/third".into();
    let out = run(&mut linker, vec![(0, c), (0, a), (0, b)]);
    assert_eq!(by_index(&out, 0).link, LinkKind::None);
    assert_eq!(by_index(&out, 0).parent_span_id, None);
    assert_eq!(linker.stats().ambiguous, 1);
}

/// A proxy (one event-loop thread) forwards method and path: the one open server request
/// with the same ones is the parent; two of them are ambiguous.
#[rstest]
#[case::unique(false)]
#[case::two_open_with_the_same_path(true)]
fn proxy_rule(#[case] twin: bool) {
    let mut linker = Linker::new(LinkConfig::default());
    let mut a = span(
        SpanKind::Server,
        2,
        2,
        "10.0.0.1:80",
        "203.0.113.9:5000",
        (0, 100),
    );
    a.path = "/api".into();
    let mut b = span(
        SpanKind::Server,
        2,
        2,
        "10.0.0.1:80",
        "203.0.113.9:5001",
        (10, 120),
    );
    b.path = if twin { "/api".into() } else { "/other".into() };
    let mut c = span(
        SpanKind::Client,
        2,
        2,
        "127.0.0.1:40001",
        "127.0.0.1:9000",
        (20, 50),
    );
    c.path = "/api".into();
    let out = run(&mut linker, vec![(0, c), (0, a), (0, b)]);
    if twin {
        assert_eq!(by_index(&out, 0).link, LinkKind::None);
        assert_eq!(linker.stats().ambiguous, 1);
    } else {
        assert_child(by_index(&out, 0), by_index(&out, 1), LinkKind::Proxy);
        assert_eq!(linker.stats().linked_proxy, 1);
    }
}

#[test]
fn incoming_traceparent_is_honoured_with_or_without_a_traced_caller() {
    let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .expect("valid");
    // Only the server is traced: it joins the header's trace under the header's span.
    let mut linker = Linker::new(LinkConfig::default());
    let s = with_header(
        span(
            SpanKind::Server,
            2,
            2,
            "127.0.0.1:8000",
            "127.0.0.1:40000",
            (0, 10),
        ),
        &tp,
    );
    let out = run(&mut linker, vec![(0, s)]);
    let s = &out[0].1;
    assert_eq!(
        (s.trace_id, s.parent_span_id),
        (tp.trace_id, Some(tp.parent_id))
    );
    assert_eq!(s.link, LinkKind::Traceparent);
    assert_eq!(linker.stats().expired_unlinked, 0);
    // The caller is traced too and sent the header (curl -H): the same ids, by connection.
    let [c0, s1, ..] = chain();
    let mut linker = Linker::new(LinkConfig::default());
    let out = run(
        &mut linker,
        vec![(0, with_header(s1, &tp)), (MS, with_header(c0, &tp))],
    );
    let (c0, s1) = (by_index(&out, 1), by_index(&out, 0));
    assert_eq!(
        (c0.trace_id, c0.span_id, c0.link),
        (tp.trace_id, tp.parent_id, LinkKind::Traceparent)
    );
    assert_child(s1, c0, LinkKind::Connection);
}

/// The front service forwards the header it received, unchanged: its client span gets an id
/// of its own (not its caller's), and the backend's span hangs under it.
#[test]
fn forwarded_traceparent_keeps_one_tree() {
    let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .expect("valid");
    let [_, s1, c1, s2] = chain().map(|s| with_header(s, &tp));
    let mut linker = Linker::new(LinkConfig::default());
    let out = run(&mut linker, vec![(0, s2), (MS, c1), (2 * MS, s1)]);
    let (s2, c1, s1) = (by_index(&out, 0), by_index(&out, 1), by_index(&out, 2));
    assert_eq!(
        (s1.trace_id, s1.parent_span_id),
        (tp.trace_id, Some(tp.parent_id))
    );
    assert_eq!(s1.link, LinkKind::Traceparent);
    assert_child(c1, s1, LinkKind::Thread);
    assert_ne!(c1.span_id, tp.parent_id, "the client has an id of its own");
    assert_child(s2, c1, LinkKind::Connection);
}

/// A header naming another trace than the in-process parent's: the header wins, and the
/// span is not made a child of a span in another trace.
#[test]
fn header_of_another_trace_wins_over_the_thread() {
    let tp = TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .expect("valid");
    let [_, s1, c1, _] = chain();
    let s1 = HttpSpan {
        peer: addr("203.0.113.9:5000"),
        ..s1
    };
    let mut linker = Linker::new(LinkConfig::default());
    let out = run(&mut linker, vec![(0, with_header(c1, &tp)), (MS, s1)]);
    let c1 = by_index(&out, 0);
    assert_eq!(
        (c1.trace_id, c1.span_id, c1.parent_span_id),
        (tp.trace_id, tp.parent_id, None)
    );
    assert_eq!(c1.link, LinkKind::Traceparent);
}

#[test]
fn memory_is_bounded_and_every_span_still_leaves() {
    let mut linker = Linker::new(LinkConfig {
        max_spans: 4,
        ..LinkConfig::default()
    });
    let arrivals = (0..20)
        .map(|n| {
            let port = 40_000 + n;
            let s = span(
                SpanKind::Server,
                2,
                2,
                "127.0.0.1:80",
                &format!("127.0.0.1:{port}"),
                (n as u64 * 100, n as u64 * 100 + 50),
            );
            (n as u64, s)
        })
        .collect();
    let out = run(&mut linker, arrivals);
    assert_eq!(out.len(), 20);
    assert_eq!(linker.stats().evicted_for_memory, 16);
    assert!(linker.entries.len() <= 4);
}

#[test]
fn off_passes_spans_through_and_still_counts_bad_headers() {
    let mut linker = Linker::new(LinkConfig {
        hold_ns: 0,
        ..LinkConfig::default()
    });
    let [c0, mut s1, ..] = chain();
    s1.traceparent_rejected = Some(TraceParentError::ZeroId("trace-id"));
    let mut c0 = c0;
    c0.traceparent_rejected = Some(TraceParentError::Length(3));
    let mut out = Vec::new();
    linker.push(T0, 0, c0);
    linker.push(T0, 1, s1);
    linker.poll(T0, &mut out);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(_, s)| s.parent_span_id.is_none()));
    let s = linker.stats();
    assert_eq!(
        (s.traceparent_malformed, s.traceparent_zero, s.unlinked),
        (1, 1, 2)
    );
}

/// Twenty concurrent requests through a thread-per-request front: each chain is its own
/// trace, with no span in another's.
#[test]
fn concurrent_chains_do_not_mix() {
    let mut arrivals = Vec::new();
    for n in 0..20u64 {
        let (cp, fp) = (41_000 + n, 42_000 + n);
        let curl = format!("127.0.0.1:{cp}");
        let front_out = format!("127.0.0.1:{fp}");
        let t = n * 37;
        let tid = 100 + n as u32;
        let pid_curl = 1000 + n as u32;
        let spans = [
            span(
                SpanKind::Client,
                pid_curl,
                pid_curl,
                &curl,
                "127.0.0.1:8000",
                (t, t + 1000),
            ),
            span(
                SpanKind::Server,
                2,
                tid,
                "127.0.0.1:8000",
                &curl,
                (t + 100, t + 900),
            ),
            span(
                SpanKind::Client,
                2,
                tid,
                &front_out,
                "127.0.0.1:9000",
                (t + 200, t + 800),
            ),
            span(
                SpanKind::Server,
                3,
                300 + n as u32,
                "127.0.0.1:9000",
                &front_out,
                (t + 300, t + 700),
            ),
        ];
        for (k, s) in spans.into_iter().enumerate().rev() {
            arrivals.push((n * MS / 4 + (3 - k as u64) * MS, s));
        }
    }
    arrivals.sort_by_key(|(at, _)| *at);
    let chains: Vec<[u64; 4]> = (0..20u64)
        .map(|n| {
            let t = T0 + n * 37;
            [t, t + 100, t + 200, t + 300]
        })
        .collect();
    let mut linker = Linker::new(LinkConfig::default());
    let out = run(&mut linker, arrivals);
    for starts in chains {
        let find = |st: u64| {
            &out.iter()
                .find(|(_, s)| s.start_unix_ns == st)
                .expect("span")
                .1
        };
        let [c0, s1, c1, s2] = starts.map(find);
        assert_child(s1, c0, LinkKind::Connection);
        assert_child(c1, s1, LinkKind::Thread);
        assert_child(s2, c1, LinkKind::Connection);
    }
    assert_eq!(linker.stats().ambiguous, 0);
}

/// A thread that served more requests than its index keeps: a client call from the time of
/// a dropped one is not guessed at; one from a remembered one links.
#[test]
fn index_overflow_is_not_guessed_at() {
    let n = index::MAX_PER_KEY as u64 + 10;
    let mut arrivals: Vec<(u64, HttpSpan)> = (0..n)
        .map(|k| {
            let s = span(
                SpanKind::Server,
                2,
                21,
                "10.0.0.1:80",
                "203.0.113.9:5000",
                (k * 10, k * 10 + 5),
            );
            (k * 10 + 5, s)
        })
        .collect();
    let early = span(
        SpanKind::Client,
        2,
        21,
        "127.0.0.1:40001",
        "127.0.0.1:9000",
        (1, 2),
    );
    let late = span(
        SpanKind::Client,
        2,
        21,
        "127.0.0.1:40002",
        "127.0.0.1:9000",
        ((n - 1) * 10 + 1, (n - 1) * 10 + 2),
    );
    arrivals.push((n * 10 + 5, early));
    arrivals.push((n * 10 + 5, late));
    let mut linker = Linker::new(LinkConfig::default());
    let out = run(&mut linker, arrivals);
    let early = by_index(&out, n as usize);
    assert_eq!((early.link, early.parent_span_id), (LinkKind::None, None));
    assert_child(
        by_index(&out, n as usize + 1),
        by_index(&out, n as usize - 1),
        LinkKind::Thread,
    );
    assert_eq!(linker.stats().ambiguous, 1);
}

/// The kernel stamps a write when it returns, which can be after the woken reader returned:
/// a client seeming to start a little after its server still pairs; one with another
/// request line on the same connection never does.
#[rstest]
#[case::write_returned_late(50, "/x", true)]
#[case::beyond_the_slack(rules::WRITE_RETURN_SLACK_NS + 200, "/x", false)]
#[case::other_request_line(0, "/y", false)]
fn connection_pairing_checks_time_and_request_line(
    #[case] late_ns: u64,
    #[case] client_path: &str,
    #[case] paired: bool,
) {
    let (c, s) = ("127.0.0.1:40000", "127.0.0.1:8000");
    let mut client = span(
        SpanKind::Client,
        1,
        1,
        c,
        s,
        (100 + late_ns, 100 + late_ns + 10_000_000),
    );
    client.path = client_path.into();
    let server = span(SpanKind::Server, 2, 2, s, c, (100, 5_000_000));
    let mut linker = Linker::new(LinkConfig::default());
    let out = run(&mut linker, vec![(0, server), (MS, client)]);
    let (server, client) = (by_index(&out, 0), by_index(&out, 1));
    if paired {
        assert_child(server, client, LinkKind::Connection);
    } else {
        assert_eq!((server.parent_span_id, server.link), (None, LinkKind::None));
    }
}

/// A call that outlives the request it started under (background work, fire and forget) is
/// not that request's child.
#[test]
fn call_outliving_its_request_is_not_its_child() {
    let mut linker = Linker::new(LinkConfig::default());
    let server = span(
        SpanKind::Server,
        2,
        21,
        "10.0.0.1:80",
        "203.0.113.9:5000",
        (0, 100),
    );
    let call = span(
        SpanKind::Client,
        2,
        21,
        "127.0.0.1:40001",
        "127.0.0.1:9000",
        (50, 150),
    );
    let out = run(&mut linker, vec![(0, call), (MS, server)]);
    assert_eq!(by_index(&out, 0).link, LinkKind::None);
    assert_eq!(linker.stats().ambiguous, 0);
}

/// A client exchange the tracker cut off before its response (its connection seemed closed)
/// still pairs with the server span that read its request line on that connection later.
#[test]
fn client_cut_off_before_its_response_still_pairs() {
    let (c, s) = ("127.0.0.1:40000", "127.0.0.1:8000");
    let mut client = span(SpanKind::Client, 1, 1, c, s, (100, 110));
    client.status_code = None;
    client.error_type = Some("connection_closed".into());
    let server = span(SpanKind::Server, 2, 2, s, c, (3_000, 5_000));
    let mut linker = Linker::new(LinkConfig::default());
    let out = run(&mut linker, vec![(0, client), (MS, server)]);
    assert_child(by_index(&out, 1), by_index(&out, 0), LinkKind::Connection);
}

fn go_call(step: GoStep, goroutine: u64, request: u64, at: u64) -> GoCall {
    GoCall {
        step,
        goroutine,
        request,
        at: T0 + at,
        ring_lost: 0,
    }
}

/// A Go server with two requests in flight on one thread, each making a client call that a
/// pooled connection's writer goroutine writes: the uprobe steps name the goroutine each
/// call was made by, and each call joins its own request. A call written by the goroutine
/// that made it joins that goroutine's request; a writer with no hand-over before its write
/// is not guessed at.
#[test]
fn go_client_calls_join_the_request_of_the_goroutine_that_made_them() {
    const PID: u32 = 9;
    let (g1, g2, w1, w2) = (0xc0_0001, 0xc0_0002, 0xc0_0101, 0xc0_0102);
    let mut linker = Linker::new(LinkConfig::default());
    let server = |g: u64, port: u16, at: (u64, u64)| {
        let mut s = span(
            SpanKind::Server,
            PID,
            7,
            "10.0.0.1:80",
            &format!("203.0.113.9:{port}"),
            at,
        );
        s.goroutine = g;
        s
    };
    let client = |g: u64, port: u16, at: (u64, u64)| {
        let mut c = span(
            SpanKind::Client,
            PID,
            7,
            &format!("127.0.0.1:{port}"),
            "127.0.0.1:9000",
            at,
        );
        c.goroutine = g;
        c
    };
    linker.go_step(PID, go_call(GoStep::RoundTrip, g1, 0x100, 11));
    linker.go_step(PID, go_call(GoStep::RoundTrip, g2, 0x200, 12));
    linker.go_step(PID, go_call(GoStep::WriteRequest, w2, 0x200, 13));
    linker.go_step(PID, go_call(GoStep::WriteRequest, w1, 0x100, 14));
    let out = run(
        &mut linker,
        vec![
            (0, client(w1, 40001, (20, 50))),
            (0, client(w2, 40002, (21, 60))),
            (0, client(g1, 40003, (30, 70))),
            // w1 writes again, before any hand-over it could be for.
            (0, client(w1, 40004, (5, 80))),
            (0, server(g1, 5000, (0, 100))),
            (0, server(g2, 5001, (1, 120))),
        ],
    );
    let (s1, s2) = (by_index(&out, 4), by_index(&out, 5));
    assert_child(by_index(&out, 0), s1, LinkKind::Goroutine);
    assert_child(by_index(&out, 1), s2, LinkKind::Goroutine);
    assert_child(by_index(&out, 2), s1, LinkKind::Goroutine);
    let stray = by_index(&out, 3);
    assert_eq!((stray.parent_span_id, stray.link), (None, LinkKind::None));
    let s = linker.stats();
    assert_eq!((s.linked_goroutine, s.linked_thread), (3, 0));
    // The write without a hand-over fell to the thread rule, where two requests overlap.
    assert_eq!(s.ambiguous, 1);
    linker.forget_process(PID);
}

/// Two requests served on one goroutine at once is not Go's HTTP/1 server: the goroutine
/// then says nothing, and nothing is linked by it.
#[test]
fn overlapping_requests_on_one_goroutine_are_not_linked_by_it() {
    const PID: u32 = 9;
    let mut linker = Linker::new(LinkConfig::default());
    linker.go_step(PID, go_call(GoStep::RoundTrip, 0xa, 0x100, 11));
    linker.go_step(PID, go_call(GoStep::WriteRequest, 0xf1, 0x100, 12));
    let mut a = span(
        SpanKind::Server,
        PID,
        1,
        "10.0.0.1:80",
        "203.0.113.9:5000",
        (0, 100),
    );
    let mut b = span(
        SpanKind::Server,
        PID,
        2,
        "10.0.0.1:80",
        "203.0.113.9:5001",
        (5, 120),
    );
    b.path = "/other".into();
    (a.goroutine, b.goroutine) = (0xa, 0xa);
    let mut c = span(
        SpanKind::Client,
        PID,
        3,
        "127.0.0.1:40001",
        "127.0.0.1:9000",
        (20, 50),
    );
    c.path = "/third".into();
    c.goroutine = 0xf1;
    let out = run(&mut linker, vec![(0, a), (0, b), (0, c)]);
    assert_eq!(by_index(&out, 2).link, LinkKind::None);
    assert_eq!(linker.stats().ambiguous, 1);
}
