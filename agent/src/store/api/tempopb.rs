//! The few `tempopb` protobuf messages the API returns (field numbers from Tempo's tempo.proto);
//! `tempopb.Trace` is wire-identical to OTLP `TracesData`, so it is used directly.
use opentelemetry_proto::tonic::trace::v1::TracesData;

/// `tempopb.TraceByIDResponse` (`/api/v2/traces/{id}` protobuf body).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    pub trace: Option<TracesData>,
    #[prost(message, optional, tag = "2")]
    pub metrics: Option<TraceByIdMetrics>,
    /// 0 = COMPLETE, 1 = PARTIAL.
    #[prost(int32, tag = "3")]
    pub status: i32,
    #[prost(string, tag = "4")]
    pub message: String,
}

/// `tempopb.TraceByIDMetrics`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceByIdMetrics {
    #[prost(uint64, tag = "1")]
    pub inspected_bytes: u64,
}
