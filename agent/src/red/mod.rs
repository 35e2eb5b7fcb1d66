//! RED metrics (rate, errors, duration) derived from spans, route templating, and the
//! service graph.
//!
//! [`RedTap`] sits in front of the agent's span sink: for each hand-over it keeps a small
//! [`series::Observation`] per span and passes it to the RED thread through a bounded queue
//! (`try_send`: when the queue is full the observations are dropped and counted per service,
//! the capture thread never waits). The RED thread owns the counting; a scrape of `/metrics`
//! takes the same lock for the time it renders.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
};

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sonde_config::Invalid;

use crate::{
    export::{ExportConfig, config::Signal},
    pipeline::SpanSink,
    span::{HttpSpan, resource::ProcessResource},
};

pub mod classic;
pub mod collapse;
pub mod expose;
pub mod graph;
pub mod otlp;
pub mod patterns;
pub mod route;
pub mod series;
pub mod state;

use series::Observation;
use state::{Limits, State};

/// Hand-overs waiting for the RED thread at most.
const QUEUE: usize = 64;

/// The `agent.red:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedSection {
    /// Derive RED metrics and the service graph from spans, served on `/metrics`.
    pub enabled: bool,
    /// Attach the span's trace and span ids to latency buckets (OpenMetrics exemplars).
    pub exemplars: bool,
    /// Series per metric and per service; past it the offending label (route, or server
    /// address and port) becomes `__cardinality_overflow__`.
    pub series_limit: usize,
    /// Series in all, every service together.
    pub total_series_limit: usize,
    /// Services (process instances) with their own series at once.
    pub service_limit: usize,
    /// A route segment with more distinct values than this under the same prefix becomes
    /// `{id}`.
    pub route_segment_values: usize,
    /// Service-graph edges at most.
    pub edge_limit: usize,
    /// Route patterns (`/users/{id}`), first match wins: the metrics' `http.route` for the
    /// paths they match, before any learnt collapse.
    pub routes: Vec<String>,
    /// Where the learnt route collapses are kept across restarts (JSON, per service name:
    /// the same list `/routes` shows); written every minute and at a clean stop, read at
    /// start. Empty: not kept.
    pub learnt_routes_file: std::path::PathBuf,
    /// Also export the RED metrics as OTLP metrics (`OTEL_METRICS_EXPORTER=otlp`), to the
    /// span exporter's endpoint unless `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` says otherwise.
    pub otlp_export: bool,
    /// How often (`OTEL_METRIC_EXPORT_INTERVAL`, in milliseconds there).
    #[serde(with = "sonde_config::duration")]
    pub export_interval: Duration,
    /// `cumulative` or `delta` (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`).
    pub temporality: otlp::Temporality,
    /// Where the OTLP metrics go: the `export:` section with the metrics variables applied
    /// (set when the configuration is loaded).
    #[serde(skip)]
    pub otlp: ExportConfig,
}

impl Default for RedSection {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            enabled: true,
            exemplars: l.exemplars,
            series_limit: l.series_per_service,
            total_series_limit: l.series_total,
            service_limit: l.services,
            route_segment_values: l.route_segment_values,
            edge_limit: l.edges,
            routes: Vec::new(),
            learnt_routes_file: std::path::PathBuf::from("/var/lib/sonde/agent/learnt-routes.json"),
            otlp_export: false,
            export_interval: Duration::from_secs(60),
            temporality: otlp::Temporality::Cumulative,
            otlp: ExportConfig::default(),
        }
    }
}

impl RedSection {
    pub fn validate(&self) -> Result<(), Invalid> {
        for (key, v, min) in [
            ("agent.red.series_limit", self.series_limit, 10),
            ("agent.red.total_series_limit", self.total_series_limit, 10),
            ("agent.red.service_limit", self.service_limit, 1),
            (
                "agent.red.route_segment_values",
                self.route_segment_values,
                1,
            ),
            ("agent.red.edge_limit", self.edge_limit, 1),
        ] {
            if v < min {
                return Err(Invalid::new(key, format!("must be ≥ {min}, got {v}")));
            }
        }
        patterns::RoutePatterns::parse(&self.routes)
            .map_err(|e| Invalid::new("agent.red.routes", e))?;
        if self.export_interval < Duration::from_secs(1) {
            return Err(Invalid::new(
                "agent.red.export_interval",
                format!(
                    "must be ≥ 1s, got {}",
                    sonde_config::duration::format(self.export_interval)
                ),
            ));
        }
        if self.otlp_export {
            self.otlp
                .validate_for(Signal::Metrics)
                .map_err(|e| Invalid::new("agent.red (OTLP metrics export)", e.to_string()))?;
        }
        Ok(())
    }

    /// Apply the standard metrics variables over the file: `OTEL_METRICS_EXPORTER` (`otlp`
    /// turns the OTLP export on, `none` off; Prometheus is always served),
    /// `OTEL_METRIC_EXPORT_INTERVAL`, the temporality preference, and the endpoint, protocol,
    /// headers, timeout, compression and certificate from `OTEL_EXPORTER_OTLP_METRICS_*`
    /// over `OTEL_EXPORTER_OTLP_*` over `export` (the file's `export:` section).
    pub fn apply_env(
        &mut self,
        export: &ExportConfig,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), Invalid> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = get("OTEL_METRICS_EXPORTER") {
            let names: Vec<&str> = v.split(',').map(str::trim).collect();
            if names.contains(&"otlp") {
                self.otlp_export = true;
            } else if names.contains(&"none") {
                self.otlp_export = false;
            }
        }
        if let Some(v) = get("OTEL_METRIC_EXPORT_INTERVAL") {
            let ms: u64 = v.parse().map_err(|_| {
                Invalid::new(
                    "OTEL_METRIC_EXPORT_INTERVAL",
                    format!("expected milliseconds as an integer, got {v:?}"),
                )
            })?;
            self.export_interval = Duration::from_millis(ms);
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") {
            self.temporality = otlp::Temporality::from_preference(&v).ok_or_else(|| {
                Invalid::new(
                    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                    format!("use cumulative, delta or lowmemory, got {v:?}"),
                )
            })?;
        }
        let mut otlp = export.clone();
        otlp.apply_env_for(Signal::Metrics, env)
            .map_err(|e| Invalid::new("OTEL_EXPORTER_OTLP_METRICS_*", e.to_string()))?;
        self.otlp = otlp;
        Ok(())
    }

    pub fn limits(&self) -> Limits {
        Limits {
            series_per_service: self.series_limit,
            series_total: self.total_series_limit,
            services: self.service_limit,
            route_segment_values: self.route_segment_values,
            route_nodes: self.route_segment_values.saturating_mul(40).max(100),
            edges: self.edge_limit,
            exemplars: self.exemplars,
            route_patterns: self.routes.clone(),
        }
    }
}

/// One hand-over to the RED thread.
struct Message {
    observations: Vec<Observation>,
    /// Spans dropped since the last hand-over that got through, per process.
    dropped: Vec<(Arc<ProcessResource>, u64)>,
    /// Exchanges the capture dropped without a span, per process.
    skipped: Vec<(Arc<ProcessResource>, u64)>,
}

/// The RED state, readable by `/metrics`.
#[derive(Clone, Debug)]
pub struct Red {
    state: Arc<Mutex<State>>,
    /// Where learnt route collapses are kept across restarts.
    routes_file: Option<std::path::PathBuf>,
}

/// How often the learnt routes are written (and at a clean stop).
const SAVE_ROUTES_EVERY: Duration = Duration::from_secs(60);

impl Red {
    pub fn new(limits: Limits) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new(limits))),
            routes_file: None,
        }
    }

    /// Keep learnt route collapses in `path` across restarts, starting from what it holds.
    /// A file that cannot be read is reported and ignored (the collapses are learnt again).
    pub fn with_routes_file(mut self, path: &std::path::Path) -> Self {
        if path.as_os_str().is_empty() {
            return self;
        }
        match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(learnt) => {
                    if let Ok(mut s) = self.state.lock() {
                        s.seed_learnt_routes(learnt);
                    }
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e,
                    "learnt routes unreadable: learning them again"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e,
                "learnt routes unreadable: learning them again"),
        }
        self.routes_file = Some(path.to_owned());
        self
    }

    /// Write the learnt routes (atomically: a temporary file renamed over the old one).
    fn save_routes(&self, state: &State) {
        let Some(path) = &self.routes_file else {
            return;
        };
        let learnt = state.learnt_routes();
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&learnt)?)?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            tracing::debug!(path = %path.display(), error = %e, "cannot keep the learnt routes");
        }
    }

    /// The metrics in `format` (no `# EOF`).
    pub fn render(&self, format: expose::Format) -> String {
        match self.state.lock() {
            Ok(s) => expose::render(&s, format),
            Err(_) => String::new(),
        }
    }

    /// Run `f` on the state (tests, export).
    pub fn with<T>(&self, f: impl FnOnce(&State) -> T) -> Option<T> {
        self.state.lock().ok().map(|s| f(&s))
    }

    /// Run `f` on the state, mutably (the exporter's counters).
    pub fn with_mut<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    fn run(&self, rx: &Receiver<Message>) {
        let mut saved = std::time::Instant::now();
        loop {
            let m = rx.recv_timeout(std::time::Duration::from_millis(100));
            let Ok(mut s) = self.state.lock() else {
                return;
            };
            match m {
                Ok(m) => {
                    for (r, n) in &m.dropped {
                        s.dropped(r, *n);
                    }
                    for (r, n) in &m.skipped {
                        s.skipped(r, *n);
                    }
                    s.record(m.observations);
                }
                Err(RecvTimeoutError::Timeout) => s.tick(false),
                Err(RecvTimeoutError::Disconnected) => {
                    s.tick(true);
                    self.save_routes(&s);
                    return;
                }
            }
            if saved.elapsed() >= SAVE_ROUTES_EVERY {
                self.save_routes(&s);
                saved = std::time::Instant::now();
            }
        }
    }
}

/// A span sink that feeds the RED thread, then hands the batch on to `inner`.
pub struct RedTap {
    inner: Box<dyn SpanSink>,
    tx: Option<SyncSender<Message>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Drops not yet reported, per process (bounded by the processes of a few hand-overs).
    dropped: HashMap<u32, (Arc<ProcessResource>, u64)>,
}

impl RedTap {
    /// Start the RED thread counting into `red`.
    pub fn start(red: &Red, inner: Box<dyn SpanSink>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let red = red.clone();
        let thread = std::thread::Builder::new()
            .name("sonde-red".into())
            .spawn(move || red.run(&rx))?;
        Ok(Self {
            inner,
            tx: Some(tx),
            thread: Some(thread),
            dropped: HashMap::new(),
        })
    }

    fn observe(&mut self, batch: &[(Arc<ProcessResource>, HttpSpan)]) {
        let Some(tx) = &self.tx else { return };
        let observations = batch.iter().map(|(r, s)| Observation::of(r, s)).collect();
        let dropped = self.dropped.drain().map(|(_, v)| v).collect();
        match tx.try_send(Message {
            observations,
            dropped,
            skipped: Vec::new(),
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
                for (r, n) in m.dropped {
                    self.dropped.entry(r.pid).or_insert((r, 0)).1 += n;
                }
                for o in m.observations {
                    self.dropped
                        .entry(o.resource.pid)
                        .or_insert((o.resource, 0))
                        .1 += 1;
                }
            }
        }
    }
}

impl SpanSink for RedTap {
    fn send(&mut self, batch: Vec<(Arc<ProcessResource>, HttpSpan)>) {
        self.observe(&batch);
        self.inner.send(batch);
    }

    fn skipped(&mut self, by_process: Vec<(Arc<ProcessResource>, u64)>) {
        // A loss counter: when the RED queue is full, it is lost too (rare, at a sweep).
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Message {
                observations: Vec::new(),
                dropped: Vec::new(),
                skipped: by_process,
            });
        }
    }

    fn finish(&mut self) {
        // The last drops are worth a wait: the agent is stopping.
        if let Some(tx) = self.tx.take()
            && !self.dropped.is_empty()
        {
            let dropped = self.dropped.drain().map(|(_, v)| v).collect();
            let _ = tx.send(Message {
                observations: Vec::new(),
                dropped,
                skipped: Vec::new(),
            });
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.inner.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::{resource, server_span};

    struct Count(Arc<Mutex<usize>>);
    impl SpanSink for Count {
        fn send(&mut self, batch: Vec<(Arc<ProcessResource>, HttpSpan)>) {
            *self.0.lock().unwrap() += batch.len();
        }
    }

    #[test]
    fn tap_counts_and_passes_every_span_on() {
        let red = Red::new(Limits::default());
        let seen = Arc::new(Mutex::new(0));
        let mut tap = RedTap::start(&red, Box::new(Count(seen.clone()))).unwrap();
        let r = resource(1, "shop");
        for _ in 0..10 {
            tap.send((0..100).map(|_| (r.clone(), server_span())).collect());
        }
        tap.finish();
        assert_eq!(*seen.lock().unwrap(), 1000);
        let (counted, dropped) = red
            .with(|s| {
                let svc = s.services.values().next().unwrap();
                let n: u64 = svc.server.series.values().map(|x| x.duration.count()).sum();
                (n, svc.dropped_spans)
            })
            .unwrap();
        assert_eq!(counted + dropped, 1000);
        let text = red.render(expose::Format::Text);
        assert!(text.contains("http_server_request_duration_seconds_count{"));
    }

    /// Collapses learnt in one run are in the file at a clean stop, and the next run starts
    /// from them.
    #[test]
    fn learnt_routes_are_kept_in_their_file_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent/learnt-routes.json");
        let limits = Limits {
            route_segment_values: 2,
            ..Limits::default()
        };
        let red = Red::new(limits.clone()).with_routes_file(&file);
        let mut tap = RedTap::start(&red, Box::new(Count(Arc::new(Mutex::new(0))))).unwrap();
        let r = resource(1, "shop");
        let span = |path: &str| {
            let mut s = server_span();
            s.route = Some(path.to_owned());
            (r.clone(), s)
        };
        tap.send(["/tag/a", "/tag/b", "/tag/c"].map(span).to_vec());
        tap.finish();
        let text = std::fs::read_to_string(&file).expect("written at the stop");
        assert!(text.contains("/tag/{id}"), "{text}");
        let again = Red::new(limits).with_routes_file(&file);
        let learnt = again.with(State::learnt_routes).unwrap();
        assert_eq!(learnt["shop"], vec!["/tag/{id}".to_owned()]);
    }

    /// Exchanges the capture dropped are counted next to the service's numbers.
    #[test]
    fn skipped_exchanges_are_counted_per_service() {
        let red = Red::new(Limits::default());
        let mut tap = RedTap::start(&red, Box::new(Count(Arc::new(Mutex::new(0))))).unwrap();
        let r = resource(1, "shop");
        tap.send(vec![(r.clone(), server_span())]);
        tap.skipped(vec![(r, 3)]);
        tap.finish();
        let text = red.render(expose::Format::Text);
        let line = text
            .lines()
            .find(|l| l.starts_with("sonde_red_skipped_exchanges_total{"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            line.contains("service_name=\"shop\"") && line.ends_with(" 3"),
            "{line}"
        );
    }

    #[test]
    fn a_corrupt_routes_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("learnt-routes.json");
        std::fs::write(&file, "{not json").unwrap();
        let red = Red::new(Limits::default()).with_routes_file(&file);
        assert!(red.with(State::learnt_routes).unwrap().is_empty());
    }

    #[test]
    fn full_queue_drops_and_counts_per_service() {
        let red = Red::new(Limits::default());
        // Hold the state so the RED thread blocks and its queue fills.
        let guard = red.state.lock().unwrap();
        let mut tap = RedTap::start(&red, Box::new(Count(Arc::new(Mutex::new(0))))).unwrap();
        let r = resource(1, "shop");
        for _ in 0..QUEUE + 10 {
            tap.send(vec![(r.clone(), server_span())]);
        }
        drop(guard);
        // One more hand-over carries the drops.
        std::thread::sleep(std::time::Duration::from_millis(100));
        tap.send(vec![(r.clone(), server_span())]);
        tap.finish();
        let (counted, dropped) = red
            .with(|s| {
                let svc = s.services.values().next().unwrap();
                let n: u64 = svc.server.series.values().map(|x| x.duration.count()).sum();
                (n, svc.dropped_spans)
            })
            .unwrap();
        assert!(dropped >= 9, "{dropped}");
        assert_eq!(counted + dropped, QUEUE as u64 + 11);
    }
}
