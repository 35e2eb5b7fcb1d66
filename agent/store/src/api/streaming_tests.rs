//! Tempo's streaming gRPC API over h2c on a real listener, called with a tonic client: every
//! call answers what the HTTP API answers for the same query, bad queries are
//! `InvalidArgument` with the HTTP message, and the tenant comes from the call's metadata.
use axum::http::uri::PathAndQuery;
use prost::Message;
use tonic::{Code, client::Grpc, transport::Channel};
use tonic_prost::ProstCodec;

use super::{router, router_with, streaming::SearchStreaming, tempopb::*, tests::call};
use crate::{ManualClock, Store, testutil::*};

const S: u64 = 1_000_000_000;

fn store(dir: &std::path::Path, multitenant: bool) -> Store {
    let mut c = cfg(dir);
    c.multitenancy_enabled = multitenant;
    let s = Store::open(&c, ManualClock::new(T0 + 120 * S)).unwrap();
    for (tenant, service, trace, error) in [("a", "front", 1, false), ("a", "back", 2, true)] {
        let sp = span(trace, 1, 0, "GET /", 10_000, 250);
        let sp = if error { with_error(sp) } else { sp };
        let sp = with_attrs(sp, vec![kv_s("http.route", "/checkout")]);
        let tenant = if multitenant {
            tenant
        } else {
            crate::ids::SINGLE_TENANT
        };
        s.ingest(tenant, req(service, vec![sp])).unwrap();
    }
    s
}

/// Serves the store's router (HTTP and gRPC on one port) and connects a gRPC client.
async fn serve(s: &Store) -> Grpc<Channel> {
    serve_app(router(s.clone())).await
}

async fn serve_app(app: axum::Router) -> Grpc<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Grpc::new(channel)
}

/// One streaming call: every message it sent, or its status.
async fn stream<Req, Resp>(
    grpc: &mut Grpc<Channel>,
    method: &'static str,
    req: Req,
    tenant: Option<&str>,
) -> Result<Vec<Resp>, tonic::Status>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(req);
    if let Some(t) = tenant {
        request
            .metadata_mut()
            .insert("x-scope-orgid", t.parse().unwrap());
    }
    let path = PathAndQuery::from_static(method);
    let mut s = grpc
        .server_streaming(request, path, ProstCodec::<Req, Resp>::default())
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        out.push(m);
    }
    Ok(out)
}

fn window() -> (u32, u32) {
    ((T0 / S) as u32, (T0 / S + 120) as u32)
}

#[tokio::test]
async fn every_call_answers_what_the_http_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let mut grpc = serve(&s).await;
    let (start, end) = window();

    let got: Vec<SearchResponse> = stream(
        &mut grpc,
        "/tempopb.StreamingQuerier/Search",
        SearchRequest {
            query: "{ status = error }".into(),
            start,
            end,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let (_, _, body) = call(
        &s,
        &format!("/api/search?q=%7B%20status%20%3D%20error%20%7D&start={start}&end={end}"),
        &[("Accept", "application/protobuf")],
    )
    .await;
    let http = SearchResponse::decode(body.as_slice()).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].traces.len(), 1);
    assert_eq!(got[0].traces, http.traces);
    assert_eq!(got[0].traces[0].root_service_name, "back");

    let tags: Vec<SearchTagsV2Response> = stream(
        &mut grpc,
        "/tempopb.StreamingQuerier/SearchTagsV2",
        SearchTagsRequest {
            scope: "span".into(),
            start,
            end,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let span_tags = &tags[0].scopes[0];
    assert_eq!(span_tags.name, "span");
    assert!(
        span_tags.tags.contains(&"http.route".to_owned()),
        "{span_tags:?}"
    );

    let v1: Vec<SearchTagsResponse> = stream(
        &mut grpc,
        "/tempopb.StreamingQuerier/SearchTags",
        SearchTagsRequest {
            start,
            end,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let (_, _, body) = call(
        &s,
        &format!("/api/search/tags?start={start}&end={end}"),
        &[],
    )
    .await;
    let http: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let http_names: Vec<String> = serde_json::from_value(http["tagNames"].clone()).unwrap();
    assert_eq!(v1[0].tag_names, http_names);

    let values: Vec<SearchTagValuesV2Response> = stream(
        &mut grpc,
        "/tempopb.StreamingQuerier/SearchTagValuesV2",
        SearchTagValuesRequest {
            tag_name: "resource.service.name".into(),
            start,
            end,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let mut names: Vec<&str> = values[0]
        .tag_values
        .iter()
        .map(|v| v.value.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["back", "front"]);
    assert!(values[0].tag_values.iter().all(|v| v.r#type == "string"));

    let v1_values: Vec<SearchTagValuesResponse> = stream(
        &mut grpc,
        "/tempopb.StreamingQuerier/SearchTagValues",
        SearchTagValuesRequest {
            tag_name: "http.route".into(),
            start,
            end,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(v1_values[0].tag_values, ["/checkout"]);

    let range: Vec<QueryRangeResponse> = stream(
        &mut grpc,
        "/tempopb.StreamingQuerier/MetricsQueryRange",
        QueryRangeRequest {
            query: "{ } | count_over_time() by (resource.service.name)".into(),
            start: T0,
            end: T0 + 60 * S,
            step: 20 * S,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let (_, _, body) = call(
        &s,
        &format!(
            "/api/metrics/query_range?q=%7B%20%7D%20%7C%20count_over_time%28%29%20by%20%28resource.service.name%29&start={T0}&end={}&step=20s",
            T0 + 60 * S
        ),
        &[("Accept", "application/protobuf")],
    )
    .await;
    let http = QueryRangeResponse::decode(body.as_slice()).unwrap();
    assert_eq!(range[0].series.len(), 2);
    assert_eq!(range[0].series, http.series);

    let instant: Vec<QueryInstantResponse> = stream(
        &mut grpc,
        "/tempopb.StreamingQuerier/MetricsQueryInstant",
        QueryInstantRequest {
            query: "{ status = error } | count_over_time()".into(),
            start: T0,
            end: T0 + 60 * S,
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(instant[0].series.len(), 1);
    assert_eq!(instant[0].series[0].value, 1.0);
    let m = instant[0].metrics.clone().unwrap_or_default();
    assert_eq!(
        (m.inspected_traces, m.completed_jobs, m.total_jobs),
        (2, 1, 1),
        "the HTTP answer's metrics"
    );
}

#[tokio::test]
async fn a_bad_query_is_invalid_argument_with_the_http_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), false);
    let mut grpc = serve(&s).await;
    let err = stream::<_, SearchResponse>(
        &mut grpc,
        "/tempopb.StreamingQuerier/Search",
        SearchRequest {
            query: "{ .a = }".into(),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let (status, _, body) = call(&s, "/api/search?q=%7B%20.a%20%3D%20%7D", &[]).await;
    assert_eq!(status, 400);
    assert_eq!(err.message(), String::from_utf8_lossy(&body).trim());
    let err = stream::<_, SearchResponse>(
        &mut grpc,
        "/tempopb.StreamingQuerier/NoSuchCall",
        SearchRequest::default(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

#[tokio::test]
async fn the_tenant_comes_from_the_call_s_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), true);
    let grpc = serve(&s).await;
    let (start, end) = window();
    let ask = |tenant| {
        let mut g = grpc.clone();
        async move {
            stream::<_, SearchResponse>(
                &mut g,
                "/tempopb.StreamingQuerier/Search",
                SearchRequest {
                    query: "{ }".into(),
                    start,
                    end,
                    ..Default::default()
                },
                tenant,
            )
            .await
        }
    };
    assert_eq!(ask(Some("a")).await.unwrap()[0].traces.len(), 2);
    assert_eq!(ask(Some("b")).await.unwrap()[0].traces.len(), 0);
    assert_eq!(ask(None).await.unwrap_err().code(), Code::Unauthenticated);
}

/// Thirty traces 100 s apart over the last hour (the newest 50 s before its end), the oldest
/// half in blocks of three, as they would be cut when spans arrive in time, and the rest live;
/// the oldest five from another service.
fn hour_of_traces(dir: &std::path::Path) -> Store {
    traces_cut_every(dir, 3)
}

/// [`hour_of_traces`] with a block cut after every `block` of the oldest fifteen.
fn traces_cut_every(dir: &std::path::Path, block: u64) -> Store {
    let mut c = cfg(dir);
    // Blocks stay as cut (compaction would merge them into one over the whole window).
    c.compaction_min_blocks = 64;
    c.compaction_max_blocks = 64;
    let s = Store::open(&c, ManualClock::new(T0 + 3_600 * S)).unwrap();
    for i in 0..30u64 {
        let sp = span(i + 1, 1, 0, "GET /", (650 + i * 100) * 1_000, 50);
        // A service seen only in the oldest shards: its series starts late in the stream.
        let service = if i < 5 { "old-svc" } else { "svc" };
        s.ingest(crate::ids::SINGLE_TENANT, req(service, vec![sp]))
            .unwrap();
        if i < 15 && (i + 1) % block == 0 {
            s.maintain(true);
        }
    }
    s
}

/// Search over the hour: every message the stream sent, and the HTTP API's answer.
async fn search_both_ways(s: &Store, q: &str, limit: u32) -> (Vec<SearchResponse>, SearchResponse) {
    // A message after every shard, so that each partial answer can be checked.
    let how = SearchStreaming {
        default_limit: 20,
        diff_every: std::time::Duration::ZERO,
    };
    let mut grpc = serve_app(router_with(s.clone(), how)).await;
    let (start, end) = ((T0 / S) as u32, (T0 / S) as u32 + 3_600);
    let streamed = stream(
        &mut grpc,
        "/tempopb.StreamingQuerier/Search",
        SearchRequest {
            query: q.into(),
            start,
            end,
            limit,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let path = format!(
        "/api/search?q={}&start={start}&end={end}&limit={limit}",
        percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC)
    );
    let (status, _, body) = call(s, &path, &[("Accept", "application/protobuf")]).await;
    assert_eq!(status, 200);
    (streamed, SearchResponse::decode(body.as_slice()).unwrap())
}

fn ids(traces: &[TraceSearchMetadata]) -> Vec<String> {
    let mut v: Vec<String> = traces.iter().map(|t| t.trace_id.clone()).collect();
    v.sort();
    v
}

/// Tempo's diff semantics: each message holds only traces not sent before, with the metrics
/// so far; together they are the HTTP API's answer.
#[tokio::test]
async fn a_search_streams_partial_results_shard_by_shard_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = hour_of_traces(dir.path());
    let (msgs, http) = search_both_ways(&s, "{ }", 100).await;
    assert_eq!(
        msgs.len(),
        8,
        "one message per shard of 450 s, the last one when done"
    );
    let all: Vec<TraceSearchMetadata> = msgs.iter().flat_map(|m| m.traces.clone()).collect();
    assert_eq!(all.len(), 30, "no trace sent twice");
    assert_eq!(ids(&all), ids(&http.traces));
    let first = &msgs[0].traces;
    assert!(
        !first.is_empty()
            && first
                .iter()
                .all(|t| t.start_time_unix_nano >= T0 + 3_150 * S)
    );
    let jobs: Vec<(u32, u32)> = msgs
        .iter()
        .map(|m| {
            m.metrics
                .as_ref()
                .map_or((0, 0), |m| (m.completed_jobs, m.total_jobs))
        })
        .collect();
    assert_eq!(jobs[0], (1, 8));
    assert_eq!(jobs[7], (8, 8));
    let inspected = msgs[7].metrics.as_ref().unwrap().inspected_traces;
    assert!(inspected >= 30, "summed over the shards: {inspected}");
}

#[tokio::test]
async fn a_streamed_search_stops_once_the_limit_is_met() {
    let dir = tempfile::tempdir().unwrap();
    let s = hour_of_traces(dir.path());
    let (msgs, _) = search_both_ways(&s, "{ }", 3).await;
    let all: Vec<TraceSearchMetadata> = msgs.iter().flat_map(|m| m.traces.clone()).collect();
    assert_eq!(all.len(), 3);
    let last = msgs.last().unwrap().metrics.clone().unwrap();
    assert_eq!((last.completed_jobs, last.total_jobs), (1, 8));
}

/// `with (most_recent = true)`: the newest traces, the same as the HTTP API's, and no
/// partial message holds a trace that an older shard could still push out.
#[tokio::test]
async fn most_recent_streams_the_newest_traces_only_once_they_are_settled() {
    let dir = tempfile::tempdir().unwrap();
    let s = hour_of_traces(dir.path());
    let (msgs, http) = search_both_ways(&s, "{ } with (most_recent = true)", 7).await;
    let all: Vec<TraceSearchMetadata> = msgs.iter().flat_map(|m| m.traces.clone()).collect();
    assert_eq!(ids(&all), ids(&http.traces));
    let newest: Vec<u64> = (23..30).map(|i| T0 + (650 + i * 100) * S).collect();
    let mut starts: Vec<u64> = all.iter().map(|t| t.start_time_unix_nano).collect();
    starts.sort_unstable();
    assert_eq!(starts, newest);
    let last = msgs.last().unwrap().metrics.clone().unwrap();
    assert_eq!(
        (last.completed_jobs, last.total_jobs),
        (2, 8),
        "the newest seven span two shards; older ones cannot change them"
    );
    // The first shard (the last 450 s) holds five: they are sent at once; the other two only
    // when the second shard is done.
    let first: Vec<u64> = msgs[0]
        .traces
        .iter()
        .map(|t| t.start_time_unix_nano)
        .collect();
    assert_eq!(first.len(), 5, "{first:?}");
    assert!(first.iter().all(|&t| t >= T0 + 3_150 * S));
}

/// Query range over the hour: the messages' series merged by labels, the HTTP API's series,
/// and the last message's (completed, total) jobs.
async fn range_both_ways(
    s: &Store,
    q: &str,
) -> (usize, Vec<TimeSeries>, Vec<TimeSeries>, (u32, u32)) {
    let how = SearchStreaming {
        default_limit: 20,
        diff_every: std::time::Duration::ZERO,
    };
    let mut grpc = serve_app(router_with(s.clone(), how)).await;
    let (start, end, step) = (T0, T0 + 3_600 * S, 15 * S);
    let msgs: Vec<QueryRangeResponse> = stream(
        &mut grpc,
        "/tempopb.StreamingQuerier/MetricsQueryRange",
        QueryRangeRequest {
            query: q.into(),
            start,
            end,
            step,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let mut merged: Vec<TimeSeries> = Vec::new();
    for m in &msgs {
        assert_eq!(m.status, 0, "{}", m.message);
        for series in &m.series {
            match merged.iter_mut().find(|x| x.labels == series.labels) {
                Some(x) => x.samples.extend(series.samples.clone()),
                None => merged.push(series.clone()),
            }
        }
    }
    let path = format!(
        "/api/metrics/query_range?q={}&start={start}&end={end}&step=15s",
        percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC)
    );
    let (status, _, body) = call(s, &path, &[("Accept", "application/protobuf")]).await;
    assert_eq!(status, 200);
    let mut http = QueryRangeResponse::decode(body.as_slice()).unwrap().series;
    for list in [&mut merged, &mut http] {
        for x in list.iter_mut() {
            x.samples.sort_by_key(|x| x.timestamp_ms);
            x.exemplars.clear();
        }
        list.sort_by_key(|x| format!("{:?}", x.labels));
    }
    let jobs = msgs
        .last()
        .and_then(|m| m.metrics.as_ref())
        .map_or((0, 0), |m| (m.completed_jobs, m.total_jobs));
    (msgs.len(), merged, http, jobs)
}

/// A range streams shard by shard (whole step intervals), and the samples of all messages
/// are exactly the HTTP API's.
#[rstest::rstest]
#[case::count("{ } | count_over_time() by (resource.service.name)")]
#[case::rate("{ } | rate()")]
#[case::quantile("{ } | quantile_over_time(duration, .5, .9)")]
#[case::histogram("{ } | histogram_over_time(duration)")]
#[case::max("{ } | max_over_time(duration) by (resource.service.name)")]
#[tokio::test]
async fn a_range_streams_interval_shards_that_add_up_to_the_http_answer(#[case] q: &str) {
    let dir = tempfile::tempdir().unwrap();
    let s = hour_of_traces(dir.path());
    let (messages, merged, http, jobs) = range_both_ways(&s, q).await;
    assert_eq!(messages, 8, "eight shards of 30 or 31 intervals");
    assert_eq!(jobs, (8, 8));
    assert!(!http.is_empty());
    assert_eq!(merged, http);
}

/// `compare()` picks its values over the whole range, `topk` and `> N` across series: one
/// shard, one message.
#[rstest::rstest]
#[case::compare("{ } | compare({ span:name = \"GET /\" })")]
#[case::topk("{ } | count_over_time() by (span:name) | topk(1)")]
#[case::filter("{ } | count_over_time() > 0")]
#[tokio::test]
async fn whole_range_queries_are_not_cut_into_shards(#[case] q: &str) {
    let dir = tempfile::tempdir().unwrap();
    let s = hour_of_traces(dir.path());
    let (messages, merged, http, jobs) = range_both_ways(&s, q).await;
    assert_eq!((messages, jobs), (1, (1, 1)));
    assert_eq!(merged, http);
}

/// When one block covers most of the window (spans that came late, all in one cut), each
/// shard would read it again: the call is one shard, one message.
#[tokio::test]
async fn one_block_over_the_whole_window_is_not_read_once_per_shard() {
    let dir = tempfile::tempdir().unwrap();
    let s = traces_cut_every(dir.path(), 15);
    let (msgs, http) = search_both_ways(&s, "{ }", 100).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(ids(&msgs[0].traces), ids(&http.traces));
    let (messages, merged, http, jobs) =
        range_both_ways(&s, "{ } | count_over_time() by (resource.service.name)").await;
    assert_eq!((messages, jobs), (1, (1, 1)));
    assert_eq!(merged, http);
}
