//! Scripted OTLP receivers for the exporter tests: a tonic gRPC `TraceService`, an axum
//! HTTP/protobuf endpoint, and a TCP listener that never answers; all on 127.0.0.1:0.
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, response::IntoResponse};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    trace::v1::Span,
};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;

/// What a receiver answers, in order; `Ok` once the script is used up.
#[derive(Clone, Debug)]
pub(super) enum Reply {
    Ok,
    Partial(i64, &'static str),
    /// gRPC status code, or HTTP status (+ Retry-After seconds).
    Grpc(tonic::Code),
    Http(u16, Option<u64>),
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub(super) at: Instant,
    pub(super) headers: Vec<(String, String)>,
    pub(super) req: ExportTraceServiceRequest,
}

#[derive(Clone, Default)]
pub(super) struct Receiver {
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    pub(super) fn with_script(script: Vec<Reply>) -> Self {
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
    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub(super) fn spans(&self) -> Vec<Span> {
        self.seen()
            .iter()
            .flat_map(|s| s.req.resource_spans.iter())
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter().cloned())
            .collect()
    }
}

pub(super) fn ok_response(reply: &Reply) -> ExportTraceServiceResponse {
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
pub(super) struct Running {
    pub(super) addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(super) async fn start_grpc(rx: Receiver) -> Running {
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

pub(super) async fn http_export(
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

/// Test PKI (100-year validity): a CA and a server certificate for `localhost` / `127.0.0.1`.
pub(super) fn tls_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/export/e2e_tests/tls")
}

/// The gRPC receiver behind TLS with the test server certificate.
pub(super) async fn start_grpc_tls(rx: Receiver) -> Running {
    let dir = tls_dir();
    let cert = std::fs::read(dir.join("server.pem")).expect("server.pem");
    let key = std::fs::read(dir.join("server.key")).expect("server.key");
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key));
    let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
        .expect("bind gRPC TLS receiver");
    let addr = incoming.local_addr().unwrap();
    let stop = CancellationToken::new();
    let signal = stop.clone();
    let mut server = tonic::transport::Server::builder()
        .tls_config(tls)
        .expect("server TLS");
    tokio::spawn(async move {
        server
            .add_service(TraceServiceServer::new(rx))
            .serve_with_incoming_shutdown(incoming, signal.cancelled_owned())
            .await
            .expect("gRPC TLS receiver");
    });
    Running { addr, stop }
}

pub(super) async fn start_http(rx: Receiver) -> Running {
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

/// An endpoint that accepts connections and never answers.
pub(super) async fn start_silent() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    (addr, task)
}
