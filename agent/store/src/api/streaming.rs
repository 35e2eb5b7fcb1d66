//! Tempo's `tempopb.StreamingQuerier` gRPC service, served as h2c on the HTTP port (3200),
//! which Grafana's Tempo datasource calls when streaming is on (its default). Each call is
//! answered by the HTTP route of the same query, so both APIs answer alike (same tenants,
//! limits, parameters and errors). A bad query is `InvalidArgument` with the HTTP API's
//! message; a tenant or limit refusal keeps its kind (`PermissionDenied`, `Unauthenticated`,
//! `ResourceExhausted`, `DeadlineExceeded`).
//!
//! `Search` and `MetricsQueryRange` stream as Tempo's query frontend does: the window is cut
//! into time shards, asked newest first, and every 500 ms the call sends what changed since
//! its last message (with the metrics so far), then a last message when done (see
//! [`shards`]). The other calls answer in one message: the whole result.
use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{self, HeaderValue, StatusCode},
};
use futures::Stream;
use prost::Message;
use tonic::{Status, server::Grpc};
use tonic_prost::ProstCodec;
use tower::ServiceExt as _;

use super::shards;
use super::tempopb::{
    MetadataMetrics, QueryInstantRequest, QueryInstantResponse, QueryRangeRequest,
    QueryRangeResponse, SearchMetrics, SearchRequest, SearchResponse, SearchTagValuesRequest,
    SearchTagValuesResponse, SearchTagValuesV2Response, SearchTagsRequest, SearchTagsResponse,
    SearchTagsV2Response, SearchTagsV2Scope, TagValue,
};

/// The service's path prefix.
pub const PREFIX: &str = "/tempopb.StreamingQuerier/";

/// How often a streamed call sends what it found so far (Tempo: 500 ms).
const DIFF_EVERY: Duration = Duration::from_millis(500);

/// The gRPC service in front of the HTTP API `http` (the router with its state and layers).
#[derive(Clone)]
pub struct StreamingQuerier {
    http: Router,
    store: crate::Store,
    search: SearchStreaming,
}

/// How a streamed search runs.
#[derive(Clone, Copy, Debug)]
pub struct SearchStreaming {
    /// The HTTP API's limit when the request sets none.
    pub default_limit: u32,
    /// How often partial results are sent.
    pub diff_every: Duration,
}

impl SearchStreaming {
    pub fn new(default_limit: u32) -> Self {
        Self {
            default_limit,
            diff_every: DIFF_EVERY,
        }
    }
}

impl StreamingQuerier {
    pub fn new(http: Router, store: crate::Store, search: SearchStreaming) -> Self {
        Self {
            http,
            store,
            search,
        }
    }

    /// The time ranges of the blocks the call's tenants have (none if the call names no
    /// tenant the HTTP API accepts: its first shard then answers the refusal).
    fn block_ranges(&self, meta: &tonic::metadata::MetadataMap) -> Vec<(u64, u64)> {
        super::tenants(&self.store, &meta.clone().into_headers())
            .map(|t| self.store.block_ranges(&t))
            .unwrap_or_default()
    }
}

pub(super) type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;
pub(super) type Messages<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
pub(super) type Answer<T> = BoxFuture<Result<Messages<T>, Status>>;

impl tower::Service<http::Request<Body>> for StreamingQuerier {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let q = self.clone();
        Box::pin(async move {
            let method = req
                .uri()
                .path()
                .strip_prefix(PREFIX)
                .unwrap_or("")
                .to_owned();
            let resp = match method.as_str() {
                "Search" => serve(req, Rpc(q, search)).await,
                "SearchTags" => serve(req, Rpc(q, tags)).await,
                "SearchTagsV2" => serve(req, Rpc(q, tags_v2)).await,
                "SearchTagValues" => serve(req, Rpc(q, tag_values)).await,
                "SearchTagValuesV2" => serve(req, Rpc(q, tag_values_v2)).await,
                "MetricsQueryRange" => serve(req, Rpc(q, query_range)).await,
                "MetricsQueryInstant" => serve(req, Rpc(q, query_instant)).await,
                _ => Status::unimplemented(format!("unknown method {method}"))
                    .into_http::<tonic::body::Body>(),
            };
            Ok(resp.map(Body::new))
        })
    }
}

/// Runs one server-streaming call with Tempo's protobuf codec.
async fn serve<Req, Resp, F>(
    req: http::Request<Body>,
    rpc: Rpc<F>,
) -> http::Response<tonic::body::Body>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    F: Fn(StreamingQuerier, Req, tonic::metadata::MetadataMap) -> Answer<Resp>
        + Clone
        + Send
        + Sync
        + 'static,
{
    Grpc::new(ProstCodec::<Resp, Req>::default())
        .server_streaming(rpc, req)
        .await
}

/// One method: the service and how it answers the request.
struct Rpc<F>(StreamingQuerier, F);

impl<Req, Resp, F> tonic::server::ServerStreamingService<Req> for Rpc<F>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(StreamingQuerier, Req, tonic::metadata::MetadataMap) -> Answer<Resp>
        + Clone
        + Send
        + Sync
        + 'static,
{
    type Response = Resp;
    type ResponseStream = Messages<Resp>;
    type Future = BoxFuture<Result<tonic::Response<Messages<Resp>>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let (http, f) = (self.0.clone(), self.1.clone());
        Box::pin(async move {
            let (meta, _, req) = request.into_parts();
            Ok(tonic::Response::new(f(http, req, meta).await?))
        })
    }
}

/// An answer in one message.
fn one<T: Send + 'static>(
    answer: impl std::future::Future<Output = Result<T, Status>> + Send + 'static,
) -> Answer<T> {
    Box::pin(async move {
        let answer = answer.await?;
        let messages: Messages<T> = Box::pin(futures::stream::once(async { Ok(answer) }));
        Ok(messages)
    })
}

/// Asks the HTTP API `path?query`, with the call's tenant and credentials; the body of a
/// 200, else the HTTP answer as a gRPC status.
pub(super) async fn ask(
    http: Router,
    meta: &tonic::metadata::MetadataMap,
    path: &str,
    query: &[(&str, String)],
    accept: &'static str,
) -> Result<bytes::Bytes, Status> {
    let mut uri = path.to_owned();
    let pairs: Vec<(&str, &str)> = query
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    if !pairs.is_empty() {
        uri.push('?');
        uri.push_str(
            &serde_urlencoded::to_string(&pairs).map_err(|e| Status::internal(e.to_string()))?,
        );
    }
    let mut req = http::Request::get(uri)
        .header(http::header::ACCEPT, accept)
        .body(Body::empty())
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    for name in ["x-scope-orgid", "authorization"] {
        if let Some(v) = meta.get(name).and_then(|v| v.to_str().ok())
            && let Ok(v) = HeaderValue::from_str(v)
        {
            req.headers_mut().insert(name, v);
        }
    }
    let resp = http.oneshot(req).await.unwrap_or_else(|e| match e {});
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    if status == StatusCode::OK {
        return Ok(body);
    }
    let msg = String::from_utf8_lossy(&body).trim().to_owned();
    Err(match status {
        StatusCode::BAD_REQUEST => Status::invalid_argument(msg),
        StatusCode::UNAUTHORIZED => Status::unauthenticated(msg),
        StatusCode::FORBIDDEN => Status::permission_denied(msg),
        StatusCode::NOT_FOUND => Status::not_found(msg),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE => {
            Status::resource_exhausted(msg)
        }
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => Status::deadline_exceeded(msg),
        StatusCode::SERVICE_UNAVAILABLE => Status::unavailable(msg),
        _ => Status::internal(msg),
    })
}

/// A numeric parameter with its unit; zero (unset in protobuf) leaves it out.
pub(super) fn param(v: impl Into<u64>, unit: &str) -> String {
    match v.into() {
        0 => String::new(),
        v => format!("{v}{unit}"),
    }
}

pub(super) fn decode_proto<T: Message + Default>(body: &[u8]) -> Result<T, Status> {
    T::decode(body).map_err(|e| Status::internal(format!("decoding the HTTP answer: {e}")))
}

/// [`ask`] for a JSON answer.
async fn ask_json(
    http: Router,
    meta: &tonic::metadata::MetadataMap,
    path: &str,
    query: &[(&str, String)],
) -> Result<serde_json::Value, Status> {
    let body = ask(http, meta, path, query, "application/json").await?;
    serde_json::from_slice(&body)
        .map_err(|e| Status::internal(format!("decoding the HTTP answer: {e}")))
}

/// A number of the answer's `metrics` object (jsonpb writes 64-bit ones as strings).
fn metric(v: &serde_json::Value, key: &str) -> u64 {
    v.get("metrics")
        .and_then(|m| m.get(key))
        .and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0)
}

fn metric32(v: &serde_json::Value, key: &str) -> u32 {
    u32::try_from(metric(v, key)).unwrap_or(u32::MAX)
}

/// The `metrics` object of a tags answer.
fn metadata_metrics(v: &serde_json::Value) -> Option<MetadataMetrics> {
    v.get("metrics")?;
    Some(MetadataMetrics {
        inspected_bytes: metric(v, "inspectedBytes"),
        total_jobs: metric32(v, "totalJobs"),
        completed_jobs: metric32(v, "completedJobs"),
    })
}

/// The `metrics` object of a metrics answer.
fn search_metrics(v: &serde_json::Value) -> Option<SearchMetrics> {
    v.get("metrics")?;
    Some(SearchMetrics {
        inspected_traces: metric32(v, "inspectedTraces"),
        inspected_bytes: metric(v, "inspectedBytes"),
        total_blocks: metric32(v, "totalBlocks"),
        completed_jobs: metric32(v, "completedJobs"),
        total_jobs: metric32(v, "totalJobs"),
        total_block_bytes: metric(v, "totalBlockBytes"),
        inspected_spans: metric(v, "inspectedSpans"),
    })
}

fn strings(v: Option<&serde_json::Value>) -> Vec<String> {
    v.and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn search(
    q: StreamingQuerier,
    r: SearchRequest,
    meta: tonic::metadata::MetadataMap,
) -> Answer<SearchResponse> {
    Box::pin(async move {
        let blocks = q.block_ranges(&meta);
        let (http, how) = (q.http, q.search);
        let tags = logfmt(&r.tags);
        let most_recent = sonde_traceql::parse_search(&r.query).is_ok_and(|q| q.most_recent());
        let limit = match r.limit {
            0 => how.default_limit,
            n => n,
        };
        let query = vec![
            ("q", r.query),
            ("tags", tags),
            ("minDuration", param(r.min_duration_ms, "ms")),
            ("maxDuration", param(r.max_duration_ms, "ms")),
            ("limit", param(r.limit, "")),
            ("spss", param(r.spans_per_span_set, "")),
        ];
        let shards = shards::search_shards(r.start, r.end, &blocks);
        let combiner = shards::SearchCombiner::new(limit as usize, most_recent, shards.len());
        let jobs = shards::Jobs::new(http, meta, "/api/search", query, shards, combiner);
        jobs.run(how.diff_every).await
    })
}

/// The `tags=` parameter (logfmt) for a request's tag map.
fn logfmt(tags: &std::collections::HashMap<String, String>) -> String {
    let mut pairs: Vec<(&String, &String)> = tags.iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String((*v).clone())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn tags_query(r: SearchTagsRequest) -> [(&'static str, String); 4] {
    [
        ("scope", r.scope),
        ("q", r.query),
        ("start", param(r.start, "")),
        ("end", param(r.end, "")),
    ]
}

fn tags(
    q: StreamingQuerier,
    r: SearchTagsRequest,
    meta: tonic::metadata::MetadataMap,
) -> Answer<SearchTagsResponse> {
    let http = q.http;
    one(async move {
        let v = ask_json(http, &meta, "/api/search/tags", &tags_query(r)).await?;
        Ok(SearchTagsResponse {
            tag_names: strings(v.get("tagNames")),
            metrics: metadata_metrics(&v),
        })
    })
}

fn tags_v2(
    q: StreamingQuerier,
    r: SearchTagsRequest,
    meta: tonic::metadata::MetadataMap,
) -> Answer<SearchTagsV2Response> {
    let http = q.http;
    one(async move {
        let v = ask_json(http, &meta, "/api/v2/search/tags", &tags_query(r)).await?;
        let scopes = v
            .get("scopes")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
            .map(|s| SearchTagsV2Scope {
                name: s
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or("")
                    .to_owned(),
                tags: strings(s.get("tags")),
            })
            .collect();
        Ok(SearchTagsV2Response {
            scopes,
            metrics: metadata_metrics(&v),
        })
    })
}

fn values_call(r: &SearchTagValuesRequest, version: &str) -> (String, [(&'static str, String); 3]) {
    let path = format!(
        "/api{version}/search/tag/{}/values",
        percent_encoding::utf8_percent_encode(&r.tag_name, percent_encoding::NON_ALPHANUMERIC)
    );
    (
        path,
        [
            ("q", r.query.clone()),
            ("start", param(r.start, "")),
            ("end", param(r.end, "")),
        ],
    )
}

fn tag_values(
    q: StreamingQuerier,
    r: SearchTagValuesRequest,
    meta: tonic::metadata::MetadataMap,
) -> Answer<SearchTagValuesResponse> {
    let http = q.http;
    one(async move {
        let (path, query) = values_call(&r, "");
        let v = ask_json(http, &meta, &path, &query).await?;
        Ok(SearchTagValuesResponse {
            tag_values: strings(v.get("tagValues")),
            metrics: metadata_metrics(&v),
        })
    })
}

fn tag_values_v2(
    q: StreamingQuerier,
    r: SearchTagValuesRequest,
    meta: tonic::metadata::MetadataMap,
) -> Answer<SearchTagValuesV2Response> {
    let http = q.http;
    one(async move {
        let (path, query) = values_call(&r, "/v2");
        let v = ask_json(http, &meta, &path, &query).await?;
        let tag_values = v
            .get("tagValues")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
            .map(|t| TagValue {
                r#type: t
                    .get("type")
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_owned(),
                value: t
                    .get("value")
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_owned(),
            })
            .collect();
        Ok(SearchTagValuesV2Response {
            tag_values,
            metrics: metadata_metrics(&v),
        })
    })
}

fn query_range(
    q: StreamingQuerier,
    r: QueryRangeRequest,
    meta: tonic::metadata::MetadataMap,
) -> Answer<QueryRangeResponse> {
    Box::pin(async move {
        let compiled = sonde_traceql::parse_metrics(&r.query).ok();
        let shardable = compiled.as_ref().is_some_and(|m| m.shardable());
        let empty = compiled.as_ref().and_then(|m| m.empty_interval());
        let blocks = q.block_ranges(&meta);
        let (shards, grid) = shards::range_shards(r.start, r.end, r.step, shardable, &blocks);
        let query = vec![
            ("q", r.query),
            ("step", param(r.step, "ns")),
            ("exemplars", param(r.exemplars, "")),
        ];
        let combiner = shards::RangeCombiner::new(grid, empty, shards.len());
        let jobs = shards::Jobs::new(
            q.http,
            meta,
            "/api/metrics/query_range",
            query,
            shards,
            combiner,
        );
        jobs.run(q.search.diff_every).await
    })
}

fn query_instant(
    q: StreamingQuerier,
    r: QueryInstantRequest,
    meta: tonic::metadata::MetadataMap,
) -> Answer<QueryInstantResponse> {
    let http = q.http;
    one(async move {
        let v = ask_json(
            http,
            &meta,
            "/api/metrics/query",
            &[
                ("q", r.query),
                ("start", param(r.start, "")),
                ("end", param(r.end, "")),
            ],
        )
        .await?;
        let series = v
            .get("series")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
            .map(|s| super::tempopb::InstantSeries {
                labels: s
                    .get("labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default(),
                value: s
                    .get("value")
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(0.0),
            })
            .collect();
        Ok(QueryInstantResponse {
            series,
            metrics: search_metrics(&v),
            status: i32::from(v.get("status").and_then(|s| s.as_str()) == Some("PARTIAL")),
            message: v
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_owned(),
        })
    })
}
