//! Table tests for error classification and reply parsing.
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest,
};
use rstest::rstest;

use super::*;

#[rstest]
#[case::unavailable(tonic::Code::Unavailable, true)]
#[case::exhausted(tonic::Code::ResourceExhausted, true)]
#[case::deadline(tonic::Code::DeadlineExceeded, true)]
#[case::aborted(tonic::Code::Aborted, true)]
#[case::cancelled(tonic::Code::Cancelled, true)]
#[case::data_loss(tonic::Code::DataLoss, true)]
#[case::out_of_range(tonic::Code::OutOfRange, true)]
#[case::invalid(tonic::Code::InvalidArgument, false)]
#[case::unauthenticated(tonic::Code::Unauthenticated, false)]
#[case::permission(tonic::Code::PermissionDenied, false)]
#[case::unimplemented(tonic::Code::Unimplemented, false)]
#[case::internal(tonic::Code::Internal, false)]
fn grpc_codes(#[case] code: tonic::Code, #[case] want: bool) {
    assert_eq!(grpc_retryable(code), want);
}

#[rstest]
#[case::too_many(429, true)]
#[case::bad_gateway(502, true)]
#[case::unavailable(503, true)]
#[case::gateway_timeout(504, true)]
#[case::bad_request(400, false)]
#[case::unauthorized(401, false)]
#[case::not_found(404, false)]
#[case::too_large(413, false)]
#[case::internal(500, false)]
fn http_statuses(#[case] status: u16, #[case] want: bool) {
    assert_eq!(http_retryable(status), want);
    let e = ExportError::Http {
        endpoint: "e".into(),
        status,
        message: String::new(),
        retry_after: None,
    };
    assert_eq!(e.retryable(), want);
}

#[rstest]
#[case::seconds("5", Some(Duration::from_secs(5)))]
#[case::spaces(" 0 ", Some(Duration::ZERO))]
#[case::http_date("Wed, 21 Oct 2015 07:28:00 GMT", None)]
#[case::negative("-1", None)]
#[case::empty("", None)]
#[case::fraction("1.5", None)]
fn retry_after_header(#[case] value: &str, #[case] want: Option<Duration>) {
    assert_eq!(parse_retry_after(value), want);
}

fn status_bytes(message: &str, delay: Option<(i64, i32)>) -> Vec<u8> {
    let details = delay
        .map(|(seconds, nanos)| rpc::Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: rpc::RetryInfo {
                retry_delay: Some(rpc::ProtoDuration { seconds, nanos }),
            }
            .encode_to_vec(),
        })
        .into_iter()
        .collect();
    rpc::Status {
        code: 8,
        message: message.into(),
        details,
    }
    .encode_to_vec()
}

#[rstest]
#[case::with_delay(status_bytes("busy", Some((2, 500_000_000))), Some(Duration::from_millis(2500)))]
#[case::no_detail(status_bytes("busy", None), None)]
#[case::negative(status_bytes("busy", Some((-1, 0))), None)]
#[case::empty(Vec::new(), None)]
#[case::garbage(vec![0xff, 0xff, 0xff], None)]
fn retry_info(#[case] bytes: Vec<u8>, #[case] want: Option<Duration>) {
    assert_eq!(rpc::retry_delay(&bytes), want);
}

#[rstest]
#[case::proto_status(status_bytes("quota exceeded", None), "quota exceeded")]
#[case::text(b"  upstream connect error  ".to_vec(), "upstream connect error")]
#[case::empty(Vec::new(), "")]
fn http_error_message(#[case] body: Vec<u8>, #[case] want: &str) {
    assert_eq!(rpc::error_message(&body), want);
}

#[test]
fn http_error_message_is_truncated() {
    let long = "x".repeat(5000);
    let msg = rpc::error_message(long.as_bytes());
    assert_eq!(msg.chars().count(), 201);
}

#[rstest]
#[case::none(None, SendOutcome::default())]
#[case::zero(Some((0, "")), SendOutcome { rejected_spans: 0, message: None })]
#[case::rejected(Some((3, "too old")), SendOutcome { rejected_spans: 3, message: Some("too old".into()) })]
#[case::negative(Some((-4, "")), SendOutcome { rejected_spans: 0, message: None })]
fn partial_success(#[case] partial: Option<(i64, &str)>, #[case] want: SendOutcome) {
    let resp = ExportTraceServiceResponse {
        partial_success: partial.map(|(rejected_spans, m)| ExportTracePartialSuccess {
            rejected_spans,
            error_message: m.into(),
        }),
    };
    assert_eq!(outcome_of(resp), want);
}

#[tokio::test]
async fn setup_rejects_bad_headers() {
    let mut cfg = ExportConfig::default();
    cfg.headers.insert("bad header".into(), "v".into());
    assert!(matches!(
        GrpcTransport::new(&cfg),
        Err(ExportError::Setup { .. })
    ));
    cfg.protocol = Protocol::HttpProtobuf;
    assert!(matches!(
        HttpTransport::new(&cfg),
        Err(ExportError::Setup { .. })
    ));
}

/// A closed port: both transports say why, and call it retryable.
#[tokio::test]
async fn connection_refused_is_explained_and_retryable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let cfg = ExportConfig {
            endpoint: Some(format!("http://{closed}")),
            protocol,
            ..ExportConfig::default()
        };
        let t = transport_for(&cfg).unwrap();
        let e = t
            .send(ExportTraceServiceRequest::default().into())
            .await
            .unwrap_err();
        assert!(e.retryable(), "{e}");
        assert!(e.to_string().contains("refused"), "{protocol}: {e}");
        assert!(
            e.to_string().contains(&closed.to_string()),
            "{protocol}: {e}"
        );
    }
}

/// An endpoint that accepts connections and never answers, then a healthy store on the same
/// address: the gRPC transport times out, drops the hung connection and reaches the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_recovers_from_a_hung_endpoint() {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hung.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        tokio::select! {
            () = async { loop { held.push(hung.accept().await.unwrap().0); } } => {}
            _ = stopped => {}
        }
        // The listener closes; the accepted connections stay open, silent.
        held
    });
    let cfg = ExportConfig {
        endpoint: Some(format!("http://{addr}")),
        protocol: Protocol::Grpc,
        timeout: Duration::from_millis(500),
        ..ExportConfig::default()
    };
    let t = transport_for(&cfg).unwrap();
    let e = t
        .send(ExportTraceServiceRequest::default().into())
        .await
        .unwrap_err();
    assert!(e.retryable(), "{e}");
    stop.send(()).unwrap();
    let _silent = holder.await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = sonde_store::Store::open(
        &sonde_store::StoreSection {
            data_dir: dir.path().to_path_buf(),
            ..sonde_store::StoreSection::default()
        },
        std::sync::Arc::new(sonde_store::SystemClock),
    )
    .unwrap();
    // SO_REUSEADDR: the hung endpoint's connections still hold the port.
    let bind = |a: std::net::SocketAddr| {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.set_reuseaddr(true).unwrap();
        s.bind(a).unwrap();
        s.listen(64).unwrap()
    };
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sd = tokio_util::sync::CancellationToken::new();
    tokio::spawn(sonde_store::serve_on(
        store,
        bind(any),
        bind(addr),
        bind(any),
        sd.clone(),
    ));
    let mut last = None;
    for _ in 0..5 {
        match t.send(ExportTraceServiceRequest::default().into()).await {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    assert!(last.is_none(), "never reached the healthy store: {last:?}");
    sd.cancel();
}
