//! A client of Tempo's query API as Grafana uses it: the streaming gRPC service
//! (`tempopb.StreamingQuerier`, generated from tests/proto, independent of the store's own
//! declarations), the HTTP API, and readers of the HTTP API's JSON into the gRPC messages so
//! that both answers compare as messages.
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tonic::{Status, codec::Streaming, transport::Channel};

/// The generated messages and client: `tempopb` and the OTLP attributes it uses.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/tempopb_client.rs"));
}

use pb::{
    opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value::Value},
    tempopb::streaming_querier_client::StreamingQuerierClient,
};

/// The streaming gRPC client.
pub type Grpc = StreamingQuerierClient<Channel>;

/// A streaming gRPC client of the store whose HTTP port is `port` (h2c, the same port).
pub async fn grpc(port: u16) -> Grpc {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a URI")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    StreamingQuerierClient::new(channel)
}

/// Every message of one streamed call, or its status.
pub async fn messages<T>(
    call: impl Future<Output = Result<tonic::Response<Streaming<T>>, Status>>,
) -> Result<Vec<T>, Status> {
    let mut stream = call.await?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        out.push(m);
    }
    Ok(out)
}

/// The one message of a call answered whole (the store answers every call but `Search` so).
pub async fn single<T>(
    call: impl Future<Output = Result<tonic::Response<Streaming<T>>, Status>>,
) -> T {
    let mut all = messages(call).await.expect("the call succeeds");
    assert_eq!(all.len(), 1, "one message");
    all.remove(0)
}

/// An attribute's value, if the list has it.
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// The HTTP API on 127.0.0.1.
pub struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    pub fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    /// `GET path?query`: the status and the body.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> (reqwest::StatusCode, String) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (resp.status(), resp.text().await.expect("a body"))
    }

    /// A 200's JSON body.
    pub async fn json(&self, path: &str, query: &[(&str, String)]) -> Json {
        let (status, body) = self.get(path, query).await;
        assert_eq!(status, 200, "GET {path} {query:?}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Wait (up to 15 s) until a search of `[start, end]` (unix seconds) finds `n` traces,
    /// each with its root span.
    pub async fn until_searchable(&self, start: u64, end: u64, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let query = [
            ("q", "{ }".to_owned()),
            ("start", start.to_string()),
            ("end", end.to_string()),
        ];
        loop {
            let found = self.json("/api/search", &query).await;
            let traces = json::list(found.get("traces"));
            if traces.len() == n
                && traces
                    .iter()
                    .all(|t| !json::text(t, "rootServiceName").starts_with('<'))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not searchable within 15 s: {found}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Tempo's JSON (jsonpb: zero values left out, 64-bit integers as strings) read into the
/// generated messages. A field of the wrong JSON type panics; an absent one is zero.
pub mod json {
    use super::pb::tempopb::{
        Exemplar, InstantSeries, MetadataMetrics, Sample, SearchMetrics, SearchTagValuesResponse,
        SearchTagValuesV2Response, SearchTagsResponse, SearchTagsV2Response, SearchTagsV2Scope,
        ServiceStats, Span, SpanSet, TagValue, TimeSeries, TraceSearchMetadata,
    };
    use super::{AnyValue, Json, KeyValue, Value};

    pub fn list(v: Option<&Json>) -> &[Json] {
        v.and_then(Json::as_array).map_or(&[], Vec::as_slice)
    }

    pub fn text(v: &Json, key: &str) -> String {
        v.get(key).and_then(Json::as_str).unwrap_or("").to_owned()
    }

    /// A number written as a number or as a string (64-bit integers, `"NaN"`).
    pub fn number<T: std::str::FromStr + Default>(v: Option<&Json>) -> T {
        let written = match v {
            None => return T::default(),
            Some(Json::Number(n)) => n.to_string(),
            Some(Json::String(s)) => s.clone(),
            Some(other) => panic!("not a number: {other}"),
        };
        written
            .parse()
            .unwrap_or_else(|_| panic!("not a number of the field's type: {written}"))
    }

    pub fn strings(v: Option<&Json>) -> Vec<String> {
        list(v)
            .iter()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    }

    /// OTLP attributes: `[{"key": k, "value": {"stringValue": v}}, ...]`.
    pub fn key_values(v: Option<&Json>) -> Vec<KeyValue> {
        list(v)
            .iter()
            .map(|kv| {
                let typed = kv.get("value").and_then(Json::as_object);
                let value =
                    typed
                        .and_then(|o| o.iter().next())
                        .map(|(kind, x)| match kind.as_str() {
                            "stringValue" => {
                                Value::StringValue(x.as_str().expect("a string").into())
                            }
                            "intValue" => Value::IntValue(number(Some(x))),
                            "doubleValue" => Value::DoubleValue(number(Some(x))),
                            "boolValue" => Value::BoolValue(x.as_bool().expect("a bool")),
                            other => panic!("an attribute value of kind {other}"),
                        });
                KeyValue {
                    key: text(kv, "key"),
                    value: Some(AnyValue { value }),
                }
            })
            .collect()
    }

    pub fn span_set(v: &Json) -> SpanSet {
        SpanSet {
            spans: list(v.get("spans"))
                .iter()
                .map(|s| Span {
                    span_id: text(s, "spanID"),
                    name: text(s, "name"),
                    start_time_unix_nano: number(s.get("startTimeUnixNano")),
                    duration_nanos: number(s.get("durationNanos")),
                    attributes: key_values(s.get("attributes")),
                })
                .collect(),
            matched: number(v.get("matched")),
            attributes: key_values(v.get("attributes")),
        }
    }

    /// One of `/api/search`'s traces.
    pub fn trace(v: &Json) -> TraceSearchMetadata {
        TraceSearchMetadata {
            trace_id: text(v, "traceID"),
            root_service_name: text(v, "rootServiceName"),
            root_trace_name: text(v, "rootTraceName"),
            start_time_unix_nano: number(v.get("startTimeUnixNano")),
            duration_ms: number(v.get("durationMs")),
            span_set: v.get("spanSet").map(span_set),
            span_sets: list(v.get("spanSets")).iter().map(span_set).collect(),
            service_stats: v
                .get("serviceStats")
                .and_then(Json::as_object)
                .into_iter()
                .flatten()
                .map(|(name, st)| {
                    let stats = ServiceStats {
                        span_count: number(st.get("spanCount")),
                        error_count: number(st.get("errorCount")),
                    };
                    (name.clone(), stats)
                })
                .collect(),
        }
    }

    pub fn search_metrics(v: Option<&Json>) -> Option<SearchMetrics> {
        let m = v?;
        Some(SearchMetrics {
            inspected_traces: number(m.get("inspectedTraces")),
            inspected_bytes: number(m.get("inspectedBytes")),
            total_blocks: number(m.get("totalBlocks")),
            completed_jobs: number(m.get("completedJobs")),
            total_jobs: number(m.get("totalJobs")),
            total_block_bytes: number(m.get("totalBlockBytes")),
            inspected_spans: number(m.get("inspectedSpans")),
            ..Default::default()
        })
    }

    fn metadata_metrics(v: Option<&Json>) -> Option<MetadataMetrics> {
        let m = v?;
        Some(MetadataMetrics {
            inspected_bytes: number(m.get("inspectedBytes")),
            total_jobs: number(m.get("totalJobs")),
            completed_jobs: number(m.get("completedJobs")),
            total_blocks: number(m.get("totalBlocks")),
            total_block_bytes: number(m.get("totalBlockBytes")),
            ..Default::default()
        })
    }

    /// `/api/search/tags`.
    pub fn tags(v: &Json) -> SearchTagsResponse {
        SearchTagsResponse {
            tag_names: strings(v.get("tagNames")),
            metrics: metadata_metrics(v.get("metrics")),
        }
    }

    /// `/api/v2/search/tags`.
    pub fn tags_v2(v: &Json) -> SearchTagsV2Response {
        SearchTagsV2Response {
            scopes: list(v.get("scopes"))
                .iter()
                .map(|s| SearchTagsV2Scope {
                    name: text(s, "name"),
                    tags: strings(s.get("tags")),
                })
                .collect(),
            metrics: metadata_metrics(v.get("metrics")),
        }
    }

    /// `/api/search/tag/<tag>/values`.
    pub fn tag_values(v: &Json) -> SearchTagValuesResponse {
        SearchTagValuesResponse {
            tag_values: strings(v.get("tagValues")),
            metrics: metadata_metrics(v.get("metrics")),
        }
    }

    /// `/api/v2/search/tag/<tag>/values`.
    pub fn tag_values_v2(v: &Json) -> SearchTagValuesV2Response {
        SearchTagValuesV2Response {
            tag_values: list(v.get("tagValues"))
                .iter()
                .map(|t| TagValue {
                    r#type: text(t, "type"),
                    value: text(t, "value"),
                })
                .collect(),
            metrics: metadata_metrics(v.get("metrics")),
        }
    }

    /// One of `/api/metrics/query_range`'s series.
    pub fn series(v: &Json) -> TimeSeries {
        TimeSeries {
            labels: key_values(v.get("labels")),
            samples: list(v.get("samples"))
                .iter()
                .map(|x| Sample {
                    timestamp_ms: number(x.get("timestampMs")),
                    value: number(x.get("value")),
                })
                .collect(),
            exemplars: list(v.get("exemplars"))
                .iter()
                .map(|x| Exemplar {
                    labels: key_values(x.get("labels")),
                    value: number(x.get("value")),
                    timestamp_ms: number(x.get("timestampMs")),
                })
                .collect(),
        }
    }

    /// One of `/api/metrics/query`'s series.
    pub fn instant_series(v: &Json) -> InstantSeries {
        InstantSeries {
            labels: key_values(v.get("labels")),
            value: number(v.get("value")),
        }
    }

    /// A metrics answer's `status` (`PartialStatus`) and `message`.
    pub fn partial(v: &Json) -> (i32, String) {
        let status = match v.get("status").and_then(Json::as_str) {
            None | Some("COMPLETE") => 0,
            Some("PARTIAL") => 1,
            Some(other) => panic!("status {other}"),
        };
        (status, text(v, "message"))
    }
}
