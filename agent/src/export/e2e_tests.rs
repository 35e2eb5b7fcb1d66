//! The exporter against real OTLP receivers on 127.0.0.1: a tonic gRPC `TraceService` and an
//! axum HTTP/protobuf endpoint, each scripted to answer OK, errors or partial success.
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value,
    trace::v1::span::SpanKind as OtlpKind,
};

use super::{
    testutil::{attr, i, resource, s, server_span},
    *,
};
use crate::span::HttpSpan;

mod receiver;

use receiver::{Receiver, Reply, start_grpc, start_grpc_tls, start_http, start_silent, tls_dir};

fn config(protocol: Protocol, addr: SocketAddr) -> ExportConfig {
    ExportConfig {
        endpoint: Some(format!("http://{addr}")),
        protocol,
        headers: [("x-scope-orgid".to_owned(), "tenant-a".to_owned())].into(),
        timeout: Duration::from_secs(2),
        batch_max_spans: 100,
        batch_interval: Duration::from_millis(50),
        queue_capacity: 1000,
        retry_max_elapsed: Duration::from_secs(5),
        retry_initial_backoff: Duration::from_millis(20),
        retry_max_backoff: Duration::from_millis(100),
        ..ExportConfig::default()
    }
}

fn exporter(cfg: &ExportConfig) -> ExporterHandle {
    cfg.validate().expect("valid test config");
    Exporter::spawn(cfg, Arc::from(transport_for(cfg).expect("transport")))
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn span_n(n: u8) -> HttpSpan {
    HttpSpan {
        span_id: [n; 8],
        ..server_span()
    }
}

/// Export three spans of two processes and check what arrived, field by field.
async fn round_trip(protocol: Protocol, compression: Compression) {
    let rx = Receiver::default();
    let server = match protocol {
        Protocol::Grpc => start_grpc(rx.clone()).await,
        Protocol::HttpProtobuf => start_http(rx.clone()).await,
    };
    let cfg = ExportConfig {
        compression,
        ..config(protocol, server.addr)
    };
    let handle = exporter(&cfg);
    let (a, b) = (resource(10, "frontend"), resource(20, "backend"));
    let mut err = span_n(3);
    err.status_code = Some(503);
    err.parent_span_id = Some([9; 8]);
    let accepted = handle.try_send(vec![
        (a.clone(), span_n(1)),
        (b.clone(), span_n(2)),
        (a, err),
    ]);
    assert_eq!(accepted, 3);
    eventually("3 exported spans", || handle.stats().exported_spans == 3).await;

    let seen = rx.seen();
    assert_eq!(seen.len(), 1, "one batch");
    let header = |k: &str| {
        seen[0]
            .headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-scope-orgid").as_deref(), Some("tenant-a"));
    if protocol == Protocol::HttpProtobuf {
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/x-protobuf")
        );
        let gz = (compression == Compression::Gzip).then_some("gzip");
        assert_eq!(header("content-encoding").as_deref(), gz);
    }
    let req = &seen[0].req;
    assert_eq!(req.resource_spans.len(), 2);
    let res0 = &req.resource_spans[0].resource.as_ref().unwrap().attributes;
    assert_eq!(attr(res0, "service.name").cloned(), s("frontend"));
    assert_eq!(attr(res0, "process.pid").cloned(), i(10));
    assert_eq!(attr(res0, "host.name").cloned(), s("testhost"));
    assert_eq!(attr(res0, "telemetry.sdk.name").cloned(), s("sonde"));
    let res1 = &req.resource_spans[1].resource.as_ref().unwrap().attributes;
    assert_eq!(attr(res1, "service.name").cloned(), s("backend"));
    let scope0 = &req.resource_spans[0].scope_spans[0];
    assert_eq!(scope0.scope.as_ref().unwrap().name, "sonde");
    assert_eq!(scope0.spans.len(), 2);

    let sp = &scope0.spans[0];
    assert_eq!(sp.name, "GET /items/{id}");
    assert_eq!(sp.kind, OtlpKind::Server as i32);
    assert_eq!(sp.trace_id, vec![0x11; 16]);
    assert_eq!(sp.span_id, vec![1; 8]);
    assert!(sp.parent_span_id.is_empty());
    assert_eq!(sp.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(sp.end_time_unix_nano, 1_700_000_000_001_230_000);
    let at = &sp.attributes;
    assert_eq!(attr(at, "http.request.method").cloned(), s("GET"));
    assert_eq!(attr(at, "http.route").cloned(), s("/items/{id}"));
    assert_eq!(attr(at, "url.path").cloned(), s("/items/42"));
    assert_eq!(attr(at, "url.query"), None);
    assert_eq!(attr(at, "http.response.status_code").cloned(), i(200));
    assert_eq!(attr(at, "server.address").cloned(), s("localhost"));
    assert_eq!(attr(at, "server.port").cloned(), i(8000));
    assert_eq!(attr(at, "client.address").cloned(), s("127.0.0.1"));
    assert_eq!(attr(at, "user_agent.original").cloned(), s("curl/8.5.0"));
    assert_eq!(sp.status.as_ref().unwrap().code, 0);

    let failed = &scope0.spans[1];
    assert_eq!(failed.parent_span_id, vec![9; 8]);
    assert_eq!(
        failed.status.as_ref().unwrap().code,
        2,
        "503 on a server span is an error"
    );
    assert_eq!(
        attr(&failed.attributes, "error.type"),
        Some(&Value::StringValue("503".into()))
    );

    let st = handle.stats();
    assert_eq!(
        (
            st.exported_spans,
            st.send_errors,
            st.queued,
            st.batches_sent
        ),
        (3, 0, 0, 1)
    );
    handle.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn grpc_round_trip() {
    round_trip(Protocol::Grpc, Compression::None).await;
}

#[tokio::test]
async fn grpc_gzip_round_trip() {
    round_trip(Protocol::Grpc, Compression::Gzip).await;
}

#[tokio::test]
async fn http_round_trip() {
    round_trip(Protocol::HttpProtobuf, Compression::None).await;
}

#[tokio::test]
async fn http_gzip_round_trip() {
    round_trip(Protocol::HttpProtobuf, Compression::Gzip).await;
}

#[tokio::test]
async fn http_503_twice_then_ok_is_retried() {
    let rx = Receiver::with_script(vec![Reply::Http(503, None), Reply::Http(503, None)]);
    let server = start_http(rx.clone()).await;
    let handle = exporter(&config(Protocol::HttpProtobuf, server.addr));
    handle.try_send(vec![
        (resource(1, "a"), span_n(1)),
        (resource(1, "a"), span_n(2)),
    ]);
    eventually("2 exported spans", || handle.stats().exported_spans == 2).await;
    let st = handle.stats();
    assert_eq!(
        (st.send_errors, st.dropped_after_retries, st.queued),
        (2, 0, 0)
    );
    let seen = rx.seen();
    assert_eq!(seen.len(), 3, "two failures then success");
    assert!(
        seen.iter().all(|s| s.req == seen[0].req),
        "retries resend the same request"
    );
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn grpc_unavailable_then_ok_is_retried() {
    let rx = Receiver::with_script(vec![
        Reply::Grpc(tonic::Code::Unavailable),
        Reply::Grpc(tonic::Code::ResourceExhausted),
    ]);
    let server = start_grpc(rx.clone()).await;
    let handle = exporter(&config(Protocol::Grpc, server.addr));
    handle.try_send(vec![(resource(1, "a"), span_n(1))]);
    eventually("1 exported span", || handle.stats().exported_spans == 1).await;
    assert_eq!(handle.stats().send_errors, 2);
    assert_eq!(rx.seen().len(), 3);
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn http_retry_after_is_honoured() {
    let rx = Receiver::with_script(vec![Reply::Http(429, Some(1))]);
    let server = start_http(rx.clone()).await;
    let handle = exporter(&config(Protocol::HttpProtobuf, server.addr));
    handle.try_send(vec![(resource(1, "a"), span_n(1))]);
    eventually("1 exported span", || handle.stats().exported_spans == 1).await;
    let seen = rx.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    // Our own backoff would be ≤ 20 ms here; only Retry-After explains a full second.
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let rx = Receiver::with_script(vec![Reply::Http(400, None)]);
    let server = start_http(rx.clone()).await;
    let handle = exporter(&config(Protocol::HttpProtobuf, server.addr));
    handle.try_send(vec![
        (resource(1, "a"), span_n(1)),
        (resource(2, "b"), span_n(2)),
    ]);
    eventually("2 dropped spans", || handle.stats().dropped_refused == 2).await;
    let st = handle.stats();
    assert_eq!((st.send_errors, st.exported_spans, st.queued), (1, 0, 0));
    // Nothing was retried, so nothing counts as dropped after retries.
    assert_eq!(st.dropped_after_retries, 0);
    assert_eq!(rx.seen().len(), 1);

    let grx = Receiver::with_script(vec![Reply::Grpc(tonic::Code::InvalidArgument)]);
    let gserver = start_grpc(grx.clone()).await;
    let gh = exporter(&config(Protocol::Grpc, gserver.addr));
    gh.try_send(vec![(resource(1, "a"), span_n(1))]);
    eventually("1 dropped span", || gh.stats().dropped_refused == 1).await;
    assert_eq!(gh.stats().dropped_after_retries, 0);
    assert_eq!(grx.seen().len(), 1);
    handle.shutdown(Duration::from_secs(1)).await;
    gh.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn partial_success_is_counted() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let rx = Receiver::with_script(vec![Reply::Partial(2, "spans too old")]);
        let server = match protocol {
            Protocol::Grpc => start_grpc(rx.clone()).await,
            Protocol::HttpProtobuf => start_http(rx.clone()).await,
        };
        let handle = exporter(&config(protocol, server.addr));
        let r = resource(1, "a");
        handle.try_send((1..=5).map(|n| (r.clone(), span_n(n))).collect());
        eventually("the batch to finish", || handle.stats().batches_sent == 1).await;
        let st = handle.stats();
        assert_eq!(
            (st.exported_spans, st.rejected_by_endpoint, st.queued),
            (3, 2, 0),
            "{protocol}"
        );
        handle.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn batches_by_size_then_flushes_on_shutdown() {
    let rx = Receiver::default();
    let server = start_grpc(rx.clone()).await;
    let cfg = ExportConfig {
        batch_max_spans: 4,
        batch_interval: Duration::from_secs(3600),
        ..config(Protocol::Grpc, server.addr)
    };
    let handle = exporter(&cfg);
    let r = resource(1, "a");
    for n in 0..10 {
        handle.try_send(vec![(r.clone(), span_n(n))]);
    }
    eventually("two full batches", || handle.stats().exported_spans == 8).await;
    // The interval is an hour: the last two only leave on shutdown.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.seen().len(), 2);
    assert_eq!(handle.stats().queued, 2);
    handle.shutdown(Duration::from_secs(2)).await;
    assert_eq!(handle.stats().exported_spans, 10);
    let sizes: Vec<usize> = rx.seen().iter().map(|s| otlp::span_count(&s.req)).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    let ids: Vec<u8> = rx.spans().iter().map(|s| s.span_id[0]).collect();
    assert_eq!(ids, (0..10).collect::<Vec<u8>>(), "order kept");
    // After shutdown nothing is accepted, and that is counted.
    assert_eq!(handle.try_send(vec![(r, span_n(99))]), 0);
    assert_eq!(handle.stats().dropped_shutdown, 1);
}

#[tokio::test]
async fn batches_by_time() {
    let rx = Receiver::default();
    let server = start_http(rx.clone()).await;
    let cfg = ExportConfig {
        batch_interval: Duration::from_millis(200),
        ..config(Protocol::HttpProtobuf, server.addr)
    };
    let handle = exporter(&cfg);
    let sent = Instant::now();
    handle.try_send(vec![(resource(1, "a"), span_n(1))]);
    eventually("1 exported span", || handle.stats().exported_spans == 1).await;
    let waited = rx.seen()[0].at - sent;
    assert!(
        waited >= Duration::from_millis(190),
        "sent after {waited:?}, before the interval"
    );
    handle.shutdown(Duration::from_secs(1)).await;
}

/// A closed port: `try_send` stays non-blocking, drops are counted and the queue stays bounded.
#[tokio::test]
async fn dead_endpoint_never_blocks_and_stays_bounded() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let cfg = ExportConfig {
            batch_max_spans: 10,
            batch_interval: Duration::from_millis(10),
            queue_capacity: 50,
            retry_max_elapsed: Duration::from_millis(300),
            ..config(protocol, closed)
        };
        let handle = exporter(&cfg);
        let r = resource(1, "a");
        let mut call_times = Vec::new();
        let mut max_queued = 0;
        let started = Instant::now();
        let mut offered = 0u64;
        while started.elapsed() < Duration::from_millis(800) {
            let t = Instant::now();
            handle.try_send(vec![(r.clone(), span_n(1)), (r.clone(), span_n(2))]);
            call_times.push(t.elapsed());
            offered += 2;
            max_queued = max_queued.max(handle.stats().queued);
            tokio::task::yield_now().await;
        }
        let st = handle.stats();
        assert!(max_queued <= 50, "{protocol}: queue grew to {max_queued}");
        // Wall-clock bounds on single calls are at the mercy of the scheduler on a shared
        // machine; the median is not. `never_waits_for_a_stuck_worker` proves the rest.
        call_times.sort_unstable();
        let median = call_times[call_times.len() / 2];
        assert!(
            median < Duration::from_millis(1),
            "{protocol}: median try_send {median:?}"
        );
        assert!(st.dropped_queue_full > 0, "{protocol}: {st:?}");
        assert!(st.send_errors > 0, "{protocol}: {st:?}");
        assert_eq!(st.exported_spans, 0);
        eventually("batches given up", || {
            handle.stats().dropped_after_retries > 0
        })
        .await;
        handle.shutdown(Duration::from_secs(2)).await;
        let st = handle.stats();
        assert_eq!(st.queued, 0, "{protocol}: {st:?}");
        let accounted = st.exported_spans
            + st.dropped_queue_full
            + st.dropped_after_retries
            + st.dropped_shutdown
            + st.rejected_by_endpoint;
        assert_eq!(
            accounted, offered,
            "{protocol}: every span is counted once: {st:?}"
        );
    }
}

/// While the worker is stuck in a send that will not return for 30 s, a plain thread offers
/// 100 000 spans: every call returns, exactly `capacity` spans are held and the rest are
/// dropped and counted. If `try_send` ever waited for the worker, this would hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_waits_for_a_stuck_worker() {
    let (addr, silent) = start_silent().await;
    let cfg = ExportConfig {
        timeout: Duration::from_secs(30),
        batch_max_spans: 10,
        batch_interval: Duration::from_millis(1),
        queue_capacity: 100,
        ..config(Protocol::HttpProtobuf, addr)
    };
    let handle = exporter(&cfg);
    let r = resource(1, "a");
    // Get the worker stuck in its first send.
    handle.try_send(vec![(r.clone(), span_n(0))]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let producer = handle.clone();
    std::thread::spawn(move || {
        let mut accepted = 0;
        for n in 0..100_000u32 {
            accepted += producer.try_send(vec![(r.clone(), span_n(n as u8))]);
        }
        let _ = done_tx.send(accepted);
    });
    let accepted = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("try_send blocked behind a stuck worker");
    let st = handle.stats();
    assert_eq!(accepted, 99, "one slot was taken by the span in flight");
    assert_eq!(st.queued, 100);
    assert_eq!(st.dropped_queue_full, 100_000 - 99);
    assert_eq!(st.exported_spans, 0);
    handle.shutdown(Duration::from_millis(200)).await;
    assert_eq!(handle.stats().dropped_shutdown, 100);
    silent.abort();
}

/// Shutdown with a deadline while a send hangs: it returns on time and counts what it dropped.
#[tokio::test]
async fn shutdown_deadline_with_hanging_endpoint() {
    let (addr, hang) = start_silent().await;
    let cfg = ExportConfig {
        timeout: Duration::from_secs(30),
        batch_interval: Duration::from_millis(10),
        ..config(Protocol::HttpProtobuf, addr)
    };
    let handle = exporter(&cfg);
    handle.try_send(vec![
        (resource(1, "a"), span_n(1)),
        (resource(1, "a"), span_n(2)),
    ]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    handle.shutdown(Duration::from_millis(300)).await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    let st = handle.stats();
    assert_eq!(
        (st.queued, st.dropped_shutdown, st.exported_spans),
        (0, 2, 0),
        "{st:?}"
    );
    hang.abort();
}

/// gRPC over TLS, trusting the test CA through `certificate`; without it the handshake fails
/// (the public roots do not know the test CA) and the spans are dropped, not sent in clear.
#[tokio::test]
async fn grpc_over_tls_with_custom_ca() {
    let rx = Receiver::default();
    let server = start_grpc_tls(rx.clone()).await;
    let base = ExportConfig {
        endpoint: Some(format!("https://127.0.0.1:{}", server.addr.port())),
        ..config(Protocol::Grpc, server.addr)
    };

    let trusted = ExportConfig {
        certificate: Some(tls_dir().join("ca.pem")),
        ..base.clone()
    };
    let handle = exporter(&trusted);
    handle.try_send(vec![(resource(1, "a"), span_n(7))]);
    eventually("1 exported span over TLS", || {
        handle.stats().exported_spans == 1
    })
    .await;
    assert_eq!(rx.spans()[0].span_id, vec![7; 8]);
    let header = rx.seen()[0]
        .headers
        .iter()
        .find(|(k, _)| k == "x-scope-orgid")
        .cloned();
    assert_eq!(header, Some(("x-scope-orgid".into(), "tenant-a".into())));
    handle.shutdown(Duration::from_secs(1)).await;

    let untrusted = ExportConfig {
        retry_max_elapsed: Duration::from_millis(100),
        ..base
    };
    let handle = exporter(&untrusted);
    handle.try_send(vec![(resource(1, "a"), span_n(8))]);
    eventually("the span to be dropped", || {
        handle.stats().dropped_after_retries == 1
    })
    .await;
    assert!(handle.stats().send_errors >= 1);
    assert_eq!(
        rx.seen().len(),
        1,
        "nothing reached the receiver without trust"
    );
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn http_transport_loads_the_ca_bundle() {
    let cfg = ExportConfig {
        endpoint: Some("https://127.0.0.1:1".into()),
        protocol: Protocol::HttpProtobuf,
        certificate: Some(tls_dir().join("ca.pem")),
        ..ExportConfig::default()
    };
    cfg.validate().unwrap();
    assert!(HttpTransport::new(&cfg).is_ok());
    let missing = ExportConfig {
        certificate: Some(tls_dir().join("nope.pem")),
        ..cfg.clone()
    };
    assert!(matches!(
        HttpTransport::new(&missing),
        Err(ExportError::Setup { .. })
    ));
    assert!(matches!(
        GrpcTransport::new(&ExportConfig {
            protocol: Protocol::Grpc,
            ..missing
        }),
        Err(ExportError::Setup { .. })
    ));
}

/// A transport written outside this module (like the lead's in-process hand-off to the store):
/// the trait is object-safe and small enough to implement in a few lines.
struct ChannelTransport(tokio::sync::mpsc::UnboundedSender<ExportTraceServiceRequest>);

impl Transport for ChannelTransport {
    fn send(&self, req: Payload) -> SendFuture<'_> {
        let sent = match req.into_proto() {
            Ok(req) => self.0.send(req).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        Box::pin(async move {
            sent.map(|()| SendOutcome::default())
                .map_err(|e| ExportError::Network {
                    endpoint: "in-process".into(),
                    message: e,
                })
        })
    }
    fn endpoint(&self) -> &str {
        "in-process"
    }
}

#[tokio::test]
async fn custom_transport_and_prefix_admission() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = ExportConfig {
        batch_max_spans: 10,
        queue_capacity: 10,
        batch_interval: Duration::from_secs(3600),
        ..ExportConfig::default()
    };
    let handle = Exporter::spawn(&cfg, Arc::new(ChannelTransport(tx)));
    assert_eq!(handle.try_send(Vec::new()), 0);
    assert_eq!(
        handle.stats(),
        StatsSnapshot::default(),
        "an empty offer counts nothing"
    );
    let r = resource(1, "a");
    // 15 offered into a queue of 10: the first 10 are kept, the last 5 dropped and counted.
    let accepted = handle.try_send((0..15).map(|n| (r.clone(), span_n(n))).collect());
    assert_eq!(accepted, 10);
    assert_eq!(handle.stats().dropped_queue_full, 5);
    // Those five were the service's own: counted under its name.
    assert_eq!(
        handle.stats_ref().dropped_by_service(),
        vec![("a".to_owned(), 5)]
    );
    let req = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(otlp::span_count(&req), 10, "a full batch leaves at once");
    let ids: Vec<u8> = req.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| s.span_id[0])
        .collect();
    assert_eq!(ids, (0..10).collect::<Vec<u8>>());
    eventually("the queue to drain", || handle.stats().queued == 0).await;
    assert_eq!(handle.stats().exported_spans, 10);
    handle.shutdown(Duration::from_secs(1)).await;
}

/// A full batch of spans with long paths encodes far over the 4 MiB a gRPC receiver takes by
/// default (tonic's, like Tempo's): it goes out in requests that fit, and nothing is lost.
#[tokio::test]
async fn a_batch_too_large_for_one_request_is_sent_in_parts() {
    let rx = Receiver::default();
    let server = start_grpc(rx.clone()).await;
    let cfg = ExportConfig {
        batch_max_spans: 4096,
        queue_capacity: 8192,
        ..config(Protocol::Grpc, server.addr)
    };
    let handle = exporter(&cfg);
    let r = resource(1, "long-paths");
    let spans: Vec<Item> = (0..4096u32)
        .map(|n| {
            let mut s = server_span();
            s.span_id = [n as u8, (n >> 8) as u8, 1, 1, 1, 1, 1, 1];
            s.path = format!("/{}", "p".repeat(2000));
            (r.clone(), s)
        })
        .collect();
    assert_eq!(handle.try_send(spans), 4096);
    eventually("every span exported", || {
        handle.stats().exported_spans == 4096
    })
    .await;
    let s = handle.stats();
    assert_eq!((s.dropped_refused, s.dropped_after_retries), (0, 0));
    assert_eq!(rx.spans().len(), 4096);
    let seen = rx.seen();
    assert!(seen.len() >= 3, "{} requests", seen.len());
    for got in &seen {
        let bytes = prost::Message::encoded_len(&got.req);
        assert!(bytes <= MAX_REQUEST_BYTES, "a request of {bytes} bytes");
    }
    handle.shutdown(Duration::from_secs(1)).await;
}
