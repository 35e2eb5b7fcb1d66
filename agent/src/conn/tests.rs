//! Tracker tests: sequences of records as real traffic produces them → spans and counters.
use super::*;
use crate::ebpf::record::{Data, Direction};
use crate::span::SpanKind;
use rstest::rstest;

const COPY: usize = 4096;
const SERVER: u32 = 100;
const CLIENT: u32 = 200;

fn key(pid: u32, fd: i32, sock_id: u64) -> ConnKey {
    ConnKey { pid, fd, sock_id }
}

fn tuple() -> Tuple {
    Tuple {
        local: "127.0.0.1:8080".parse().expect("addr"),
        remote: "127.0.0.1:51000".parse().expect("addr"),
    }
}

/// Feeds records with a clock: each record takes 10 ns and the next starts 100 ns later.
struct Sim {
    tracker: Tracker,
    out: Vec<HttpSpan>,
    now: u64,
}

impl Sim {
    fn new() -> Self {
        Self::with(TrackerConfig::default())
    }

    fn with(cfg: TrackerConfig) -> Self {
        Self {
            tracker: Tracker::new(cfg),
            out: Vec::new(),
            now: 1_000,
        }
    }

    fn tick(&mut self) -> u64 {
        self.now += 100;
        self.now
    }

    fn push(&mut self, rec: Record) {
        self.tracker.push(rec, &mut self.out);
    }

    fn open(&mut self, k: ConnKey, role: Role) {
        let t = self.tick();
        self.push(Record::Open {
            key: k,
            role,
            tuple: tuple(),
            unix_ns: t,
        });
    }

    fn close(&mut self, k: ConnKey) {
        let t = self.tick();
        self.push(Record::Close { key: k, unix_ns: t });
    }

    /// A fully copied read or write; returns (start, end) of the syscall.
    fn io(&mut self, k: ConnKey, dir: Direction, bytes: &[u8]) -> (u64, u64) {
        self.io_copied(k, dir, bytes, COPY, true)
    }

    /// A read or write of `bytes` of which only `copy` were copied, with or without tail.
    fn io_copied(
        &mut self,
        k: ConnKey,
        dir: Direction,
        bytes: &[u8],
        copy: usize,
        with_tail: bool,
    ) -> (u64, u64) {
        let t = self.tick();
        let copied = bytes.len().min(copy);
        let tail = (with_tail && bytes.len() > copied).then(|| {
            let mut tail = [0u8; agent_common::TAIL_LEN];
            let n = tail.len().min(bytes.len() - copied);
            tail[agent_common::TAIL_LEN - n..].copy_from_slice(&bytes[bytes.len() - n..]);
            tail
        });
        self.push(Record::Data(Data {
            key: k,
            tid: k.pid + 1,
            direction: dir,
            tuple: tuple(),
            start_unix_ns: t,
            end_unix_ns: t + 10,
            len: bytes.len() as u32,
            bytes: bytes[..copied].to_vec(),
            tail,
        }));
        (t, t + 10)
    }

    fn read(&mut self, k: ConnKey, bytes: &[u8]) -> (u64, u64) {
        self.io(k, Direction::Read, bytes)
    }

    fn write(&mut self, k: ConnKey, bytes: &[u8]) -> (u64, u64) {
        self.io(k, Direction::Write, bytes)
    }

    fn stats(&self) -> &Stats {
        self.tracker.stats()
    }

    fn take(&mut self) -> Vec<HttpSpan> {
        std::mem::take(&mut self.out)
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: svc\r\nUser-Agent: t/1\r\n\r\n").into_bytes()
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn keep_alive_200_requests_on_one_connection() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    let mut times = Vec::new();
    for i in 0..200 {
        let (_, req_end) = sim.read(k, &get(&format!("/items/{i}?page=2")));
        let (_, resp_end) = sim.write(k, &ok("hello"));
        times.push((req_end, resp_end));
    }
    let spans = sim.take();
    assert_eq!(spans.len(), 200);
    for (i, (span, (start, end))) in spans.iter().zip(times).enumerate() {
        assert_eq!(span.kind, SpanKind::Server);
        assert_eq!(span.path, format!("/items/{i}"));
        assert_eq!(span.query.as_deref(), Some("page=2"));
        assert_eq!(span.route.as_deref(), Some("/items/{id}"));
        assert_eq!(
            (span.status_code, span.response_body_size),
            (Some(200), Some(5))
        );
        assert_eq!((span.start_unix_ns, span.end_unix_ns), (start, end));
        assert_eq!(
            (span.host.as_deref(), span.user_agent.as_deref()),
            (Some("svc"), Some("t/1"))
        );
        assert_eq!(
            (span.protocol_version.as_str(), span.pid, span.tid),
            ("1.1", SERVER, SERVER + 1)
        );
        assert_eq!((span.local, span.peer), (tuple().local, tuple().remote));
        assert_eq!(span.error_type, None);
    }
    assert_eq!(sim.tracker.connections(), 1);
    assert_eq!(sim.tracker.pending(&k), Some(0));
    sim.close(k);
    assert_eq!(sim.tracker.connections(), 0);
    assert_eq!(sim.stats().spans, 200);
}

#[test]
fn heads_split_at_every_offset() {
    let req = b"POST /api/v1/orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\n\r\nabcd";
    let resp = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    for cut in 1..req.len() {
        for rcut in [1, 9, 20, resp.len() - 3, resp.len() - 1] {
            let mut sim = Sim::new();
            let k = key(SERVER, 5, 1);
            sim.open(k, Role::Server);
            let (_, first_end) = sim.read(k, &req[..cut]);
            sim.read(k, &req[cut..]);
            sim.write(k, &resp[..rcut]);
            let (_, end) = sim.write(k, &resp[rcut..]);
            let spans = sim.take();
            assert_eq!(spans.len(), 1, "cut {cut}/{rcut}");
            let s = &spans[0];
            assert_eq!(
                (s.method.as_str(), s.path.as_str(), s.status_code),
                ("POST", "/api/v1/orders", Some(201))
            );
            assert_eq!(
                (s.start_unix_ns, s.end_unix_ns),
                (first_end, end),
                "cut {cut}/{rcut}"
            );
            assert_eq!(
                (s.request_body_size, s.response_body_size),
                (Some(4), Some(2))
            );
        }
    }
}

#[test]
fn pipelining_three_deep_in_fifo_order() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    let mut reqs = get("/a");
    reqs.extend(b"POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz");
    reqs.extend(get("/c"));
    let (_, req_end) = sim.read(k, &reqs);
    assert_eq!(sim.tracker.pending(&k), Some(3));
    let mut two = ok("1");
    two.extend(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    sim.write(k, &two);
    let (_, last) = sim.write(k, &ok("333"));
    let spans = sim.take();
    let got: Vec<_> = spans
        .iter()
        .map(|s| (s.path.as_str(), s.status_code))
        .collect();
    assert_eq!(
        got,
        [("/a", Some(200)), ("/b", Some(404)), ("/c", Some(200))]
    );
    assert!(spans.iter().all(|s| s.start_unix_ns == req_end));
    assert_eq!(spans[2].end_unix_ns, last);
    assert_eq!(spans[1].request_body_size, Some(3));
}

#[test]
fn chunked_response_across_writes() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(k, &get("/stream"));
    sim.write(k, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    sim.write(k, b"5\r\nhello\r\n");
    assert!(sim.take().is_empty(), "not finished before the last chunk");
    sim.write(k, b"6\r\n world\r\n");
    let (_, end) = sim.write(k, b"0\r\n\r\n");
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (spans[0].end_unix_ns, spans[0].response_body_size),
        (end, Some(11))
    );
}

/// A 10 000-byte chunk of which only 4 KiB is copied: the decoder skips the rest in sync.
#[test]
fn chunked_large_chunk_stays_in_sync_without_tail() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(k, &get("/big"));
    let mut body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2710\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'x', 10_000));
    sim.io_copied(k, Direction::Write, &body, COPY, false);
    let (_, end) = sim.write(k, b"\r\n0\r\n\r\n");
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (spans[0].end_unix_ns, spans[0].response_body_size),
        (end, Some(10_000))
    );
    assert_eq!(sim.stats().chunk_framing_lost, 0);
}

/// Several chunks in one large write: framing is lost in the uncopied middle, and the tail
/// shows the terminating chunk.
#[rstest]
#[case::with_tail(true, 1, 0)]
#[case::vectored_without_tail(false, 0, 1)]
fn chunked_framing_lost(#[case] tail: bool, #[case] spans_now: usize, #[case] by_next: u64) {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(k, &get("/many"));
    let mut body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..50 {
        body.extend(b"64\r\n");
        body.extend(std::iter::repeat_n(b'y', 100));
        body.extend(b"\r\n");
    }
    body.extend(b"0\r\n\r\n");
    let (_, end) = sim.io_copied(k, Direction::Write, &body, 1000, tail);
    assert_eq!(sim.take().len(), spans_now);
    let st = sim.stats();
    assert_eq!(
        (st.chunk_framing_lost, st.ended_by_last_chunk),
        (1 - spans_now as u64, spans_now as u64)
    );
    sim.read(k, &get("/next"));
    let (_, next_end) = sim.write(k, &ok(""));
    let spans = sim.take();
    assert_eq!(spans.len(), 2 - spans_now);
    assert_eq!(spans.last().map(|s| s.end_unix_ns), Some(next_end));
    if by_next == 1 {
        assert_eq!(spans[0].path, "/many");
        assert_eq!(spans[0].end_unix_ns, end, "ends at its last response byte");
    }
    assert_eq!(sim.stats().ended_by_next_request, by_next);
}

#[rstest]
#[case::head("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", Some(200))]
#[case::no_content("DELETE", "HTTP/1.1 204 No Content\r\n\r\n", Some(204))]
#[case::not_modified(
    "GET",
    "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
    Some(304)
)]
#[case::empty_200("GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Some(200))]
fn responses_without_body(#[case] method: &str, #[case] resp: &str, #[case] status: Option<u16>) {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(k, format!("{method} /r HTTP/1.1\r\n\r\n").as_bytes());
    let (_, end) = sim.write(k, resp.as_bytes());
    // The next exchange still parses: the body-less response consumed nothing more.
    sim.read(k, &get("/after"));
    sim.write(k, &ok("x"));
    let spans = sim.take();
    assert_eq!(spans.len(), 2);
    assert_eq!((spans[0].status_code, spans[0].end_unix_ns), (status, end));
    assert_eq!(spans[0].response_body_size, Some(0));
    assert_eq!(spans[1].path, "/after");
}

#[test]
fn expect_100_continue() {
    let mut sim = Sim::new();
    let k = key(CLIENT, 7, 9);
    sim.open(k, Role::Client);
    let (start, _) = sim.write(
        k,
        b"PUT /upload HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\n",
    );
    sim.read(k, b"HTTP/1.1 100 Continue\r\n\r\n");
    assert!(sim.take().is_empty());
    sim.write(k, b"abcdef");
    let (_, end) = sim.read(k, &ok("done"));
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(
        (s.kind, s.status_code, s.request_body_size),
        (SpanKind::Client, Some(200), Some(6))
    );
    assert_eq!((s.start_unix_ns, s.end_unix_ns), (start, end));
    assert_eq!(sim.stats().interim_responses, 1);
}

#[test]
fn http10_close_delimited_response() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(k, b"GET /old HTTP/1.0\r\n\r\n");
    sim.write(
        k,
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part",
    );
    let (_, end) = sim.write(k, b" and more");
    assert!(sim.take().is_empty());
    sim.close(k);
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(
        (s.protocol_version.as_str(), s.status_code),
        ("1.0", Some(200))
    );
    assert_eq!(
        (s.end_unix_ns, s.response_body_size, s.error_type.as_deref()),
        (end, Some(19), None)
    );
    assert_eq!(sim.stats().ended_by_close, 1);
}

#[test]
fn client_close_delimited_response_ends_at_eof_read() {
    let mut sim = Sim::new();
    let k = key(CLIENT, 7, 9);
    sim.open(k, Role::Client);
    sim.write(k, b"GET / HTTP/1.0\r\n\r\n");
    let (_, end) = sim.read(k, b"HTTP/1.0 200 OK\r\n\r\nbody");
    sim.read(k, b"");
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (spans[0].end_unix_ns, spans[0].error_type.as_deref()),
        (end, None)
    );
}

#[rstest]
#[case::client_no_response(Role::Client, "", 1, Some("connection_closed"), None)]
#[case::client_partial_body(
    Role::Client,
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
    1,
    Some("connection_closed"),
    Some(200)
)]
#[case::server_no_response(Role::Server, "", 0, None, None)]
#[case::server_partial_body(
    Role::Server,
    "HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\nabc",
    1,
    Some("connection_closed"),
    Some(500)
)]
fn close_mid_exchange(
    #[case] role: Role,
    #[case] partial: &str,
    #[case] spans: usize,
    #[case] error: Option<&str>,
    #[case] status: Option<u16>,
) {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, role);
    let (req_dir, resp_dir) = match role {
        Role::Server => (Direction::Read, Direction::Write),
        Role::Client => (Direction::Write, Direction::Read),
    };
    sim.io(k, req_dir, &get("/x"));
    if !partial.is_empty() {
        sim.io(k, resp_dir, partial.as_bytes());
    }
    sim.close(k);
    let close_time = sim.now;
    let out = sim.take();
    assert_eq!(out.len(), spans);
    if let Some(s) = out.first() {
        assert_eq!(
            (s.error_type.as_deref(), s.status_code, s.end_unix_ns),
            (error, status, close_time)
        );
    } else {
        assert_eq!(sim.stats().aborted_exchanges, 1);
    }
}

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
fn sendfile_body_counts_length_without_bytes() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(k, &get("/file.iso"));
    sim.write(k, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
    let t = sim.tick();
    let sendfile = |len: u32, t: u64| {
        Record::Data(Data {
            key: k,
            tid: 1,
            direction: Direction::Write,
            tuple: tuple(),
            start_unix_ns: t,
            end_unix_ns: t + 10,
            len,
            bytes: Vec::new(),
            tail: None,
        })
    };
    sim.push(sendfile(600_000, t));
    assert!(sim.take().is_empty());
    sim.push(sendfile(400_000, t + 100));
    let spans = sim.take();
    assert_eq!(
        (
            spans.len(),
            spans[0].end_unix_ns,
            spans[0].response_body_size
        ),
        (1, t + 110, Some(1_000_000))
    );
}

#[test]
fn oversized_head_is_counted_and_skipped() {
    let cfg = TrackerConfig {
        max_head_bytes: 1024,
        ..Default::default()
    };
    let mut sim = Sim::with(cfg);
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    let mut huge = b"GET /x HTTP/1.1\r\n".to_vec();
    for _ in 0..10 {
        sim.read(k, &huge);
        huge = format!("X-Pad: {}\r\n", "p".repeat(200)).into_bytes();
    }
    sim.write(k, &ok("nope"));
    assert!(sim.take().is_empty());
    assert_eq!(
        (sim.stats().oversized_heads, sim.stats().orphan_responses),
        (1, 1)
    );
    // Resynchronises at the next request line.
    sim.read(k, &get("/y"));
    sim.write(k, &ok("yes"));
    assert_eq!(sim.take().len(), 1);
}

#[test]
fn head_cut_by_copy_prefix_is_salvaged() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    let req = format!(
        "GET /cookies HTTP/1.1\r\nHost: big\r\nCookie: {}\r\n\r\n",
        "c".repeat(6000)
    );
    sim.io_copied(k, Direction::Read, req.as_bytes(), COPY, true);
    sim.write(k, &ok("fine"));
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (spans[0].path.as_str(), spans[0].host.as_deref()),
        ("/cookies", Some("big"))
    );
    assert_eq!(sim.stats().truncated_heads, 1);
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
fn trace_context_from_incoming_request() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(k, b"GET / HTTP/1.1\r\nHost: a\r\n");
    sim.read(
        k,
        b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
    );
    sim.write(k, &ok(""));
    let spans = sim.take();
    assert_eq!(
        hex::encode(spans[0].trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        spans[0].parent_span_id.map(hex::encode).as_deref(),
        Some("00f067aa0ba902b7")
    );
}

#[test]
fn upgrade_makes_the_connection_opaque() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(
        k,
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    sim.write(
        k,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    );
    sim.read(k, b"\x81\x85GET /fake HTTP/1.1\r\n\r\n");
    sim.write(k, b"\x81\x05hello");
    let spans = sim.take();
    assert_eq!((spans.len(), spans[0].status_code), (1, Some(101)));
    assert_eq!(sim.stats().upgraded_connections, 1);
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
fn client_span_times_and_ids_from_outgoing_traceparent() {
    let mut sim = Sim::new();
    let k = key(CLIENT, 7, 1);
    sim.open(k, Role::Client);
    let req = b"GET /downstream HTTP/1.1\r\n\
traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
    let (start, _) = sim.write(k, req);
    sim.read(k, b"HTTP/1.1 200 OK\r\nContent-Len");
    let (_, end) = sim.read(k, b"gth: 2\r\n\r\nok");
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(
        (s.kind, s.start_unix_ns, s.end_unix_ns),
        (SpanKind::Client, start, end)
    );
    assert_eq!(hex::encode(s.trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(hex::encode(s.span_id), "b7ad6b7169203331");
    assert_eq!(s.parent_span_id, None);
}

#[test]
fn chunked_request_body_then_response() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(
        k,
        b"POST /ingest HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n",
    );
    sim.read(k, b"3\r\nefg\r\n0\r\n\r\n");
    sim.write(k, b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
    let spans = sim.take();
    assert_eq!(
        (
            spans.len(),
            spans[0].request_body_size,
            spans[0].status_code
        ),
        (1, Some(7), Some(202))
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
