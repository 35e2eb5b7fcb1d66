//! Exchange framing: keep-alive, split heads, pipelining, bodies, interim responses.
use super::*;
use rstest::rstest;

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
            (span.protocol_version, span.pid, span.tid),
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
/// shows the terminating chunk (the size is then unknown, and left out).
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
    let now = sim.take();
    assert_eq!(now.len(), spans_now);
    assert!(
        now.iter().all(|s| s.response_body_size.is_none()),
        "{now:?}"
    );
    let st = sim.stats();
    assert_eq!(
        (st.chunk_framing_lost, st.ended_by_last_chunk),
        (1 - spans_now as u64, spans_now as u64)
    );
    assert_eq!(st.chunked_size_unknown, spans_now as u64);
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
    assert_eq!((s.protocol_version, s.status_code), ("1.0", Some(200)));
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
            goroutine: 0,
            direction: Direction::Write,
            tuple: tuple(),
            start_unix_ns: t,
            end_unix_ns: t + 10,
            len,
            bytes: Vec::new().into(),
            tail: None,
            sock_lost: 0,
            ring_lost: 0,
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

/// Pipelined requests, first response's chunk framing lost without a tail: the second
/// response's head (at a record start) ends the first.
#[test]
fn pipelined_lost_framing_ends_at_next_response() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    let mut reqs = get("/one");
    reqs.extend(get("/two"));
    sim.read(k, &reqs);
    let mut body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..30 {
        body.extend(b"64\r\n");
        body.extend(std::iter::repeat_n(b'z', 100));
        body.extend(b"\r\n");
    }
    body.extend(b"0\r\n\r\n");
    let (_, first_end) = sim.io_copied(k, Direction::Write, &body, 500, false);
    let (_, second_end) = sim.write(k, &ok("2"));
    let spans = sim.take();
    let got: Vec<_> = spans
        .iter()
        .map(|s| (s.path.as_str(), s.end_unix_ns))
        .collect();
    assert_eq!(got, [("/one", first_end), ("/two", second_end)]);
    assert_eq!(sim.stats().ended_by_next_response, 1);
}

/// Two pipelined responses in one write whose second lies beyond the copied prefix: the
/// second request cannot be paired, and is dropped rather than mispaired later.
#[test]
fn response_lost_after_pipelined_write_drops_unpaired_requests() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    let mut reqs = get("/one");
    reqs.extend(get("/two"));
    sim.read(k, &reqs);
    let first = ok("1");
    let mut both = first.clone();
    both.extend(ok(&"2".repeat(300)));
    // The copied prefix ends exactly where the second response starts.
    sim.io_copied(k, Direction::Write, &both, first.len(), false);
    sim.read(k, &get("/three"));
    sim.write(k, &ok("3"));
    let paths: Vec<_> = sim.take().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/one", "/three"]);
    assert_eq!(
        (sim.stats().lost_sync, sim.stats().aborted_exchanges),
        (1, 1)
    );
}

/// Same, but the prefix ends inside the second head: its status line is salvaged and its
/// body (framing unknown) ends at the next request.
#[test]
fn response_head_cut_in_pipelined_write_is_salvaged() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    let mut reqs = get("/one");
    reqs.extend(get("/two"));
    sim.read(k, &reqs);
    let mut both = ok("1");
    both.extend(b"HTTP/1.1 503 Busy\r\nContent-Length: 300\r\n\r\n");
    both.extend([b'2'; 300]);
    let (_, end) = sim.io_copied(k, Direction::Write, &both, ok("1").len() + 25, false);
    sim.read(k, &get("/three"));
    sim.write(k, &ok("3"));
    let got: Vec<_> = sim
        .take()
        .into_iter()
        .map(|s| (s.path, s.status_code, s.end_unix_ns))
        .collect();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1], ("/two".to_owned(), Some(503), end));
    let st = sim.stats();
    assert_eq!(
        (st.truncated_heads, st.ended_by_next_request, st.lost_sync),
        (1, 1, 0)
    );
}

/// node.js writes chunks with writev (no tail): the response is flushed by a sweep after a
/// quiet spell instead of waiting for the next request; the connection stays.
#[test]
fn lost_framing_flushed_after_quiet_spell() {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(k, &get("/stream"));
    let (_, end) = sim.io_copied(
        k,
        Direction::Write,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        20,
        false,
    );
    let mut out = Vec::new();
    sim.tracker.sweep(end + QUIET_FLUSH_NS / 2, &mut out);
    assert!(out.is_empty());
    sim.tracker.sweep(end + QUIET_FLUSH_NS + 1, &mut out);
    assert_eq!((out.len(), out[0].end_unix_ns), (1, end));
    assert_eq!(sim.tracker.connections(), 1);
    sim.read(k, &get("/again"));
    sim.write(k, &ok("x"));
    assert_eq!(sim.take().len(), 1);
}
