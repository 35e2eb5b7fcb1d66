//! One tenant: its live traces (with their WAL), traces being cut into a block, blocks on
//! disk, and its ingest limits. Ingest appends to the WAL before touching memory; queries read live →
//! pending → blocks, and movers insert into the next stage before removing from the last, so
//! a trace is never invisible while it moves.
use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, trace::v1::TracesData,
};
use prost::Message;

use super::{
    block::Block,
    error::{IngestError, StoreError},
    fsio::Io,
    hash::FastMap,
    ids::TraceId,
    ingest::split::Split,
    live::{Live, LiveState, LiveTrace, Pending, insert_fragment},
    loggate::LogGate,
    rows::Remap,
    wal::{self, Wal},
};

/// A token bucket over bytes per second.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ns: u64,
}

impl Bucket {
    fn take(&mut self, now_ns: u64, n: usize) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let dt = now_ns.saturating_sub(self.last_ns) as f64 / 1e9;
        self.last_ns = now_ns.max(self.last_ns);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// Per-tenant limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes_per_trace: usize,
    pub rate_bytes: u64,
    pub burst_bytes: u64,
    pub max_live_bytes: usize,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestOutcome {
    pub accepted_spans: usize,
    pub rejected_spans: usize,
    /// Why spans were rejected (OTLP partial-success message).
    pub message: Option<String>,
    /// Bytes written to the WAL.
    pub bytes: usize,
    /// Spans rejected because their trace grew beyond the size limit.
    pub too_large_spans: usize,
}

/// One tenant.
#[derive(Debug)]
pub struct Tenant {
    pub name: String,
    pub dir: PathBuf,
    pub state: Mutex<LiveState>,
    pub pending: RwLock<Vec<Arc<Pending>>>,
    pub blocks: RwLock<Vec<Arc<Block>>>,
    bucket: Mutex<Bucket>,
    pub limits: Limits,
    /// Memory held by cuts waiting to be written as blocks (they stay while writes fail).
    pending_bytes: AtomicUsize,
    /// One log line per interval for each failure that repeats every tick.
    pub log_gates: LogGates,
}

/// Log gates of a tenant's repeating failures.
#[derive(Debug, Default)]
pub struct LogGates {
    pub block_write: LogGate,
    pub compaction: LogGate,
    pub fsync: LogGate,
    pub wal_write: LogGate,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tenant {
    /// Open a tenant directory: load blocks, replay the WAL.
    pub fn open(
        name: &str,
        dir: &Path,
        io: Io,
        limits: Limits,
        sync_each_write: bool,
        now_ns: u64,
    ) -> Result<Self, StoreError> {
        let blocks_dir = crate::layout::blocks_dir(dir);
        std::fs::create_dir_all(&blocks_dir).map_err(|e| StoreError::io(&blocks_dir, e))?;
        let mut blocks = Vec::new();
        let rd = std::fs::read_dir(&blocks_dir).map_err(|e| StoreError::io(&blocks_dir, e))?;
        for e in rd.flatten() {
            let p = e.path();
            let fname = e.file_name().to_string_lossy().to_string();
            if fname.starts_with(crate::layout::TMP_PREFIX) {
                let _ = std::fs::remove_dir_all(&p);
                continue;
            }
            match Block::open(&p) {
                Ok(b) => blocks.push(Arc::new(b)),
                Err(err) => {
                    tracing::error!(block = %p.display(), error = %err, "skipping unreadable block")
                }
            }
        }
        blocks.sort_by(|a: &Arc<Block>, b| a.meta.id.cmp(&b.meta.id));
        let wal_dir = crate::layout::wal_dir(dir);
        let (mut wal, replayed) =
            Wal::open(&wal_dir, io, sync_each_write).map_err(|e| StoreError::io(&wal_dir, e))?;
        wal.last_write_ns = now_ns;
        let mut live = Live::default();
        for rec in replayed {
            for (id, payload) in rec.fragments {
                let Ok(td) = TracesData::decode(payload.as_slice()) else {
                    tracing::warn!(tenant = name, "skipping undecodable WAL fragment");
                    continue;
                };
                for rs in &td.resource_spans {
                    let res_key = rs
                        .resource
                        .as_ref()
                        .map(|r| r.encode_to_vec())
                        .unwrap_or_default();
                    let scope_keys: Vec<Vec<u8>> = rs
                        .scope_spans
                        .iter()
                        .map(|ss| {
                            ss.scope
                                .as_ref()
                                .map(|s| s.encode_to_vec())
                                .unwrap_or_default()
                        })
                        .collect();
                    let spans = rs
                        .scope_spans
                        .iter()
                        .enumerate()
                        .flat_map(|(si, ss)| (0..ss.spans.len()).map(move |pi| (si, pi)));
                    insert_fragment(
                        &mut live,
                        id,
                        &[],
                        rs,
                        &res_key,
                        &scope_keys,
                        spans,
                        now_ns,
                        rec.segment,
                    );
                }
                if let Some(t) = live.traces.get_mut(&id) {
                    t.payload.extend_from_slice(&payload);
                    live.bytes += payload.len();
                }
            }
        }
        if !live.traces.is_empty() {
            tracing::info!(tenant = name, traces = live.traces.len(), "replayed WAL");
        }
        Ok(Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            state: Mutex::new(LiveState { live, wal }),
            pending: RwLock::new(Vec::new()),
            blocks: RwLock::new(blocks),
            bucket: Mutex::new(Bucket {
                rate: limits.rate_bytes as f64,
                burst: limits.burst_bytes.max(limits.rate_bytes) as f64,
                tokens: limits.burst_bytes.max(limits.rate_bytes) as f64,
                last_ns: now_ns,
            }),
            limits,
            pending_bytes: AtomicUsize::new(0),
            log_gates: LogGates::default(),
        })
    }

    /// Ingest a split request: rate limit, size limits, WAL append, then live insert. Also
    /// returns which fragments were accepted.
    pub fn ingest(
        &self,
        req: &ExportTraceServiceRequest,
        split: &Split,
        req_bytes: usize,
        now_ns: u64,
    ) -> Result<(IngestOutcome, Vec<bool>), IngestError> {
        if !lock(&self.bucket).take(now_ns, req_bytes) {
            return Err(IngestError::RateLimited {
                tenant: self.name.clone(),
                limit: self.limits.rate_bytes,
                bytes: req_bytes,
            });
        }
        let mut out = IngestOutcome {
            rejected_spans: split.rejected_spans,
            message: split.reject_reason.clone(),
            ..IngestOutcome::default()
        };
        let mut st = lock(&self.state);
        // Live traces and cuts not yet written both hold memory: a failing block write must
        // not let memory grow while the WAL keeps acknowledging.
        let held = st.live.bytes + self.pending_bytes.load(Ordering::Relaxed);
        if held > self.limits.max_live_bytes {
            return Err(IngestError::Busy { live_bytes: held });
        }
        // Trace size limit, counting fragments of the same trace in this request too.
        let mut added: FastMap<TraceId, usize> = FastMap::default();
        let mut accept = vec![true; split.fragments.len()];
        for (i, f) in split.fragments.iter().enumerate() {
            let cur = st
                .live
                .traces
                .get(&f.trace_id)
                .map_or(0, |t| t.payload.len());
            let add = added.entry(f.trace_id).or_insert(0);
            if cur + *add + f.payload.len() > self.limits.max_bytes_per_trace {
                accept[i] = false;
                out.rejected_spans += f.spans.len();
                out.too_large_spans += f.spans.len();
                out.message.get_or_insert_with(|| {
                    format!(
                        "TRACE_TOO_LARGE: max size of trace ({}) exceeded while adding {} bytes to trace {} for tenant {}",
                        self.limits.max_bytes_per_trace,
                        f.payload.len(),
                        hex::encode(f.trace_id),
                        self.name
                    )
                });
            } else {
                *add += f.payload.len();
            }
        }
        let accepted = || {
            split
                .fragments
                .iter()
                .zip(&accept)
                .filter(|(_, a)| **a)
                .map(|(f, _)| f)
        };
        if accepted().next().is_none() {
            return Ok((out, accept));
        }
        let record = wal::encode_record(
            now_ns,
            accepted().map(|f| (&f.trace_id, f.payload.as_slice())),
        );
        let seg = st.wal.seq();
        st.wal
            .append(&record)
            .map_err(|source| IngestError::Storage {
                path: crate::layout::wal_dir(&self.dir),
                source,
            })?;
        st.wal.last_write_ns = now_ns;
        out.bytes = record.len();
        for f in accepted() {
            let rs = &req.resource_spans[f.rs];
            insert_fragment(
                &mut st.live,
                f.trace_id,
                &f.payload,
                rs,
                &split.resource_keys[f.rs],
                &split.scope_keys[f.rs],
                f.spans.iter().map(|&(s, p)| (s as usize, p as usize)),
                now_ns,
                seg,
            );
            out.accepted_spans += f.spans.len();
        }
        Ok((out, accept))
    }

    /// Take traces out of live for a block: those without appends for `idle_ns`, or for
    /// `rootless_idle_ns` while their root span has not arrived (0 = take all). Returns `None`
    /// when nothing qualifies.
    pub fn take_for_block(
        &self,
        now_ns: u64,
        idle_ns: u64,
        rootless_idle_ns: u64,
    ) -> Result<Option<Arc<Pending>>, StoreError> {
        let mut st = lock(&self.state);
        let cut: Vec<TraceId> = st
            .live
            .traces
            .iter()
            .filter(|(_, t)| {
                let wait = if t.has_root {
                    idle_ns
                } else {
                    rootless_idle_ns.max(idle_ns)
                };
                idle_ns == 0 || t.last_ns.saturating_add(wait) <= now_ns
            })
            .map(|(id, _)| *id)
            .collect();
        if cut.is_empty() {
            return Ok(None);
        }
        let st = &mut *st;
        let mut taken: Vec<(TraceId, LiveTrace)> = cut
            .iter()
            .filter_map(|id| st.live.traces.remove(id).map(|t| (*id, t)))
            .collect();
        taken.sort_unstable_by_key(|a| a.0);
        // Rebuild the live table with only the traces that stay.
        let old = std::mem::take(&mut st.live.table);
        let mut remap = Remap::new();
        let mut bytes = 0;
        for t in st.live.traces.values_mut() {
            for row in &mut t.spans {
                *row = remap.span(&old, &mut st.live.table, row);
            }
            bytes += t.mem_bytes();
        }
        st.live.bytes = bytes;
        let wal_seq = st
            .wal
            .rotate()
            .map_err(|e| StoreError::io(crate::layout::wal_dir(&self.dir), e))?;
        let p = Arc::new(Pending {
            bytes: taken.iter().map(|(_, t)| t.mem_bytes()).sum(),
            table: old,
            traces: taken,
            wal_seq,
        });
        self.pending_bytes.fetch_add(p.bytes, Ordering::Relaxed);
        self.pending
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(p.clone());
        Ok(Some(p))
    }

    /// Oldest WAL segment still needed by live or pending data.
    pub fn wal_needed_from(&self) -> u64 {
        let st = lock(&self.state);
        let mut min = st.wal.seq();
        for t in st.live.traces.values() {
            min = min.min(t.min_seg);
        }
        drop(st);
        for p in self
            .pending
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            for (_, t) in &p.traces {
                min = min.min(t.min_seg);
            }
        }
        min
    }

    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Drop a cut now written as a block.
    pub fn remove_pending(&self, p: &Arc<Pending>) {
        let mut list = self
            .pending
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = list.len();
        list.retain(|x| !Arc::ptr_eq(x, p));
        if list.len() < before {
            self.pending_bytes.fetch_sub(p.bytes, Ordering::Relaxed);
        }
    }

    pub fn pendings(&self) -> Vec<Arc<Pending>> {
        self.pending
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn live_stats(&self) -> (usize, usize) {
        let st = lock(&self.state);
        (st.live.traces.len(), st.live.bytes)
    }

    pub fn lock_state(&self) -> std::sync::MutexGuard<'_, LiveState> {
        lock(&self.state)
    }
}
