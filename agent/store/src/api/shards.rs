//! Streamed calls cut into time shards, as Tempo's query frontend runs them: each shard is
//! asked of the HTTP API (so tenants, limits and errors are the HTTP API's), newest first;
//! a combiner adds the answers up, and the stream sends what changed since its last message
//! every `diff_every` (Tempo: 500 ms), then a last message when every shard is done or the
//! answer is complete. The first shard is asked before the stream starts, so a bad query or a
//! refused tenant is the call's status.
//!
//! * `Search`: the traces not sent yet, with the metrics summed so far. It stops once the limit
//!   is met; under `with (most_recent = true)` once the newest `limit` traces are known, and
//!   until then it sends only traces that no older shard can push out.
//! * `MetricsQueryRange`: shards are whole step intervals, so every sample comes from one
//!   shard and the messages' samples together are the HTTP API's answer. A query whose
//!   samples depend on other intervals or series (`compare()`, `topk`, `> 10`) runs as one
//!   shard.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use axum::Router;
use prost::Message;
use tonic::Status;

use super::{
    metrics::{MAX_DURATION_NS, MAX_INTERVALS, MAX_SERIES, partial_message},
    streaming::{Messages, ask, decode_proto, param},
    tempopb::{QueryRangeResponse, SearchMetrics, SearchResponse, TimeSeries, TraceSearchMetadata},
};

/// A window is cut into at most this many shards...
const MAX_SHARDS: u64 = 8;
/// ...of at least this many seconds of search window...
const MIN_SEARCH_SHARD_SECS: u64 = 300;
/// ...or this many metrics intervals each.
const MIN_RANGE_SHARD_STEPS: u64 = 30;

/// One shard: its window (ns) and the window's request parameters.
pub(super) struct Shard {
    from_ns: u64,
    to_ns: u64,
    window: [(&'static str, String); 2],
}

/// Blocks are cut (and compacted) by arrival, so when span times do not follow arrival (spans
/// sent late, or replayed) one block can cover the whole window, and every shard would read
/// it again. Keep the shards only if, together, they read at most twice as many blocks as the
/// whole window does; else the call is one shard. `blocks` are the blocks' time ranges.
pub(super) fn worth_it(shards: &VecDeque<Shard>, blocks: &[(u64, u64)]) -> bool {
    let reads = |from: u64, to: u64| {
        blocks
            .iter()
            .filter(|&&(start, end)| start <= to && end >= from)
            .count()
    };
    let (Some(from), Some(to)) = (
        shards.iter().map(|s| s.from_ns).min(),
        shards.iter().map(|s| s.to_ns).max(),
    ) else {
        return false;
    };
    let whole = reads(from, to);
    let sharded: usize = shards.iter().map(|s| reads(s.from_ns, s.to_ns)).sum();
    sharded <= 2 * whole
}

/// What a sharded call adds up.
pub(super) trait Combiner: Send + 'static {
    /// One shard's answer (the HTTP API's protobuf body).
    type Part: Message + Default;
    /// A message of the stream.
    type Out: Send + 'static;
    /// Adds the answer of the shard whose window starts at `from_ns`.
    fn add(&mut self, part: Self::Part, from_ns: u64);
    /// Whether the shards left can change nothing.
    fn complete(&self) -> bool;
    /// What changed since the last message (everything left when `last`).
    fn diff(&mut self, last: bool) -> Self::Out;
}

/// A sharded call in progress.
pub(super) struct Jobs<C> {
    http: Router,
    meta: tonic::metadata::MetadataMap,
    path: &'static str,
    query: Vec<(&'static str, String)>,
    shards: VecDeque<Shard>,
    combiner: C,
    last_sent: Instant,
    diff_every: Duration,
    /// A shard was added since the last message.
    fresh: bool,
    finished: bool,
}

impl<C: Combiner> Jobs<C> {
    pub(super) fn new(
        http: Router,
        meta: tonic::metadata::MetadataMap,
        path: &'static str,
        query: Vec<(&'static str, String)>,
        shards: VecDeque<Shard>,
        combiner: C,
    ) -> Self {
        Self {
            http,
            meta,
            path,
            query,
            shards,
            combiner,
            last_sent: Instant::now(),
            diff_every: Duration::ZERO,
            fresh: false,
            finished: false,
        }
    }

    /// Asks the first shard, then streams the rest.
    pub(super) async fn run(mut self, diff_every: Duration) -> Result<Messages<C::Out>, Status> {
        self.diff_every = diff_every;
        self.last_sent = Instant::now();
        self.next_shard().await?;
        Ok(Box::pin(futures::stream::unfold(
            self,
            |mut jobs| async move {
                let next = jobs.next_message().await?;
                Some((next, jobs))
            },
        )))
    }

    /// Asks the next shard and adds its answer; false when none is left.
    async fn next_shard(&mut self) -> Result<bool, Status> {
        let Some(shard) = self.shards.pop_front() else {
            return Ok(false);
        };
        let mut query = self.query.clone();
        query.extend(shard.window);
        let body = ask(
            self.http.clone(),
            &self.meta,
            self.path,
            &query,
            "application/protobuf",
        )
        .await?;
        self.combiner.add(decode_proto(&body)?, shard.from_ns);
        self.fresh = true;
        if self.combiner.complete() {
            self.shards.clear();
        }
        Ok(true)
    }

    /// The next message: what changed, once `diff_every` has passed; the last one when every
    /// shard is done; then nothing.
    async fn next_message(&mut self) -> Option<Result<C::Out, Status>> {
        if self.finished {
            return None;
        }
        loop {
            if self.fresh && !self.shards.is_empty() && self.last_sent.elapsed() >= self.diff_every
            {
                self.fresh = false;
                self.last_sent = Instant::now();
                return Some(Ok(self.combiner.diff(false)));
            }
            match self.next_shard().await {
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                Ok(false) => {
                    self.finished = true;
                    return Some(Ok(self.combiner.diff(true)));
                }
                Ok(true) => {}
            }
        }
    }
}

/// Splits `n` units (seconds, intervals) into at most [`MAX_SHARDS`] runs of at least `min`
/// units where there are enough, newest first: `(a, b)` covers units `a..b`.
fn runs(n: u64, min: u64) -> impl Iterator<Item = (u64, u64)> {
    let count = (n / min).clamp(1, MAX_SHARDS);
    let per = n.div_ceil(count).max(1);
    (0..count)
        .map(move |k| (n.saturating_sub((k + 1) * per), n.saturating_sub(k * per)))
        .filter(|(a, b)| a < b)
}

/// A search window `[start, end]` (unix seconds) in shards of whole seconds; a request
/// without a window, or one where sharding is not [`worth_it`], is one shard.
pub(super) fn search_shards(start: u32, end: u32, blocks: &[(u64, u64)]) -> VecDeque<Shard> {
    let one = |s: u32, e: u32| Shard {
        from_ns: u64::from(s) * 1_000_000_000,
        to_ns: u64::from(e) * 1_000_000_000,
        window: [("start", param(s, "")), ("end", param(e, ""))],
    };
    if start == 0 || end <= start {
        return VecDeque::from([one(start, end)]);
    }
    let shards = runs(u64::from(end - start), MIN_SEARCH_SHARD_SECS)
        .map(|(a, b)| {
            let at = |k: u64| u32::try_from(u64::from(start) + k).unwrap_or(u32::MAX);
            one(at(a), at(b))
        })
        .collect();
    if worth_it(&shards, blocks) {
        shards
    } else {
        VecDeque::from([one(start, end)])
    }
}

/// The intervals of a sharded range: `n` intervals of `step` ns after `origin`, interval `i`
/// stamped with its end, `origin + (i + 1)·step`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Grid {
    origin: u64,
    step: u64,
    n: u64,
}

impl Grid {
    fn index(&self, timestamp_ms: i64) -> Option<usize> {
        let ns = u64::try_from(timestamp_ms).ok()?.checked_mul(1_000_000)?;
        let i = ns
            .checked_sub(self.origin)?
            .checked_div(self.step)?
            .checked_sub(1)?;
        (i < self.n).then(|| usize::try_from(i).ok()).flatten()
    }

    fn timestamp_ms(&self, i: usize) -> i64 {
        let ns = self.origin + (i as u64 + 1) * self.step;
        i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// A metrics range (unix ns) in shards of whole step intervals. The HTTP API aligns a range
/// as Tempo does (start down and end up to the step, then one interval more before the
/// start): each shard asks for `(first + step, last]` so that, aligned, it covers exactly its
/// intervals `(first, last]`. A range without start, end or step, one the HTTP API refuses,
/// a query that is not [`shardable`](sonde_traceql::MetricsQuery::shardable), or one where
/// sharding is not [`worth_it`] is one shard (and no grid).
pub(super) fn range_shards(
    start: u64,
    end: u64,
    step: u64,
    shardable: bool,
    blocks: &[(u64, u64)],
) -> (VecDeque<Shard>, Option<Grid>) {
    let one = |from_ns: u64, s: u64, e: u64| Shard {
        from_ns,
        to_ns: e,
        window: [("start", param(s, "")), ("end", param(e, ""))],
    };
    let whole = || (VecDeque::from([one(start, start, end)]), None);
    if !shardable || start == 0 || step == 0 || end <= start || end - start > MAX_DURATION_NS {
        return whole();
    }
    let first = start - start % step;
    let last = end.div_ceil(step).saturating_mul(step);
    let origin = if first > step { first - step } else { first };
    let n = (last - origin) / step;
    if n > MAX_INTERVALS || origin < step {
        return whole();
    }
    let shards = runs(n, MIN_RANGE_SHARD_STEPS)
        .map(|(a, b)| {
            let from = origin + a * step;
            one(from, from + step, origin + b * step)
        })
        .collect();
    if !worth_it(&shards, blocks) {
        return whole();
    }
    (shards, Some(Grid { origin, step, n }))
}

/// Tempo's search combiner: the traces of all shards so far (the first `limit` found, or
/// under `most_recent` the newest `limit`) and the metrics summed over the shards.
pub(super) struct SearchCombiner {
    limit: usize,
    most_recent: bool,
    traces: Vec<TraceSearchMetadata>,
    seen: HashSet<String>,
    sent: HashSet<String>,
    metrics: SearchMetrics,
    jobs: u32,
    total_jobs: u32,
    /// Under `most_recent`: every trace starting at or after this (ns) has been searched.
    complete_from: u64,
}

impl SearchCombiner {
    pub(super) fn new(limit: usize, most_recent: bool, total_jobs: usize) -> Self {
        Self {
            limit: limit.max(1),
            most_recent,
            traces: Vec::new(),
            seen: HashSet::new(),
            sent: HashSet::new(),
            metrics: SearchMetrics::default(),
            jobs: 0,
            total_jobs: u32::try_from(total_jobs).unwrap_or(u32::MAX),
            complete_from: u64::MAX,
        }
    }
}

impl Combiner for SearchCombiner {
    type Part = SearchResponse;
    type Out = SearchResponse;

    fn add(&mut self, part: SearchResponse, from_ns: u64) {
        for t in part.traces {
            if !self.most_recent && self.traces.len() >= self.limit {
                break;
            }
            if self.seen.insert(t.trace_id.clone()) {
                self.traces.push(t);
            }
        }
        if self.most_recent {
            self.traces
                .sort_by_key(|t| std::cmp::Reverse(t.start_time_unix_nano));
            self.traces.truncate(self.limit);
            self.complete_from = from_ns;
        }
        if let Some(m) = part.metrics {
            add_metrics(&mut self.metrics, &m);
        }
        self.jobs += 1;
    }

    /// The limit is met (under `most_recent`, by traces starting within the shards asked).
    fn complete(&self) -> bool {
        self.traces.len() >= self.limit
            && (!self.most_recent
                || self
                    .traces
                    .iter()
                    .all(|t| t.start_time_unix_nano >= self.complete_from))
    }

    /// The traces not sent yet that no later shard can push out (all of them when `last`).
    fn diff(&mut self, last: bool) -> SearchResponse {
        let settled = |t: &TraceSearchMetadata| {
            last || !self.most_recent || t.start_time_unix_nano >= self.complete_from
        };
        let traces: Vec<TraceSearchMetadata> = self
            .traces
            .iter()
            .filter(|t| settled(t) && !self.sent.contains(&t.trace_id))
            .cloned()
            .collect();
        self.sent.extend(traces.iter().map(|t| t.trace_id.clone()));
        let mut metrics = self.metrics.clone();
        metrics.completed_jobs = self.jobs;
        metrics.total_jobs = self.total_jobs;
        SearchResponse {
            traces,
            metrics: Some(metrics),
        }
    }
}

fn add_metrics(sum: &mut SearchMetrics, m: &SearchMetrics) {
    sum.inspected_traces = sum.inspected_traces.saturating_add(m.inspected_traces);
    sum.inspected_bytes = sum.inspected_bytes.saturating_add(m.inspected_bytes);
    sum.inspected_spans = sum.inspected_spans.saturating_add(m.inspected_spans);
    sum.total_blocks = sum.total_blocks.saturating_add(m.total_blocks);
    sum.total_block_bytes = sum.total_block_bytes.saturating_add(m.total_block_bytes);
}

/// Tempo's query-range combiner. Over shards of disjoint intervals (a grid), each series
/// is kept whole, and a message holds the samples and exemplars not sent yet: the new series,
/// and the new intervals of known ones, an interval without spans filled as the HTTP API
/// fills it (0 for counts). At most [`MAX_SERIES`] series in all, past which the answer is
/// PARTIAL, as from the HTTP API. Without a grid (one shard) the answer passes through.
pub(super) struct RangeCombiner {
    grid: Option<Grid>,
    empty: Option<f64>,
    /// The intervals of the shards answered.
    covered: Vec<bool>,
    series: HashMap<Vec<u8>, Series>,
    /// Series keys in the order first seen.
    order: Vec<Vec<u8>>,
    partial: Option<String>,
    metrics: SearchMetrics,
    jobs: u32,
    total_jobs: u32,
}

/// One series being put together: its values by interval (NaN: none) and what was sent.
struct Series {
    first: TimeSeries,
    values: Vec<f64>,
    sent: Vec<bool>,
    exemplars_sent: usize,
}

impl RangeCombiner {
    pub(super) fn new(grid: Option<Grid>, empty: Option<f64>, total_jobs: usize) -> Self {
        let n = grid.map_or(0, |g| usize::try_from(g.n).unwrap_or(0));
        Self {
            grid,
            empty,
            covered: vec![false; n],
            series: HashMap::new(),
            order: Vec::new(),
            partial: None,
            metrics: SearchMetrics::default(),
            jobs: 0,
            total_jobs: u32::try_from(total_jobs).unwrap_or(u32::MAX),
        }
    }
}

impl Combiner for RangeCombiner {
    type Part = QueryRangeResponse;
    type Out = QueryRangeResponse;

    fn add(&mut self, part: QueryRangeResponse, from_ns: u64) {
        let n = self.covered.len();
        if let Some(g) = self.grid {
            // The shard's intervals, from its start up to the next shard asked before it.
            let first = usize::try_from((from_ns.saturating_sub(g.origin)) / g.step).unwrap_or(n);
            let end = self.covered[first.min(n)..]
                .iter()
                .position(|&c| c)
                .map_or(n, |p| first + p);
            self.covered[first.min(n)..end].fill(true);
        }
        for s in part.series {
            let key: Vec<u8> = s.labels.iter().flat_map(|kv| kv.encode_to_vec()).collect();
            if !self.series.contains_key(&key) {
                if self.series.len() >= MAX_SERIES {
                    self.partial = Some(partial_message(MAX_SERIES));
                    continue;
                }
                self.order.push(key.clone());
                self.series.insert(
                    key.clone(),
                    Series {
                        first: TimeSeries {
                            labels: s.labels.clone(),
                            samples: Vec::new(),
                            exemplars: Vec::new(),
                        },
                        values: vec![f64::NAN; n],
                        sent: vec![false; n],
                        exemplars_sent: 0,
                    },
                );
            }
            let Some(have) = self.series.get_mut(&key) else {
                continue;
            };
            match self.grid {
                Some(g) => {
                    for x in &s.samples {
                        if let Some(i) = g.index(x.timestamp_ms) {
                            have.values[i] = x.value;
                        }
                    }
                }
                None => have.first.samples.extend(s.samples),
            }
            have.first.exemplars.extend(s.exemplars);
        }
        if part.status != 0 && self.partial.is_none() {
            self.partial = Some(part.message);
        }
        if let Some(m) = part.metrics {
            add_metrics(&mut self.metrics, &m);
        }
        self.jobs += 1;
    }

    /// Past the series limit nothing more is added.
    fn complete(&self) -> bool {
        self.partial.is_some()
    }

    fn diff(&mut self, _last: bool) -> QueryRangeResponse {
        let mut series = Vec::new();
        for key in &self.order {
            let Some(s) = self.series.get_mut(key) else {
                continue;
            };
            let mut out = TimeSeries {
                labels: s.first.labels.clone(),
                samples: std::mem::take(&mut s.first.samples),
                exemplars: s.first.exemplars[s.exemplars_sent..].to_vec(),
            };
            s.exemplars_sent = s.first.exemplars.len();
            if let Some(g) = self.grid {
                for (i, covered) in self.covered.iter().enumerate() {
                    if !covered || s.sent[i] {
                        continue;
                    }
                    let v = match (s.values[i], self.empty) {
                        (v, _) if !v.is_nan() => v,
                        (_, Some(empty)) => empty,
                        _ => continue,
                    };
                    s.sent[i] = true;
                    out.samples.push(super::tempopb::Sample {
                        timestamp_ms: g.timestamp_ms(i),
                        value: v,
                    });
                }
            }
            if !out.samples.is_empty() || !out.exemplars.is_empty() {
                out.exemplars.sort_by_key(|x| x.timestamp_ms);
                series.push(out);
            }
        }
        let mut metrics = self.metrics.clone();
        metrics.completed_jobs = self.jobs;
        metrics.total_jobs = self.total_jobs;
        QueryRangeResponse {
            series,
            metrics: Some(metrics),
            status: i32::from(self.partial.is_some()),
            message: self.partial.clone().unwrap_or_default(),
        }
    }
}
