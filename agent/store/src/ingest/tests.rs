//! Receivers under pressure: the bound on bytes being decoded at once (refused before the ack),
//! oversized requests answered as OTLP says, over both transports.
use axum::{body::Body, http::Request};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, trace_service_client::TraceServiceClient,
};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::otlp::{MAX_BODY, RpcStatus, http_router};
use crate::{ManualClock, Store, ids::SINGLE_TENANT, testutil::*};

fn open(dir: &std::path::Path, in_flight: usize) -> Store {
    let mut c = cfg(dir);
    c.max_ingest_bytes_in_flight = in_flight;
    Store::open(&c, ManualClock::new(T0)).unwrap()
}

fn open_with_token(dir: &std::path::Path) -> Store {
    let token = dir.join("token");
    std::fs::write(&token, "s3cret").unwrap();
    let mut c = cfg(&dir.join("data"));
    c.auth_token_file = token;
    Store::open(&c, ManualClock::new(T0)).unwrap()
}

/// A request of about `bytes` bytes for trace 1.
fn sized(bytes: usize) -> ExportTraceServiceRequest {
    req(
        "svc",
        vec![with_attrs(
            span(1, 1, 0, "big", 0, 1),
            vec![kv_s("pad", &"x".repeat(bytes))],
        )],
    )
}

async fn post(store: &Store, body: Vec<u8>, content_length: Option<u64>) -> (u16, String, Vec<u8>) {
    post_auth(store, body, content_length, None).await
}

async fn post_auth(
    store: &Store,
    body: Vec<u8>,
    content_length: Option<u64>,
    auth: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let mut b = Request::post("/v1/traces").header("content-type", "application/x-protobuf");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    if let Some(n) = content_length {
        b = b.header("content-length", n);
    }
    let resp = http_router(store.clone())
        .oneshot(b.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, ct, body.to_vec())
}

fn stored(store: &Store) -> bool {
    store
        .find_trace(&[SINGLE_TENANT.to_string()], &tid(1))
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn http_requests_past_the_in_flight_budget_get_429_before_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 1 << 20);
    // Other requests hold all but 64 KiB of the budget.
    let others = s
        .inner
        .ingest_bytes
        .try_take((1 << 20) - 64 * 1024)
        .unwrap();
    let body = sized(200_000).encode_to_vec();
    let (status, ct, resp) = post(&s, body.clone(), None).await;
    assert_eq!((status, ct.as_str()), (429, "application/x-protobuf"));
    let st = RpcStatus::decode(resp.as_slice()).unwrap();
    assert!(
        st.message.contains("store.max_ingest_bytes_in_flight"),
        "{st:?}"
    );
    assert!(!stored(&s), "a refused request must not be stored");
    drop(others);
    assert_eq!(post(&s, body, None).await.0, 200);
    assert!(stored(&s));
}

#[tokio::test]
async fn http_413_is_an_otlp_status_body() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 256 << 20);
    let (status, ct, resp) = post(&s, vec![0; 16], Some(MAX_BODY as u64 + 1)).await;
    assert_eq!((status, ct.as_str()), (413, "application/x-protobuf"));
    let st = RpcStatus::decode(resp.as_slice()).unwrap();
    assert!(st.message.contains("exceeds"), "{st:?}");
}

async fn grpc_store(dir: &std::path::Path, in_flight: usize) -> (Store, String, CancellationToken) {
    serve(open(dir, in_flight)).await
}

async fn serve(s: Store) -> (Store, String, CancellationToken) {
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let (api, grpc, http) = (
        bind().await.unwrap(),
        bind().await.unwrap(),
        bind().await.unwrap(),
    );
    let url = format!("http://{}", grpc.local_addr().unwrap());
    let sd = CancellationToken::new();
    tokio::spawn(crate::serve_on(s.clone(), api, grpc, http, sd.clone()));
    (s, url, sd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_past_the_in_flight_budget_get_unavailable_before_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let (s, url, sd) = grpc_store(dir.path(), 1 << 20).await;
    let others = s
        .inner
        .ingest_bytes
        .try_take((1 << 20) - 64 * 1024)
        .unwrap();
    let mut c = TraceServiceClient::connect(url).await.unwrap();
    let err = c.export(sized(200_000)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("store.max_ingest_bytes_in_flight"),
        "{err:?}"
    );
    assert!(!stored(&s));
    drop(others);
    c.export(sized(200_000)).await.unwrap();
    assert!(stored(&s));
    sd.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_messages_over_64_mib_are_invalid_argument_not_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (s, url, sd) = grpc_store(dir.path(), 256 << 20).await;
    let mut c = TraceServiceClient::connect(url).await.unwrap();
    let err = c.export(sized(MAX_BODY + 1024)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(!stored(&s));
    sd.cancel();
}

#[tokio::test]
async fn http_ingest_needs_the_token_when_one_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_with_token(dir.path());
    let body = sized(10).encode_to_vec();
    let (status, ct, resp) = post_auth(&s, body.clone(), None, None).await;
    assert_eq!((status, ct.as_str()), (401, "application/x-protobuf"));
    assert_eq!(RpcStatus::decode(resp.as_slice()).unwrap().code, 16);
    assert!(!stored(&s));
    assert_eq!(
        post_auth(&s, body.clone(), None, Some("Bearer nope"))
            .await
            .0,
        401
    );
    assert_eq!(
        post_auth(&s, body, None, Some("Bearer s3cret")).await.0,
        200
    );
    assert!(stored(&s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_ingest_needs_the_token_when_one_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (s, url, sd) = serve(open_with_token(dir.path())).await;
    let mut c = TraceServiceClient::connect(url).await.unwrap();
    let err = c.export(sized(10)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(!stored(&s));
    let mut r = tonic::Request::new(sized(10));
    r.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    c.export(r).await.unwrap();
    assert!(stored(&s));
    sd.cancel();
}

/// A test CA and a certificate it signed for localhost and 127.0.0.1, made with the openssl
/// command: (CA certificate, server certificate, server key).
fn test_certificates(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    let p = |n: &str| dir.join(n);
    let ext = p("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<std::ffi::OsString>; 3] = [
        ["req", "-x509", "-days", "1", "-subj", "/CN=sonde-test-ca"]
            .iter()
            .chain(&ec)
            .map(Into::into)
            .chain([
                "-keyout".into(),
                p("ca.key").into(),
                "-out".into(),
                p("ca.pem").into(),
            ])
            .collect(),
        ["req", "-subj", "/CN=localhost"]
            .iter()
            .chain(&ec)
            .map(Into::into)
            .chain([
                "-keyout".into(),
                p("key.pem").into(),
                "-out".into(),
                p("csr.pem").into(),
            ])
            .collect(),
        ["x509", "-req", "-days", "1", "-CAcreateserial"]
            .iter()
            .map(Into::into)
            .chain([
                "-in".into(),
                p("csr.pem").into(),
                "-CA".into(),
                p("ca.pem").into(),
                "-CAkey".into(),
                p("ca.key").into(),
                "-extfile".into(),
                ext.clone().into(),
                "-out".into(),
                p("cert.pem").into(),
            ])
            .collect(),
    ];
    for args in steps {
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("the openssl command makes the test certificates");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    [p("ca.pem"), p("cert.pem"), p("key.pem")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_three_listeners_speak_tls_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = test_certificates(dir.path());
    let mut c = cfg(&dir.path().join("data"));
    c.tls_cert_file = cert;
    c.tls_key_file = key;
    let s = Store::open(&c, ManualClock::new(T0)).unwrap();
    let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
    let (api, grpc, http) = (
        bind().await.unwrap(),
        bind().await.unwrap(),
        bind().await.unwrap(),
    );
    let (api_port, grpc_port, http_port) = (
        api.local_addr().unwrap().port(),
        grpc.local_addr().unwrap().port(),
        http.local_addr().unwrap().port(),
    );
    let sd = CancellationToken::new();
    tokio::spawn(crate::serve_on(s.clone(), api, grpc, http, sd.clone()));
    // OTLP gRPC over TLS, trusting the test CA.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(&ca).unwrap(),
        ))
        .domain_name("localhost");
    let ch = tonic::transport::Channel::from_shared(format!("https://localhost:{grpc_port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    TraceServiceClient::new(ch).export(sized(10)).await.unwrap();
    assert!(stored(&s));
    // The Tempo API and OTLP HTTP over TLS, with curl: HTTPS works, plain HTTP does not.
    let curl = move |args: Vec<String>| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&ca)
            .args(args)
            .output()
            .expect("curl")
    };
    let out = tokio::task::spawn_blocking(move || {
        (
            curl(vec![format!("https://localhost:{api_port}/ready")]),
            curl(vec![format!("http://localhost:{api_port}/ready")]),
            curl(vec![
                "-o".into(),
                "/dev/null".into(),
                "-w".into(),
                "%{http_code}".into(),
                "-H".into(),
                "content-type: application/x-protobuf".into(),
                "--data-binary".into(),
                "".into(),
                format!("https://localhost:{http_port}/v1/traces"),
            ]),
        )
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.0.stdout), "ready\n");
    assert!(!out.1.status.success(), "plain HTTP must not be served");
    assert_eq!(String::from_utf8_lossy(&out.2.stdout), "200");
    sd.cancel();
}
