//! Body sizes when the kernel copied only part of a record: exact when the framing proves
//! them, absent (and counted) otherwise, never a count of the bytes that happened to be seen.
use super::*;
use rstest::rstest;

/// The head node's `http` module writes before a chunked body (`Transfer-Encoding: chunked`).
const NODE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Sat, 05 Dec 2026 04:27:13 GMT\r\n\
Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n\r\n";

impl Sim {
    /// A writev of `iovs`, recorded as the kernel records it: the first iovec as the copied
    /// prefix (at most `COPY` bytes), and the last bytes from the last iovec and the one
    /// before it, right-aligned, when the prefix does not hold the whole write.
    fn writev(&mut self, k: ConnKey, iovs: &[&[u8]]) -> (u64, u64) {
        const T: usize = agent_common::TAIL_LEN;
        let len: usize = iovs.iter().map(|v| v.len()).sum();
        let first = iovs.first().copied().unwrap_or_default();
        let copied = first.len().min(COPY);
        let tail = (len > copied && len >= T).then(|| {
            let mut tail = [0u8; T];
            let last = iovs[iovs.len() - 1];
            let k = last.len().min(T);
            tail[T - k..].copy_from_slice(&last[last.len() - k..]);
            if k < T && iovs.len() >= 2 {
                let prev = iovs[iovs.len() - 2];
                let m = (T - k).min(prev.len());
                tail[T - k - m..T - k].copy_from_slice(&prev[prev.len() - m..]);
            }
            tail
        });
        let t = self.tick();
        self.push(Record::Data(Data {
            key: k,
            tid: k.pid + 1,
            goroutine: 0,
            direction: Direction::Write,
            tuple: tuple(),
            start_unix_ns: t,
            end_unix_ns: t + 10,
            len: len as u32,
            bytes: first[..copied].to_vec().into(),
            tail,
            sock_lost: self.sock_lost,
            ring_lost: self.ring_lost,
        }));
        (t, t + 10)
    }
}

/// Node's `res.end(body)` after `writeHead`: one writev of the head with the chunk's size
/// digits, CRLF, the body, CRLF and the last chunk (strace of node 20).
fn node_end(body: &[u8]) -> Vec<Vec<u8>> {
    let mut head = NODE_HEAD.to_vec();
    head.extend(format!("{:x}", body.len()).bytes());
    vec![
        head,
        b"\r\n".to_vec(),
        body.to_vec(),
        b"\r\n".to_vec(),
        b"0\r\n\r\n".to_vec(),
    ]
}

#[rstest]
#[case::hello(5)]
#[case::one_byte(1)]
#[case::fifteen(15)]
#[case::over_the_copy(5_000)]
#[case::large(100_000)]
fn node_writev_chunked_response_has_its_exact_size(#[case] n: usize) {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(k, &get("/hello"));
    let iovs = node_end(&vec![b'y'; n]);
    let iovs: Vec<&[u8]> = iovs.iter().map(Vec::as_slice).collect();
    let (_, end) = sim.writev(k, &iovs);
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (spans[0].response_body_size, spans[0].end_unix_ns),
        (Some(n as u64), end)
    );
    assert_eq!(sim.stats().ended_by_last_chunk, 1);
}

/// curl's chunked upload read by the server in one read larger than the copy: the copy
/// ends inside the only chunk, the tail shows the last chunk.
#[rstest]
#[case::just_over(4_000)]
#[case::issue_5000(5_000)]
#[case::ten_k(10_000)]
fn chunked_request_body_over_the_copy_has_its_exact_size(#[case] n: usize) {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    let mut req = b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:20040\r\nUser-Agent: curl/7.88.1\r\n\
Accept: */*\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
        .to_vec();
    req.extend(format!("{n:x}\r\n").bytes());
    req.extend(std::iter::repeat_n(b'a', n));
    req.extend(b"\r\n0\r\n\r\n");
    sim.read(k, &req);
    sim.write(k, &ok("done"));
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].request_body_size, Some(n as u64));
}

/// Node streaming `res.write()` of 1000-byte chunks, flushed as one writev with the end:
/// the size lines of all but the first chunk were not copied, so the size is unknown.
#[rstest]
#[case::five_thousand(5)]
#[case::two_chunks(2)]
fn streamed_writev_chunked_response_size_is_left_out(#[case] chunks: usize) {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    sim.read(k, &get("/stream"));
    let data = vec![b'x'; 1000];
    let mut iovs: Vec<&[u8]> = Vec::new();
    let mut head = NODE_HEAD.to_vec();
    head.extend(b"3e8");
    iovs.push(&head);
    for i in 0..chunks {
        if i > 0 {
            iovs.push(b"3e8");
        }
        iovs.extend([b"\r\n".as_slice(), &data, b"\r\n"]);
    }
    iovs.push(b"0\r\n\r\n");
    let (_, end) = sim.writev(k, &iovs);
    let spans = sim.take();
    assert_eq!(spans.len(), 1, "the end is still seen");
    assert_eq!(
        (spans[0].response_body_size, spans[0].end_unix_ns),
        (None, end)
    );
    let st = sim.stats();
    assert_eq!((st.chunked_size_unknown, st.ended_by_last_chunk), (1, 1));
}

/// A chunked upload of several chunks read in one read larger than the copy: exact when
/// the last size line was copied; otherwise chunk boundaries fall in the uncopied bytes, and
/// the request's size is left out, and counted.
#[rstest]
#[case::last_size_line_copied(&[3000, 2000], Some(5000))]
#[case::boundary_near_the_copy_end(&[3900, 1100], Some(5000))]
#[case::boundary_after_the_copy(&[4500, 500], None)]
#[case::many_small(&[500; 10], None)]
fn multi_chunk_request_body_over_the_copy(#[case] sizes: &[usize], #[case] want: Option<u64>) {
    let mut sim = Sim::new();
    let k = key(SERVER, 5, 1);
    sim.open(k, Role::Server);
    let mut req =
        b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for &n in sizes {
        req.extend(format!("{n:x}\r\n").bytes());
        req.extend(std::iter::repeat_n(b'a', n));
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    assert!(req.len() > COPY);
    sim.read(k, &req);
    sim.write(k, &ok("done"));
    let spans = sim.take();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        (spans[0].request_body_size, spans[0].status_code),
        (want, Some(200))
    );
    assert_eq!(sim.stats().chunked_size_unknown, u64::from(want.is_none()));
}
