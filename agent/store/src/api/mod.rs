//! Tempo's HTTP API on port 3200: one route table, tenant resolution, Tempo's status codes and
//! plain-text error bodies, content negotiation (JSON or protobuf by `Accept`).
#![expect(
    clippy::result_large_err,
    reason = "handlers return the finished axum Response as their error"
)]
use axum::{
    Router,
    body::Body,
    extract::{MatchedPath, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::any,
};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde_json::json;

use super::{Store, ids, metrics::Metrics};

mod limits;
mod metrics;
mod metrics_params;
pub mod params;
mod search;
mod shards;
pub mod streaming;
mod tags;
pub mod tempopb;
pub mod trace_json;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
}

/// Query-string pairs, in order.
pub type Params = Query<Vec<(String, String)>>;

/// A Tempo-style plain-text error (`http.Error` adds a newline).
pub fn text(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    let mut r = (code, format!("{msg}\n")).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A 500 whose body says nothing of the server's files; the detail goes to the log.
pub fn internal(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "query failed");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal store error; see the store's log",
    )
}

pub fn json_response(v: &serde_json::Value) -> Response {
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn proto_response(bytes: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/protobuf"),
    );
    r
}

/// Tempo checks `application/protobuf` first, by substring.
pub fn wants_protobuf(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/protobuf"))
}

/// The tenants a request reads, or the response refusing it.
pub fn tenants(store: &Store, h: &HeaderMap) -> Result<Vec<String>, Response> {
    if !store.config().multitenancy_enabled {
        return Ok(vec![ids::SINGLE_TENANT.to_string()]);
    }
    let Some(v) = h
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    else {
        return Err(text(StatusCode::UNAUTHORIZED, "no org id"));
    };
    let ts = ids::parse_org_ids(v).map_err(|e| text(StatusCode::BAD_REQUEST, e))?;
    if ts.len() > 1 && !store.config().cross_tenant_queries_enabled {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "queries across tenants (X-Scope-OrgID: a|b) are off; set store.cross_tenant_queries_enabled to allow them",
        ));
    }
    Ok(ts)
}

/// The route table: the HTTP API, and Tempo's streaming gRPC API (h2c) answered by it.
pub fn router(store: Store) -> Router {
    let search = streaming::SearchStreaming::new(store.config().search_limits().default_limit);
    router_with(store, search)
}

/// [`router`] with the streamed search's settings.
pub(crate) fn router_with(store: Store, search: streaming::SearchStreaming) -> Router {
    let http = http_router(store.clone());
    let path = format!("{}{{*rpc}}", streaming::PREFIX);
    http.clone()
        .route_service(&path, streaming::StreamingQuerier::new(http, store, search))
}

/// The HTTP API's route table.
fn http_router(store: Store) -> Router {
    let state = ApiState { store };
    Router::new()
        .route("/ready", any(|| async { text(StatusCode::OK, "ready") }))
        .route("/api/echo", any(|| async { text(StatusCode::OK, "echo") }))
        .route("/api/status/buildinfo", any(buildinfo))
        .route("/metrics", any(metrics))
        .route(
            "/metrics/generator",
            any(crate::generator::scrape::generated),
        )
        .route("/api/traces/{id}", any(trace_v1))
        .route("/api/v2/traces/{id}", any(trace_v2))
        .route("/api/search", any(search::search))
        .route("/api/search/tags", any(tags::tags_v1))
        .route("/api/v2/search/tags", any(tags::tags_v2))
        .route("/api/search/tag/{*rest}", any(tags::tag_values_v1))
        .route("/api/v2/search/tag/{*rest}", any(tags::tag_values_v2))
        .route("/api/metrics/query_range", any(metrics::query_range))
        .route("/api/metrics/query", any(metrics::query_instant))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "404 page not found") })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// With `store.auth_token_file` set, every route but `/ready` needs the token.
async fn authenticate(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if let Some(auth) = &s.store.inner.auth
        && req.uri().path() != "/ready"
    {
        let h = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !auth.allows(h) {
            let mut r = text(StatusCode::UNAUTHORIZED, crate::auth::REFUSED);
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer, Basic realm=\"sonde\""),
            );
            return r;
        }
    }
    next.run(req).await
}

async fn record(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_string();
    let t0 = std::time::Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16().to_string();
    s.store
        .metrics()
        .request_duration
        .get_or_create(&Metrics::labels(&[
            ("route", &route),
            ("status_code", &code),
        ]))
        .observe(t0.elapsed().as_secs_f64());
    resp
}

async fn buildinfo() -> Response {
    json_response(&json!({
        "version": "2.9.0",
        "revision": env!("CARGO_PKG_VERSION"),
        "branch": "sonde",
        "buildUser": "sonde",
        "buildDate": "",
        "goVersion": "",
    }))
}

async fn metrics(State(s): State<ApiState>) -> Response {
    s.store.update_gauges();
    let mut body = s.store.metrics().render();
    if let Some(g) = s.store.generator() {
        crate::generator::scrape::append_self(g, &mut body);
    }
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// Shared part of both trace-by-id routes: the deduplicated trace, or the error response.
async fn load_trace(
    s: &ApiState,
    h: &HeaderMap,
    id: &str,
    params: &[(String, String)],
) -> Result<Option<(TracesData, u64)>, Response> {
    let tenants = tenants(&s.store, h)?;
    let id = ids::parse_trace_id(id).map_err(|e| text(StatusCode::BAD_REQUEST, e))?;
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if get("start").is_some() || get("end").is_some() {
        let parse = |k: &str| -> Result<u64, Response> {
            match get(k) {
                None => Ok(0),
                Some(v) => v
                    .parse()
                    .map_err(|_| text(StatusCode::BAD_REQUEST, format!("invalid {k}: {v}"))),
            }
        };
        let (start, end) = (parse("start")?, parse("end")?);
        if end <= start {
            return Err(text(
                StatusCode::BAD_REQUEST,
                format!(
                    "http parameter start must be before end. received start={start} end={end}"
                ),
            ));
        }
    }
    s.store
        .metrics()
        .queries
        .get_or_create(&Metrics::labels(&[("op", "traces")]))
        .inc();
    // Reading blocks and decoding a large trace stay off the async workers that answer
    // `/ready` and take ingest.
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        let found = store.find_trace(&tenants, &id).map_err(|e| internal(&e))?;
        let Some(bytes) = found else { return Ok(None) };
        let inspected = bytes.len() as u64;
        let mut td = TracesData::decode(bytes.as_slice()).map_err(|e| internal(&e))?;
        trace_json::dedupe(&mut td);
        Ok(Some((td, inspected)))
    })
    .await
    .unwrap_or_else(|e| Err(internal(&e)))
}

async fn trace_v1(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(p): Params,
) -> Response {
    match load_trace(&s, &h, &id, &p).await {
        Err(r) => r,
        Ok(None) => (StatusCode::NOT_FOUND, Body::empty()).into_response(),
        Ok(Some((td, _))) if wants_protobuf(&h) => proto_response(td.encode_to_vec()),
        Ok(Some((td, _))) => {
            json_response(&json!({ "batches": trace_json::resource_spans_json(&td) }))
        }
    }
}

async fn trace_v2(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    h: HeaderMap,
    Query(p): Params,
) -> Response {
    let proto = wants_protobuf(&h);
    match load_trace(&s, &h, &id, &p).await {
        Err(r) => r,
        Ok(None) if proto => proto_response(tempopb::TraceByIdResponse::default().encode_to_vec()),
        Ok(None) => json_response(&json!({ "trace": {}, "metrics": {} })),
        Ok(Some((td, inspected))) if proto => proto_response(
            tempopb::TraceByIdResponse {
                trace: Some(td),
                metrics: Some(tempopb::TraceByIdMetrics {
                    inspected_bytes: inspected,
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        Ok(Some((td, inspected))) => json_response(&json!({
            "trace": { "resourceSpans": trace_json::resource_spans_json(&td) },
            "metrics": { "inspectedBytes": inspected.to_string() },
        })),
    }
}

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod metrics_tests;
#[cfg(test)]
mod streaming_tests;
#[cfg(test)]
mod tests;
