//! The exporter against real OTLP receivers on 127.0.0.1: a tonic gRPC `TraceService` and an
//! axum HTTP/protobuf endpoint, each scripted to answer OK, errors or partial success.
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::HeaderMap, response::IntoResponse};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::{Span, span::SpanKind as OtlpKind},
};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;

use super::{
    testutil::{attr, i, resource, s, server_span},
    *,
};
use crate::span::HttpSpan;

/// What a receiver answers, in order; `Ok` once the script is used up.
#[derive(Clone, Debug)]
enum Reply {
    Ok,
    Partial(i64, &'static str),
    /// gRPC status code, or HTTP status (+ Retry-After seconds).
    Grpc(tonic::Code),
    Http(u16, Option<u64>),
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    headers: Vec<(String, String)>,
    req: ExportTraceServiceRequest,
}

#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    fn with_script(script: Vec<Reply>) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into())),
            ..Self::default()
        }
    }
    fn next_reply(&self) -> Reply {
        self.script.lock().unwrap().pop_front().unwrap_or(Reply::Ok)
    }
    fn record(&self, headers: Vec<(String, String)>, req: ExportTraceServiceRequest) {
        self.seen.lock().unwrap().push(Seen {
            at: Instant::now(),
            headers,
            req,
        });
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn spans(&self) -> Vec<Span> {
        self.seen()
            .iter()
            .flat_map(|s| s.req.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter().cloned())
            .collect()
    }
}

fn ok_response(reply: &Reply) -> ExportTraceServiceResponse {
    match reply {
        Reply::Partial(rejected_spans, msg) => ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: *rejected_spans,
                error_message: (*msg).to_owned(),
            }),
        },
        _ => ExportTraceServiceResponse::default(),
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.to_string(), v.to_str().ok()?.to_owned()))
                }
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        self.record(headers, request.into_inner());
        match self.next_reply() {
            Reply::Grpc(code) => Err(tonic::Status::new(code, "scripted failure")),
            reply => Ok(tonic::Response::new(ok_response(&reply))),
        }
    }
}

/// A running receiver; stops when dropped.
struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_grpc(rx: Receiver) -> Running {
    let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
        .expect("bind gRPC receiver");
    let addr = incoming.local_addr().unwrap();
    let stop = CancellationToken::new();
    let service = TraceServiceServer::new(rx).accept_compressed(CompressionEncoding::Gzip);
    let signal = stop.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, signal.cancelled_owned())
            .await
            .expect("gRPC receiver");
    });
    Running { addr, stop }
}

async fn http_export(
    State(rx): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body.as_ref())
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    } else {
        body.to_vec()
    };
    let req = ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf body");
    let seen_headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    rx.record(seen_headers, req);
    match rx.next_reply() {
        Reply::Http(status, retry_after) => {
            let status = axum::http::StatusCode::from_u16(status).unwrap();
            let mut resp = (status, "scripted failure").into_response();
            if let Some(secs) = retry_after {
                resp.headers_mut().insert("retry-after", secs.into());
            }
            resp
        }
        reply => (
            [("content-type", "application/x-protobuf")],
            ok_response(&reply).encode_to_vec(),
        )
            .into_response(),
    }
}

async fn start_http(rx: Receiver) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind HTTP receiver");
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(http_export))
        .with_state(rx);
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(signal.cancelled_owned())
            .await
            .expect("HTTP receiver");
    });
    Running { addr, stop }
}

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
    eventually("2 dropped spans", || {
        handle.stats().dropped_after_retries == 2
    })
    .await;
    let st = handle.stats();
    assert_eq!((st.send_errors, st.exported_spans, st.queued), (1, 0, 0));
    assert_eq!(rx.seen().len(), 1);

    let grx = Receiver::with_script(vec![Reply::Grpc(tonic::Code::InvalidArgument)]);
    let gserver = start_grpc(grx.clone()).await;
    let gh = exporter(&config(Protocol::Grpc, gserver.addr));
    gh.try_send(vec![(resource(1, "a"), span_n(1))]);
    eventually("1 dropped span", || gh.stats().dropped_after_retries == 1).await;
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
        let mut slowest = Duration::ZERO;
        let mut max_queued = 0;
        let started = Instant::now();
        let mut offered = 0u64;
        while started.elapsed() < Duration::from_millis(800) {
            let t = Instant::now();
            handle.try_send(vec![(r.clone(), span_n(1)), (r.clone(), span_n(2))]);
            slowest = slowest.max(t.elapsed());
            offered += 2;
            max_queued = max_queued.max(handle.stats().queued);
            tokio::task::yield_now().await;
        }
        let st = handle.stats();
        assert!(max_queued <= 50, "{protocol}: queue grew to {max_queued}");
        assert!(
            slowest < Duration::from_millis(20),
            "{protocol}: try_send took {slowest:?}"
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

/// Shutdown with a deadline while a send hangs: it returns on time and counts what it dropped.
#[tokio::test]
async fn shutdown_deadline_with_hanging_endpoint() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hang = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
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
