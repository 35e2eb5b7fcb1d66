//! Background work on a tenant: write pending traces as blocks, compact small blocks into
//! bigger ones, and delete blocks past retention. Each step is a plain function so tests can
//! drive it with an injected clock.
use std::sync::{Arc, PoisonError};

use super::{
    MaintenanceReport, Store,
    block::{Block, BlockMeta, BlockWriter, WriteOptions, group::Group},
    error::StoreError,
    fsio::Io,
    ids::TraceId,
    layout,
    live::Pending,
    metrics::Metrics,
    rows::{SpanRow, Table},
    tenant::Tenant,
};

/// A tenant's WAL segment is fsynced and closed after this long without appends, so idle
/// tenants hold no file handle.
pub const WAL_IDLE_CLOSE_NS: u64 = 60_000_000_000;

/// Write one pending cut as a block and publish it; then drop it from pending and free WAL
/// segments nobody needs. On failure the pending data stays in memory and in the WAL.
pub fn write_pending(
    t: &Tenant,
    p: &Arc<Pending>,
    io: &Io,
    opts: WriteOptions,
    now_ns: u64,
) -> Result<BlockMeta, StoreError> {
    let blocks_dir = layout::blocks_dir(&t.dir);
    let id = layout::new_block_id(now_ns);
    let mut w = BlockWriter::create(&blocks_dir, &id, 0, io.clone(), opts)?;
    for (tid, lt) in &p.traces {
        let parts: [(&Table, &[SpanRow]); 1] = [(&p.table, &lt.spans)];
        if let Err(e) = w.add(*tid, &lt.payload, &parts) {
            let _ = std::fs::remove_dir_all(layout::block_tmp_dir(&blocks_dir, &id));
            return Err(e);
        }
    }
    let meta = w.finish(now_ns)?;
    let block = Arc::new(Block::open(&blocks_dir.join(&id))?);
    t.blocks
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .push(block);
    t.remove_pending(p);
    free_wal(t)?;
    Ok(meta)
}

/// Delete WAL segments whose data is all in blocks.
pub fn free_wal(t: &Tenant) -> Result<(), StoreError> {
    let needed = t.wal_needed_from();
    let st = t.lock_state();
    st.wal
        .remove_below(needed)
        .map_err(|e| StoreError::io(t.dir.join("wal"), e))
}

/// A streaming cursor over one block's traces in id order (one page and one group in memory).
struct Cursor<'a> {
    block: &'a Block,
    page: usize,
    recs: Vec<(TraceId, Vec<u8>)>,
    rec: usize,
    group_idx: usize,
    group: Arc<Group>,
    ti: usize,
}

impl<'a> Cursor<'a> {
    fn new(block: &'a Block) -> Result<Self, StoreError> {
        let mut c = Self {
            block,
            page: 0,
            recs: Vec::new(),
            rec: 0,
            group_idx: 0,
            group: Arc::default(),
            ti: 0,
        };
        c.fill()?;
        Ok(c)
    }

    fn fill(&mut self) -> Result<(), StoreError> {
        while self.rec >= self.recs.len() && self.page < self.block.page_count() {
            self.recs = self.block.page_records(self.page)?;
            self.page += 1;
            self.rec = 0;
        }
        if self.rec < self.recs.len() {
            while self.ti >= self.group.traces.len() {
                if self.group_idx >= self.block.groups.len() {
                    return Err(StoreError::corrupt(
                        &self.block.dir,
                        "fewer rows than payloads",
                    ));
                }
                self.group = Arc::new(self.block.read_group(self.group_idx)?);
                self.group_idx += 1;
                self.ti = 0;
            }
            if self.group.traces[self.ti].id != self.recs[self.rec].0 {
                return Err(StoreError::corrupt(
                    &self.block.dir,
                    "rows out of step with payloads",
                ));
            }
        }
        Ok(())
    }

    fn peek(&self) -> Option<&TraceId> {
        self.recs.get(self.rec).map(|r| &r.0)
    }

    /// Take the current trace: payload, its group and index in the group.
    fn next(&mut self) -> Result<(Vec<u8>, Arc<Group>, usize), StoreError> {
        let payload = std::mem::take(&mut self.recs[self.rec].1);
        let out = (payload, self.group.clone(), self.ti);
        self.rec += 1;
        self.ti += 1;
        self.fill()?;
        Ok(out)
    }
}

/// Merge `inputs` (blocks of `t`) into one new block, publish it, and delete the inputs.
pub fn compact(
    t: &Tenant,
    inputs: &[Arc<Block>],
    io: &Io,
    opts: WriteOptions,
    now_ns: u64,
) -> Result<BlockMeta, StoreError> {
    let blocks_dir = layout::blocks_dir(&t.dir);
    let id = layout::new_block_id(now_ns);
    let level = inputs.iter().map(|b| b.meta.level).max().unwrap_or(0) + 1;
    let mut cursors = Vec::with_capacity(inputs.len());
    for b in inputs {
        cursors.push(Cursor::new(b)?);
    }
    let mut w = BlockWriter::create(&blocks_dir, &id, level, io.clone(), opts)?;
    let res = (|| {
        while let Some(min) = cursors.iter().filter_map(Cursor::peek).min().copied() {
            let mut payload = Vec::new();
            let mut groups: Vec<(Arc<Group>, usize)> = Vec::new();
            for c in &mut cursors {
                while c.peek() == Some(&min) {
                    let (p, g, ti) = c.next()?;
                    payload.extend_from_slice(&p);
                    groups.push((g, ti));
                }
            }
            let parts: Vec<(&Table, &[SpanRow])> = groups
                .iter()
                .map(|(g, ti)| (&g.table, &g.spans[g.traces[*ti].spans.range()]))
                .collect();
            w.add(min, &payload, &parts)?;
        }
        Ok::<(), StoreError>(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_dir_all(layout::block_tmp_dir(&blocks_dir, &id));
        return Err(e);
    }
    // The merged block keeps its inputs' ingest time, so retention is not pushed back.
    let ingested = inputs.iter().map(|b| b.meta.created_ns).max();
    let meta = w.finish(ingested.unwrap_or(now_ns))?;
    let block = Arc::new(Block::open(&blocks_dir.join(&id))?);
    {
        let mut list = t.blocks.write().unwrap_or_else(PoisonError::into_inner);
        list.push(block);
        list.retain(|b| !inputs.iter().any(|i| Arc::ptr_eq(i, b)));
    }
    for b in inputs {
        if let Err(e) = std::fs::remove_dir_all(&b.dir) {
            tracing::warn!(block = %b.dir.display(), error = %e, "cannot delete compacted block");
        }
    }
    Ok(meta)
}

/// Which blocks to compact next: the oldest run of small blocks, if there are enough.
pub fn pick_compaction(
    blocks: &[Arc<Block>],
    min_inputs: usize,
    max_inputs: usize,
    max_bytes: u64,
) -> Vec<Arc<Block>> {
    let mut small: Vec<Arc<Block>> = blocks
        .iter()
        .filter(|b| b.meta.total_bytes() < max_bytes / 2)
        .cloned()
        .collect();
    small.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
    if small.len() < min_inputs.max(2) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut total = 0;
    for b in small {
        if out.len() >= max_inputs || (total + b.meta.total_bytes() > max_bytes && out.len() >= 2) {
            break;
        }
        total += b.meta.total_bytes();
        out.push(b);
    }
    if out.len() < 2 { Vec::new() } else { out }
}

/// Delete blocks whose data was ingested before `now - retention`, as Tempo's retention follows
/// ingest time: span timestamps (0, days old, u64::MAX) neither shorten nor pin a block's life.
/// Returns how many.
pub fn apply_retention(t: &Tenant, now_ns: u64, retention_ns: u64) -> usize {
    let cutoff = now_ns.saturating_sub(retention_ns);
    let expired: Vec<Arc<Block>> = t
        .blocks()
        .into_iter()
        .filter(|b| b.meta.created_ns < cutoff)
        .collect();
    if expired.is_empty() {
        return 0;
    }
    t.blocks
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|b| !expired.iter().any(|e| Arc::ptr_eq(e, b)));
    for b in &expired {
        if let Err(e) = std::fs::remove_dir_all(&b.dir) {
            tracing::warn!(block = %b.dir.display(), error = %e, "cannot delete expired block");
        }
    }
    expired.len()
}

impl Store {
    fn write_options(&self) -> WriteOptions {
        WriteOptions {
            zstd_level: self.inner.cfg.block_compression_level,
            ..WriteOptions::default()
        }
    }

    /// Cut due live traces into pending cuts and write every pending cut as a block.
    pub fn cut_blocks(&self, force: bool) -> MaintenanceReport {
        let _g = self
            .inner
            .cut_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cfg = &self.inner.cfg;
        let m = &self.inner.metrics;
        let mut rep = MaintenanceReport::default();
        for t in self.tenants() {
            let now = self.now_ns();
            let tl = Metrics::labels(&[("tenant", &t.name)]);
            let (due, idle) = {
                let st = t.lock_state();
                let live = &st.live;
                let oldest = live.traces.values().map(|x| x.first_ns).min();
                let bytes = live.bytes as u64;
                let due = force
                    || bytes >= cfg.max_block_bytes
                    || oldest.is_some_and(|o| now.saturating_sub(o) >= cfg.max_block_duration_ns());
                // Under memory pressure cut everything, busy traces included.
                let idle = if force || bytes >= 2 * cfg.max_block_bytes {
                    0
                } else {
                    cfg.trace_idle_ns()
                };
                (due && !live.traces.is_empty(), idle)
            };
            if due && let Err(e) = t.take_for_block(now, idle, cfg.rootless_trace_idle_ns()) {
                rep.errors.push(e.to_string());
            }
            if let Err(e) = t.lock_state().wal.close_if_idle(now, WAL_IDLE_CLOSE_NS) {
                rep.errors
                    .push(format!("closing the idle WAL of tenant {}: {e}", t.name));
            }
            for p in t.pendings() {
                match write_pending(&t, &p, &self.inner.io, self.write_options(), self.now_ns()) {
                    Ok(_) => {
                        rep.blocks_cut += 1;
                        m.blocks_cut.get_or_create(&tl).inc();
                    }
                    Err(e) => {
                        m.block_errors.get_or_create(&tl).inc();
                        if let Some(held_back) = t.log_gates.block_write.allow() {
                            tracing::error!(tenant = %t.name, error = %e, held_back, "cannot write block; data stays in WAL and memory");
                        }
                        rep.errors.push(e.to_string());
                        break;
                    }
                }
            }
        }
        self.update_gauges();
        rep
    }

    /// Compact small blocks (one merge per tenant per call) and apply retention.
    pub fn compact_blocks(&self) -> MaintenanceReport {
        let _g = self
            .inner
            .compact_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cfg = &self.inner.cfg;
        let m = &self.inner.metrics;
        let mut rep = MaintenanceReport::default();
        for t in self.tenants() {
            let inputs = pick_compaction(
                &t.blocks(),
                cfg.compaction_min_blocks,
                cfg.compaction_max_blocks,
                cfg.compaction_max_block_bytes,
            );
            if !inputs.is_empty() {
                match compact(
                    &t,
                    &inputs,
                    &self.inner.io,
                    self.write_options(),
                    self.now_ns(),
                ) {
                    Ok(meta) => {
                        rep.blocks_compacted += inputs.len();
                        let lv = Metrics::labels(&[("level", &meta.level.to_string())]);
                        m.compaction_blocks
                            .get_or_create(&lv)
                            .inc_by(inputs.len() as u64);
                        m.compaction_bytes_written
                            .get_or_create(&lv)
                            .inc_by(meta.total_bytes());
                    }
                    Err(e) => {
                        m.compaction_errors.inc();
                        if let Some(held_back) = t.log_gates.compaction.allow() {
                            tracing::error!(tenant = %t.name, error = %e, held_back, "compaction failed");
                        }
                        rep.errors.push(e.to_string());
                    }
                }
            }
            let deleted = apply_retention(&t, self.now_ns(), cfg.retention_ns());
            rep.blocks_deleted += deleted;
            m.retention_deleted.inc_by(deleted as u64);
        }
        self.update_gauges();
        rep
    }
}
