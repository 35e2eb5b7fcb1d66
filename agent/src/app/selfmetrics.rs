//! The agent's own counters on `/metrics` (Prometheus text format): kernel ring-buffer loss,
//! records, spans, what the connection tracker skipped and why, how spans were linked into
//! traces, and what the exporter sent,
//! dropped or retried. Values are read at scrape time from the stages' own counters.
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
use crate::{export::ExporterHandle, pipeline::PipelineStats};

/// Everything the collector reads.
#[derive(Debug, Clone)]
pub struct Sources {
    pub pipeline: Arc<PipelineStats>,
    pub exporter: Option<ExporterHandle>,
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

/// The text exposition of the agent's counters.
pub fn render(sources: &Sources) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(AgentCollector(sources.clone())));
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
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
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let s = sources.clone();
            async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    render(&s),
                )
            }
        }),
    );
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
        let text = render(&Sources {
            pipeline,
            exporter: None,
        });
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
    }
}
