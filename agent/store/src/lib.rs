//! The embedded Tempo-compatible trace store, by stage:
//!
//! | stage | module |
//! |---|---|
//! | ingest: OTLP receivers, per-trace fragments | [`ingest`] |
//! | live traces and the cuts waiting to become blocks | [`live`], per tenant in [`tenant`] |
//! | write-ahead log | [`wal`] |
//! | immutable blocks: trace-id index, bloom filter, columnar search rows | [`block`], [`rows`] |
//! | maintenance: cut, compact, retention | [`maintenance`] |
//! | query: trace by id, search, TraceQL over a trace view | [`query`] |
//! | Tempo's HTTP API and its parameters; what one query may cost | [`api`], [`query::budget`] |
//! | the listeners' TLS and token check | [`tls`], [`auth`] |
//! | span metrics and service graphs, remote write, scrape route | [`generator`] |
//!
//! The on-disk layout is named in [`layout`]; every write goes through [`fsio`] so tests can
//! fill the disk.
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod block;
pub(crate) mod codec;
pub mod config;
mod error;
pub(crate) mod fsio;
pub mod generator;
pub(crate) mod hash;
pub mod ids;
pub(crate) mod ingest;
pub(crate) mod layout;
pub(crate) mod live;
pub(crate) mod loggate;
pub(crate) mod maintenance;
pub(crate) mod metrics;
pub(crate) mod query;
pub(crate) mod rows;
mod serve;
pub(crate) mod tenant;
pub(crate) mod tls;
pub(crate) mod wal;

pub use api::tempopb;
pub use config::{SearchSection, StoreLimits, StoreSection};
pub use error::{IngestError, StoreError};
pub use query::budget::QueryError;
pub use serve::{serve, serve_on};
pub use tenant::IngestOutcome;

use fsio::{Io, RealIo};
use layout::tenant_dir;
use metrics::Metrics;
use tenant::{Limits, Tenant};

/// Source of "now" (unix nanoseconds); tests inject a manual one.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use testutil::ManualClock;

/// Sees every accepted batch (the metrics generator: span metrics, service graphs).
pub trait BatchObserver: Send + Sync {
    fn observe(&self, tenant: &str, batch: &ExportTraceServiceRequest);
}

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MaintenanceReport {
    pub blocks_cut: usize,
    pub blocks_compacted: usize,
    pub blocks_deleted: usize,
    pub errors: Vec<String>,
}

pub(crate) struct Inner {
    pub cfg: StoreSection,
    pub clock: Arc<dyn Clock>,
    pub io: Io,
    pub tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    pub metrics: Metrics,
    pub observer: RwLock<Option<Arc<dyn BatchObserver>>>,
    /// The metrics generator, also installed as the observer, when `generator.enabled`.
    pub generator: Option<Arc<generator::Generator>>,
    pub cache: query::GroupCache,
    /// One permit per search allowed to run at once.
    pub query_slots: Arc<tokio::sync::Semaphore>,
    /// Request bytes being received and decoded by the receivers.
    pub ingest_bytes: ingest::inflight::InFlight,
    /// The token requests must present, if `auth_token_file` is set.
    pub auth: Option<auth::Auth>,
    /// Certificate and key, if the listeners speak TLS.
    pub tls: Option<tls::Tls>,
    pub(crate) cut_lock: Mutex<()>,
    pub(crate) compact_lock: Mutex<()>,
}

/// A cheaply clonable handle to the store.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.cfg.data_dir)
            .finish()
    }
}

impl Store {
    /// Open (or create) the store under `cfg.data_dir`, replaying each tenant's WAL.
    pub fn open(cfg: &StoreSection, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        Self::open_with_io(cfg, clock, Arc::new(RealIo))
    }

    /// Like `open`, with a file-system hook (tests inject failing writes).
    pub fn open_with_io(
        cfg: &StoreSection,
        clock: Arc<dyn Clock>,
        io: Io,
    ) -> Result<Store, StoreError> {
        cfg.validate().map_err(StoreError::Config)?;
        let auth = if cfg.auth_token_file.as_os_str().is_empty() {
            None
        } else {
            Some(auth::Auth::from_file(&cfg.auth_token_file)?)
        };
        let tls = if cfg.tls_cert_file.as_os_str().is_empty() {
            None
        } else {
            Some(tls::Tls::load(&cfg.tls_cert_file, &cfg.tls_key_file)?)
        };
        let dir = &cfg.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let generator = cfg.generator.enabled.then(|| {
            Arc::new(generator::Generator::new(
                &cfg.generator,
                clock.clone(),
                cfg.multitenancy_enabled,
            ))
        });
        let observer: Option<Arc<dyn BatchObserver>> =
            generator.clone().map(|g| g as Arc<dyn BatchObserver>);
        let inner = Arc::new(Inner {
            cfg: cfg.clone(),
            clock,
            io,
            tenants: RwLock::new(HashMap::new()),
            metrics: Metrics::new(),
            observer: RwLock::new(observer),
            generator,
            cache: query::GroupCache::new(cfg.search_cache_bytes),
            query_slots: Arc::new(tokio::sync::Semaphore::new(
                cfg.search.max_concurrent_queries,
            )),
            ingest_bytes: ingest::inflight::InFlight::new(cfg.max_ingest_bytes_in_flight),
            auth,
            tls,
            cut_lock: Mutex::new(()),
            compact_lock: Mutex::new(()),
        });
        let store = Store { inner };
        let rd = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if e.path().is_dir() && ids::validate_tenant(&name).is_ok() {
                store.tenant(&name)?;
            }
        }
        store.update_gauges();
        Ok(store)
    }

    pub fn config(&self) -> &StoreSection {
        &self.inner.cfg
    }

    pub fn now_ns(&self) -> u64 {
        self.inner.clock.now_ns()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The metrics generator, when on.
    pub fn generator(&self) -> Option<&Arc<generator::Generator>> {
        self.inner.generator.as_ref()
    }

    /// Install the observer that sees every accepted batch (in place of the generator).
    pub fn set_observer(&self, o: Arc<dyn BatchObserver>) {
        *self
            .inner
            .observer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(o);
    }

    fn limits(&self) -> Limits {
        let l = &self.inner.cfg.limits;
        Limits {
            max_bytes_per_trace: l.max_bytes_per_trace,
            rate_bytes: l.ingestion_rate_limit_bytes,
            burst_bytes: l.ingestion_burst_size_bytes,
            max_live_bytes: l.max_live_bytes,
        }
    }

    /// The tenant's state, opening (and replaying) it on first use.
    pub fn tenant(&self, name: &str) -> Result<Arc<Tenant>, StoreError> {
        // No limit here, so `None` cannot happen; it is still an error, not a panic.
        self.open_tenant(name, usize::MAX)?.ok_or_else(|| {
            StoreError::Config(sonde_config::Invalid::new(
                "store.max_tenants",
                "no more tenants can be opened",
            ))
        })
    }

    /// Like [`Store::tenant`], but `None` when opening it would make more than `max` tenants.
    fn open_tenant(&self, name: &str, max: usize) -> Result<Option<Arc<Tenant>>, StoreError> {
        if let Some(t) = self.existing_tenant(name) {
            return Ok(Some(t));
        }
        let mut map = self
            .inner
            .tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = map.get(name) {
            return Ok(Some(t.clone()));
        }
        if map.len() >= max {
            return Ok(None);
        }
        let dir: PathBuf = tenant_dir(&self.inner.cfg.data_dir, name);
        let t = Arc::new(Tenant::open(
            name,
            &dir,
            self.inner.io.clone(),
            self.limits(),
            self.inner.cfg.wal_fsync_interval_ns() == 0,
            self.now_ns(),
        )?);
        map.insert(name.to_string(), t.clone());
        Ok(Some(t))
    }

    /// The tenant an ingest writes to: a new one must have a plain name and fit under
    /// `max_tenants`; existing tenants are never refused here.
    fn tenant_for_ingest(&self, name: &str) -> Result<Arc<Tenant>, IngestError> {
        if let Some(t) = self.existing_tenant(name) {
            return Ok(t);
        }
        ids::validate_new_tenant(name).map_err(IngestError::Tenant)?;
        let max = self.inner.cfg.max_tenants;
        match self.open_tenant(name, max) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(IngestError::TooManyTenants { max }),
            Err(e) => {
                tracing::error!(tenant = name, error = %e, "cannot open tenant");
                Err(IngestError::Storage {
                    path: tenant_dir(&self.inner.cfg.data_dir, name),
                    source: std::io::Error::other("cannot open the tenant's directory"),
                })
            }
        }
    }

    /// Existing tenant, if any (queries never create tenants).
    pub fn existing_tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.inner
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.inner
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Ingest one OTLP export request for `tenant` (the in-process handoff and both receivers).
    /// Acknowledge only on `Ok`: the accepted spans are then in the WAL.
    pub fn ingest(
        &self,
        tenant: &str,
        req: ExportTraceServiceRequest,
    ) -> Result<IngestOutcome, IngestError> {
        ids::validate_tenant(tenant).map_err(IngestError::Tenant)?;
        let m = &self.inner.metrics;
        let tl = Metrics::labels(&[("tenant", tenant)]);
        let req_bytes = req.encoded_len();
        let split = ingest::split::split(
            &req,
            self.now_ns().saturating_add(ingest::split::MAX_FUTURE_NS),
        );
        m.spans_received
            .get_or_create(&tl)
            .inc_by(split.spans_total as u64);
        m.bytes_received.get_or_create(&tl).inc_by(req_bytes as u64);
        let t = match self.tenant_for_ingest(tenant) {
            Ok(t) => t,
            Err(e) => {
                let reason = match e {
                    IngestError::TooManyTenants { .. } => "too_many_tenants",
                    IngestError::Tenant(_) => "invalid_tenant",
                    _ => "storage_error",
                };
                m.discarded_spans
                    .get_or_create(&Metrics::labels(&[("reason", reason), ("tenant", tenant)]))
                    .inc_by(split.spans_total as u64);
                return Err(e);
            }
        };
        let res = t.ingest(&req, &split, req_bytes, self.now_ns());
        if let Err(IngestError::Storage { path, source }) = &res
            && let Some(held_back) = t.log_gates.wal_write.allow()
        {
            tracing::error!(tenant, path = %path.display(), error = %source, held_back, "cannot append to the WAL; ingest refused");
        }
        let (res, mask) = match res {
            Ok((o, mask)) => (Ok(o), mask),
            Err(e) => (Err(e), Vec::new()),
        };
        let discard = |reason: &str, n: usize| {
            if n > 0 {
                m.discarded_spans
                    .get_or_create(&Metrics::labels(&[("reason", reason), ("tenant", tenant)]))
                    .inc_by(n as u64);
            }
        };
        match &res {
            Ok(o) => {
                discard("trace_too_large", o.too_large_spans);
                discard("invalid", o.rejected_spans - o.too_large_spans);
            }
            Err(IngestError::RateLimited { .. }) => discard("rate_limited", split.spans_total),
            Err(IngestError::Busy { .. }) => discard("store_busy", split.spans_total),
            Err(IngestError::Storage { .. }) => discard("storage_error", split.spans_total),
            Err(_) => discard("other", split.spans_total),
        }
        if let Ok(o) = &res
            && o.accepted_spans > 0
            && let Some(obs) = self
                .inner
                .observer
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        {
            if o.rejected_spans == 0 {
                obs.observe(tenant, &req);
            } else {
                obs.observe(tenant, &accepted_only(req, &split, &mask));
            }
        }
        res
    }

    /// One maintenance pass: cut due blocks, write pending ones, compact, apply retention.
    /// `force` cuts every live trace now (tests, shutdown). The server runs the two halves
    /// (`cut_blocks`, `compact_blocks`) in separate loops so a long compaction never delays
    /// cutting.
    pub fn maintain(&self, force: bool) -> MaintenanceReport {
        let mut rep = self.cut_blocks(force);
        let r2 = self.compact_blocks();
        rep.blocks_compacted = r2.blocks_compacted;
        rep.blocks_deleted = r2.blocks_deleted;
        rep.errors.extend(r2.errors);
        rep
    }

    /// fsync every tenant's current WAL segment.
    pub fn sync_wal(&self) {
        for t in self.tenants() {
            let h = t.lock_state().wal.sync_handle();
            match h.and_then(|f| f.map_or(Ok(()), |f| f.sync_data())) {
                Ok(()) => {}
                Err(e) => {
                    if let Some(held_back) = t.log_gates.fsync.allow() {
                        tracing::error!(tenant = %t.name, error = %e, held_back, "WAL fsync failed");
                    }
                }
            }
        }
    }

    /// Refresh the storage gauges.
    pub fn update_gauges(&self) {
        let m = &self.inner.metrics;
        for t in self.tenants() {
            let blocks = t.blocks();
            let live = Metrics::labels(&[("tenant", &t.name), ("status", "live")]);
            let tl = Metrics::labels(&[("tenant", &t.name)]);
            m.backend_bytes
                .get_or_create(&live)
                .set(blocks.iter().map(|b| b.meta.total_bytes()).sum::<u64>() as i64);
            m.backend_objects
                .get_or_create(&live)
                .set(blocks.iter().map(|b| b.meta.traces).sum::<u64>() as i64);
            m.blocklist_length
                .get_or_create(&tl)
                .set(blocks.len() as i64);
            let (n, bytes) = t.live_stats();
            m.live_traces.get_or_create(&tl).set(n as i64);
            m.live_bytes.get_or_create(&tl).set(bytes as i64);
            m.wal_bytes
                .get_or_create(&tl)
                .set(fsio::dir_bytes(&t.dir.join("wal")) as i64);
        }
    }
}

/// A copy of the request holding only the spans of accepted fragments.
fn accepted_only(
    mut req: ExportTraceServiceRequest,
    split: &ingest::split::Split,
    accepted: &[bool],
) -> ExportTraceServiceRequest {
    let mut keep: std::collections::HashSet<(usize, u32, u32)> = std::collections::HashSet::new();
    for (f, _) in split.fragments.iter().zip(accepted).filter(|(_, a)| **a) {
        for &(s, p) in &f.spans {
            keep.insert((f.rs, s, p));
        }
    }
    for (ri, rs) in req.resource_spans.iter_mut().enumerate() {
        for (si, ss) in rs.scope_spans.iter_mut().enumerate() {
            let mut pi = 0u32;
            ss.spans.retain(|_| {
                let k = keep.contains(&(ri, si as u32, pi));
                pi += 1;
                k
            });
        }
    }
    req
}

#[cfg(test)]
mod tests;
#[cfg(any(test, feature = "test-util"))]
pub mod testutil;
