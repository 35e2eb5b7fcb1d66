//! span-metrics: `traces_spanmetrics_calls_total`, `_latency` (histogram, exemplar = trace)
//! and `_size_total` per service, span name, kind, status and configured dimensions, under
//! Tempo's names and labels (shared/research/tempo-api.md §11.1).
use std::borrow::Cow;

use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};
use prost::Message;

use super::{
    attr,
    config::{SpanMetricsSection, sanitize_label_name},
    registry::{MetricId, Registry},
};

/// `SPAN_KIND_SERVER`, … as Tempo labels them.
pub fn kind_label(kind: i32) -> &'static str {
    match SpanKind::try_from(kind) {
        Ok(SpanKind::Internal) => "SPAN_KIND_INTERNAL",
        Ok(SpanKind::Server) => "SPAN_KIND_SERVER",
        Ok(SpanKind::Client) => "SPAN_KIND_CLIENT",
        Ok(SpanKind::Producer) => "SPAN_KIND_PRODUCER",
        Ok(SpanKind::Consumer) => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

/// `STATUS_CODE_OK|ERROR|UNSET`.
pub fn status_label(span: &Span) -> &'static str {
    match span.status.as_ref().map(|s| StatusCode::try_from(s.code)) {
        Some(Ok(StatusCode::Ok)) => "STATUS_CODE_OK",
        Some(Ok(StatusCode::Error)) => "STATUS_CODE_ERROR",
        _ => "STATUS_CODE_UNSET",
    }
}

/// Span duration in seconds; a span ending before it starts lasted 0.
pub fn duration_s(span: &Span) -> f64 {
    span.end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano) as f64
        / 1e9
}

pub struct SpanMetrics {
    calls: MetricId,
    latency: MetricId,
    size: MetricId,
    cfg: SpanMetricsSection,
    dimensions: Vec<String>,
}

impl SpanMetrics {
    pub fn new(reg: &mut Registry, cfg: &SpanMetricsSection, dimensions: &[String]) -> Self {
        let i = &cfg.intrinsic_dimensions;
        let mut names: Vec<String> = [
            (i.service, "service"),
            (i.span_name, "span_name"),
            (i.span_kind, "span_kind"),
            (i.status_code, "status_code"),
            (i.status_message, "status_message"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| (*n).to_string())
        .collect();
        names.extend(dimensions.iter().map(|d| sanitize_label_name(d)));
        let latency = reg.histogram(
            "traces_spanmetrics_latency",
            names.clone(),
            &cfg.histogram_buckets,
        );
        let size = reg.counter("traces_spanmetrics_size_total", names.clone());
        reg.limits_counted_elsewhere(latency);
        reg.limits_counted_elsewhere(size);
        Self {
            calls: reg.counter("traces_spanmetrics_calls_total", names),
            latency,
            size,
            cfg: cfg.clone(),
            dimensions: dimensions.to_vec(),
        }
    }

    /// Count one span of `service` (resource attributes `res`).
    pub fn span(&self, reg: &mut Registry, service: &str, res: &[KeyValue], span: &Span, now: u64) {
        let i = &self.cfg.intrinsic_dimensions;
        // Dimension values that are not plain strings are rendered; none are without dimensions.
        let dims: Vec<Cow<'_, str>> = self
            .dimensions
            .iter()
            .map(|d| attr(d, &span.attributes, res).unwrap_or(Cow::Borrowed("")))
            .collect();
        // At most 5 intrinsic labels and 32 dimensions (checked by the config): on the stack.
        let mut buf: [&str; 37] = [""; 37];
        let mut n = 0;
        let status_message = span.status.as_ref().map_or("", |s| s.message.as_str());
        let intrinsic = [
            (i.service, service),
            (i.span_name, span.name.as_str()),
            (i.span_kind, kind_label(span.kind)),
            (i.status_code, status_label(span)),
            (i.status_message, status_message),
        ];
        for v in intrinsic
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, v)| *v)
            .chain(dims.iter().map(|d| &**d))
        {
            if let Some(slot) = buf.get_mut(n) {
                *slot = v;
                n += 1;
            }
        }
        let v = &buf[..n];
        let k = reg.key(v);
        reg.inc(self.calls, &k, 1.0, now);
        reg.observe(self.latency, &k, duration_s(span), &span.trace_id, now);
        reg.inc(self.size, &k, span.encoded_len() as f64, now);
    }
}
