//! Table tests for the export configuration and the OTEL_* environment rules.
use rstest::rstest;

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

#[rstest]
#[case::defaults_grpc(&[], "http://localhost:4317", Protocol::Grpc)]
#[case::defaults_http(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")], "http://localhost:4318/v1/traces", Protocol::HttpProtobuf)]
#[case::generic_grpc(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4317")], "http://tempo:4317", Protocol::Grpc)]
#[case::generic_http_appends(
    &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://tempo:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    "http://tempo:4318/v1/traces", Protocol::HttpProtobuf
)]
#[case::generic_http_trailing_slash(
    &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://gw/otlp/"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    "http://gw/otlp/v1/traces", Protocol::HttpProtobuf
)]
#[case::signal_as_is(
    &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://gw/custom"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    "http://gw/custom", Protocol::HttpProtobuf
)]
#[case::traces_protocol_wins(
    &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")],
    "http://localhost:4318/v1/traces", Protocol::HttpProtobuf
)]
#[case::empty_values_unset(
    &[("OTEL_EXPORTER_OTLP_ENDPOINT", ""), ("OTEL_EXPORTER_OTLP_PROTOCOL", "  ")],
    "http://localhost:4317", Protocol::Grpc
)]
fn endpoint_rules(
    #[case] env: &[(&str, &str)],
    #[case] want_url: &str,
    #[case] want_protocol: Protocol,
) {
    let mut cfg = ExportConfig::default();
    cfg.apply_env(&env_of(env)).unwrap();
    assert_eq!(cfg.protocol, want_protocol);
    assert_eq!(cfg.traces_url(), want_url);
    cfg.validate().unwrap();
}

#[test]
fn env_generic_endpoint_overrides_file_signal_endpoint() {
    let mut cfg = ExportConfig {
        traces_endpoint: Some("http://file/x".into()),
        ..ExportConfig::default()
    };
    cfg.apply_env(&env_of(&[(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://env:4317",
    )]))
    .unwrap();
    assert_eq!(cfg.traces_url(), "http://env:4317");
}

#[rstest]
#[case::generic(&[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret,X-Scope-OrgID=t1")], &[("api-key", "secret"), ("x-scope-orgid", "t1")])]
#[case::percent(&[("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Basic%20abc%3D")], &[("authorization", "Basic abc=")])]
#[case::traces_wins_per_key(
    &[("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"), ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=3")],
    &[("a", "1"), ("b", "3"), ("file", "f")]
)]
#[case::garbage_skipped(&[("OTEL_EXPORTER_OTLP_HEADERS", "nonsense,,a=1")], &[("a", "1")])]
fn headers(#[case] env: &[(&str, &str)], #[case] want: &[(&str, &str)]) {
    let mut cfg = ExportConfig::default();
    if want.iter().any(|(k, _)| *k == "file") {
        cfg.headers.insert("file".into(), "f".into());
    }
    cfg.apply_env(&env_of(env)).unwrap();
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(cfg.headers, want);
}

#[rstest]
#[case::timeout_ms(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")], Ok(Duration::from_millis(2500)))]
#[case::traces_timeout_wins(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "1"), ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "7")], Ok(Duration::from_millis(7)))]
#[case::timeout_garbage(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")], Err("OTEL_EXPORTER_OTLP_TIMEOUT"))]
#[case::protocol_json(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")], Err("http/json"))]
#[case::compression_bad(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")], Err("zstd"))]
fn env_values(#[case] env: &[(&str, &str)], #[case] want: Result<Duration, &str>) {
    let mut cfg = ExportConfig::default();
    match (cfg.apply_env(&env_of(env)), want) {
        (Ok(()), Ok(d)) => assert_eq!(cfg.timeout, d),
        (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{e}"),
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

#[test]
fn compression_from_env() {
    let mut cfg = ExportConfig::default();
    cfg.apply_env(&env_of(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]))
        .unwrap();
    assert_eq!(cfg.compression, Compression::Gzip);
}

#[rstest]
#[case::ok(ExportConfig::default(), None)]
#[case::not_a_url(ExportConfig { endpoint: Some("localhost:4317".into()), ..Default::default() }, Some("scheme"))]
#[case::garbage_url(ExportConfig { endpoint: Some("::::".into()), ..Default::default() }, Some("invalid OTLP endpoint"))]
#[case::ftp(ExportConfig { endpoint: Some("ftp://x".into()), ..Default::default() }, Some("scheme"))]
#[case::grpc_https(ExportConfig { endpoint: Some("https://x:4317".into()), ..Default::default() }, None)]
#[case::no_host(ExportConfig { endpoint: Some("http://:4317".into()), ..Default::default() }, Some("invalid OTLP endpoint"))]
#[case::missing_certificate(ExportConfig { certificate: Some("/nonexistent/ca.pem".into()), ..Default::default() }, Some("/nonexistent/ca.pem"))]
#[case::not_pem_certificate(ExportConfig { certificate: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").into()), ..Default::default() }, Some("no PEM certificate"))]
#[case::good_certificate(ExportConfig { certificate: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/src/export/e2e_tests/tls/ca.pem").into()), ..Default::default() }, None)]
#[case::http_https(ExportConfig { endpoint: Some("https://x".into()), protocol: Protocol::HttpProtobuf, ..Default::default() }, None)]
#[case::zero_batch(ExportConfig { batch_max_spans: 0, ..Default::default() }, Some("batch_max_spans"))]
#[case::zero_queue(ExportConfig { queue_capacity: 0, ..Default::default() }, Some("queue_capacity"))]
#[case::batch_over_queue(ExportConfig { batch_max_spans: 100, queue_capacity: 10, ..Default::default() }, Some("must not exceed"))]
#[case::zero_timeout(ExportConfig { timeout: Duration::ZERO, ..Default::default() }, Some("timeout"))]
#[case::zero_interval(ExportConfig { batch_interval: Duration::ZERO, ..Default::default() }, Some("batch_interval"))]
#[case::bad_header_name(ExportConfig { headers: [("a b".into(), "v".into())].into(), ..Default::default() }, Some("\"a b\""))]
#[case::upper_header_name(ExportConfig { headers: [("Api-Key".into(), "v".into())].into(), ..Default::default() }, Some("lowercase"))]
#[case::bad_header_value(ExportConfig { headers: [("k".into(), "a\nb".into())].into(), ..Default::default() }, Some("\"k\""))]
fn validate(#[case] cfg: ExportConfig, #[case] want_err: Option<&str>) {
    match (cfg.validate(), want_err) {
        (Ok(()), None) => {}
        (Err(e), Some(needle)) => assert!(e.to_string().contains(needle), "{e}"),
        (got, want) => panic!("got {got:?}, want error containing {want:?}"),
    }
}

#[test]
fn yaml_round_trip_and_unknown_fields() {
    let cfg = ExportConfig::default();
    let yaml = serde_yaml::to_string(&cfg).unwrap();
    assert!(yaml.contains("batch_interval: 1s"), "{yaml}");
    assert!(yaml.contains("protocol: grpc"), "{yaml}");
    assert_eq!(serde_yaml::from_str::<ExportConfig>(&yaml).unwrap(), cfg);

    let partial: ExportConfig =
        serde_yaml::from_str("protocol: http/protobuf\nbatch_interval: 200ms\n").unwrap();
    assert_eq!(partial.protocol, Protocol::HttpProtobuf);
    assert_eq!(partial.batch_interval, Duration::from_millis(200));
    assert_eq!(partial.queue_capacity, 65_536);

    let err = serde_yaml::from_str::<ExportConfig>("endpont: x\n").unwrap_err();
    assert!(err.to_string().contains("endpont"), "{err}");
    let err = serde_yaml::from_str::<ExportConfig>("timeout: soon\n").unwrap_err();
    assert!(err.to_string().contains("invalid duration"), "{err}");
}

#[test]
fn certificate_from_env() {
    let mut cfg = ExportConfig::default();
    cfg.apply_env(&env_of(&[
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/generic.pem"),
        ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/etc/traces.pem"),
    ]))
    .unwrap();
    assert_eq!(
        cfg.certificate,
        Some(std::path::PathBuf::from("/etc/traces.pem"))
    );
}

#[test]
fn debug_hides_header_values() {
    let mut cfg = ExportConfig::default();
    cfg.headers
        .insert("authorization".into(), "Bearer s3cret".into());
    let text = format!("{cfg:?}");
    assert!(text.contains("authorization"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}
