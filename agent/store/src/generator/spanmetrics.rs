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
        let mut values: Vec<Cow<'_, str>> = Vec::with_capacity(5 + self.dimensions.len());
        if i.service {
            values.push(Cow::Borrowed(service));
        }
        if i.span_name {
            values.push(Cow::Borrowed(&span.name));
        }
        if i.span_kind {
            values.push(Cow::Borrowed(kind_label(span.kind)));
        }
        if i.status_code {
            values.push(Cow::Borrowed(status_label(span)));
        }
        if i.status_message {
            values.push(Cow::Borrowed(
                span.status.as_ref().map_or("", |s| s.message.as_str()),
            ));
        }
        for d in &self.dimensions {
            values.push(attr(d, &span.attributes, res).unwrap_or(Cow::Borrowed("")));
        }
        let v: Vec<&str> = values.iter().map(|c| &**c).collect();
        let k = reg.key(&v);
        reg.inc(self.calls, &k, 1.0, now);
        reg.observe(self.latency, &k, duration_s(span), &span.trace_id, now);
        reg.inc(self.size, &k, span.encoded_len() as f64, now);
    }
}
