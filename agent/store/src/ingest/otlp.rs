//! OTLP receivers: gRPC `TraceService/Export` (4317) and HTTP `POST /v1/traces` (4318,
//! protobuf or JSON, optionally gzip), answering with partial success or OTLP status codes.
use std::io::Read;

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use prost::Message;

use super::inflight::{Held, Refused};
use crate::{IngestError, IngestOutcome, Store, ids, metrics::Metrics};

/// Largest accepted request body (after decompression).
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// `google.rpc.Status`, the OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// Run an ingest off the async threads and count it per transport.
pub async fn ingest(
    store: &Store,
    tenant: String,
    req: ExportTraceServiceRequest,
    transport: &'static str,
) -> Result<IngestOutcome, IngestError> {
    let t0 = std::time::Instant::now();
    let st = store.clone();
    let res = tokio::task::spawn_blocking(move || {
        let n: usize = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        (st.ingest(&tenant, req), n)
    })
    .await;
    let m = store.metrics();
    let labels = Metrics::labels(&[("receiver", "otlp"), ("transport", transport)]);
    m.ingest_duration
        .get_or_create(&Metrics::labels(&[("transport", transport)]))
        .observe(t0.elapsed().as_secs_f64());
    match res {
        Ok((Ok(o), _)) => {
            m.accepted_spans
                .get_or_create(&labels)
                .inc_by(o.accepted_spans as u64);
            m.refused_spans
                .get_or_create(&labels)
                .inc_by(o.rejected_spans as u64);
            Ok(o)
        }
        Ok((Err(e), n)) => {
            m.refused_spans.get_or_create(&labels).inc_by(n as u64);
            Err(e)
        }
        Err(_) => Err(IngestError::Closed),
    }
}

fn tenant_of(store: &Store, value: Option<&str>) -> Result<String, IngestError> {
    if !store.config().multitenancy_enabled {
        return Ok(ids::SINGLE_TENANT.to_string());
    }
    let t = value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| IngestError::Tenant("no org id".into()))?;
    ids::validate_tenant(t).map_err(IngestError::Tenant)?;
    Ok(t.to_string())
}

fn partial(o: &IngestOutcome) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (o.rejected_spans > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: o.rejected_spans as i64,
            error_message: o.message.clone().unwrap_or_default(),
        }),
    }
}

/// The gRPC service.
#[derive(Clone)]
pub struct GrpcReceiver {
    pub store: Store,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if let Some(auth) = &self.store.inner.auth {
            let h = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if !auth.allows(h) {
                return Err(tonic::Status::unauthenticated(crate::auth::REFUSED));
            }
        }
        // The body's in-flight permits, held until the spans are in the WAL.
        let _held = request.extensions().get::<Held>().cloned();
        let org = request
            .metadata()
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let tenant = tenant_of(&self.store, org.as_deref()).map_err(|e| match e {
            IngestError::Tenant(m) if m == "no org id" => tonic::Status::unauthenticated(m),
            e => tonic::Status::invalid_argument(e.to_string()),
        })?;
        match ingest(&self.store, tenant, request.into_inner(), "grpc").await {
            Ok(o) => Ok(tonic::Response::new(partial(&o))),
            Err(e) => Err(match &e {
                IngestError::RateLimited { .. } => tonic::Status::resource_exhausted(e.to_string()),
                // Without RetryInfo OTLP clients do not retry this.
                IngestError::TooManyTenants { .. } => {
                    tonic::Status::resource_exhausted(e.to_string())
                }
                IngestError::Tenant(_) => tonic::Status::invalid_argument(e.to_string()),
                _ => tonic::Status::unavailable(e.to_string()),
            }),
        }
    }
}

/// Count each gRPC request body against the in-flight budget (a refusal is UNAVAILABLE, which
/// clients retry); the permits ride in the request's extensions to the handler.
pub fn grpc_count_body(
    store: Store,
) -> impl Fn(axum::http::Request<tonic::body::Body>) -> axum::http::Request<tonic::body::Body> + Clone
{
    move |req| {
        let (mut parts, body) = req.into_parts();
        let (counted, held) = store.inner.ingest_bytes.count(body, usize::MAX, |r| {
            Box::new(tonic::Status::unavailable(r.to_string()))
        });
        parts.extensions.insert(held);
        axum::http::Request::from_parts(parts, tonic::body::Body::new(counted))
    }
}

/// tonic answers a message over the size limit with OUT_OF_RANGE, which OTLP clients retry
/// forever; OTLP says INVALID_ARGUMENT (not retryable).
pub fn grpc_size_status(
    mut resp: axum::http::Response<tonic::body::Body>,
) -> axum::http::Response<tonic::body::Body> {
    let h = resp.headers_mut();
    if h.get("grpc-status").is_some_and(|v| v == "11") {
        h.insert("grpc-status", HeaderValue::from_static("3"));
    }
    resp
}

/// The tonic service for the gRPC listener.
pub fn grpc_service(store: Store) -> TraceServiceServer<GrpcReceiver> {
    TraceServiceServer::new(GrpcReceiver { store })
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_BODY)
}

/// The OTLP/HTTP router.
pub fn http_router(store: Store) -> Router {
    Router::new()
        .route("/v1/traces", post(http_export))
        .with_state(store)
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Proto,
    Json,
}

fn reply(fmt: Format, code: StatusCode, body: Vec<u8>) -> Response {
    let ct = match fmt {
        Format::Proto => "application/x-protobuf",
        Format::Json => "application/json",
    };
    let mut r = (code, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

fn error(fmt: Format, code: StatusCode, grpc_code: i32, msg: String) -> Response {
    let body = match fmt {
        Format::Proto => RpcStatus {
            code: grpc_code,
            message: msg,
        }
        .encode_to_vec(),
        Format::Json => serde_json::json!({ "code": grpc_code, "message": msg })
            .to_string()
            .into_bytes(),
    };
    let mut r = reply(fmt, code, body);
    if code == StatusCode::TOO_MANY_REQUESTS || code == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("invalid gzip body: {e}"))?;
    if out.len() > MAX_BODY {
        return Err(format!("body exceeds {MAX_BODY} bytes after decompression"));
    }
    Ok(out)
}

/// Decode an OTLP/HTTP request body in the given format.
pub fn decode_body(fmt_json: bool, body: &[u8]) -> Result<ExportTraceServiceRequest, String> {
    if fmt_json {
        serde_json::from_slice(body).map_err(|e| format!("invalid OTLP JSON: {e}"))
    } else {
        ExportTraceServiceRequest::decode(body).map_err(|e| format!("invalid OTLP protobuf: {e}"))
    }
}

/// The refusal of the in-flight budget somewhere in an error's chain.
fn refused(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cur = Some(e);
    while let Some(x) = cur {
        if let Some(r) = x.downcast_ref::<Refused>() {
            return Some(*r);
        }
        cur = x.source();
    }
    None
}

/// Read the body within the in-flight budget; the permits stay in the returned [`Held`].
async fn read_body(
    store: &Store,
    fmt: Format,
    h: &HeaderMap,
    body: axum::body::Body,
) -> Result<(Bytes, Held), Response> {
    let too_large = || {
        error(
            fmt,
            StatusCode::PAYLOAD_TOO_LARGE,
            3,
            format!("request body exceeds {MAX_BODY} bytes; send smaller batches"),
        )
    };
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let (counted, held) = store
        .inner
        .ingest_bytes
        .count(body, MAX_BODY, |r| Box::new(r));
    match axum::body::to_bytes(axum::body::Body::new(counted), usize::MAX).await {
        Ok(b) => Ok((b, held)),
        Err(e) => Err(match refused(&e) {
            Some(r @ Refused::OverBudget { .. }) => {
                error(fmt, StatusCode::TOO_MANY_REQUESTS, 14, r.to_string())
            }
            Some(Refused::TooLarge { .. }) => too_large(),
            None => error(
                fmt,
                StatusCode::BAD_REQUEST,
                3,
                format!("cannot read request body: {e}"),
            ),
        }),
    }
}

async fn http_export(State(store): State<Store>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = parts.headers;
    if let Some(auth) = &store.inner.auth {
        let a = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if !auth.allows(a) {
            let fmt = if h
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
            {
                Format::Json
            } else {
                Format::Proto
            };
            return error(
                fmt,
                StatusCode::UNAUTHORIZED,
                16,
                crate::auth::REFUSED.to_string(),
            );
        }
    }
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let fmt = if ct.starts_with("application/json") {
        Format::Json
    } else if ct.starts_with("application/x-protobuf") || ct.starts_with("application/protobuf") {
        Format::Proto
    } else {
        return error(
            Format::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            3,
            format!(
                "unsupported content type {ct:?}: use application/x-protobuf or application/json"
            ),
        );
    };
    let (body, held) = match read_body(&store, fmt, &h, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let enc = h
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let unzipped;
    let raw: &[u8] = match enc {
        "" | "identity" => &body,
        "gzip" => match gunzip(&body) {
            Ok(b) => {
                match store.inner.ingest_bytes.try_take(b.len()) {
                    Ok(Some(p)) => held.add(p),
                    Ok(None) => {}
                    Err(r) => return error(fmt, StatusCode::TOO_MANY_REQUESTS, 14, r.to_string()),
                }
                unzipped = b;
                &unzipped
            }
            Err(e) => return error(fmt, StatusCode::BAD_REQUEST, 3, e),
        },
        other => {
            return error(
                fmt,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                3,
                format!("unsupported content encoding {other:?}"),
            );
        }
    };
    let req = match decode_body(fmt == Format::Json, raw) {
        Ok(r) => r,
        Err(e) => return error(fmt, StatusCode::BAD_REQUEST, 3, e),
    };
    let org = h.get("x-scope-orgid").and_then(|v| v.to_str().ok());
    let tenant = match tenant_of(&store, org) {
        Ok(t) => t,
        Err(IngestError::Tenant(m)) if m == "no org id" => {
            return error(fmt, StatusCode::SERVICE_UNAVAILABLE, 16, m);
        }
        Err(e) => return error(fmt, StatusCode::BAD_REQUEST, 3, e.to_string()),
    };
    match ingest(&store, tenant, req, "http").await {
        Ok(o) => {
            let resp = partial(&o);
            let body = match fmt {
                Format::Proto => resp.encode_to_vec(),
                Format::Json => match &resp.partial_success {
                    Some(p) => serde_json::json!({
                        "partialSuccess": { "rejectedSpans": p.rejected_spans.to_string(), "errorMessage": p.error_message }
                    }),
                    None => serde_json::json!({}),
                }
                .to_string()
                .into_bytes(),
            };
            reply(fmt, StatusCode::OK, body)
        }
        Err(e @ IngestError::RateLimited { .. }) => {
            error(fmt, StatusCode::TOO_MANY_REQUESTS, 8, e.to_string())
        }
        Err(e @ IngestError::Tenant(_)) => error(fmt, StatusCode::BAD_REQUEST, 3, e.to_string()),
        Err(e @ IngestError::TooManyTenants { .. }) => {
            error(fmt, StatusCode::BAD_REQUEST, 8, e.to_string())
        }
        Err(e) => error(fmt, StatusCode::SERVICE_UNAVAILABLE, 14, e.to_string()),
    }
}
