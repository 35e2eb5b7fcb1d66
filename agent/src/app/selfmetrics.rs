//! The agent's `/metrics`: its own counters (kernel ring-buffer loss, records, spans, what
//! the connection tracker skipped and why, how spans were linked into traces, what the
//! exporter sent, dropped or retried), read at scrape time from the stages' own counters, then
//! the RED metrics of the traced services. OpenMetrics (with exemplars) when the scraper asks
//! for it, the classic text format else.
use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

#[cfg(test)]
use crate::conn::Stats as ConnStats;
use crate::{
    export::ExporterHandle,
    pipeline::PipelineStats,
    red::{Red, classic::openmetrics_to_text, expose::Format, state::State},
};

/// Everything the collector reads.
#[derive(Debug, Clone)]
pub struct Sources {
    pub pipeline: Arc<PipelineStats>,
    pub exporter: Option<ExporterHandle>,
    pub red: Option<Red>,
    /// The pod watch, when Kubernetes metadata is on.
    pub pods: Option<crate::k8s::Pods>,
}

impl std::fmt::Debug for ExporterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExporterHandle")
    }
}

#[derive(Debug)]
struct AgentCollector(Sources);

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

impl Collector for AgentCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = &self.0.pipeline;
        let e = &mut enc;
        counter(
            e,
            "sonde_agent_kernel_lost_records",
            "Records the kernel could not queue because the ring buffer was full.",
            p.kernel_lost.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "sonde_agent_records",
            "Kernel records read from the ring buffer.",
            p.records.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "sonde_agent_ring_bytes",
            "Bytes the records read took in the ring buffer (headers and padding included).",
            p.ring_bytes.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "sonde_agent_decode_errors",
            "Kernel records that could not be decoded.",
            p.decode_errors.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "sonde_agent_spans",
            "HTTP spans produced.",
            p.spans.load(Ordering::Relaxed),
        )?;
        let c = self
            .0
            .pipeline
            .conn
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        // Every counter of the HTTP/1 connection tracker, under its own name.
        for (name, v) in c.counters() {
            let metric = format!("sonde_agent_conn_{name}");
            let help = format!("HTTP/1 connection tracker: {}.", name.replace('_', " "));
            counter(e, &metric, &help, v)?;
        }
        let l = p.link.lock().map(|g| g.clone()).unwrap_or_default();
        // Every counter of the linking stage, under its own name.
        for (name, v) in l.counters() {
            let metric = format!("sonde_agent_link_{name}");
            let help = format!("Trace linking: {}.", name.replace('_', " "));
            counter(e, &metric, &help, v)?;
        }
        let g = e.encode_descriptor(
            "sonde_agent_link_held_spans",
            "Spans waiting in the linking stage for their partners.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::try_from(l.held).unwrap_or(i64::MAX)).encode(g)?;
        if let Some(pods) = &self.0.pods {
            let s = pods.stats();
            counter(
                e,
                "sonde_agent_k8s_api_errors",
                "Errors watching this node's pods (spans go on without pod metadata).",
                s.api_errors.load(Ordering::Relaxed),
            )?;
            counter(
                e,
                "sonde_agent_k8s_unmatched_resources",
                "Resources of containerised processes built before their pod was known.",
                s.unmatched.load(Ordering::Relaxed),
            )?;
            let g = e.encode_descriptor(
                "sonde_agent_k8s_pods",
                "Pods of this node known from the watch.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::try_from(s.pods.load(Ordering::Relaxed)).unwrap_or(i64::MAX))
                .encode(g)?;
        }
        if let Some(x) = &self.0.exporter {
            let s = x.stats();
            counter(
                e,
                "sonde_export_spans",
                "Spans the endpoint accepted.",
                s.exported_spans,
            )?;
            counter(
                e,
                "sonde_export_dropped_queue_full_spans",
                "Spans dropped because the export queue was full.",
                s.dropped_queue_full,
            )?;
            counter(
                e,
                "sonde_export_dropped_after_retries_spans",
                "Spans dropped after retries ran out.",
                s.dropped_after_retries,
            )?;
            counter(
                e,
                "sonde_export_dropped_refused_spans",
                "Spans dropped because the endpoint refused them for good (not retried).",
                s.dropped_refused,
            )?;
            counter(
                e,
                "sonde_export_rejected_spans",
                "Spans the endpoint rejected (partial success).",
                s.rejected_by_endpoint,
            )?;
            counter(
                e,
                "sonde_export_send_errors",
                "Failed export attempts.",
                s.send_errors,
            )?;
            // Loss next to the RED metrics: spans of each service the queue dropped.
            let by = x.stats_ref().dropped_by_service();
            let d = e.encode_descriptor(
                "sonde_export_dropped_spans_by_service",
                "Spans dropped before export (queue full, shutting down), per service.name.",
                None,
                MetricType::Counter,
            )?;
            let mut d = d;
            for (service, n) in &by {
                let labels = [("service_name", service.as_str())];
                ConstCounter::new(*n).encode(d.encode_family(&labels)?)?;
            }
            let g = e.encode_descriptor(
                "sonde_export_queued_spans",
                "Spans waiting in the export queue.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::try_from(s.queued).unwrap_or(i64::MAX)).encode(g)?;
        }
        Ok(())
    }
}

/// The whole `/metrics` page in `format`.
pub fn render(sources: &Sources, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AgentCollector(sources.clone())));
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &registry);
    if format == Format::Text {
        out = openmetrics_to_text(&out);
    }
    if let Some(red) = &sources.red {
        out.push_str(&red.render(format));
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Serve `/metrics` on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    sources: Sources,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "agent metrics on /metrics");
    let red = sources.red.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let s = sources.clone();
            async move {
                let accept = headers
                    .get(axum::http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let format = Format::from_accept(accept);
                // Rendering takes the RED lock: off the runtime's workers.
                let body = tokio::task::spawn_blocking(move || render(&s, format))
                    .await
                    .unwrap_or_default();
                ([("content-type", format.content_type())], body)
            }
        }),
    );
    // The route collapses the RED stage learnt, per service (JSON).
    let app = match red {
        Some(red) => app.route(
            "/routes",
            axum::routing::get(move || {
                let red = red.clone();
                async move { axum::Json(red.with(State::collapsed_routes).unwrap_or_default()) }
            }),
        ),
        None => app,
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_with_its_value() {
        let pipeline = Arc::new(PipelineStats::default());
        pipeline.kernel_lost.store(7, Ordering::Relaxed);
        pipeline.spans.store(42, Ordering::Relaxed);
        *pipeline.conn.lock().unwrap() = ConnStats {
            non_http_skipped: 3,
            ..ConnStats::default()
        };
        pipeline.link.lock().unwrap().linked_connection = 5;
        let sources = Sources {
            pipeline,
            exporter: None,
            red: Some(Red::new(crate::red::state::Limits::default())),
            pods: Some(crate::k8s::Pods::default()),
        };
        sources
            .pods
            .as_ref()
            .unwrap()
            .stats()
            .api_errors
            .store(2, Ordering::Relaxed);
        let text = render(&sources, Format::OpenMetrics);
        assert!(
            text.contains("sonde_agent_k8s_api_errors_total 2"),
            "{text}"
        );
        assert!(text.contains("sonde_agent_k8s_pods 0"), "{text}");
        assert!(
            text.contains("sonde_agent_kernel_lost_records_total 7"),
            "{text}"
        );
        assert!(text.contains("sonde_agent_spans_total 42"), "{text}");
        assert!(
            text.contains("sonde_agent_conn_non_http_skipped_total 3"),
            "{text}"
        );
        assert!(
            text.contains("sonde_agent_link_linked_connection_total 5"),
            "{text}"
        );
        assert!(text.contains("sonde_agent_link_held_spans 0"), "{text}");
        assert!(
            text.contains("# TYPE sonde_agent_records counter"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE target info\n"), "{text}");
        let classic = render(&sources, Format::Text);
        assert!(
            classic
                .contains("# TYPE sonde_agent_spans_total counter\nsonde_agent_spans_total 42\n"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
    }
}
