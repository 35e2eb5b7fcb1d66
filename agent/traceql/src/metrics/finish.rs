//! From a merged [`Partial`] to Tempo's series: labels, per-interval values (rates, averages,
//! quantiles), exemplars, the second stages, Tempo's order and the series limit.
use super::super::hash::FastMap as HashMap;

use super::super::ast::{BinaryOp, SecondStage};
use super::super::{Value, format_duration};
use super::accumulate::{Cells, Interner, Partial, RawExemplar, UNUSED};
use super::{
    Agg, Exemplar, Function, LabelValue, MAX_GROUP_BYS, MetricsKind, MetricsQuery, MetricsRequest,
    MetricsResult, Series, Simple,
};

/// Most exemplars in one stretch of time: the range is cut in `exemplars / 2` stretches.
const EXEMPLARS_PER_BUCKET: usize = 2;

pub(crate) fn label_value(v: &Value<'_>) -> LabelValue {
    match v {
        Value::Str(s) => LabelValue::Str(s.to_string()),
        Value::Int(n) => LabelValue::Int(*n),
        Value::Float(f) => LabelValue::Float(*f),
        Value::Bool(b) => LabelValue::Bool(*b),
        Value::Duration(d) => LabelValue::Str(format_duration(*d)),
        Value::Status(s) => LabelValue::Str(s.as_str().into()),
        Value::Kind(k) => LabelValue::Str(k.as_str().into()),
        Value::Nil => LabelValue::Str("nil".into()),
    }
}

impl LabelValue {
    /// Tempo orders series by the text of their values' protobuf form: by type name first
    /// (bool, double, int, string), then by the value as text.
    pub(crate) fn sort_key(&self) -> (u8, String) {
        match self {
            LabelValue::Bool(b) => (0, b.to_string()),
            LabelValue::Float(f) => (1, f.to_string()),
            LabelValue::Int(n) => (2, n.to_string()),
            LabelValue::Str(s) => (3, s.clone()),
        }
    }
}

/// A series before the second stages: values per interval (NaN = no sample).
struct Working {
    labels: Vec<(String, LabelValue)>,
    values: Vec<f64>,
    exemplars: Vec<RawExemplar>,
}

/// Limits exemplars as Tempo does: at most `max` in all, at most two per stretch of time.
struct ExemplarBuckets {
    start_ms: u64,
    end_ms: u64,
    width: u64,
    counts: Vec<usize>,
    total: usize,
    max: usize,
}

impl ExemplarBuckets {
    fn new(req: &MetricsRequest) -> Self {
        let max = req.exemplars as usize;
        let n = (max / EXEMPLARS_PER_BUCKET).max(1);
        let (start_ms, end_ms) = (req.start_ns / 1_000_000, req.end_ns / 1_000_000);
        ExemplarBuckets {
            start_ms,
            end_ms,
            width: ((end_ms - start_ms.min(end_ms)) / n as u64).max(1),
            counts: vec![0; n],
            total: 0,
            max,
        }
    }

    /// Whether an exemplar at `ts_ms` may be kept (and counts it if so).
    fn admit(&mut self, ts_ms: u64) -> bool {
        if self.total >= self.max || ts_ms < self.start_ms || ts_ms > self.end_ms {
            return false;
        }
        let b = (((ts_ms - self.start_ms) / self.width) as usize).min(self.counts.len() - 1);
        if self.counts[b] >= EXEMPLARS_PER_BUCKET {
            return false;
        }
        self.counts[b] += 1;
        self.total += 1;
        true
    }
}

/// Labels of a series key: the `by()` values that are not nil, or the first one as `"nil"`
/// when all are (Prometheus-style series need a label).
fn group_labels(
    f: &Simple,
    key: &[u32],
    interner: &Interner,
    force: bool,
) -> Vec<(String, LabelValue)> {
    let mut labels: Vec<(String, LabelValue)> = f
        .by_labels
        .iter()
        .zip(key)
        .filter(|(_, id)| *interner.get(**id) != Value::Nil)
        .map(|(name, id)| (name.clone(), label_value(interner.get(*id))))
        .collect();
    if labels.is_empty()
        && force
        && let Some(first) = f.by_labels.first()
    {
        labels.push((first.clone(), LabelValue::Str("nil".into())));
    }
    labels
}

impl MetricsQuery {
    /// The final series for everything observed into `acc`.
    pub fn finish(&self, mut acc: Partial) -> MetricsResult {
        let req = acc.req;
        // Like Tempo, an ungrouped count or rate has its series even when nothing matched, as
        // long as there was data to look at.
        if let Function::Simple(f) = &self.function
            && acc.traces > 0
            && f.by.is_empty()
            && f.agg != Agg::Buckets
            && acc.series.is_empty()
        {
            let cells = acc.new_cells();
            acc.series.push(Cells {
                key: [UNUSED; MAX_GROUP_BYS + 1],
                cells,
                exemplars: Vec::new(),
            });
        }
        let mut work = match &self.function {
            Function::Compare(c) => match &acc.compare {
                Some(cells) => super::compare::series(cells, &acc.interner, c.top_n)
                    .into_iter()
                    .map(|(labels, values, exemplars)| Working {
                        labels,
                        values,
                        exemplars,
                    })
                    .collect(),
                None => Vec::new(),
            },
            Function::Simple(f) if f.kind == MetricsKind::QuantileOverTime => {
                quantiles(f, &acc.series, &acc.interner, &req)
            }
            Function::Simple(f) => acc
                .series
                .iter()
                .map(|s| simple_series(self.name(), f, s, &acc.interner, &req))
                .collect(),
        };
        for w in &mut work {
            attach_exemplar_values(w, &req);
        }
        for stage in &self.second {
            work = second_stage(stage, work);
        }
        let mut series: Vec<Series> = Vec::with_capacity(work.len());
        let per_series = matches!(&self.function,
            Function::Simple(f) if f.kind == MetricsKind::QuantileOverTime);
        sort(&mut work);
        let mut shared = ExemplarBuckets::new(&req);
        for w in work {
            let samples: Vec<(i64, f64)> = w
                .values
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.is_nan())
                .map(|(i, v)| (req.timestamp_ms(i), *v))
                .collect();
            if samples.is_empty() {
                continue;
            }
            let mut own = ExemplarBuckets::new(&req);
            let buckets = if per_series { &mut own } else { &mut shared };
            let mut raw = w.exemplars;
            raw.sort_by_key(|e| e.ts_ns);
            let exemplars = raw
                .into_iter()
                .filter(|e| buckets.admit(e.ts_ns / 1_000_000))
                .map(|e| Exemplar {
                    labels: e
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), label_value(v)))
                        .collect(),
                    value: e.value,
                    timestamp_ms: (e.ts_ns / 1_000_000) as i64,
                })
                .collect();
            series.push(Series {
                labels: w.labels,
                samples,
                exemplars,
            });
        }
        let truncated = acc.truncated.then_some(req.max_series);
        series.truncate(req.max_series);
        MetricsResult { series, truncated }
    }
}

fn simple_series(
    name: &str,
    f: &Simple,
    s: &Cells,
    interner: &Interner,
    req: &MetricsRequest,
) -> Working {
    let mut labels = if f.by.is_empty() && f.agg != Agg::Buckets {
        vec![("__name__".to_string(), LabelValue::Str(name.to_string()))]
    } else {
        group_labels(f, &s.key, interner, f.agg != Agg::Buckets)
    };
    if f.agg == Agg::Buckets {
        labels.push((
            "__bucket".to_string(),
            label_value(interner.get(s.key[MAX_GROUP_BYS])),
        ));
    }
    let values = match f.agg {
        Agg::Rate => {
            let secs = req.rate_seconds();
            s.cells.iter().map(|c| c / secs).collect()
        }
        Agg::Avg => s
            .cells
            .chunks_exact(2)
            .map(|c| if c[1] > 0.0 { c[0] / c[1] } else { f64::NAN })
            .collect(),
        _ => s.cells.clone(),
    };
    Working {
        labels,
        values,
        exemplars: s.exemplars.clone(),
    }
}

/// Per group (the `by()` values), a histogram per interval from the bucket series; then one
/// series per requested quantile with label `p`.
fn quantiles(f: &Simple, all: &[Cells], interner: &Interner, req: &MetricsRequest) -> Vec<Working> {
    struct Group<'a> {
        key: &'a [u32],
        hist: Vec<Vec<(f64, f64)>>,
        exemplars: Vec<RawExemplar>,
    }
    let n = req.intervals();
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut index: HashMap<&[u32], usize> = HashMap::default();
    let mut overall: Vec<(f64, f64)> = Vec::new();
    for s in all {
        let key = &s.key[..MAX_GROUP_BYS];
        let gi = *index.entry(key).or_insert_with(|| {
            groups.push(Group {
                key,
                hist: vec![Vec::new(); n],
                exemplars: Vec::new(),
            });
            groups.len() - 1
        });
        let b = match interner.get(s.key[MAX_GROUP_BYS]) {
            Value::Float(b) => *b,
            _ => continue,
        };
        for (i, &c) in s.cells.iter().enumerate() {
            if c > 0.0 {
                groups[gi].hist[i].push((b, c));
                record(&mut overall, b, c);
            }
        }
        groups[gi].exemplars.extend(s.exemplars.iter().cloned());
    }
    overall.sort_by(|a, b| a.0.total_cmp(&b.0));
    let overall_q: Vec<f64> = f
        .quantiles
        .iter()
        .map(|&q| log2_quantile(q, &overall))
        .collect();
    let mut out = Vec::new();
    for mut g in groups {
        for h in &mut g.hist {
            h.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let key: Vec<u32> = g.key.iter().copied().filter(|&k| k != UNUSED).collect();
        let base = group_labels(f, &key, interner, false);
        for (qi, &q) in f.quantiles.iter().enumerate() {
            let mut labels = base.clone();
            labels.push(("p".to_string(), LabelValue::Float(q)));
            let values = g
                .hist
                .iter()
                .map(|h| {
                    if h.is_empty() {
                        0.0
                    } else {
                        log2_quantile(q, h)
                    }
                })
                .collect();
            let exemplars = g
                .exemplars
                .iter()
                .filter(|e| closest(e.value, &overall_q) == Some(qi))
                .cloned()
                .collect();
            out.push(Working {
                labels,
                values,
                exemplars,
            });
        }
    }
    out
}

fn record(h: &mut Vec<(f64, f64)>, bucket: f64, count: f64) {
    match h.iter_mut().find(|(b, _)| *b == bucket) {
        Some(e) => e.1 += count,
        None => h.push((bucket, count)),
    }
}

/// The index of the value nearest to `v`.
fn closest(v: f64, values: &[f64]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .filter(|(_, q)| !(v - **q).abs().is_nan())
        .min_by(|a, b| (v - a.1).abs().total_cmp(&(v - b.1).abs()))
        .map(|(i, _)| i)
}

/// The `p` quantile of power-of-two buckets `(upper bound, count)` sorted by bound, with
/// exponential interpolation inside the bucket where it falls (Tempo's `Log2Quantile`).
pub(crate) fn log2_quantile(p: f64, buckets: &[(f64, f64)]) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) || buckets.is_empty() {
        return 0.0;
    }
    let total: f64 = buckets.iter().map(|b| b.1).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let want = (p * total).ceil().max(1.0);
    let mut seen = 0.0;
    let mut at = 0;
    for (i, &(max, count)) in buckets.iter().enumerate() {
        at = i;
        if seen + count > want {
            break;
        }
        seen += count;
        if seen == want {
            return max;
        }
    }
    let (max, count) = buckets[at];
    let interp = (want - seen) / count;
    let hi = max.log2();
    let lo = if at > 0 {
        buckets[at - 1].0.log2()
    } else {
        hi - 1.0
    };
    2f64.powf(lo + (hi - lo) * interp)
}

/// Exemplars of counts and rates carry the value of the sample of their interval; those whose
/// interval has no sample are dropped.
fn attach_exemplar_values(w: &mut Working, req: &MetricsRequest) {
    let values = &w.values;
    w.exemplars.retain_mut(|e| {
        let Some(v) = req.interval(e.ts_ns).and_then(|i| values.get(i)) else {
            return false;
        };
        if v.is_nan() {
            return false;
        }
        if e.value.is_nan() {
            e.value = *v;
        }
        true
    });
}

fn holds(op: BinaryOp, v: f64, x: f64) -> bool {
    match op {
        BinaryOp::Gt => v > x,
        BinaryOp::Gte => v >= x,
        BinaryOp::Lt => v < x,
        BinaryOp::Lte => v <= x,
        BinaryOp::Eq => v == x,
        BinaryOp::Neq => v != x,
        _ => false,
    }
}

fn second_stage(stage: &SecondStage, mut work: Vec<Working>) -> Vec<Working> {
    match stage {
        SecondStage::Filter { op, value } => {
            let x = match value {
                Value::Int(n) => *n as f64,
                Value::Float(f) => *f,
                _ => f64::NAN,
            };
            work.retain_mut(|w| {
                for v in &mut w.values {
                    if v.is_nan() || !holds(*op, *v, x) {
                        *v = f64::NAN;
                    }
                }
                w.exemplars
                    .retain(|e| !e.value.is_nan() && holds(*op, e.value, x));
                w.values.iter().any(|v| !v.is_nan())
            });
            work
        }
        SecondStage::TopK { bottom, k } => {
            let k = usize::try_from(*k).unwrap_or(0);
            if work.len() <= k {
                return work;
            }
            sort(&mut work);
            let n = work.iter().map(|w| w.values.len()).max().unwrap_or(0);
            // For each interval, the series whose value there is among the k highest (lowest).
            let kept: Vec<Vec<usize>> = (0..n)
                .map(|i| {
                    let mut at: Vec<(usize, f64)> = work
                        .iter()
                        .enumerate()
                        .filter_map(|(si, w)| w.values.get(i).map(|v| (si, *v)))
                        .filter(|(_, v)| !v.is_nan())
                        .collect();
                    // Stable: among equal values the series first in Tempo's order wins.
                    if *bottom {
                        at.sort_by(|a, b| a.1.total_cmp(&b.1));
                    } else {
                        at.sort_by(|a, b| b.1.total_cmp(&a.1));
                    }
                    at.into_iter().take(k).map(|(si, _)| si).collect()
                })
                .collect();
            work.into_iter()
                .enumerate()
                .filter_map(|(si, mut w)| {
                    let mut any = false;
                    for (i, v) in w.values.iter_mut().enumerate() {
                        if kept.get(i).is_some_and(|k| k.contains(&si)) {
                            any = true;
                        } else {
                            *v = f64::NAN;
                        }
                    }
                    any.then_some(w)
                })
                .collect()
        }
    }
}

/// Tempo's order: fewer labels first, then label by label, key then value.
fn sort(work: &mut [Working]) {
    work.sort_by(|a, b| {
        a.labels.len().cmp(&b.labels.len()).then_with(|| {
            for ((ka, va), (kb, vb)) in a.labels.iter().zip(&b.labels) {
                let o = ka.cmp(kb).then_with(|| va.sort_key().cmp(&vb.sort_key()));
                if o.is_ne() {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        })
    });
}
