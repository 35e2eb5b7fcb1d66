//! Where the agent's spans go, and the agent's lifecycle: an OTLP exporter (to Tempo, any
//! collector or the in-process store), stdout (`--print`), or both; start the capture and its
//! `/metrics` server, wait for the shutdown token, stop in order (capture first, then flush
//! the exporter).
use std::{
    io::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{
    config::{AgentSection, PrintMode},
    export::{
        ConvertOptions, ExporterHandle, Item, PrintFormat, client::transport_for, format_span,
    },
    pipeline::{self, SpanSink},
};
use tokio_util::sync::CancellationToken;

/// A failure starting the agent job.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Ebpf(#[from] crate::ebpf::EbpfError),
    #[error("invalid configuration: {0}")]
    Config(#[from] sonde_config::Invalid),
    #[error("cannot set up the OTLP exporter: {0}")]
    Export(#[from] crate::export::ExportError),
    #[error("cannot start the RED metrics thread: {0}")]
    RedThread(#[source] std::io::Error),
}

/// Hands spans to the exporter's bounded queue (which drops and counts when full).
pub struct ExportSink(pub ExporterHandle);

impl SpanSink for ExportSink {
    fn send(&mut self, batch: Vec<Item>) {
        self.0.try_send(batch);
    }
}

/// Writes one line per span on stdout.
pub struct PrintSink {
    format: PrintFormat,
    opts: ConvertOptions,
}

impl PrintSink {
    /// The print sink `cfg.print` asks for, if any.
    pub fn for_mode(cfg: &AgentSection) -> Option<Self> {
        let opts = ConvertOptions {
            export_query: cfg.export.export_query,
        };
        match cfg.print {
            PrintMode::Off => None,
            PrintMode::Text => Some(Self {
                format: PrintFormat::Text,
                opts,
            }),
            PrintMode::Json => Some(Self {
                format: PrintFormat::Json,
                opts,
            }),
        }
    }
}

impl SpanSink for PrintSink {
    fn send(&mut self, batch: Vec<Item>) {
        let mut out = std::io::stdout().lock();
        for (resource, span) in &batch {
            let _ = writeln!(
                out,
                "{}",
                format_span(self.format, resource, span, self.opts)
            );
        }
        let _ = out.flush();
    }
}

/// Sends each batch to several sinks.
pub struct Fanout(pub Vec<Box<dyn SpanSink>>);

impl SpanSink for Fanout {
    fn send(&mut self, batch: Vec<Item>) {
        if let Some((last, rest)) = self.0.split_last_mut() {
            for sink in rest {
                sink.send(batch.clone());
            }
            last.send(batch);
        }
    }
}

/// The sinks `sonde agent` uses: print (when asked) and OTLP export (unless `no_export`).
/// Returns the exporter handle too, so that it can be flushed on stop.
pub fn agent_sink(
    cfg: &AgentSection,
    no_export: bool,
) -> Result<(Box<dyn SpanSink>, Option<ExporterHandle>), AgentError> {
    let mut sinks: Vec<Box<dyn SpanSink>> = Vec::new();
    let opts = ConvertOptions {
        export_query: cfg.export.export_query,
    };
    match cfg.print {
        PrintMode::Off => {}
        PrintMode::Text => sinks.push(Box::new(PrintSink {
            format: PrintFormat::Text,
            opts,
        })),
        PrintMode::Json => sinks.push(Box::new(PrintSink {
            format: PrintFormat::Json,
            opts,
        })),
    }
    let mut handle = None;
    if !no_export {
        let transport = transport_for(&cfg.export)?;
        tracing::info!(endpoint = transport.endpoint(), protocol = ?cfg.export.protocol, "exporting spans over OTLP");
        let h = crate::export::Exporter::spawn(&cfg.export, Arc::from(transport));
        sinks.push(Box::new(ExportSink(h.clone())));
        handle = Some(h);
    }
    Ok((Box::new(Fanout(sinks)), handle))
}

/// Start capturing into `sink` and run until `shutdown` is cancelled or the capture stops.
pub async fn run_capture(
    cfg: &AgentSection,
    sink: Box<dyn SpanSink>,
    exporter: Option<ExporterHandle>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut pipeline_cfg = cfg.pipeline_config()?;
    // Kubernetes metadata: a watch of this node's pods. Without the API, spans go on without
    // pod metadata (the watch retries and counts).
    let pods = if cfg.kubernetes.enabled() {
        match crate::k8s::watch::client().await {
            Ok(client) => {
                let pods = crate::k8s::Pods::default();
                let node = cfg.kubernetes.node();
                tracing::info!(%node, "watching this node's pods for Kubernetes metadata");
                tokio::spawn(crate::k8s::watch::run(
                    client,
                    node,
                    pods.clone(),
                    shutdown.child_token(),
                ));
                Some(pods)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no Kubernetes API client: spans carry no pod metadata");
                None
            }
        }
    } else {
        None
    };
    pipeline_cfg.pods = pods.clone();
    let selection = if pipeline_cfg.selection.is_all() {
        "all processes".to_owned()
    } else {
        format!("{:?}", cfg.select)
    };
    // RED metrics see every span before the sinks do.
    // (Only when someone can see them: on /metrics or pushed over OTLP.)
    let red = (cfg.red.enabled && (!cfg.metrics_listen_address.is_empty() || cfg.red.otlp_export))
        .then(|| {
            crate::red::Red::new(cfg.red.limits()).with_routes_file(&cfg.red.learnt_routes_file)
        });
    let sink: Box<dyn SpanSink> = match &red {
        Some(red) => Box::new(crate::red::RedTap::start(red, sink).map_err(AgentError::RedThread)?),
        None => sink,
    };
    // Set up before the capture starts, so that a bad setting stops nothing half-started.
    let metrics_transport = match (&red, cfg.red.otlp_export) {
        (Some(_), true) => Some(crate::export::client::transport_for_signal(
            &cfg.red.otlp,
            crate::export::config::Signal::Metrics,
        )?),
        _ => None,
    };
    let (thread, stats) = pipeline::start(pipeline_cfg, sink, stop.clone())?;
    tracing::info!(
        tracepoints = crate::ebpf::TRACEPOINTS.len(),
        selection = %selection,
        server = cfg.capture_server,
        client = cfg.capture_client,
        "capturing HTTP/1.x"
    );
    let metrics_stop = shutdown.child_token();
    if let Ok(addr) = cfg.metrics_listen_address.parse::<std::net::SocketAddr>() {
        let sources = super::selfmetrics::Sources {
            pipeline: stats.clone(),
            exporter: exporter.clone(),
            red: red.clone(),
            pods,
        };
        let token = metrics_stop.clone();
        tokio::spawn(async move {
            // A taken port must not stop the capture: say so and go on without /metrics.
            if let Err(e) = super::selfmetrics::serve(addr, sources, token).await {
                tracing::warn!(%addr, error = %e, "agent /metrics is off: cannot listen");
            }
        });
    }
    // The RED metrics as OTLP, when asked for.
    let metrics_export = match (&red, metrics_transport) {
        (Some(red), Some(transport)) => {
            tracing::info!(
                endpoint = transport.endpoint(),
                protocol = %cfg.red.otlp.protocol,
                interval = %sonde_config::duration::format(cfg.red.export_interval),
                temporality = ?cfg.red.temporality,
                "exporting RED metrics over OTLP"
            );
            let token = CancellationToken::new();
            let task = tokio::spawn(crate::red::otlp::run(
                red.clone(),
                Arc::from(transport),
                cfg.red.temporality,
                cfg.red.export_interval,
                token.clone(),
            ));
            Some((token, task))
        }
        _ => None,
    };
    let mut report = tokio::time::interval(Duration::from_secs(60));
    report.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = report.tick() => log_stats(&stats, exporter.as_ref()),
            () = wait_stopped(&stop) => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    metrics_stop.cancel();
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    // The capture thread is done and the RED thread with it: the last export has it all.
    if let Some((token, task)) = metrics_export {
        token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if let Some(h) = &exporter {
        h.shutdown(Duration::from_secs(5)).await;
    }
    log_stats(&stats, exporter.as_ref());
    Ok(())
}

async fn wait_stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn log_stats(stats: &pipeline::PipelineStats, exporter: Option<&ExporterHandle>) {
    let export = exporter.map(ExporterHandle::stats);
    tracing::info!(
        records = stats.records.load(Ordering::Relaxed),
        spans = stats.spans.load(Ordering::Relaxed),
        kernel_lost = stats.kernel_lost.load(Ordering::Relaxed),
        decode_errors = stats.decode_errors.load(Ordering::Relaxed),
        export = ?export,
        "agent totals"
    );
}
