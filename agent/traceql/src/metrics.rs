//! TraceQL metrics (`{ } | rate() by (resource.service.name)`), computed exactly from spans.
//!
//! [`parse_metrics`] checks a query the way Tempo's query-frontend does and compiles it into a
//! [`MetricsQuery`]. The query observes traces into a [`Partial`] — one per block, per batch of
//! live traces, or per stream message — and partials [`Partial::merge`] in any order, so a
//! caller may compute them apart and combine them. [`MetricsQuery::finish`] turns the merged
//! partial into Tempo's series: labels, one sample per step interval, exemplars, then the
//! second stages (`topk`, `bottomk`, `> 10`).
//!
//! Time follows Tempo's query range: the request is aligned to the step ([`align`]); the spans
//! counted are those that *start* in `(start, end]`; interval `i` is `(start + i·step,
//! start + (i+1)·step]` and its sample is stamped with its end. An instant query has one
//! interval, `(start, end]`, and `rate()` divides by its length.

mod accumulate;
mod compare;
mod finish;
#[cfg(test)]
mod tests;

pub use accumulate::Partial;

use super::ast::{FieldExpr, MetricsExpr, MetricsKind, Pipeline, RootExpr, SecondStage};
use super::{ParseError, SpansetExpr, Stage, Value};

/// Most `by()` attributes, as in Tempo (one fewer for the functions that add a bucket label).
pub const MAX_GROUP_BYS: usize = 5;

/// The time frame of a metrics query, in unix nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsRequest {
    pub start_ns: u64,
    pub end_ns: u64,
    pub step_ns: u64,
    /// One interval over the whole range (`/api/metrics/query`).
    pub instant: bool,
    /// Exemplars to return (0 = none).
    pub exemplars: u32,
    /// Series past this are dropped and the answer is marked partial.
    pub max_series: usize,
}

impl MetricsRequest {
    /// Number of intervals (samples per series).
    pub fn intervals(&self) -> usize {
        if self.instant {
            return 1;
        }
        if self.step_ns == 0 || self.end_ns <= self.start_ns {
            return 0;
        }
        usize::try_from((self.end_ns - self.start_ns) / self.step_ns).unwrap_or(usize::MAX)
    }

    /// Whether a span starting at `ts` is counted: `(start, end]`, as Tempo's evaluator.
    pub fn contains(&self, ts: u64) -> bool {
        ts > self.start_ns && ts <= self.end_ns
    }

    /// The interval of a span start time inside [`MetricsRequest::contains`].
    pub fn interval(&self, ts: u64) -> Option<usize> {
        if !self.contains(ts) {
            return None;
        }
        if self.instant {
            return Some(0);
        }
        // Right-closed intervals: a time exactly on a boundary belongs to the one it ends.
        let i = (ts - self.start_ns).div_ceil(self.step_ns).checked_sub(1)?;
        usize::try_from(i).ok().filter(|&i| i < self.intervals())
    }

    /// The sample timestamp of interval `i`, in unix milliseconds: the interval's end.
    pub fn timestamp_ms(&self, i: usize) -> i64 {
        let ns = if self.instant {
            self.end_ns
        } else {
            self.start_ns
                .saturating_add((i as u64 + 1).saturating_mul(self.step_ns))
        };
        (ns / 1_000_000) as i64
    }

    /// Seconds `rate()` divides by: the step, or the whole range of an instant query.
    fn rate_seconds(&self) -> f64 {
        if self.instant {
            self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9
        } else {
            self.step_ns as f64 / 1e9
        }
    }
}

/// Tempo's default step for a range: about 240 points, rounded down to 1h, 5m, 1m, 15s, 5s or
/// 1s (to 50 ms steps under a minute).
pub fn default_step(start_ns: u64, end_ns: u64) -> u64 {
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;
    let delta = end_ns.saturating_sub(start_ns);
    let baseline = delta / 240;
    if delta < 60 * S {
        let g = 50 * MS;
        return if baseline > g { baseline / g * g } else { g };
    }
    for g in [3600 * S, 300 * S, 60 * S, 15 * S, 5 * S, S] {
        if baseline > g {
            return baseline / g * g;
        }
    }
    S
}

/// Aligns a range request to its step as Tempo does, so that refreshing "the last hour" gives
/// the same intervals: start down and end up to a multiple of the step, then one more interval
/// before the start. Instant requests are left as they are.
pub fn align(req: &mut MetricsRequest) {
    if req.instant || req.step_ns == 0 {
        return;
    }
    let step = req.step_ns;
    req.start_ns -= req.start_ns % step;
    let rem = req.end_ns % step;
    if rem != 0 {
        req.end_ns = req.end_ns.saturating_add(step - rem);
    }
    if req.start_ns > step {
        req.start_ns -= step;
    }
}

/// Moves a range request's end down to a multiple of the step (after clamping it to "now minus
/// the query end cutoff").
pub fn align_end_down(req: &mut MetricsRequest) {
    if !req.instant && req.step_ns != 0 {
        req.end_ns -= req.end_ns % req.step_ns;
    }
}

/// A label or exemplar value, typed like Tempo's `AnyValue` (status, kind, durations and nil
/// are strings there).
#[derive(Clone, Debug, PartialEq)]
pub enum LabelValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Series or exemplar labels: names and typed values, in order.
pub type Labels = Vec<(String, LabelValue)>;

/// An exemplar: a span behind a sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// One result series: labels, `(timestamp ms, value)` samples oldest first, exemplars.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
    pub exemplars: Vec<Exemplar>,
}

/// What [`MetricsQuery::finish`] returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsResult {
    pub series: Vec<Series>,
    /// Set when series were dropped at [`MetricsRequest::max_series`]: the limit.
    pub truncated: Option<usize>,
}

/// Why a metrics query cannot run: Tempo answers both with a 400.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// Not valid TraceQL.
    #[error("{0}")]
    Parse(ParseError),
    /// Valid TraceQL that is not a runnable metrics query (Tempo's "compiling query: ..." and
    /// "not a metrics query").
    #[error("{0}")]
    Invalid(String),
}

/// The aggregation a series computes per interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Agg {
    Count,
    Rate,
    Sum,
    Min,
    Max,
    Avg,
    /// Counts per power-of-two bucket (histogram_over_time, quantile_over_time).
    Buckets,
}

/// A compiled metrics function other than `compare()`.
#[derive(Clone, Debug)]
pub(crate) struct Simple {
    pub kind: MetricsKind,
    pub agg: Agg,
    pub field: Option<FieldExpr>,
    pub by: Vec<FieldExpr>,
    pub by_labels: Vec<String>,
    /// Whether each `by` field is a resource attribute (the same for all of a resource's
    /// spans).
    pub by_resource: Vec<bool>,
    pub quantiles: Vec<f64>,
}

/// `compare({ selection }, topN, start, end)`.
#[derive(Clone, Debug)]
pub(crate) struct CompareSpec {
    pub selection: FieldExpr,
    pub top_n: usize,
    /// Selection window in unix nanoseconds (0, 0 = the whole range).
    pub window: (u64, u64),
}

#[derive(Clone, Debug)]
pub(crate) enum Function {
    Simple(Simple),
    Compare(CompareSpec),
}

/// A metrics query ready to observe traces.
#[derive(Clone, Debug)]
pub struct MetricsQuery {
    pub(crate) pipeline: Pipeline,
    pub(crate) match_all: bool,
    pub(crate) function: Function,
    pub(crate) second: Vec<SecondStage>,
    exemplars_hint: Option<u32>,
}

/// Parses and compiles a metrics query, with Tempo's error texts.
pub fn parse_metrics(query: &str) -> Result<MetricsQuery, MetricsError> {
    let q = super::parse_search(query).map_err(MetricsError::Parse)?;
    let invalid = |m: String| MetricsError::Invalid(format!("compiling query: {m}"));
    let RootExpr::Metrics(mut expr) = q.root else {
        return Err(MetricsError::Invalid("not a metrics query".into()));
    };
    let mut second = Vec::new();
    let (pipeline, f) = loop {
        match expr {
            MetricsExpr::Function { pipeline, function } => break (pipeline, function),
            MetricsExpr::SecondStage { expr: inner, stage } => {
                second.push(stage);
                expr = *inner;
            }
            MetricsExpr::Binary { .. } | MetricsExpr::Scalar(_) => {
                return Err(invalid("metrics math not yet supported".into()));
            }
        }
    };
    second.reverse();
    for s in &second {
        if let SecondStage::TopK { k, .. } = s
            && *k <= 0
        {
            return Err(invalid("limit must be greater than 0".into()));
        }
    }
    let function = compile_function(f).map_err(invalid)?;
    let match_all = matches!(
        pipeline.stages.as_slice(),
        [Stage::Spanset(SpansetExpr::Filter(FieldExpr::Static(
            Value::Bool(true)
        )))]
    );
    let exemplars_hint = q
        .hints
        .iter()
        .rev()
        .find(|(k, _)| k == "exemplars")
        .and_then(|(_, v)| match v {
            Value::Int(n) => Some(u32::try_from((*n).max(0)).unwrap_or(u32::MAX)),
            Value::Bool(false) => Some(0),
            _ => None,
        });
    Ok(MetricsQuery {
        pipeline,
        match_all,
        function,
        second,
        exemplars_hint,
    })
}

fn compile_function(f: super::ast::MetricsFn) -> Result<Function, String> {
    let group_error = |n: usize| format!("metrics group by {n} values not yet supported");
    if f.kind == MetricsKind::Compare {
        let selection = match f.selector.as_deref() {
            Some(SpansetExpr::Filter(e)) => e.clone(),
            _ => return Err("compare() needs a spanset filter".into()),
        };
        let ints: Vec<i64> = f
            .args
            .iter()
            .filter_map(|v| match v {
                Value::Int(n) => Some(*n),
                _ => None,
            })
            .collect();
        let (top_n, start, end) = match ints.as_slice() {
            [] => (10, 0, 0),
            [n] => (*n, 0, 0),
            [n, s, e] => (*n, *s, *e),
            _ => {
                return Err(
                    "compare() takes a spanset filter, then optionally topN, or topN, start and end"
                        .into(),
                );
            }
        };
        if top_n <= 0 {
            return Err("compare() top number of values must be integer greater than 0".into());
        }
        if (start, end) != (0, 0) {
            if start <= 0 || end <= 0 {
                return Err(
                    "compare() timestamps must be positive integer unix nanoseconds".into(),
                );
            }
            if end <= start {
                return Err("compare() end timestamp must be greater than start timestamp".into());
            }
        }
        return Ok(Function::Compare(CompareSpec {
            selection,
            top_n: usize::try_from(top_n).unwrap_or(usize::MAX),
            window: (start as u64, end as u64),
        }));
    }
    let agg = match f.kind {
        MetricsKind::Rate => Agg::Rate,
        MetricsKind::CountOverTime => Agg::Count,
        MetricsKind::SumOverTime => Agg::Sum,
        MetricsKind::MinOverTime => Agg::Min,
        MetricsKind::MaxOverTime => Agg::Max,
        MetricsKind::AvgOverTime => Agg::Avg,
        MetricsKind::QuantileOverTime | MetricsKind::HistogramOverTime => Agg::Buckets,
        MetricsKind::Compare => return Err("compare() cannot be grouped".into()),
    };
    let max_by = if agg == Agg::Buckets {
        MAX_GROUP_BYS - 1
    } else {
        MAX_GROUP_BYS
    };
    if f.by.len() > max_by {
        return Err(group_error(f.by.len()));
    }
    let mut quantiles = Vec::new();
    for v in &f.args {
        let q = match v {
            Value::Float(q) => *q,
            Value::Int(n) => *n as f64,
            _ => continue,
        };
        if !(0.0..=1.0).contains(&q) {
            return Err(format!("quantile must be between 0 and 1: {q}"));
        }
        quantiles.push(q);
    }
    let by_resource =
        f.by.iter()
            .map(|b| {
                matches!(
                    b,
                    FieldExpr::Attribute {
                        scope: super::ast::AttrRef::Scoped(super::AttrScope::Resource),
                        ..
                    }
                )
            })
            .collect();
    Ok(Function::Simple(Simple {
        kind: f.kind,
        agg,
        field: f.field,
        by_resource,
        by: f.by,
        by_labels: f.by_labels,
        quantiles,
    }))
}

impl MetricsQuery {
    /// Whether each sample depends only on the spans of its own interval (and so a range can
    /// be computed in pieces): every function but `compare()`, whose values to keep are
    /// chosen over the whole range.
    pub fn per_interval(&self) -> bool {
        matches!(self.function, Function::Simple(_))
    }

    /// What a series holds for an interval without spans when it has spans in others: 0 for
    /// counts, rates, histograms and quantiles; nothing (`None`: the sample is left out) for
    /// sums, minimums, maximums and averages, and after a second stage (`topk`, `> 10`), which
    /// picks samples across series.
    pub fn empty_interval(&self) -> Option<f64> {
        match &self.function {
            Function::Simple(f)
                if self.second.is_empty()
                    && matches!(f.agg, Agg::Count | Agg::Rate | Agg::Buckets) =>
            {
                Some(0.0)
            }
            _ => None,
        }
    }

    /// Whether the samples of an interval can be computed apart from the others' and the
    /// series put together afterwards: [`MetricsQuery::per_interval`], and no second stage.
    pub fn shardable(&self) -> bool {
        self.per_interval() && self.second.is_empty()
    }

    /// The exemplar count asked for with `with (exemplars = N)` or `with (exemplars = false)`.
    pub fn exemplars_hint(&self) -> Option<u32> {
        self.exemplars_hint
    }

    /// Memory one series holds for `req` (what a caller's memory cap divides by).
    pub fn series_bytes(&self, req: &MetricsRequest) -> usize {
        let width = match &self.function {
            Function::Simple(s) if s.agg == Agg::Avg => 2,
            _ => 1,
        };
        req.intervals().saturating_mul(width * size_of::<f64>()) + 128
    }

    /// The function's name, as Tempo labels an ungrouped series (`__name__`).
    pub(crate) fn name(&self) -> &'static str {
        match &self.function {
            Function::Compare(_) => "compare",
            Function::Simple(s) => match s.kind {
                MetricsKind::Rate => "rate",
                MetricsKind::CountOverTime => "count_over_time",
                MetricsKind::MinOverTime => "min_over_time",
                MetricsKind::MaxOverTime => "max_over_time",
                MetricsKind::AvgOverTime => "avg_over_time",
                MetricsKind::SumOverTime => "sum_over_time",
                MetricsKind::QuantileOverTime => "quantile_over_time",
                MetricsKind::HistogramOverTime => "histogram_over_time",
                MetricsKind::Compare => "compare",
            },
        }
    }

    /// Necessary conditions a storage layer may use to skip traces (see
    /// [`super::Query::conditions`]); they come from the query's spanset pipeline.
    pub fn conditions(&self) -> Vec<super::Condition> {
        super::eval::pipeline_conditions_of(&self.pipeline)
    }
}
