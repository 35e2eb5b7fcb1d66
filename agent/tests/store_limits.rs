//! The store binary under a hostile search: one `/api/search?q={}&limit=262144` (the limit
//! allowed up to 262144, as it used to be by default) over tens of thousands of traces. The
//! results are bounded in bytes, so the process's peak memory grows by a bounded amount,
//! whatever the limit asked for.
#[path = "store/support.rs"]
mod support;

use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::*;

/// Peak resident memory of `pid` since the last reset, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// Start counting peak memory from now (`5` resets VmHWM to the current RSS).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_search_keeps_the_store_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // SONDE_TEST_STORE_EXTRA replaces the store settings, e.g. with
    // `max_result_bytes: 4294967296` to see what the search costs without the cap.
    let extra = std::env::var("SONDE_TEST_STORE_EXTRA")
        .unwrap_or_else(|_| "  search:\n    max_result_limit: 262144\n".into());
    let store = StoreProc::start(dir.path(), &extra);
    let client = reqwest::Client::new();
    let now = now_ns();
    let traces: u64 = 120_000;
    for batch in 0..traces / 500 {
        let spans: Vec<Span> = (0..500u64)
            .flat_map(|i| {
                let t = batch * 500 + i + 1;
                (0..3u64).map(move |s| {
                    let mut tid = [0u8; 16];
                    tid[8..].copy_from_slice(&t.to_be_bytes());
                    Span {
                        trace_id: tid.to_vec(),
                        span_id: (t * 4 + s).to_be_bytes().to_vec(),
                        parent_span_id: if s == 0 {
                            vec![]
                        } else {
                            (t * 4).to_be_bytes().to_vec()
                        },
                        name: format!("GET /items/{t}/{s}"),
                        start_time_unix_nano: now - 60_000_000_000 + s,
                        end_time_unix_nano: now - 59_000_000_000,
                        attributes: vec![kv_s("http.route", "/items/{id}/{part}")],
                        ..Default::default()
                    }
                })
            })
            .collect();
        let body = request("svc", spans).encode_to_vec();
        let r = client
            .post(format!("{}/v1/traces", store.http))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let pid = store.child.id();
    reset_peak(pid);
    let before = peak_rss(pid);
    let q = "%7B%20%7D"; // { }
    let r = client
        .get(format!(
            "{}/api/search?q={q}&limit=262144&spss=100&start={}&end={}",
            store.api,
            now / 1_000_000_000 - 3600,
            now / 1_000_000_000 + 60
        ))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let grew = peak_rss(pid).saturating_sub(before);
    eprintln!(
        "search answered {status} ({} bytes); peak RSS grew {} MiB",
        body.len(),
        grew >> 20
    );
    // Either the results fit under store.search.max_result_bytes (16 MiB) or the search is
    // refused naming it; both keep the growth bounded.
    assert!(
        status == 200 || (status == 400 && body.contains("store.search.max_result_bytes")),
        "{status}: {body:.300}"
    );
    assert!(grew < 64 << 20, "peak RSS grew {} MiB", grew >> 20);
}
