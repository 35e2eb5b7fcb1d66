//! OTLP transports: the small `Transport` trait, gRPC (tonic) and HTTP/protobuf (reqwest)
//! clients, partial-success parsing and retryable-error classification.
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{BufMut as _, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::{
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig},
};

use super::config::{Compression, ExportConfig, Protocol, Signal, read_ca_certificate};

/// What the endpoint said about an accepted request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Spans the endpoint rejected (OTLP partial success).
    pub rejected_spans: u64,
    /// The endpoint's explanation, when it gave one.
    pub message: Option<String>,
}

/// An export attempt that failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{endpoint}: gRPC {code:?}: {message}")]
    Grpc {
        endpoint: String,
        code: tonic::Code,
        message: String,
        /// From a `google.rpc.RetryInfo` detail, when the server sent one.
        retry_after: Option<Duration>,
    },
    #[error("{endpoint}: HTTP {status}: {message}")]
    Http {
        endpoint: String,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{endpoint}: cannot connect or send: {message}")]
    Network { endpoint: String, message: String },
    #[error("{endpoint}: no answer within {after:?}")]
    Timeout { endpoint: String, after: Duration },
    #[error("{endpoint}: cannot decode the reply: {message}")]
    Decode { endpoint: String, message: String },
    #[error("cannot set up the OTLP client for {endpoint}: {message}")]
    Setup { endpoint: String, message: String },
}

impl ExportError {
    /// Whether trying the same request again may succeed (the OTLP specification's list).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Grpc { code, .. } => grpc_retryable(*code),
            Self::Http { status, .. } => http_retryable(*status),
            Self::Network { .. } | Self::Timeout { .. } => true,
            Self::Decode { .. } | Self::Setup { .. } => false,
        }
    }

    /// The delay the endpoint asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Grpc { retry_after, .. } | Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short label for logs and rate limiting.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Grpc { .. } => "grpc",
            Self::Http { .. } => "http",
            Self::Network { .. } => "network",
            Self::Timeout { .. } => "timeout",
            Self::Decode { .. } => "decode",
            Self::Setup { .. } => "setup",
        }
    }
}

/// gRPC codes worth retrying. RESOURCE_EXHAUSTED is retried too: collectors use it for a
/// full queue, and the backoff (or the server's RetryInfo) paces us.
pub fn grpc_retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Cancelled
            | DeadlineExceeded
            | ResourceExhausted
            | Aborted
            | OutOfRange
            | Unavailable
            | DataLoss
    )
}

/// HTTP statuses worth retrying.
pub fn http_retryable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// `Retry-After` in its delta-seconds form; the HTTP-date form is ignored (backoff applies).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The future a transport returns.
pub type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SendOutcome, ExportError>> + Send + 'a>>;

/// One OTLP `ExportTraceServiceRequest`: protobuf bytes (what goes on the wire, written
/// straight from the spans by `wire::WireEncoder`) or the decoded structs (what an in-process
/// consumer such as the embedded store takes).
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Encoded(Bytes),
    Proto(ExportTraceServiceRequest),
}

/// Which form of [`Payload`] a transport wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadForm {
    Encoded,
    Proto,
}

impl Payload {
    /// The protobuf bytes.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Self::Encoded(b) => b,
            Self::Proto(req) => req.encode_to_vec().into(),
        }
    }

    /// The decoded request.
    pub fn into_proto(self) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
        match self {
            Self::Encoded(b) => ExportTraceServiceRequest::decode(b),
            Self::Proto(req) => Ok(req),
        }
    }
}

impl From<ExportTraceServiceRequest> for Payload {
    fn from(req: ExportTraceServiceRequest) -> Self {
        Self::Proto(req)
    }
}

/// Something that delivers one OTLP request: the gRPC and HTTP clients here, or an in-process
/// hand-off to the embedded store.
pub trait Transport: Send + Sync {
    /// Send one request. Implementations apply their own per-request timeout.
    fn send(&self, req: Payload) -> SendFuture<'_>;
    /// Where this transport sends to (for logs).
    fn endpoint(&self) -> &str;
    /// The form of payload this transport handles best (network clients: bytes).
    fn payload_form(&self) -> PayloadForm {
        PayloadForm::Encoded
    }
}

/// Build the transport `cfg` asks for. Needs a tokio runtime (the gRPC channel connects
/// lazily on first use).
pub fn transport_for(cfg: &ExportConfig) -> Result<Box<dyn Transport>, ExportError> {
    transport_for_signal(cfg, Signal::Traces)
}

/// [`transport_for`] sending `signal` (its URL, its gRPC method). The replies of the trace
/// and metrics services have the same wire form (a partial success with a rejected count and
/// a message), so one decoder serves both.
pub fn transport_for_signal(
    cfg: &ExportConfig,
    signal: Signal,
) -> Result<Box<dyn Transport>, ExportError> {
    Ok(match cfg.protocol {
        Protocol::Grpc => Box::new(GrpcTransport::for_signal(cfg, signal)?),
        Protocol::HttpProtobuf => Box::new(HttpTransport::for_signal(cfg, signal)?),
    })
}

fn outcome_of(resp: ExportTraceServiceResponse) -> SendOutcome {
    match resp.partial_success {
        Some(p) => SendOutcome {
            rejected_spans: u64::try_from(p.rejected_spans).unwrap_or(0),
            message: Some(p.error_message).filter(|m| !m.is_empty()),
        },
        None => SendOutcome::default(),
    }
}

// === impl GrpcTransport ===

/// A tonic codec that sends already-encoded request bytes and decodes the protobuf reply.
#[derive(Clone, Copy, Debug, Default)]
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        Self
    }
    fn decoder(&mut self) -> Self::Decoder {
        Self
    }
}

impl Encoder for EncodedCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("cannot decode the reply: {e}")))
    }
}

/// OTLP over gRPC (`TraceService/Export` or `MetricsService/Export`).
#[derive(Clone)]
pub struct GrpcTransport {
    endpoint: String,
    /// The gRPC method (`TraceService/Export`, `MetricsService/Export`).
    path: &'static str,
    /// How to connect; a timed-out request replaces the channel with a fresh one from this.
    target: tonic::transport::Endpoint,
    gzip: bool,
    client: Arc<Mutex<tonic::client::Grpc<Channel>>>,
    metadata: MetadataMap,
    timeout: Duration,
}

impl GrpcTransport {
    pub fn new(cfg: &ExportConfig) -> Result<Self, ExportError> {
        Self::for_signal(cfg, Signal::Traces)
    }

    pub fn for_signal(cfg: &ExportConfig, signal: Signal) -> Result<Self, ExportError> {
        let endpoint = cfg.url_for(signal);
        let setup = |message: String| ExportError::Setup {
            endpoint: endpoint.clone(),
            message,
        };
        let mut channel =
            Channel::from_shared(endpoint.clone()).map_err(|e| setup(e.to_string()))?;
        if endpoint.starts_with("https:") {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(path) = &cfg.certificate {
                let pem = read_ca_certificate(path).map_err(|e| setup(e.to_string()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            channel = channel
                .tls_config(tls)
                .map_err(|e| setup(error_chain(&e)))?;
        }
        // HTTP/2 pings find a peer that stopped answering even between requests.
        let target = channel
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .http2_keep_alive_interval(cfg.timeout)
            .keep_alive_timeout(cfg.timeout)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let gzip = cfg.compression == Compression::Gzip;
        let client = Arc::new(Mutex::new(Self::client(&target, gzip)));
        let mut metadata = MetadataMap::new();
        for (name, value) in &cfg.headers {
            let key = MetadataKey::from_bytes(name.as_bytes())
                .map_err(|e| setup(format!("header {name:?}: {e}")))?;
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|e| setup(format!("header {name:?}: {e}")))?;
            metadata.insert(key, value);
        }
        Ok(Self {
            endpoint,
            path: signal.grpc_path(),
            target,
            gzip,
            client,
            metadata,
            timeout: cfg.timeout,
        })
    }

    /// A client on a new channel (its connection is made on first use).
    fn client(target: &tonic::transport::Endpoint, gzip: bool) -> tonic::client::Grpc<Channel> {
        let client = tonic::client::Grpc::new(target.connect_lazy());
        if gzip {
            client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip)
        } else {
            client
        }
    }

    /// Drop the current connection: an endpoint that accepted it but never answers would
    /// otherwise keep every later request on it, even after a healthy one took the address.
    fn reconnect(&self) {
        *self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Self::client(&self.target, self.gzip);
    }
}

/// Header values may be credentials: Debug shows the endpoint only.
impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Transport for GrpcTransport {
    fn send(&self, req: Payload) -> SendFuture<'_> {
        Box::pin(async move {
            let mut request = tonic::Request::new(req.into_bytes());
            *request.metadata_mut() = self.metadata.clone();
            request.set_timeout(self.timeout);
            let mut client = self
                .client
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let call = async move {
                client.ready().await.map_err(|e| {
                    tonic::Status::unavailable(format!("the channel is not ready: {e}"))
                })?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(self.path);
                client.unary(request, path, EncodedCodec).await
            };
            match tokio::time::timeout(self.timeout, call).await {
                Err(_) => {
                    self.reconnect();
                    Err(ExportError::Timeout {
                        endpoint: self.endpoint.clone(),
                        after: self.timeout,
                    })
                }
                Ok(Err(status))
                    if status.code() == tonic::Code::Cancelled
                        || status.code() == tonic::Code::DeadlineExceeded =>
                {
                    self.reconnect();
                    Err(grpc_error(&self.endpoint, &status))
                }
                Ok(Ok(resp)) => Ok(outcome_of(resp.into_inner())),
                Ok(Err(status)) => Err(grpc_error(&self.endpoint, &status)),
            }
        })
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

fn grpc_error(endpoint: &str, status: &tonic::Status) -> ExportError {
    // A transport failure (refused, reset) surfaces as UNAVAILABLE with the cause as source.
    ExportError::Grpc {
        endpoint: endpoint.to_owned(),
        code: status.code(),
        message: grpc_message(status),
        retry_after: rpc::retry_delay(status.details()),
    }
}

/// The status message plus its causes (`tcp connect error: Connection refused (os error 111)`).
fn grpc_message(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let cause = s.to_string();
        // tonic repeats the message as the first cause; skip what we already say.
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

// === impl HttpTransport ===

/// Longest reply body read from an HTTP endpoint.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// OTLP over HTTP with a protobuf body (`POST …/v1/traces`).
#[derive(Clone)]
pub struct HttpTransport {
    endpoint: String,
    client: reqwest::Client,
    gzip: bool,
    timeout: Duration,
}

impl HttpTransport {
    pub fn new(cfg: &ExportConfig) -> Result<Self, ExportError> {
        Self::for_signal(cfg, Signal::Traces)
    }

    pub fn for_signal(cfg: &ExportConfig, signal: Signal) -> Result<Self, ExportError> {
        let endpoint = cfg.url_for(signal);
        let setup = |message: String| ExportError::Setup {
            endpoint: endpoint.clone(),
            message,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &cfg.headers {
            let key = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| setup(format!("header {name:?}: {e}")))?;
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| setup(format!("header {name:?}: {e}")))?;
            value.set_sensitive(true);
            headers.insert(key, value);
        }
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/x-protobuf"),
        );
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &cfg.certificate {
            let pem = read_ca_certificate(path).map_err(|e| setup(e.to_string()))?;
            for cert in
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| setup(e.to_string()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .default_headers(headers)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .build()
            .map_err(|e| setup(e.to_string()))?;
        Ok(Self {
            endpoint,
            client,
            gzip: cfg.compression == Compression::Gzip,
            timeout: cfg.timeout,
        })
    }

    async fn post(&self, req: Payload) -> Result<SendOutcome, ExportError> {
        let endpoint = &self.endpoint;
        let mut body = req.into_bytes();
        let mut builder = self.client.post(endpoint);
        if self.gzip {
            body = gzip(&body)
                .map_err(|e| ExportError::Setup {
                    endpoint: endpoint.clone(),
                    message: e.to_string(),
                })?
                .into();
            builder = builder.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let resp = builder
            .body(body)
            .send()
            .await
            .map_err(|e| self.reqwest_error(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = self.read_reply(resp).await?;
        if (200..300).contains(&status) {
            let reply = ExportTraceServiceResponse::decode(bytes.as_ref()).map_err(|e| {
                ExportError::Decode {
                    endpoint: endpoint.clone(),
                    message: e.to_string(),
                }
            })?;
            return Ok(outcome_of(reply));
        }
        Err(ExportError::Http {
            endpoint: endpoint.clone(),
            status,
            message: rpc::error_message(&bytes),
            retry_after,
        })
    }

    /// The reply body, at most [`MAX_REPLY_BYTES`] of it (a misbehaving endpoint cannot make
    /// us buffer without limit).
    async fn read_reply(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, ExportError> {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.reqwest_error(&e))? {
            let room = MAX_REPLY_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_REPLY_BYTES {
                break;
            }
        }
        Ok(body)
    }

    fn reqwest_error(&self, e: &reqwest::Error) -> ExportError {
        if e.is_timeout() {
            ExportError::Timeout {
                endpoint: self.endpoint.clone(),
                after: self.timeout,
            }
        } else {
            ExportError::Network {
                endpoint: self.endpoint.clone(),
                message: error_chain(e),
            }
        }
    }
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Transport for HttpTransport {
    fn send(&self, req: Payload) -> SendFuture<'_> {
        Box::pin(self.post(req))
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data)?;
    enc.finish()
}

/// `e: cause: cause…` (reqwest hides the useful part, e.g. "Connection refused", in sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The few `google.rpc` messages OTLP error replies carry.
mod rpc {
    use std::time::Duration;

    use prost::Message;

    #[derive(Clone, PartialEq, Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<ProtoDuration>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ProtoDuration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// The `RetryInfo.retry_delay` inside an encoded `google.rpc.Status`, if any.
    pub fn retry_delay(status_bytes: &[u8]) -> Option<Duration> {
        let status = Status::decode(status_bytes).ok()?;
        status.details.iter().find_map(|any| {
            if !any.type_url.ends_with("google.rpc.RetryInfo") {
                return None;
            }
            let d = RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?;
            let secs = u64::try_from(d.seconds).ok()?;
            let nanos = u32::try_from(d.nanos).ok()?;
            Some(Duration::new(secs, nanos.min(999_999_999)))
        })
    }

    /// A readable message from an HTTP error body: a protobuf `Status`, else short text.
    pub fn error_message(body: &[u8]) -> String {
        if let Ok(s) = Status::decode(body)
            && !s.message.is_empty()
        {
            return s.message;
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        match text.char_indices().nth(200) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
