//! Exporting spans: OTLP conversion, batching, retry, bounded queue, and `--print`.
//!
//! `otlp` converts `HttpSpan`s (with their process's resource) into OTLP requests and `wire`
//! writes the same requests as protobuf bytes straight from the spans; `client`
//! holds the `Transport` trait and the gRPC and HTTP/protobuf clients; `exporter` is the task
//! with the bounded queue that batches, retries and drops-and-counts; `config` is the `export:`
//! section with the `OTEL_EXPORTER_OTLP_*` rules; `print` formats spans for stdout.
//!
//! We build OTLP requests ourselves (with the `opentelemetry-proto` types) rather than use the
//! OpenTelemetry SDK's span exporter: the SDK has one `Resource` per exporter, and one agent
//! exports for many processes, each with its own resource (`service.name`, `process.pid`, …).
pub mod client;
pub mod config;
pub mod exporter;
pub mod otlp;
pub mod print;
mod ratelimit;
pub mod wire;

pub use client::{
    ExportError, GrpcTransport, HttpTransport, Payload, PayloadForm, SendFuture, SendOutcome,
    Transport, transport_for,
};
pub use config::{Compression, ExportConfig, ExportConfigError, Protocol};
pub use exporter::{ExportStats, Exporter, ExporterHandle, Item, MAX_REQUEST_BYTES, StatsSnapshot};
pub use otlp::{ConvertOptions, build_request};
pub use print::{PrintFormat, format_span};

#[cfg(test)]
mod e2e_tests;
#[cfg(test)]
pub(crate) mod testutil;
