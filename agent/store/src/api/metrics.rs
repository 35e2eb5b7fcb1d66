//! `/api/metrics/query_range` and `/api/metrics/query` (instant): TraceQL metrics checked as
//! Tempo's query-frontend checks them (same order, same 400 texts), run within the store's
//! query limits, answered in Tempo's JSON (or protobuf, for a range query that asks for it).
#![expect(
    clippy::result_large_err,
    reason = "handlers return the finished axum Response as their error"
)]
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde_json::{Map, Value, json};
use sonde_config::duration::format_go_duration;
use sonde_traceql::metrics::{
    self as tm, LabelValue, MetricsError, MetricsRequest, MetricsResult, parse_metrics,
};

use super::{ApiState, Params, json_response, limits, metrics_params, tempopb, tenants, text};
use crate::{
    Store,
    metrics::Metrics,
    query::{metrics::MetricsOutcome, scan::ScanStats},
};

/// Most intervals in a range (Tempo's `max_intervals`).
pub const MAX_INTERVALS: u64 = 10_000;
/// Longest range (Tempo's `metrics.max_duration`).
pub const MAX_DURATION_NS: u64 = 24 * 3600 * 1_000_000_000;
/// Most exemplars (Tempo's `max_exemplars`), also the default.
pub const MAX_EXEMPLARS: u32 = 100;
/// Most series unless the memory cap allows fewer.
pub const MAX_SERIES: usize = 10_000;

fn bad(msg: impl std::fmt::Display) -> Response {
    text(StatusCode::BAD_REQUEST, msg)
}

/// Checks a request in Tempo's order and builds what to run.
fn prepare(
    store: &Store,
    p: &[(String, String)],
    instant: bool,
) -> Result<(tm::MetricsQuery, MetricsRequest), String> {
    let now = store.now_ns();
    let mp = metrics_params::parse(p, now, !instant)?;
    let step = mp.step_ns.unwrap_or(mp.end_ns.saturating_sub(mp.start_ns));
    if instant && mp.end_ns <= mp.start_ns {
        // Tempo checks the range of an instant query before it reads the query.
        return Err("end must be greater than start".into());
    }
    if !instant {
        if mp.start_ns > mp.end_ns {
            return Err("end must be greater than start".into());
        }
        if step == 0 || (mp.end_ns - mp.start_ns) / step > MAX_INTERVALS {
            return Err(format!(
                "step of {} is too small, minimum step for given range is {}",
                format_go_duration(step as i64),
                format_go_duration(((mp.end_ns - mp.start_ns) / MAX_INTERVALS) as i64)
            ));
        }
    }
    let query = parse_metrics(&mp.query).map_err(|e| match e {
        MetricsError::Parse(e) => e.to_string(),
        MetricsError::Invalid(m) => m,
    })?;
    let exemplars = if instant {
        0
    } else {
        match query.exemplars_hint() {
            Some(n) => n,
            None if mp.exemplars == 0 => MAX_EXEMPLARS,
            None => mp.exemplars,
        }
        .min(MAX_EXEMPLARS)
    };
    let mut req = MetricsRequest {
        start_ns: mp.start_ns,
        end_ns: mp.end_ns,
        step_ns: step,
        instant,
        exemplars,
        max_series: MAX_SERIES,
    };
    tm::align(&mut req);
    let cutoff = store.config().search.query_end_cutoff;
    if !cutoff.is_zero() {
        let latest = now.saturating_sub(u64::try_from(cutoff.as_nanos()).unwrap_or(u64::MAX));
        if req.end_ns > latest {
            req.end_ns = latest;
            tm::align_end_down(&mut req);
        }
    }
    if req.end_ns <= req.start_ns {
        return Err("end must be greater than start".into());
    }
    if mp.end_ns.saturating_sub(mp.start_ns) > MAX_DURATION_NS {
        return Err(format!(
            "metrics query time range exceeds the maximum allowed duration of {}",
            format_go_duration(MAX_DURATION_NS as i64)
        ));
    }
    // The memory cap of a query bounds how many series each of its partials may hold.
    let by_memory = store.config().search.max_result_bytes
        / query.series_bytes(&req).max(1)
        / crate::query::metrics::partials_held();
    let asked = if mp.max_series == 0 {
        MAX_SERIES
    } else {
        mp.max_series as usize
    };
    req.max_series = asked.min(MAX_SERIES).min(by_memory).max(1);
    Ok((query, req))
}

async fn run(s: ApiState, h: HeaderMap, p: Vec<(String, String)>, instant: bool) -> Response {
    let tenants = match tenants(&s.store, &h) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (query, req) = match prepare(&s.store, &p, instant) {
        Ok(x) => x,
        Err(m) => return bad(m),
    };
    s.store
        .metrics()
        .queries
        .get_or_create(&Metrics::labels(&[("op", "metrics")]))
        .inc();
    let res = limits::within_limits(&s.store, move |st, budget| {
        st.metrics_within(&tenants, &query, &req, budget)
            .map_err(|e| limits::stopped(st, &e))
    })
    .await;
    let out = match res {
        Ok(out) => out,
        Err(r) => return r,
    };
    if instant {
        json_response(&instant_json(&out))
    } else if super::wants_protobuf(&h) {
        super::proto_response(prost::Message::encode_to_vec(&range_proto(&out)))
    } else {
        json_response(&range_json(&out))
    }
}

pub async fn query_range(
    State(s): State<ApiState>,
    h: HeaderMap,
    axum::extract::Query(p): Params,
) -> Response {
    run(s, h, p, false).await
}

pub async fn query_instant(
    State(s): State<ApiState>,
    h: HeaderMap,
    axum::extract::Query(p): Params,
) -> Response {
    run(s, h, p, true).await
}

/// Tempo's text for an answer cut at the series limit.
pub(super) fn partial_message(limit: usize) -> String {
    format!(
        "Response exceeds maximum series limit of {limit}, a partial response is returned. Warning: the accuracy of each individual value is not guaranteed."
    )
}

/// A double as jsonpb writes it: non-finite values are strings.
fn num(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(v)
    }
}

fn label_json(v: &LabelValue) -> Value {
    match v {
        LabelValue::Str(s) => json!({ "stringValue": s }),
        LabelValue::Int(n) => json!({ "intValue": n.to_string() }),
        LabelValue::Float(f) => json!({ "doubleValue": num(*f) }),
        LabelValue::Bool(b) => json!({ "boolValue": b }),
    }
}

fn labels_json(labels: &[(String, LabelValue)]) -> Value {
    Value::Array(
        labels
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": label_json(v) }))
            .collect(),
    )
}

/// `SearchMetrics` as jsonpb writes it: zeros left out, 64-bit numbers as strings.
fn stats_json(stats: &ScanStats, spans: u64) -> Value {
    let mut m = Map::new();
    let small = |n: u64| json!(n.min(u64::from(u32::MAX)));
    if stats.traces != 0 {
        m.insert("inspectedTraces".into(), small(stats.traces));
    }
    if stats.bytes != 0 {
        m.insert("inspectedBytes".into(), json!(stats.bytes.to_string()));
    }
    if stats.blocks != 0 {
        m.insert("totalBlocks".into(), small(stats.blocks));
    }
    m.insert("completedJobs".into(), json!(1));
    m.insert("totalJobs".into(), json!(1));
    if stats.block_bytes != 0 {
        m.insert(
            "totalBlockBytes".into(),
            json!(stats.block_bytes.to_string()),
        );
    }
    if spans != 0 {
        m.insert("inspectedSpans".into(), json!(spans.to_string()));
    }
    Value::Object(m)
}

fn status_json(m: &mut Map<String, Value>, r: &MetricsResult) {
    if let Some(limit) = r.truncated {
        m.insert("status".into(), json!("PARTIAL"));
        m.insert("message".into(), json!(partial_message(limit)));
    }
}

/// `tempopb.QueryRangeResponse` as JSON: every interval has a sample, a zero value is left out.
pub fn range_json(out: &MetricsOutcome) -> Value {
    let series: Vec<Value> = out
        .result
        .series
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("labels".into(), labels_json(&s.labels));
            let samples = s
                .samples
                .iter()
                .map(|(t, v)| {
                    let mut o = Map::new();
                    o.insert("timestampMs".into(), json!(t.to_string()));
                    if *v != 0.0 {
                        o.insert("value".into(), num(*v));
                    }
                    Value::Object(o)
                })
                .collect();
            m.insert("samples".into(), Value::Array(samples));
            if !s.exemplars.is_empty() {
                let ex = s
                    .exemplars
                    .iter()
                    .map(|e| {
                        let mut o = Map::new();
                        o.insert("labels".into(), labels_json(&e.labels));
                        if e.value != 0.0 {
                            o.insert("value".into(), num(e.value));
                        }
                        if e.timestamp_ms != 0 {
                            o.insert("timestampMs".into(), json!(e.timestamp_ms.to_string()));
                        }
                        Value::Object(o)
                    })
                    .collect();
                m.insert("exemplars".into(), Value::Array(ex));
            }
            Value::Object(m)
        })
        .collect();
    let mut m = Map::new();
    m.insert("series".into(), Value::Array(series));
    m.insert("metrics".into(), stats_json(&out.stats, out.spans));
    status_json(&mut m, &out.result);
    Value::Object(m)
}

/// `tempopb.QueryInstantResponse` as JSON: each series' one value.
pub fn instant_json(out: &MetricsOutcome) -> Value {
    let series: Vec<Value> = out
        .result
        .series
        .iter()
        .filter_map(|s| {
            let (_, v) = s.samples.first()?;
            let mut o = Map::new();
            o.insert("labels".into(), labels_json(&s.labels));
            if *v != 0.0 {
                o.insert("value".into(), num(*v));
            }
            Some(Value::Object(o))
        })
        .collect();
    let mut m = Map::new();
    if !series.is_empty() {
        m.insert("series".into(), Value::Array(series));
    }
    m.insert("metrics".into(), stats_json(&out.stats, out.spans));
    status_json(&mut m, &out.result);
    Value::Object(m)
}

fn label_kv(k: &str, v: &LabelValue) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as V};
    let value = match v {
        LabelValue::Str(s) => V::StringValue(s.clone()),
        LabelValue::Int(n) => V::IntValue(*n),
        LabelValue::Float(f) => V::DoubleValue(*f),
        LabelValue::Bool(b) => V::BoolValue(*b),
    };
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The range answer as `tempopb.QueryRangeResponse`.
pub fn range_proto(out: &MetricsOutcome) -> tempopb::QueryRangeResponse {
    let kvs = |l: &[(String, LabelValue)]| l.iter().map(|(k, v)| label_kv(k, v)).collect();
    tempopb::QueryRangeResponse {
        series: out
            .result
            .series
            .iter()
            .map(|s| tempopb::TimeSeries {
                labels: kvs(&s.labels),
                samples: s
                    .samples
                    .iter()
                    .map(|&(timestamp_ms, value)| tempopb::Sample {
                        timestamp_ms,
                        value,
                    })
                    .collect(),
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|e| tempopb::Exemplar {
                        labels: kvs(&e.labels),
                        value: e.value,
                        timestamp_ms: e.timestamp_ms,
                    })
                    .collect(),
            })
            .collect(),
        metrics: Some(tempopb::SearchMetrics {
            inspected_traces: out.stats.traces.min(u64::from(u32::MAX)) as u32,
            inspected_bytes: out.stats.bytes,
            total_blocks: out.stats.blocks.min(u64::from(u32::MAX)) as u32,
            completed_jobs: 1,
            total_jobs: 1,
            total_block_bytes: out.stats.block_bytes,
            inspected_spans: out.spans,
        }),
        status: i32::from(out.result.truncated.is_some()),
        message: out
            .result
            .truncated
            .map(partial_message)
            .unwrap_or_default(),
    }
}
