//! Replays syscall sequences captured (strace -xx) from real servers and clients: node's
//! http module (keep-alive, writev, chunked), nginx (writev heads, sendfile bodies, HEAD,
//! 304, gzip chunked) and curl against Python's http.server (HTTP/1.0 responses).
//!
//! Fixture format, one syscall a line: `A` accept/connect, `C` close, `R <bytes>` read,
//! `W <bytes>` write, `V <len> <first iov>` writev, `S <len>` sendfile; bytes are printable
//! ASCII with `\xNN` and `\\` escapes. Records are built as the kernel side builds them: a
//! copied prefix of `COPY` bytes plus a tail for plain reads/writes, only the first iov and
//! no tail for writev, no bytes for sendfile.
use super::*;

const NODE: &str = include_str!("fixtures/node_keepalive_chunked.txt");
const NGINX: &str = include_str!("fixtures/nginx_sendfile.txt");
const CURL: &str = include_str!("fixtures/curl_client_http10.txt");

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'x')) => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Replays a fixture as one process with the given role; returns the spans and the time
/// at which each line's record ended (by line index among records).
fn replay(fixture: &str, role: Role) -> (Sim, Vec<u64>) {
    let mut sim = Sim::new();
    let mut ends = Vec::new();
    let mut sock = 0u64;
    let k = |sock| key(SERVER, 5, sock);
    for line in fixture.lines().filter(|l| !l.starts_with('#')) {
        let (op, rest) = line.split_at(1);
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match op {
            "A" => {
                sock += 1;
                sim.open(k(sock), role);
            }
            "C" => sim.close(k(sock)),
            "R" => {
                let (_, end) = sim.io_copied(k(sock), Direction::Read, &unescape(rest), COPY, true);
                ends.push(end);
            }
            "W" => {
                let (_, end) =
                    sim.io_copied(k(sock), Direction::Write, &unescape(rest), COPY, true);
                ends.push(end);
            }
            "V" | "S" => {
                let (len, first) = rest.split_once(' ').unwrap_or((rest, ""));
                let t = sim.tick();
                let mut bytes = unescape(first);
                bytes.truncate(COPY);
                sim.push(Record::Data(Data {
                    key: k(sock),
                    tid: 1,
                    goroutine: 0,
                    direction: Direction::Write,
                    tuple: tuple(),
                    start_unix_ns: t,
                    end_unix_ns: t + 10,
                    len: len.parse().expect("length"),
                    bytes: bytes.into(),
                    tail: None,
                    sock_lost: 0,
                    ring_lost: 0,
                }));
                ends.push(t + 10);
            }
            other => panic!("unknown fixture op {other:?}"),
        }
    }
    (sim, ends)
}

type Row<'a> = (&'a str, &'a str, Option<u16>, Option<u64>);

fn rows(spans: &[HttpSpan]) -> Vec<Row<'_>> {
    spans
        .iter()
        .map(|s| {
            (
                s.method.as_str(),
                s.path.as_str(),
                s.status_code,
                s.response_body_size,
            )
        })
        .collect()
}

#[test]
fn node_keep_alive_with_writev_and_chunked() {
    let (mut sim, ends) = replay(NODE, Role::Server);
    let spans = sim.take();
    assert_eq!(
        rows(&spans),
        [
            ("GET", "/users/42", Some(200), Some(24)),
            ("GET", "/chunked", Some(200), None),
            ("GET", "/big", Some(200), Some(10_000)),
            ("POST", "/form", Some(200), Some(16)),
        ]
    );
    let first = &spans[0];
    assert_eq!(
        hex::encode(first.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(first.route.as_deref(), Some("/users/{id}"));
    assert_eq!(first.user_agent.as_deref(), Some("curl/7.88.1"));
    // node sends chunks with writev: only the first iov is copied and there is no tail, so
    // the chunked response ends at its last write, found when the next request arrives.
    assert_eq!(spans[1].end_unix_ns, ends[4]);
    assert_eq!(spans[3].request_body_size, Some(10));
    let st = sim.stats();
    assert_eq!((st.chunk_framing_lost, st.ended_by_next_request), (1, 1));
    assert_eq!(
        (st.parse_errors, st.aborted_exchanges, st.orphan_responses),
        (0, 0, 0)
    );
    assert_eq!(sim.tracker.connections(), 0);
}

#[test]
fn nginx_sendfile_head_304_and_gzip() {
    let (mut sim, ends) = replay(NGINX, Role::Server);
    let spans = sim.take();
    assert_eq!(
        rows(&spans),
        [
            ("GET", "/small.json", Some(200), Some(12)),
            ("GET", "/big.txt", Some(200), Some(26_935)),
            ("GET", "/api/users/7", Some(404), Some(153)),
            ("GET", "/gz", Some(200), None),
            ("HEAD", "/small.json", Some(200), Some(0)),
            ("GET", "/small.json", Some(304), Some(0)),
        ]
    );
    // The sendfile that moved the last body byte ends the span.
    assert_eq!(spans[1].end_unix_ns, ends[5]);
    // The gzip response (chunked, sent with writev) ends at its last write, at the close.
    assert_eq!(spans[3].end_unix_ns, ends[9]);
    assert_eq!(
        spans
            .iter()
            .map(|s| s.error_type.as_deref())
            .collect::<Vec<_>>(),
        [None; 6]
    );
    assert_eq!(sim.stats().ended_by_close, 1);
}

#[test]
fn curl_client_against_http10_server() {
    let (mut sim, ends) = replay(CURL, Role::Client);
    let spans = sim.take();
    assert_eq!(
        rows(&spans),
        [
            ("GET", "/small.json", Some(200), Some(12)),
            ("GET", "/missing", Some(404), Some(335))
        ]
    );
    assert!(
        spans
            .iter()
            .all(|s| s.kind == SpanKind::Client && s.protocol_version == "1.1")
    );
    assert_eq!(
        (spans[0].end_unix_ns, spans[1].end_unix_ns),
        (ends[1], ends[3])
    );
    assert_eq!(spans[0].host.as_deref(), Some("127.0.0.1:18090"));
}
