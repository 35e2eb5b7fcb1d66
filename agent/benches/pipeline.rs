//! `cargo bench -p sonde --bench pipeline`: the agent's userspace cost per span, without the
//! kernel. Raw records shaped like the ones the probes emit for nginx serving a small file on
//! keep-alive connections (request read, header writev, body sendfile) go through decode, the
//! connection tracker, the resource cache, and the OTLP protobuf encoding the exporter sends. Prints ns
//! per span for capture (decode + track) and export (encode), and both together, and the RED
//! stage's two halves: what the capture thread pays (an observation per span) and what the
//! RED thread pays (counting it).
use std::{hint::black_box, time::Instant};

use agent_common::{EventHeader, Tuple, kind, syscall};
use sonde::{
    conn::{Tracker, TrackerConfig},
    ebpf::decode::{Clock, decode},
    export::{otlp::ConvertOptions, wire::WireEncoder},
    red::{
        series::Observation,
        state::{Limits, State},
    },
    span::resource::ResourceCache,
};

const CONNS: u32 = 16;
const REQUESTS: u32 = 200_000;
const BATCH: usize = 512;

const REQUEST: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:18090\r\nUser-Agent: wrk/4.1\r\nAccept: */*\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 16:37:42 GMT\r\nContent-Type: text/html\r\nContent-Length: 695\r\nLast-Modified: Sun, 22 Nov 2026 16:37:41 GMT\r\nConnection: keep-alive\r\nETag: \"6b031a55-2b7\"\r\nAccept-Ranges: bytes\r\n\r\n";

fn record(pid: u32, conn: u32, k: u8, sc: u8, ts: u64, len: u32, data: &[u8]) -> Vec<u8> {
    let mut t = Tuple {
        family: 2,
        local_port: 18090,
        remote_port: 40000 + conn as u16,
        ..Tuple::default()
    };
    t.local_addr[10..].copy_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
    t.remote_addr[10..].copy_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
    let h = EventHeader {
        start_ns: ts,
        end_ns: ts,
        sock_id: 0xffff_0000_0000 + u64::from(conn),
        pid,
        tid: pid,
        fd: 10 + conn as i32,
        len,
        copied: data.len() as u32,
        tail_len: 0,
        kind: k,
        syscall: sc,
        tuple: t,
        tail: [0; 16],
        comm: *b"nginx\0\0\0\0\0\0\0\0\0\0\0",
        sock_lost: 0,
        ring_lost: 0,
    };
    // SAFETY: EventHeader is repr(C) plain data.
    let head = unsafe {
        std::slice::from_raw_parts(
            std::ptr::addr_of!(h).cast::<u8>(),
            std::mem::size_of::<EventHeader>(),
        )
    };
    [head, data].concat()
}

fn main() {
    let pid = std::process::id();
    let clock = Clock::now();
    let mut records = Vec::new();
    let mut ts = 1_000_000_000u64;
    for c in 0..CONNS {
        records.push(record(pid, c, kind::ACCEPT, syscall::ACCEPT, ts, 0, &[]));
    }
    for r in 0..REQUESTS {
        let c = r % CONNS;
        ts += 10_000;
        records.push(record(
            pid,
            c,
            kind::READ,
            syscall::RECVFROM,
            ts,
            REQUEST.len() as u32,
            REQUEST,
        ));
        records.push(record(
            pid,
            c,
            kind::WRITE,
            syscall::WRITEV,
            ts + 3_000,
            RESPONSE.len() as u32,
            RESPONSE,
        ));
        records.push(record(
            pid,
            c,
            kind::WRITE,
            syscall::SENDFILE,
            ts + 5_000,
            695,
            &[],
        ));
    }

    let mut tracker = Tracker::new(TrackerConfig::default());
    let resources = ResourceCache::new("bench-host", 4096);
    let mut spans = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut encoder = WireEncoder::default();
    let (mut capture_ns, mut export_ns, mut bytes, mut n_spans) = (0u128, 0u128, 0usize, 0usize);
    let mut red = State::new(Limits::default());
    let (mut observe_ns, mut count_ns) = (0u128, 0u128);
    for chunk in records.chunks(BATCH * 3) {
        let t0 = Instant::now();
        for raw in chunk {
            let rec = decode(raw, clock).expect("bench records decode");
            tracker.push(rec, &mut spans);
        }
        batch.extend(spans.drain(..).map(|s| (resources.get(s.pid), s)));
        let t1 = Instant::now();
        bytes += black_box(encoder.encode(&batch, ConvertOptions::default())).len();
        let t2 = Instant::now();
        let observations: Vec<Observation> =
            batch.iter().map(|(r, s)| Observation::of(r, s)).collect();
        let t3 = Instant::now();
        red.record(black_box(observations));
        let t4 = Instant::now();
        observe_ns += (t3 - t2).as_nanos();
        count_ns += (t4 - t3).as_nanos();
        n_spans += batch.len();
        batch.clear();
        capture_ns += (t1 - t0).as_nanos();
        export_ns += (t2 - t1).as_nanos();
    }
    assert!(
        n_spans as u32 >= REQUESTS - CONNS,
        "every request became a span ({n_spans})"
    );
    let per = |ns: u128| ns as f64 / n_spans as f64;
    println!(
        "pipeline: {n_spans} spans, {:.0} OTLP bytes/span",
        bytes as f64 / n_spans as f64
    );
    println!(
        "  capture (decode + track)  {:>7.0} ns/span",
        per(capture_ns)
    );
    println!("  export (protobuf encode) {:>7.0} ns/span", per(export_ns));
    println!(
        "  total                     {:>7.0} ns/span",
        per(capture_ns + export_ns)
    );
    println!(
        "  RED: observe (capture thread) {:>5.0} ns/span, count (RED thread) {:>5.0} ns/span",
        per(observe_ns),
        per(count_ns)
    );
}
