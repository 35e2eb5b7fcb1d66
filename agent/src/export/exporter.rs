//! The exporter task: a bounded queue in front of a batcher that sends OTLP requests through a
//! `Transport`, retrying with exponential backoff and jitter, and dropping (and counting) when
//! the endpoint cannot keep up. Producers never block and never wait.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::{sync::mpsc, task::JoinHandle, time::sleep_until};
use tokio_util::sync::CancellationToken;

use super::{
    client::{ExportError, Payload, PayloadForm, Transport},
    config::ExportConfig,
    otlp::{ConvertOptions, build_request},
    ratelimit::{LogKind, RateLimiter},
    wire::WireEncoder,
};
use crate::span::{HttpSpan, resource::ProcessResource};

/// One span with the resource of the process it belongs to.
pub type Item = (Arc<ProcessResource>, HttpSpan);

/// The exporter's counters (all monotonic except `queued`).
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans held right now (queued, batching, or in flight). Never exceeds the capacity.
    pub queued: AtomicU64,
    pub exported_spans: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_after_retries: AtomicU64,
    /// Spans dropped because the endpoint refused them for good (not retryable: 400, …).
    pub dropped_refused: AtomicU64,
    /// Spans dropped because they arrived after `shutdown` or were still held at its deadline.
    pub dropped_shutdown: AtomicU64,
    pub rejected_by_endpoint: AtomicU64,
    /// Failed send attempts (each retry counts).
    pub send_errors: AtomicU64,
    /// Batches finished (exported, partly rejected, or given up on).
    pub batches_sent: AtomicU64,
    /// Spans dropped before they were queued (queue full, shutting down), per
    /// `service.name`: loss next to the service's RED metrics. Touched only when dropping.
    pub dropped_by_service: Mutex<HashMap<String, u64>>,
}

/// Services with their own dropped-spans count at most; the others share one entry.
const MAX_DROP_SERVICES: usize = 1024;
/// The entry past [`MAX_DROP_SERVICES`].
pub const OTHER_SERVICES: &str = "__cardinality_overflow__";

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub queued: u64,
    pub exported_spans: u64,
    pub dropped_queue_full: u64,
    pub dropped_after_retries: u64,
    pub dropped_refused: u64,
    pub dropped_shutdown: u64,
    pub rejected_by_endpoint: u64,
    pub send_errors: u64,
    pub batches_sent: u64,
}

impl ExportStats {
    /// Count `items` as dropped, per service.
    fn dropped(&self, items: &[Item]) {
        let Ok(mut by) = self.dropped_by_service.lock() else {
            return;
        };
        for (resource, _) in items {
            let name = resource.service_name.as_str();
            if let Some(n) = by.get_mut(name) {
                *n += 1;
            } else if by.len() < MAX_DROP_SERVICES {
                by.insert(name.to_owned(), 1);
            } else {
                *by.entry(OTHER_SERVICES.to_owned()).or_default() += 1;
            }
        }
    }

    /// Dropped spans per service, sorted by name.
    pub fn dropped_by_service(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .dropped_by_service
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            queued: self.queued.load(Relaxed),
            exported_spans: self.exported_spans.load(Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Relaxed),
            dropped_after_retries: self.dropped_after_retries.load(Relaxed),
            dropped_refused: self.dropped_refused.load(Relaxed),
            dropped_shutdown: self.dropped_shutdown.load(Relaxed),
            rejected_by_endpoint: self.rejected_by_endpoint.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            batches_sent: self.batches_sent.load(Relaxed),
        }
    }
}

/// Settings the task needs (copied out of `ExportConfig`).
#[derive(Clone, Copy, Debug)]
struct Settings {
    capacity: u64,
    batch_max: usize,
    batch_interval: Duration,
    retry_max_elapsed: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    convert: ConvertOptions,
}

struct Shared {
    tx: mpsc::UnboundedSender<Vec<Item>>,
    stats: Arc<ExportStats>,
    capacity: u64,
    closing: AtomicBool,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    log: Arc<RateLimiter>,
}

/// The producer side of the exporter. Cheap to clone.
#[derive(Clone)]
pub struct ExporterHandle {
    shared: Arc<Shared>,
}

/// Largest request sent: OTLP receivers commonly refuse gRPC messages over 4 MiB (gRPC's
/// default, Tempo's and the Collector's), and a refused batch is lost whole. A batch that
/// encodes larger is sent in halves.
pub const MAX_REQUEST_BYTES: usize = 3 << 20;

/// Spawns the exporter task.
pub struct Exporter;

impl Exporter {
    /// Start the exporter on the current tokio runtime.
    ///
    /// Sonde does not use the OpenTelemetry SDK's span exporter: the SDK ties one `Resource`
    /// to an exporter, while one agent exports for many processes, each with its own resource
    /// (`service.name`, `process.pid`, …). Requests are built here with one `ResourceSpans`
    /// per process.
    pub fn spawn(cfg: &ExportConfig, transport: Arc<dyn Transport>) -> ExporterHandle {
        let settings = Settings {
            capacity: u64::try_from(cfg.queue_capacity).unwrap_or(u64::MAX).max(1),
            batch_max: cfg.batch_max_spans.max(1),
            batch_interval: cfg.batch_interval,
            retry_max_elapsed: cfg.retry_max_elapsed,
            backoff_initial: cfg.retry_initial_backoff,
            backoff_max: cfg.retry_max_backoff.max(cfg.retry_initial_backoff),
            convert: ConvertOptions {
                export_query: cfg.export_query,
            },
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(ExportStats::default());
        let cancel = CancellationToken::new();
        let log = Arc::new(RateLimiter::new(Duration::from_secs(10)));
        let worker = Worker {
            rx,
            transport,
            settings,
            stats: stats.clone(),
            cancel: cancel.clone(),
            log: log.clone(),
            encoder: Mutex::new(WireEncoder::default()),
        };
        let task = tokio::spawn(worker.run());
        ExporterHandle {
            shared: Arc::new(Shared {
                tx,
                stats,
                capacity: settings.capacity,
                closing: AtomicBool::new(false),
                cancel,
                task: Mutex::new(Some(task)),
                log,
            }),
        }
    }
}

impl ExporterHandle {
    /// Hand spans to the exporter. Never blocks, never waits: the spans that do not fit in the
    /// queue are dropped and counted. Returns how many spans were accepted.
    pub fn try_send(&self, items: Vec<Item>) -> usize {
        let s = &self.shared;
        let offered = items.len() as u64;
        if offered == 0 {
            return 0;
        }
        if s.closing.load(Relaxed) {
            s.stats.dropped_shutdown.fetch_add(offered, Relaxed);
            s.stats.dropped(&items);
            return 0;
        }
        // Reserve room for as many spans as fit.
        let mut held = s.stats.queued.load(Relaxed);
        let granted = loop {
            let room = s.capacity.saturating_sub(held).min(offered);
            if room == 0 {
                break 0;
            }
            match s
                .stats
                .queued
                .compare_exchange_weak(held, held + room, Relaxed, Relaxed)
            {
                Ok(_) => break room,
                Err(now) => held = now,
            }
        };
        let dropped = offered - granted;
        if dropped > 0 {
            s.stats.dropped_queue_full.fetch_add(dropped, Relaxed);
            s.stats
                .dropped(&items[usize::try_from(granted).unwrap_or(usize::MAX)..]);
            if s.log.allow(LogKind::QueueFull) {
                tracing::warn!(
                    dropped,
                    capacity = s.capacity,
                    "export queue full: dropping spans (the endpoint is slow or down)"
                );
            }
        }
        if granted == 0 {
            return 0;
        }
        let mut items = items;
        items.truncate(usize::try_from(granted).unwrap_or(usize::MAX));
        if s.tx.send(items).is_err() {
            // The task is gone (shut down); give the reservation back. Saturating: a shutdown
            // that timed out may already have zeroed the gauge.
            let _ = s
                .stats
                .queued
                .fetch_update(Relaxed, Relaxed, |q| Some(q.saturating_sub(granted)));
            s.stats.dropped_shutdown.fetch_add(granted, Relaxed);
            return 0;
        }
        usize::try_from(granted).unwrap_or(usize::MAX)
    }

    /// A copy of the counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The live counters (for a metrics registry).
    pub fn stats_ref(&self) -> Arc<ExportStats> {
        self.shared.stats.clone()
    }

    /// Stop accepting spans, send what is held (no retries past `deadline`), and stop the task.
    /// Spans still held at the deadline are dropped and counted in `dropped_shutdown`.
    pub async fn shutdown(&self, deadline: Duration) {
        let s = &self.shared;
        s.closing.store(true, Relaxed);
        let task = s
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(mut task) = task else { return };
        // The worker stops waiting (batch timer, retry sleep), sends what it holds once, and ends.
        s.cancel.cancel();
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
            let left = s.stats.queued.swap(0, Relaxed);
            s.stats.dropped_shutdown.fetch_add(left, Relaxed);
            tracing::warn!(
                dropped = left,
                "export shutdown deadline passed: dropping spans"
            );
        }
    }
}

struct Worker {
    rx: mpsc::UnboundedReceiver<Vec<Item>>,
    transport: Arc<dyn Transport>,
    settings: Settings,
    stats: Arc<ExportStats>,
    cancel: CancellationToken,
    log: Arc<RateLimiter>,
    /// Only this task encodes; the lock is never contended.
    encoder: Mutex<WireEncoder>,
}

impl Worker {
    async fn run(mut self) {
        let mut batch: Vec<Item> = Vec::with_capacity(self.settings.batch_max);
        // When the oldest span in `batch` must go out.
        let mut due: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                msg = self.rx.recv() => {
                    let Some(items) = msg else { break };
                    if batch.is_empty() {
                        due = Some(tokio::time::Instant::now() + self.settings.batch_interval);
                    }
                    batch.extend(items);
                    while batch.len() >= self.settings.batch_max {
                        let rest = batch.split_off(self.settings.batch_max);
                        let full = std::mem::replace(&mut batch, rest);
                        self.export(full, false).await;
                    }
                    if batch.is_empty() {
                        due = None;
                    }
                }
                () = sleep_until(due.unwrap_or_else(far_future)), if due.is_some() => {
                    due = None;
                    self.export(std::mem::take(&mut batch), false).await;
                }
            }
        }
        // Shutdown: take what is still queued and send it once, without retries.
        self.rx.close();
        while let Ok(items) = self.rx.try_recv() {
            batch.extend(items);
        }
        while !batch.is_empty() {
            let rest = batch.split_off(self.settings.batch_max.min(batch.len()));
            let full = std::mem::replace(&mut batch, rest);
            self.export(full, true).await;
        }
    }

    /// Send one batch, in requests of at most [`MAX_REQUEST_BYTES`] (halved until they fit).
    async fn export(&self, batch: Vec<Item>, final_flush: bool) {
        let mut parts = vec![batch];
        while let Some(mut batch) = parts.pop() {
            if batch.is_empty() {
                continue;
            }
            // Network transports get protobuf bytes written straight from the spans, once (a
            // retry resends the same bytes); an in-process consumer gets structs, built per
            // attempt rather than deep-copied for the rare retry.
            let encoded = match self.transport.payload_form() {
                PayloadForm::Encoded => Some(
                    self.encoder
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .encode(&batch, self.settings.convert),
                ),
                PayloadForm::Proto => None,
            };
            if encoded
                .as_ref()
                .is_some_and(|b| b.len() > MAX_REQUEST_BYTES && batch.len() > 1)
            {
                let second = batch.split_off(batch.len() / 2);
                parts.push(second);
                parts.push(batch);
                continue;
            }
            self.send(batch, encoded, final_flush).await;
        }
    }

    /// Send one request, retrying while allowed; every span ends counted as exported,
    /// rejected or dropped, and its queue reservation is released.
    async fn send(&self, batch: Vec<Item>, encoded: Option<Bytes>, final_flush: bool) {
        let n = batch.len() as u64;
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let result = loop {
            let req = match &encoded {
                Some(bytes) => Payload::Encoded(bytes.clone()),
                None => Payload::Proto(build_request(&batch, self.settings.convert)),
            };
            match self.transport.send(req).await {
                Ok(outcome) => break Ok(outcome),
                Err(e) => {
                    self.stats.send_errors.fetch_add(1, Relaxed);
                    if !e.retryable() || final_flush || self.cancel.is_cancelled() {
                        break Err(e);
                    }
                    // The endpoint's Retry-After / RetryInfo, but never faster than our backoff
                    // (a `Retry-After: 0` must not become a tight loop).
                    let ours = backoff(
                        attempt,
                        self.settings.backoff_initial,
                        self.settings.backoff_max,
                        rand::random::<f64>(),
                    );
                    let delay = e.retry_after().map_or(ours, |asked| asked.max(ours));
                    if started.elapsed() + delay > self.settings.retry_max_elapsed {
                        break Err(e);
                    }
                    if self.log.allow(LogKind::Retry) {
                        tracing::warn!(error = %e, ?delay, "OTLP export failed; retrying");
                    }
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        // Shutdown interrupts the wait; the next attempt is the last.
                        () = self.cancel.cancelled() => {}
                    }
                }
            }
        };
        self.stats.batches_sent.fetch_add(1, Relaxed);
        match result {
            Ok(outcome) => {
                let rejected = outcome.rejected_spans.min(n);
                self.stats.exported_spans.fetch_add(n - rejected, Relaxed);
                if rejected > 0 {
                    self.stats.rejected_by_endpoint.fetch_add(rejected, Relaxed);
                    if self.log.allow(LogKind::Rejected) {
                        tracing::warn!(
                            rejected,
                            message = outcome.message.as_deref().unwrap_or(""),
                            endpoint = self.transport.endpoint(),
                            "OTLP endpoint rejected spans"
                        );
                    }
                }
            }
            Err(e) => {
                // A permanent refusal is not "after retries": none were made.
                let counter = if e.retryable() {
                    &self.stats.dropped_after_retries
                } else {
                    &self.stats.dropped_refused
                };
                counter.fetch_add(n, Relaxed);
                if self.log.allow(LogKind::Dropped) {
                    log_drop(&e, n, attempt);
                }
            }
        }
        self.stats.queued.fetch_sub(n, Relaxed);
    }
}

fn log_drop(e: &ExportError, spans: u64, retries: u32) {
    tracing::warn!(
        error = %e,
        spans,
        retries,
        retryable = e.retryable(),
        "OTLP export failed: dropping spans"
    );
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Delay before retry number `attempt` (0-based): `initial · 2^attempt`, capped at `max`, then
/// scaled into `[½, 1]` of that by `jitter` ∈ `[0, 1)` so that agents restarted together do not
/// retry in lockstep.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = initial
        .saturating_mul(2u32.saturating_pow(attempt.min(31)))
        .min(max);
    exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[rstest]
    #[case::first_no_jitter(0, 0.999_999, MS(100))]
    #[case::first_half(0, 0.0, MS(50))]
    #[case::second(1, 0.999_999, MS(200))]
    #[case::third(2, 0.0, MS(200))]
    #[case::capped(10, 0.999_999, MS(1000))]
    #[case::huge_attempt(u32::MAX, 0.0, MS(500))]
    #[case::jitter_out_of_range(0, 7.0, MS(100))]
    #[case::jitter_negative(0, -3.0, MS(50))]
    fn backoff_table(#[case] attempt: u32, #[case] jitter: f64, #[case] want: Duration) {
        let got = backoff(attempt, MS(100), MS(1000), jitter);
        let diff = got.abs_diff(want);
        assert!(
            diff < Duration::from_micros(10),
            "got {got:?}, want {want:?}"
        );
    }
}
