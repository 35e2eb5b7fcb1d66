//! TraceQL metrics over the store: the scan tag lookups use too (live traces, pending batches,
//! blocks' row groups, skipped by time and by the query's strings; the query's budget), one
//! [`Partial`](traceql::metrics::Partial) per source merged into the answer, so a later stream
//! can send each source's partial as it completes.
use sonde_traceql::{
    self as traceql,
    metrics::{MetricsRequest, MetricsResult, Partial},
};

use super::{
    budget::{Budget, QueryError},
    scan::{Scan, ScanStats, prefilter_strings},
    traceql_view::QlTrace,
};
use crate::Store;

/// A metrics answer and what was read for it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsOutcome {
    pub result: MetricsResult,
    pub stats: ScanStats,
    /// Spans counted by the metrics function.
    pub spans: u64,
}

/// Most threads one metrics query reads row groups with.
const MAX_THREADS: usize = 4;

/// Threads a metrics query reads row groups with: one per core, at most [`MAX_THREADS`].
fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, MAX_THREADS)
}

/// Partials one metrics query holds at most at once (two per thread and the answer's), each
/// up to the request's series limit: what a memory cap is divided by.
pub fn partials_held() -> usize {
    2 * threads() + 1
}

/// A thread's share: the partial of everything it read and of the source it is reading.
struct Worker {
    total: Partial,
    current: Partial,
}

impl Store {
    /// Compute `query` over the tenants' data for `req`, stopping when `budget` runs out.
    ///
    /// Spans are counted where they start, so the scan reads every trace that overlaps the
    /// range (a trace that started before the range may have spans inside it).
    pub fn metrics_within(
        &self,
        tenants: &[String],
        query: &traceql::MetricsQuery,
        req: &MetricsRequest,
        budget: &Budget,
    ) -> Result<MetricsOutcome, QueryError> {
        self.metrics_by_source(tenants, query, req, budget, &|_| {})
    }

    /// Like [`Store::metrics_within`], handing each source's partial (live traces, a pending
    /// batch, a row group of a block) to `each` before it is merged into the answer — what a
    /// stream would send. Row groups are read by up to one thread per core.
    pub fn metrics_by_source(
        &self,
        tenants: &[String],
        query: &traceql::MetricsQuery,
        req: &MetricsRequest,
        budget: &Budget,
        each: &(dyn Fn(&Partial) + Sync),
    ) -> Result<MetricsOutcome, QueryError> {
        let strings = prefilter_strings(&query.conditions());
        let scan = Scan {
            start_ns: req.start_ns,
            end_ns: req.end_ns,
            strings: &strings,
        };
        let mut workers: Vec<Worker> = (0..threads())
            .map(|_| Worker {
                total: query.partial(req),
                current: query.partial(req),
            })
            .collect();
        let stats = self.scan_parallel(
            tenants,
            &scan,
            budget,
            &mut workers,
            &|w, t| query.observe(&QlTrace::new(t), &mut w.current),
            &|w, _| {
                let done = std::mem::replace(&mut w.current, query.partial(req));
                if done.spans() > 0 || done.series_count() > 0 {
                    each(&done);
                }
                w.total.merge(done);
            },
        )?;
        let mut total = query.partial(req);
        for w in workers {
            total.merge(w.total);
            total.merge(w.current);
        }
        let spans = total.spans();
        Ok(MetricsOutcome {
            result: query.finish(total),
            stats,
            spans,
        })
    }
}

#[cfg(test)]
mod tests {
    use sonde_traceql::metrics::{LabelValue, MetricsRequest, parse_metrics};

    use crate::{ManualClock, Store, ids::SINGLE_TENANT, query::budget::Budget, testutil::*};

    const S: u64 = 1_000_000_000;

    #[test]
    fn blocks_and_live_traces_are_both_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&cfg(dir.path()), ManualClock::new(T0)).unwrap();
        // Trace 1 (three spans: a, a, b) goes to a block; trace 2 (one span of a) stays live.
        store
            .ingest(
                SINGLE_TENANT,
                req(
                    "a",
                    vec![span(1, 1, 0, "x", 1000, 5), span(1, 2, 1, "y", 1001, 1)],
                ),
            )
            .unwrap();
        store
            .ingest(SINGLE_TENANT, req("b", vec![span(1, 3, 2, "z", 1002, 1)]))
            .unwrap();
        store.cut_blocks(true);
        store
            .ingest(SINGLE_TENANT, req("a", vec![span(2, 1, 0, "x", 3000, 5)]))
            .unwrap();
        let q = parse_metrics("{} | count_over_time() by (resource.service.name)").unwrap();
        let req = MetricsRequest {
            start_ns: T0,
            end_ns: T0 + 10 * S,
            step_ns: 10 * S,
            instant: false,
            exemplars: 0,
            max_series: 100,
        };
        let got = store
            .metrics_within(&[SINGLE_TENANT.to_string()], &q, &req, &Budget::unlimited())
            .unwrap();
        let counts: Vec<(LabelValue, f64)> = got
            .result
            .series
            .iter()
            .map(|s| (s.labels[0].1.clone(), s.samples[0].1))
            .collect();
        assert_eq!(
            counts,
            vec![
                (LabelValue::Str("a".into()), 3.0),
                (LabelValue::Str("b".into()), 1.0)
            ]
        );
        assert_eq!(got.spans, 4);
        assert_eq!(got.stats.blocks, 1);
    }
}
