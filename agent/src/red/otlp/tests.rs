use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    common::v1::any_value::Value,
    metrics::v1::{HistogramDataPoint, metric::Data, number_data_point},
};
use prost::Message as _;

use super::*;
use crate::{
    export::{
        ExportConfig,
        client::transport_for_signal,
        config::{Protocol, Signal},
        testutil::{resource, server_span},
    },
    red::{series::Observation, state::Limits},
};

fn state_with(n: usize, route: &str) -> State {
    let mut st = State::new(Limits::default());
    record(&mut st, n, route);
    st
}

fn record(st: &mut State, n: usize, route: &str) {
    let r = resource(1, "shop");
    let mut s = server_span();
    s.route = Some(route.into());
    st.record((0..n).map(|_| Observation::of(&r, &s)).collect());
}

/// Every histogram point of metric `name`, with its attributes as strings.
fn hist_points(
    reqs: &[ExportMetricsServiceRequest],
    name: &str,
) -> Vec<(HashMap<String, String>, HistogramDataPoint)> {
    let mut out = Vec::new();
    for req in reqs {
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in sm.metrics.iter().filter(|m| m.name == name) {
                    if let Some(Data::Histogram(h)) = &m.data {
                        for p in &h.data_points {
                            let attrs = p
                                .attributes
                                .iter()
                                .map(|kv| {
                                    let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                        Some(Value::StringValue(s)) => s.clone(),
                                        Some(Value::IntValue(i)) => i.to_string(),
                                        _ => String::new(),
                                    };
                                    (kv.key.clone(), v)
                                })
                                .collect();
                            out.push((attrs, p.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn cumulative_points_carry_counts_attributes_exemplars_and_resource() {
    let st = state_with(3, "/items/{id}");
    let mut snap = Snapshotter::new(Temporality::Cumulative, 1_000);
    let reqs = snap.requests(&st, 2_000);
    let points = hist_points(&reqs, "http.server.request.duration");
    assert_eq!(points.len(), 1);
    let (attrs, p) = &points[0];
    assert_eq!(attrs["http.route"], "/items/{id}");
    assert_eq!(attrs["http.request.method"], "GET");
    assert_eq!(attrs["http.response.status_code"], "200");
    assert_eq!(p.count, 3);
    assert_eq!(p.bucket_counts.len(), DURATION_BOUNDS.len() + 1);
    assert_eq!(p.explicit_bounds, DURATION_BOUNDS.to_vec());
    assert_eq!(p.start_time_unix_nano, 1_000);
    assert_eq!(p.exemplars.len(), 1);
    assert_eq!(p.exemplars[0].trace_id, vec![0x11; 16]);
    let rm = &reqs[0].resource_metrics[0];
    let name = rm
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|a| a.key == "service.name");
    assert_eq!(
        name.and_then(|a| a.value.as_ref()?.value.clone()),
        Some(Value::StringValue("shop".into()))
    );
    assert_eq!(
        hist_points(&reqs, "http.server.response.body.size")[0]
            .1
            .count,
        3
    );
    // Cumulative: the next export repeats the totals.
    let again = snap.requests(&st, 3_000);
    assert_eq!(
        hist_points(&again, "http.server.request.duration")[0]
            .1
            .count,
        3
    );
}

#[test]
fn delta_sends_only_what_is_new() {
    let mut st = state_with(2, "/a");
    let mut snap = Snapshotter::new(Temporality::Delta, 1_000);
    let first = snap.requests(&st, 2_000);
    assert_eq!(
        hist_points(&first, "http.server.request.duration")[0]
            .1
            .count,
        2
    );
    record(&mut st, 1, "/a");
    let second = snap.requests(&st, 3_000);
    let p = &hist_points(&second, "http.server.request.duration")[0].1;
    assert_eq!((p.count, p.start_time_unix_nano), (1, 2_000));
    let third = snap.requests(&st, 4_000);
    assert!(hist_points(&third, "http.server.request.duration").is_empty());
}

#[test]
fn requests_are_cut_at_the_point_limit() {
    let mut st = State::new(Limits {
        series_per_service: 100_000,
        series_total: 100_000,
        ..Limits::default()
    });
    let r = resource(1, "shop");
    let batch = (0..3000)
        .map(|i| {
            let mut s = server_span();
            s.status_code = Some(200 + u16::try_from(i % 300).unwrap());
            s.route = Some(format!("/r{}", i / 300));
            Observation::of(&r, &s)
        })
        .collect();
    st.record(batch);
    let reqs = Snapshotter::new(Temporality::Cumulative, 0).requests(&st, 1);
    assert!(reqs.len() > 1, "{} requests", reqs.len());
    let mut total = 0;
    for req in &reqs {
        let n: usize = req
            .resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(points)
            .sum();
        assert!(n <= MAX_POINTS, "{n}");
        total += n;
    }
    // 3000 series × (duration + two sizes) + two loss counters.
    assert_eq!(total, 3000 * 3 + 2);
}

#[rstest::rstest]
#[case::cumulative("cumulative", Some(Temporality::Cumulative))]
#[case::delta("Delta", Some(Temporality::Delta))]
#[case::lowmemory("lowmemory", Some(Temporality::Delta))]
#[case::garbage("weekly", None)]
fn temporality_preference(#[case] v: &str, #[case] want: Option<Temporality>) {
    assert_eq!(Temporality::from_preference(v), want);
}

#[test]
fn metrics_variables_win_over_generic_ones_and_the_file() {
    let file = ExportConfig {
        endpoint: Some("http://file:4317".into()),
        ..ExportConfig::default()
    };
    let env: HashMap<&str, &str> = [
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "b=3"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces-only:1/v1/traces",
        ),
    ]
    .into_iter()
    .collect();
    let mut red = crate::red::RedSection::default();
    red.apply_env(&file, &|k| env.get(k).map(|v| (*v).to_owned()))
        .unwrap();
    assert!(red.otlp_export);
    assert_eq!(red.export_interval, Duration::from_millis(1500));
    assert_eq!(red.temporality, Temporality::Delta);
    assert_eq!(red.otlp.protocol, Protocol::HttpProtobuf);
    assert_eq!(
        red.otlp.url_for(Signal::Metrics),
        "http://generic:4318/v1/metrics"
    );
    assert_eq!(red.otlp.headers["a"], "1");
    assert_eq!(red.otlp.headers["b"], "3");
    red.validate().unwrap();

    let only_metrics: HashMap<&str, &str> = [(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "http://metrics:9/custom",
    )]
    .into_iter()
    .collect();
    red.apply_env(&file, &|k| only_metrics.get(k).map(|v| (*v).to_owned()))
        .unwrap();
    assert_eq!(red.otlp.url_for(Signal::Metrics), "http://metrics:9/custom");
    assert_eq!(red.otlp.url_for(Signal::Traces), "http://file:4317");
}

/// A gRPC metrics receiver keeping every request.
#[derive(Clone, Default)]
struct Got(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

#[tonic::async_trait]
impl MetricsService for Got {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

async fn grpc_receiver() -> (SocketAddr, Got) {
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let got = Got::default();
    let svc = MetricsServiceServer::new(got.clone());
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, got)
}

async fn http_receiver() -> (SocketAddr, Got) {
    let got = Got::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/v1/metrics",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                keep.0
                    .lock()
                    .unwrap()
                    .push(ExportMetricsServiceRequest::decode(body).unwrap());
                (
                    [("content-type", "application/x-protobuf")],
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, got)
}

async fn exports_to(protocol: Protocol, addr: SocketAddr, got: Got) {
    let file = ExportConfig {
        protocol,
        endpoint: Some(format!("http://{addr}")),
        ..ExportConfig::default()
    };
    let transport = transport_for_signal(&file, Signal::Metrics).unwrap();
    let red = Red::new(Limits::default());
    red.with_mut(|s| record(s, 5, "/x"));
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(
        red.clone(),
        Arc::from(transport),
        Temporality::Cumulative,
        Duration::from_millis(100),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(350)).await;
    red.with_mut(|s| record(s, 2, "/x"));
    stop.cancel();
    task.await.unwrap();
    let reqs = got.0.lock().unwrap().clone();
    assert!(reqs.len() >= 2, "{protocol:?}: {} requests", reqs.len());
    let last = hist_points(&reqs[reqs.len() - 1..], "http.server.request.duration");
    assert_eq!(
        last[0].1.count, 7,
        "{protocol:?}: the final export has every span"
    );
    let sums: Vec<i64> = reqs
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == "sonde.red.dropped_spans")
        .filter_map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points[0].value,
            _ => None,
        })
        .map(|v| match v {
            number_data_point::Value::AsInt(i) => i,
            number_data_point::Value::AsDouble(d) => d as i64,
        })
        .collect();
    assert!(sums.iter().all(|v| *v == 0), "{sums:?}");
    assert_eq!(red.with(|s| s.otlp_failed_requests), Some(0));
}

#[tokio::test]
async fn exports_over_grpc_to_a_real_receiver() {
    let (addr, got) = grpc_receiver().await;
    exports_to(Protocol::Grpc, addr, got).await;
}

#[tokio::test]
async fn exports_over_http_to_a_real_receiver() {
    let (addr, got) = http_receiver().await;
    exports_to(Protocol::HttpProtobuf, addr, got).await;
}
