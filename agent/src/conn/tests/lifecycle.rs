//! Connection lifecycle: close, reuse, exit, eviction, idle sweep, non-HTTP, roles.
use super::*;
use rstest::rstest;

#[test]
fn fd_reuse_with_new_socket_ends_the_old_connection() {
    let mut sim = Sim::new();
    let old = key(CLIENT, 7, 1);
    let new = key(CLIENT, 7, 2);
    sim.open(old, Role::Client);
    sim.write(old, &get("/lost"));
    // The close of the old socket was never seen; a new connect reuses fd 7.
    sim.open(new, Role::Client);
    let first = sim.take();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].path.as_str(), first[0].error_type.as_deref()),
        ("/lost", Some("connection_closed"))
    );
    sim.write(new, &get("/fresh"));
    sim.read(new, &ok("y"));
    let spans = sim.take();
    assert_eq!((spans.len(), spans[0].path.as_str()), (1, "/fresh"));
    assert_eq!(sim.tracker.connections(), 1);
    assert_eq!(sim.stats().replaced_connections, 1);
}

#[test]
fn fd_reuse_detected_from_data_without_open() {
    let mut sim = Sim::new();
    sim.open(key(SERVER, 5, 1), Role::Server);
    sim.read(key(SERVER, 5, 2), &get("/new-socket"));
    assert_eq!(sim.tracker.connections(), 1);
    assert_eq!(sim.tracker.pending(&key(SERVER, 5, 2)), Some(1));
}

#[test]
fn process_exit_ends_all_its_connections() {
    let mut sim = Sim::new();
    for fd in 0..5 {
        sim.open(key(CLIENT, fd, fd as u64 + 10), Role::Client);
        sim.write(key(CLIENT, fd, fd as u64 + 10), &get("/pending"));
    }
    sim.open(key(SERVER, 3, 99), Role::Server);
    let t = sim.tick();
    sim.push(Record::ProcessExit {
        pid: CLIENT,
        unix_ns: t,
        ring_lost: 0,
    });
    let spans = sim.take();
    assert_eq!(spans.len(), 5);
    assert!(
        spans
            .iter()
            .all(|s| s.error_type.as_deref() == Some("connection_closed") && s.end_unix_ns == t)
    );
    assert_eq!(sim.tracker.connections(), 1, "other processes keep theirs");
}

#[test]
fn kernel_close_without_fd_matches_by_socket() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 0xdead_beef);
    sim.open(k, Role::Server);
    sim.read(k, b"GET / HTTP/1.1\r\n\r\n");
    sim.write(k, b"HTTP/1.1 200 OK\r\n\r\npartial");
    sim.close(key(0, -1, 0xdead_beef));
    assert_eq!(sim.tracker.connections(), 0);
    assert_eq!(sim.take().len(), 1);
}

#[test]
fn fifty_interleaved_connections() {
    let mut sim = Sim::new();
    let keys: Vec<ConnKey> = (0..50)
        .map(|i| key(SERVER, 10 + i, 1000 + i as u64))
        .collect();
    for &k in &keys {
        sim.open(k, Role::Server);
    }
    // Heads split in two, interleaved across all connections, responses in reverse order.
    let req = |i: usize| format!("GET /conn/{i} HTTP/1.1\r\nHost: h{i}\r\n\r\n").into_bytes();
    for (i, &k) in keys.iter().enumerate() {
        sim.read(k, &req(i)[..7]);
    }
    for (i, &k) in keys.iter().enumerate() {
        sim.read(k, &req(i)[7..]);
    }
    for (i, &k) in keys.iter().enumerate().rev() {
        sim.write(k, &ok(&i.to_string()));
    }
    let spans = sim.take();
    assert_eq!(spans.len(), 50);
    for s in &spans {
        let i: usize = s.path.trim_start_matches("/conn/").parse().expect("index");
        assert_eq!(s.host.as_deref(), Some(format!("h{i}").as_str()));
        assert_eq!(s.response_body_size, Some(i.to_string().len() as u64));
    }
}

#[rstest]
#[case::tls(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".as_slice())]
#[case::redis(b"*1\r\n$4\r\nPING\r\n".as_slice())]
#[case::postgres(b"\x00\x00\x00\x08\x04\xd2\x16\x2f".as_slice())]
#[case::lowercase(b"get / HTTP/1.1\r\n\r\n".as_slice())]
#[case::http2_prior_knowledge(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice())]
fn non_http_connection_is_skipped(#[case] first: &[u8]) {
    let mut sim = Sim::new();
    let k = key(CLIENT, 7, 1);
    sim.open(k, Role::Client);
    sim.write(k, first);
    sim.read(k, b"+PONG\r\n");
    sim.write(k, &get("/looks-like-http-later"));
    sim.read(k, &ok(""));
    assert!(sim.take().is_empty());
    assert_eq!(sim.stats().non_http_connections, 1);
    assert_eq!(sim.stats().non_http_skipped, 4);
}

#[test]
fn garbage_without_open_keeps_no_state() {
    let mut sim = Sim::new();
    for i in 0..100 {
        sim.read(key(SERVER, i, i as u64), b"\x00\x01binary junk\xff");
    }
    assert_eq!(sim.tracker.connections(), 0);
    assert_eq!(sim.stats().non_http_skipped, 100);
}

#[rstest]
#[case::server(Direction::Read, Direction::Write, SpanKind::Server)]
#[case::client(Direction::Write, Direction::Read, SpanKind::Client)]
fn role_inferred_without_open(
    #[case] req: Direction,
    #[case] resp: Direction,
    #[case] kind: SpanKind,
) {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    // Joined mid-exchange: the tail of a body and a response whose request we missed.
    sim.io(k, req, b"tail of an old body");
    sim.io(k, resp, &ok("old"));
    assert_eq!(sim.tracker.connections(), 0);
    let (s, e) = sim.io(k, req, &get("/first-seen"));
    let (_, end) = sim.io(k, resp, &ok("new"));
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    let start = if kind == SpanKind::Server { e } else { s };
    assert_eq!(
        (spans[0].kind, spans[0].start_unix_ns, spans[0].end_unix_ns),
        (kind, start, end)
    );
}

#[rstest]
#[case::no_server(false, true, SpanKind::Client)]
#[case::no_client(true, false, SpanKind::Server)]
fn capture_switches(#[case] server: bool, #[case] client: bool, #[case] kept: SpanKind) {
    let cfg = TrackerConfig {
        capture_server: server,
        capture_client: client,
        ..Default::default()
    };
    let mut sim = Sim::with(cfg);
    let (s, c) = (key(SERVER, 5, 1), key(CLIENT, 5, 2));
    sim.open(s, Role::Server);
    sim.open(c, Role::Client);
    let inferred = key(SERVER, 6, 3);
    for (k, req, resp) in [
        (s, Direction::Read, Direction::Write),
        (c, Direction::Write, Direction::Read),
        (inferred, Direction::Read, Direction::Write),
    ] {
        sim.io(k, req, &get("/"));
        sim.io(k, resp, &ok(""));
    }
    let kinds: Vec<_> = sim.take().iter().map(|s| s.kind).collect();
    let expected = if kept == SpanKind::Server {
        vec![kept, kept]
    } else {
        vec![kept]
    };
    assert_eq!(kinds, expected);
    assert_eq!(
        sim.stats().role_filtered,
        if kept == SpanKind::Server { 1 } else { 2 }
    );
}

#[test]
fn eviction_keeps_the_table_bounded() {
    let cfg = TrackerConfig {
        max_connections: 32,
        ..Default::default()
    };
    let mut sim = Sim::with(cfg);
    for i in 0..100 {
        sim.open(key(SERVER, i, i as u64), Role::Server);
    }
    assert!(sim.tracker.connections() <= 32);
    assert!(sim.stats().evicted_connections >= 68);
    // The newest connection survived.
    assert!(sim.tracker.pending(&key(SERVER, 99, 99)).is_some());
}

#[test]
fn sweep_expires_idle_connections() {
    let cfg = TrackerConfig {
        idle_timeout_ns: 1_000,
        ..Default::default()
    };
    let mut sim = Sim::with(cfg);
    let (srv, cli, quiet) = (key(SERVER, 5, 1), key(CLIENT, 7, 2), key(SERVER, 6, 3));
    sim.open(srv, Role::Server);
    sim.read(srv, &get("/stream"));
    let (_, end) = sim.write(srv, b"HTTP/1.1 200 OK\r\n\r\nunframed body");
    sim.open(cli, Role::Client);
    sim.write(cli, &get("/slow"));
    sim.open(quiet, Role::Server);
    let now = sim.now;
    let mut out = Vec::new();
    sim.tracker.sweep(now + 500, &mut out);
    assert!(out.is_empty());
    sim.tracker.sweep(now + 5_000, &mut out);
    assert_eq!(sim.tracker.connections(), 0);
    let mut got: Vec<_> = out
        .iter()
        .map(|s| (s.path.as_str(), s.error_type.as_deref(), s.end_unix_ns))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("/slow", Some("timeout"), now + 5_000),
            ("/stream", None, end)
        ]
    );
    assert_eq!(sim.stats().ended_by_timeout, 1);
}

#[test]
fn body_text_that_starts_like_a_method_does_not_decide_the_role() {
    let mut sim = Sim::new();
    let k = key(CLIENT, 7, 1);
    // A client reading a body that happens to start with "GET ": not a request head.
    sim.read(k, b"GET me a coffee, said the response body\r\n");
    sim.write(k, &get("/real"));
    sim.read(k, &ok("x"));
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (spans[0].kind, spans[0].path.as_str()),
        (SpanKind::Client, "/real")
    );
}

#[test]
fn unanswered_pipeline_is_bounded() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    for i in 0..20 {
        sim.read(k, &get(&format!("/p/{i}")));
    }
    assert_eq!(sim.tracker.pending(&k), Some(state::MAX_PIPELINE));
    assert_eq!(
        sim.stats().aborted_exchanges,
        20 - state::MAX_PIPELINE as u64
    );
}

#[test]
fn garbage_response_drops_the_request() {
    let mut sim = Sim::new();
    let k = key(CLIENT, 7, 1);
    sim.open(k, Role::Client);
    sim.write(k, &get("/a"));
    sim.read(k, b"HTTP/1.1 abc\r\n\r\n");
    assert!(sim.take().is_empty());
    assert_eq!(
        (sim.stats().parse_errors, sim.stats().aborted_exchanges),
        (1, 1)
    );
    sim.write(k, &get("/b"));
    sim.read(k, &ok(""));
    assert_eq!(sim.take().len(), 1);
}

#[test]
fn close_without_socket_id_matches_by_fd() {
    let mut sim = Sim::new();
    let k = key(CLIENT, 7, 55);
    sim.open(k, Role::Client);
    sim.write(k, &get("/x"));
    sim.close(key(CLIENT, 7, 0));
    let spans = sim.take();
    assert_eq!((spans.len(), sim.tracker.connections()), (1, 0));
    assert_eq!(spans[0].error_type.as_deref(), Some("connection_closed"));
}

#[test]
fn stats_counters_name_every_field() {
    let stats = Stats {
        spans: 7,
        lost_sync: 3,
        ..Default::default()
    };
    let fields = format!("{:?}", Stats::default()).matches(": 0").count();
    let counters = stats.counters();
    assert_eq!(counters.len(), fields);
    let names: std::collections::HashSet<_> = counters.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), fields);
    assert!(counters.contains(&("spans", 7)) && counters.contains(&("lost_sync", 3)));
}

#[test]
fn a_lone_method_prefix_does_not_decide_the_role() {
    let mut sim = Sim::new();
    let k = key(CLIENT, 7, 1);
    // A client reads a one-byte body record "P", then makes a real request.
    sim.read(k, b"P");
    sim.write(k, &get("/real"));
    sim.read(k, &ok("x"));
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].kind, SpanKind::Client);
}

/// A keep-alive client connection loses the record of one response to a full ring. Without
/// the kernel's per-socket loss count, that request would take the next one's response and
/// every later request its successor's (404 reported as 500, for the rest of the connection).
#[test]
fn ring_loss_drops_the_exchanges_in_flight_and_resumes_at_the_next_head() {
    let mut sim = Sim::new();
    let k = key(CLIENT, 4, 9);
    sim.open(k, Role::Client);
    sim.write(k, &get("/a"));
    sim.read(k, &ok("a"));
    sim.write(k, &get("/b"));
    // The response to /b (a 404) is lost.
    sim.lose();
    sim.write(k, &get("/c"));
    sim.read(
        k,
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
    );
    sim.write(k, &get("/d"));
    sim.read(k, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    let got: Vec<(String, Option<u16>)> = sim
        .take()
        .into_iter()
        .map(|s| (s.path, s.status_code))
        .collect();
    assert_eq!(
        got,
        [
            ("/a".to_owned(), Some(200)),
            ("/c".to_owned(), Some(500)),
            ("/d".to_owned(), Some(201)),
        ]
    );
    assert_eq!(sim.stats().ring_loss_resyncs, 1);
    assert_eq!(sim.stats().ring_loss_exchanges, 1);
    // Attributed to its process, for the RED metrics' loss counter, once.
    assert_eq!(
        sim.tracker.take_skipped(),
        std::collections::BTreeMap::from([(CLIENT, 1)])
    );
    assert!(sim.tracker.take_skipped().is_empty());
}

/// A lost record in the middle of a response body: the response is not ended by guesswork,
/// and the next exchange is exact.
#[test]
fn ring_loss_inside_a_body_resumes_at_the_next_head() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 3);
    sim.open(k, Role::Server);
    sim.read(k, &get("/big"));
    sim.write(k, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234");
    sim.lose();
    sim.read(k, &get("/next"));
    sim.write(k, &ok("xy"));
    let spans = sim.take();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].path, "/next");
    assert_eq!(spans[0].response_body_size, Some(2));
    assert_eq!(sim.stats().ring_loss_exchanges, 1);
}

/// A close that follows lost records does not turn the exchange in flight into an error span.
#[test]
fn ring_loss_before_close_drops_instead_of_erroring() {
    let mut sim = Sim::new();
    let k = key(CLIENT, 4, 9);
    sim.open(k, Role::Client);
    sim.write(k, &get("/x"));
    sim.lose();
    sim.close(k);
    assert!(sim.take().is_empty());
    assert_eq!(sim.stats().ring_loss_exchanges, 1);
}

/// The response and the close of a client connection were lost; its process's exit says that
/// records were lost since the connection's last one: the request in flight is dropped, not
/// reported as `connection_closed`. Without loss, the same exit reports it.
#[rstest]
#[case::records_lost_meanwhile(1, 0)]
#[case::nothing_lost(0, 1)]
fn exit_after_ring_loss_drops_instead_of_erroring(#[case] lost: u32, #[case] errors: usize) {
    let mut sim = Sim::new();
    let k = key(CLIENT, 4, 9);
    sim.open(k, Role::Client);
    sim.write(k, &get("/x"));
    let t = sim.tick();
    sim.push(Record::ProcessExit {
        pid: CLIENT,
        unix_ns: t,
        ring_lost: lost,
    });
    assert_eq!(sim.take().len(), errors);
    assert_eq!(sim.stats().ring_loss_exchanges, u64::from(lost));
}
