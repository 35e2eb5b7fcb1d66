//! Measures the Tracker's CPU cost per span on synthetic keep-alive traffic (release build).
use std::time::Instant;

use sonde::conn::{Tracker, TrackerConfig};
use sonde::ebpf::record::{ConnKey, Data, Direction, Record, Role, Tuple};

const CONNS: usize = 200;
const EXCHANGES: usize = 200_000;

fn main() {
    for (name, chunked) in [("content-length", false), ("chunked", true)] {
        let records = traffic(chunked);
        let n_records = records.len();
        let mut tracker = Tracker::new(TrackerConfig::default());
        let mut out = Vec::with_capacity(EXCHANGES);
        let started = Instant::now();
        for rec in records {
            tracker.push(rec, &mut out);
        }
        let elapsed = started.elapsed();
        assert_eq!(out.len(), EXCHANGES, "every exchange became a span");
        let per_span = elapsed.as_nanos() as f64 / EXCHANGES as f64;
        let per_record = elapsed.as_nanos() as f64 / n_records as f64;
        println!(
            "{name}: {EXCHANGES} spans, {n_records} records in {elapsed:?}: \
             {per_span:.0} ns/span, {per_record:.0} ns/record"
        );
    }
}

/// Server-side keep-alive traffic over `CONNS` connections, exchanges interleaved.
fn traffic(chunked: bool) -> Vec<Record> {
    let tuple = Tuple {
        local: "10.0.0.1:8080".parse().expect("static address"),
        remote: "10.0.0.2:40000".parse().expect("static address"),
    };
    let mut recs = Vec::with_capacity(EXCHANGES * 3 + CONNS);
    let mut now = 1_000_000u64;
    for c in 0..CONNS {
        let key = ConnKey {
            pid: 42,
            fd: c as i32 + 10,
            sock_id: c as u64 + 1,
        };
        recs.push(Record::Open {
            key,
            role: Role::Server,
            tuple,
            unix_ns: now,
        });
    }
    for i in 0..EXCHANGES {
        let c = i % CONNS;
        let key = ConnKey {
            pid: 42,
            fd: c as i32 + 10,
            sock_id: c as u64 + 1,
        };
        let req = format!(
            "GET /api/v1/users/{i}/orders?limit=10 HTTP/1.1\r\nHost: shop.internal:8080\r\n\
             User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench/1.0\r\nAccept: application/json\r\n\
             Accept-Encoding: gzip\r\nAuthorization: Bearer abcdefghijklmnop\r\n\
             traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
        );
        now += 1_000;
        recs.push(data(key, Direction::Read, req.into_bytes(), tuple, now));
        let body = "{\"orders\":[1,2,3]}";
        if chunked {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                        Transfer-Encoding: chunked\r\nServer: bench\r\n\r\n";
            recs.push(data(
                key,
                Direction::Write,
                head.as_bytes().to_vec(),
                tuple,
                now + 200,
            ));
            let chunk = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
            recs.push(data(
                key,
                Direction::Write,
                chunk.into_bytes(),
                tuple,
                now + 300,
            ));
        } else {
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Server: bench\r\n\r\n{body}",
                body.len()
            );
            recs.push(data(
                key,
                Direction::Write,
                resp.into_bytes(),
                tuple,
                now + 200,
            ));
        }
    }
    recs
}

fn data(key: ConnKey, direction: Direction, bytes: Vec<u8>, tuple: Tuple, t: u64) -> Record {
    Record::Data(Data {
        key,
        tid: 43,
        direction,
        tuple,
        start_unix_ns: t,
        end_unix_ns: t + 50,
        len: bytes.len() as u32,
        bytes,
        tail: None,
    })
}
