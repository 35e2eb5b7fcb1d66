//! `kill -9` during steady ingest, then restart: every acknowledged span is queryable.
#[path = "store/support.rs"]
mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceResponse,
    trace::v1::{Span, TracesData},
};
use prost::Message;
use support::*;

fn batch(seq: u64) -> (Vec<[u8; 16]>, Vec<u8>) {
    let now = now_ns();
    let mut ids = Vec::new();
    let mut spans = Vec::new();
    for t in 0..20u64 {
        let mut tid = [0u8; 16];
        tid[..8].copy_from_slice(&seq.to_be_bytes());
        tid[8..].copy_from_slice(&(t + 1).to_be_bytes());
        ids.push(tid);
        for s in 0..3u64 {
            spans.push(Span {
                trace_id: tid.to_vec(),
                span_id: (seq * 1000 + t * 10 + s + 1).to_be_bytes().to_vec(),
                parent_span_id: if s == 0 {
                    vec![]
                } else {
                    (seq * 1000 + t * 10 + 1).to_be_bytes().to_vec()
                },
                name: format!("op-{s}"),
                start_time_unix_nano: now - 1_000_000,
                end_time_unix_nano: now,
                attributes: vec![kv_s("pad", &"x".repeat(200))],
                ..Default::default()
            });
        }
    }
    (ids, request("crash-svc", spans).encode_to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_spans_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Small blocks and idle time so the crash hits WAL, pending cuts and blocks alike.
    let mut store = StoreProc::start(
        dir.path(),
        "  max_block_bytes: 200000\n  trace_idle_period: 100ms\n  max_block_duration: 500ms\n",
    );
    let acked: Arc<Mutex<Vec<[u8; 16]>>> = Arc::default();
    let url = format!("{}/v1/traces", store.http);
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let (acked, url) = (acked.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0.. {
                let (ids, body) = batch(w * 1_000_000 + i);
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status() == 200 => {
                        let b = resp.bytes().await.unwrap_or_default();
                        let ok = ExportTraceServiceResponse::decode(b.as_ref())
                            .map(|r| r.partial_success.is_none())
                            .unwrap_or(false);
                        if ok {
                            acked.lock().unwrap().extend(ids);
                        }
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    store.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "steady ingest acknowledged only {} traces",
        acked.len()
    );
    eprintln!("{} traces acknowledged before kill -9", acked.len());
    store.kill9_and_restart();
    let mut checks = Vec::new();
    for chunk in acked.chunks(acked.len().div_ceil(4)) {
        let (chunk, api) = (chunk.to_vec(), store.api.clone());
        checks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut missing = 0;
            for id in &chunk {
                let resp = client
                    .get(format!("{api}/api/traces/{}", hex::encode(id)))
                    .header("Accept", "application/protobuf")
                    .send()
                    .await
                    .unwrap();
                if resp.status() != 200 {
                    missing += 1;
                    continue;
                }
                let td = TracesData::decode(resp.bytes().await.unwrap().as_ref()).unwrap();
                let n: usize = td
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum();
                assert_eq!(n, 3, "trace {} lost spans", hex::encode(id));
            }
            missing
        }));
    }
    let mut missing = 0;
    for c in checks {
        missing += c.await.unwrap();
    }
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged traces lost",
        acked.len()
    );
}
