//! `cargo bench -p sonde --bench pipeline`: the agent's userspace cost per span, without the
//! kernel. Raw records shaped like the ones the probes emit for nginx serving a small file on
//! keep-alive connections (request read, header writev, body sendfile) go through decode, the
//! connection tracker, the resource cache, the linking stage (each server span from a loopback
//! peer waits for a client span that never comes, the costliest common case), the OTLP
//! protobuf encoding the exporter sends, and the RED stage's two halves: what the capture
//! thread pays (an observation per span) and what the RED thread pays (counting it). Prints
//! ns per span for capture (decode + track), link and export (encode), and all together.
use std::{hint::black_box, time::Instant};

use agent_common::{EventHeader, Tuple, kind, syscall};
use sonde::{
    conn::{Tracker, TrackerConfig},
    ebpf::decode::{Clock, decode},
    export::{otlp::ConvertOptions, wire::WireEncoder},
    link::{LinkConfig, Linker},
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
        goroutine: 0,
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
    let mut linker = Linker::new(LinkConfig::default());
    let mut held = Vec::new();
    let (mut capture_ns, mut link_ns, mut export_ns) = (0u128, 0u128, 0u128);
    let (mut bytes, mut n_spans) = (0usize, 0usize);
    let mut red = State::new(Limits::default());
    let (mut observe_ns, mut count_ns) = (0u128, 0u128);
    let chunks: Vec<&[Vec<u8>]> = records.chunks(BATCH * 3).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        // The chunk's last record's time stands for the agent's clock.
        let now = match chunk.last().map(|raw| decode(raw, clock)) {
            Some(Ok(sonde::ebpf::record::Record::Data(d))) => d.end_unix_ns,
            _ => 0,
        };
        let t0 = Instant::now();
        for raw in chunk.iter() {
            let rec = decode(raw, clock).expect("bench records decode");
            tracker.push(rec, &mut spans);
        }
        held.extend(spans.drain(..).map(|s| (resources.get(s.pid), s)));
        let t1 = Instant::now();
        for (resource, span) in held.drain(..) {
            linker.push(now, resource, span);
        }
        linker.poll(now, &mut batch);
        if i + 1 == chunks.len() {
            linker.flush(&mut batch);
        }
        let t2 = Instant::now();
        bytes += black_box(encoder.encode(&batch, ConvertOptions::default())).len();
        let t3 = Instant::now();
        let observations: Vec<Observation> =
            batch.iter().map(|(r, s)| Observation::of(r, s)).collect();
        let t4 = Instant::now();
        red.record(black_box(observations));
        let t5 = Instant::now();
        n_spans += batch.len();
        batch.clear();
        capture_ns += (t1 - t0).as_nanos();
        link_ns += (t2 - t1).as_nanos();
        export_ns += (t3 - t2).as_nanos();
        observe_ns += (t4 - t3).as_nanos();
        count_ns += (t5 - t4).as_nanos();
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
    println!("  link                      {:>7.0} ns/span", per(link_ns));
    println!("  export (protobuf encode) {:>7.0} ns/span", per(export_ns));
    println!(
        "  total                     {:>7.0} ns/span",
        per(capture_ns + link_ns + export_ns)
    );
    println!(
        "  RED: observe (capture thread) {:>5.0} ns/span, count (RED thread) {:>5.0} ns/span",
        per(observe_ns),
        per(count_ns)
    );
}
