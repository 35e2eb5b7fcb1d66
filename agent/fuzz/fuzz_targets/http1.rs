//! Fuzz target: arbitrary bytes through the HTTP/1 parsers, the chunk decoder, route
//! templating, traceparent parsing, and — read as a script of records split at arbitrary
//! points — through the connection Tracker. Nothing may panic; spans must be well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sonde::conn::{Tracker, TrackerConfig};
use sonde::ebpf::record::{ConnKey, Data, Direction, Record, Role, Tuple};
use sonde::protocol::http1::chunked::Chunked;
use sonde::protocol::http1::{parse_request_head, parse_response_head};
use sonde::red::route;
use sonde::span::context::TraceParent;

const TAIL: usize = 16;

fuzz_target!(|data: &[u8]| {
    let _ = parse_request_head(data);
    let _ = parse_response_head(data);
    let _ = Chunked::new().feed(data);
    let text = String::from_utf8_lossy(data);
    let _ = route::template(&text);
    let _ = TraceParent::parse(&text);
    run_tracker(data);
});

/// Reads `data` as ops: `[op, n, n bytes...]`. The op's low bits choose the record kind,
/// the high bits choose one of a few connections, so states interleave and collide.
fn run_tracker(data: &[u8]) {
    let cfg = TrackerConfig {
        max_connections: 4,
        max_head_bytes: 512,
        idle_timeout_ns: 10_000,
        ..Default::default()
    };
    let mut tracker = Tracker::new(cfg);
    let mut out = Vec::new();
    let tuple = Tuple {
        local: "127.0.0.1:80".parse().expect("static address"),
        remote: "127.0.0.1:40000".parse().expect("static address"),
    };
    let mut now = 1_000u64;
    let mut i = 0;
    while i + 1 < data.len() {
        let op = data[i];
        let n = usize::from(data[i + 1]);
        i += 2;
        let chunk = &data[i..(i + n).min(data.len())];
        i += chunk.len();
        now += 1_000;
        let key = ConnKey {
            pid: u32::from(op >> 7),
            fd: i32::from((op >> 5) & 1),
            sock_id: u64::from((op >> 3) & 3),
        };
        let rec = match op & 7 {
            0 => Record::Open {
                key,
                role: Role::Server,
                tuple,
                unix_ns: now,
            },
            1 => Record::Open {
                key,
                role: Role::Client,
                tuple,
                unix_ns: now,
            },
            2 | 3 => data_record(key, op & 1 == 0, chunk, chunk.len(), tuple, now),
            4 | 5 => {
                // Only part of the buffer was copied: the rest is counted, with a tail.
                let moved = chunk.len() + usize::from(op) * 37;
                data_record(key, op & 1 == 0, chunk, moved, tuple, now)
            }
            6 => {
                let fd = if op & 0x40 != 0 { -1 } else { key.fd };
                Record::Close {
                    key: ConnKey { fd, ..key },
                    unix_ns: now,
                }
            }
            _ => {
                if op & 0x40 != 0 {
                    tracker.sweep(now, &mut out);
                    continue;
                }
                Record::ProcessExit {
                    pid: key.pid,
                    unix_ns: now,
                }
            }
        };
        tracker.push(rec, &mut out);
        assert!(tracker.connections() <= 4);
    }
    tracker.sweep(u64::MAX, &mut out);
    assert_eq!(tracker.connections(), 0);
    for span in &out {
        assert!(span.end_unix_ns >= span.start_unix_ns);
        assert_ne!(span.trace_id, [0; 16]);
        assert_ne!(span.span_id, [0; 8]);
    }
}

fn data_record(
    key: ConnKey,
    read: bool,
    copied: &[u8],
    moved: usize,
    tuple: Tuple,
    now: u64,
) -> Record {
    let tail = (moved > copied.len() && copied.len() >= TAIL).then(|| {
        let mut t = [0u8; TAIL];
        t.copy_from_slice(&copied[copied.len() - TAIL..]);
        t
    });
    Record::Data(Data {
        key,
        tid: 1,
        direction: if read {
            Direction::Read
        } else {
            Direction::Write
        },
        tuple,
        start_unix_ns: now,
        end_unix_ns: now + 10,
        len: u32::try_from(moved).unwrap_or(u32::MAX),
        bytes: copied.to_vec(),
        tail,
    })
}
