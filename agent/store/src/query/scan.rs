//! Reading every trace that overlaps a window, for queries that look at all of them (tag
//! names and values, TraceQL metrics): live traces, then pending batches, then blocks, whose
//! row groups are skipped by time and by the strings a query needs. Blocks may be read by
//! several threads, each with its own state.
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use super::{
    LIVE_CHUNK, TraceId, TraceRef,
    budget::{Budget, QueryError},
};
use crate::{Store, block::Block, live::Pending, tenant::Tenant};
use sonde_traceql as traceql;

/// What a scan reads: a time window and strings every matching trace's row group must hold
/// (see [`prefilter_strings`]).
pub struct Scan<'a> {
    pub start_ns: u64,
    pub end_ns: u64,
    pub strings: &'a [TraceId],
}

impl Scan<'_> {
    fn overlaps(&self, t: &TraceRef<'_>) -> bool {
        t.start() <= self.end_ns && t.end() >= self.start_ns
    }
}

/// Where the traces just visited came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Live,
    Pending,
    /// A row group of a block.
    Group,
}

/// What a scan read.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ScanStats {
    pub traces: u64,
    pub bytes: u64,
    pub blocks: u64,
    pub block_bytes: u64,
}

/// Row-group dictionary keys of the strings a query's conditions require (`= "literal"` on
/// attributes and string intrinsics): a group lacking one cannot match.
pub fn prefilter_strings(conditions: &[traceql::Condition]) -> Vec<TraceId> {
    super::prefilter_conditions(conditions).strings
}

/// Visits a tenant's live traces in chunks (the lock is released between chunks so ingest
/// proceeds); false once `f` asked to stop.
fn live(
    t: &Tenant,
    scan: &Scan<'_>,
    budget: &Budget,
    stats: &mut ScanStats,
    f: &mut dyn FnMut(TraceRef<'_>) -> bool,
) -> Result<bool, QueryError> {
    let ids: Vec<TraceId> = t.lock_state().live.traces.keys().copied().collect();
    for chunk in ids.chunks(LIVE_CHUNK) {
        let st = t.lock_state();
        for id in chunk {
            budget.check()?;
            let Some(lt) = st.live.traces.get(id) else {
                continue;
            };
            let tr = TraceRef {
                table: &st.live.table,
                id,
                spans: &lt.spans,
            };
            stats.traces += 1;
            stats.bytes += lt.payload.len() as u64;
            if scan.overlaps(&tr) && !f(tr) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn pending(
    p: &Pending,
    scan: &Scan<'_>,
    budget: &Budget,
    stats: &mut ScanStats,
    f: &mut dyn FnMut(TraceRef<'_>) -> bool,
) -> Result<bool, QueryError> {
    for (id, lt) in &p.traces {
        budget.check()?;
        let tr = TraceRef {
            table: &p.table,
            id,
            spans: &lt.spans,
        };
        stats.traces += 1;
        if scan.overlaps(&tr) && !f(tr) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The row groups of `b` that may hold traces for the scan: by time, and by the strings their
/// dictionaries hold.
fn wanted_groups<'a>(b: &'a Block, scan: &'a Scan<'_>) -> impl Iterator<Item = usize> + 'a {
    b.groups.iter().enumerate().filter_map(move |(gi, ge)| {
        (ge.min_start <= scan.end_ns
            && ge.max_end >= scan.start_ns
            && b.group_may_have_all(gi, scan.strings))
        .then_some(gi)
    })
}

/// The tenant's blocks that overlap the window.
fn blocks(t: &Tenant, scan: &Scan<'_>) -> Vec<Arc<Block>> {
    let mut bs = t.blocks();
    bs.retain(|b| b.meta.min_start_ns <= scan.end_ns && b.meta.max_end_ns >= scan.start_ns);
    bs
}

impl Store {
    /// Visit every trace overlapping the window (live, pending, blocks) until `f` returns
    /// false, stopping with an error when `budget` runs out.
    pub fn for_each_trace(
        &self,
        tenants: &[String],
        start_ns: u64,
        end_ns: u64,
        budget: &mut Budget,
        f: &mut dyn FnMut(TraceRef<'_>) -> bool,
    ) -> Result<(), QueryError> {
        let scan = Scan {
            start_ns,
            end_ns,
            strings: &[],
        };
        let mut stats = ScanStats::default();
        for t in self.query_tenants(tenants) {
            if !live(&t, &scan, budget, &mut stats, f)? {
                return Ok(());
            }
            for p in t.pendings() {
                if !pending(&p, &scan, budget, &mut stats, f)? {
                    return Ok(());
                }
            }
            for b in blocks(&t, &scan) {
                if !self.block(&b, &scan, budget, &mut stats, f)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Visits one block's row groups that may hold matching traces; false once `f` asked to
    /// stop.
    fn block(
        &self,
        b: &Block,
        scan: &Scan<'_>,
        budget: &Budget,
        stats: &mut ScanStats,
        f: &mut dyn FnMut(TraceRef<'_>) -> bool,
    ) -> Result<bool, QueryError> {
        stats.blocks += 1;
        stats.block_bytes += b.meta.total_bytes();
        for gi in wanted_groups(b, scan) {
            if !self.group(b, gi, scan, budget, stats, f)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Visits the traces of row group `gi` of `b`; false once `f` asked to stop.
    fn group(
        &self,
        b: &Block,
        gi: usize,
        scan: &Scan<'_>,
        budget: &Budget,
        stats: &mut ScanStats,
        f: &mut dyn FnMut(TraceRef<'_>) -> bool,
    ) -> Result<bool, QueryError> {
        budget.check()?;
        let g = self.inner.cache.get(b, gi)?;
        stats.bytes += b.groups.get(gi).map_or(0, |ge| u64::from(ge.len));
        for i in 0..g.traces.len() {
            budget.check()?;
            let tr = g.trace(i);
            stats.traces += 1;
            if scan.overlaps(&tr) && !f(tr) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Visit every trace overlapping the scan's window with one of `workers`' states: live
    /// traces and pending batches with the first, then the blocks' row groups shared out
    /// between one thread per worker. `done` is called with a worker's state after each source
    /// it read (the live traces, a pending batch, a row group), so a caller can keep one partial
    /// result per source. Stops with an error when `budget` runs out.
    pub fn scan_parallel<W: Send>(
        &self,
        tenants: &[String],
        scan: &Scan<'_>,
        budget: &Budget,
        workers: &mut [W],
        visit: &(dyn Fn(&mut W, TraceRef<'_>) + Sync),
        done: &(dyn Fn(&mut W, Source) + Sync),
    ) -> Result<ScanStats, QueryError> {
        let mut stats = ScanStats::default();
        let Some(first) = workers.first_mut() else {
            return Ok(stats);
        };
        let mut units: Vec<(Arc<Block>, usize)> = Vec::new();
        for t in &self.query_tenants(tenants) {
            live(t, scan, budget, &mut stats, &mut |tr| {
                visit(first, tr);
                true
            })?;
            done(first, Source::Live);
            for p in t.pendings() {
                pending(&p, scan, budget, &mut stats, &mut |tr| {
                    visit(first, tr);
                    true
                })?;
                done(first, Source::Pending);
            }
            for b in blocks(t, scan) {
                stats.blocks += 1;
                stats.block_bytes += b.meta.total_bytes();
                units.extend(wanted_groups(&b, scan).map(|gi| (b.clone(), gi)));
            }
        }
        let next = AtomicUsize::new(0);
        let work = |w: &mut W| -> Result<ScanStats, QueryError> {
            let mut st = ScanStats::default();
            while let Some((b, gi)) = units.get(next.fetch_add(1, Ordering::Relaxed)) {
                self.group(b, *gi, scan, budget, &mut st, &mut |tr| {
                    visit(w, tr);
                    true
                })?;
                done(w, Source::Group);
            }
            Ok(st)
        };
        let results: Vec<Result<ScanStats, QueryError>> = std::thread::scope(|s| {
            let (head, rest) = workers.split_at_mut(1);
            let handles: Vec<_> = rest.iter_mut().map(|w| s.spawn(|| work(w))).collect();
            let mut out: Vec<_> = head.iter_mut().map(&work).collect();
            for h in handles {
                // A panic in a worker is the query's panic (answered as a 500 by the API).
                out.push(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
            out
        });
        for r in results {
            let st = r?;
            stats.traces += st.traces;
            stats.bytes += st.bytes;
        }
        Ok(stats)
    }
}
