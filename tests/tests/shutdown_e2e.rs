//! `sonde all` stopped by SIGTERM (what systemd and Kubernetes send) right after a burst of
//! requests: it exits 0 within a bounded time, and every request answered before the signal is
//! in the store when it starts again on the same data directory: spans still waiting in the
//! agent (link window, batches) are flushed into the store and the store's WAL is synced.
use std::time::{Duration, Instant};

use sonde_e2e::{agent::start_sonde, curl, free_port, python_http_server, require_kernel};

const REQUESTS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_a_burst_loses_no_answered_request() {
    require_kernel!();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("x"), "x").unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = python_http_server(www.path(), port);
    let ports = [free_port(), free_port(), free_port()];
    let mut all = start_sonde(
        "all",
        &["--port".into(), port.to_string()],
        data.path(),
        ports,
        "capturing",
    );
    for i in 0..REQUESTS {
        let (ok, _) = curl(&[&format!("http://127.0.0.1:{port}/burst-{i}")]);
        assert!(ok);
    }
    // At once: the last spans are still in the agent's link window and batches.
    let pid = i32::try_from(all.pid()).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = all.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "sonde all still running 20 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("exited {status} after {:?}", stopped.elapsed());
    assert!(status.success(), "exit status {status}");

    // The store alone, on the same data: every answered request is there.
    let _store = start_sonde("store", &[], data.path(), ports, "store listening");
    let base = format!("http://127.0.0.1:{}", ports[0]);
    let client = reqwest::Client::new();
    let q = r#"{ span.url.path =~ "/burst-.*" }"#;
    let mut found = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let resp = client
            .get(format!("{base}/api/search"))
            .query(&[("q", q), ("limit", "1000")])
            .send()
            .await;
        if let Ok(resp) = resp
            && resp.status() == 200
        {
            let json: serde_json::Value = resp.json().await.unwrap();
            found = json["traces"].as_array().map_or(0, Vec::len);
            if found == REQUESTS {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        found, REQUESTS,
        "requests answered before SIGTERM found after restart"
    );
}
