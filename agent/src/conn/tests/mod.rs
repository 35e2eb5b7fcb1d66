//! Tracker tests: sequences of records as real traffic produces them → spans and counters.
//! Shared helpers here; exchange framing and connection lifecycle in the submodules.
use super::*;
use crate::ebpf::record::{Data, Direction};
use crate::span::SpanKind;

mod body_size;
mod framing;
mod lifecycle;
mod real;

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
    /// The kernel's counts of lost records (the socket's, the host's) every record carries
    /// (`lose` moves both).
    sock_lost: u32,
    ring_lost: u32,
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
            sock_lost: 0,
            ring_lost: 0,
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
            sock_lost: self.sock_lost,
            ring_lost: self.ring_lost,
        });
    }

    fn close(&mut self, k: ConnKey) {
        let t = self.tick();
        self.push(Record::Close {
            key: k,
            unix_ns: t,
            sock_lost: self.sock_lost,
            ring_lost: self.ring_lost,
        });
    }

    /// The kernel could not write a record (full ring): later records say so.
    fn lose(&mut self) {
        self.sock_lost += 1;
        self.ring_lost += 1;
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
            goroutine: 0,
            direction: dir,
            tuple: tuple(),
            start_unix_ns: t,
            end_unix_ns: t + 10,
            len: bytes.len() as u32,
            bytes: bytes[..copied].to_vec().into(),
            tail,
            sock_lost: self.sock_lost,
            ring_lost: self.ring_lost,
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
