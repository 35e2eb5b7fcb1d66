//! Observing spans into a mergeable [`Partial`]: series keyed by interned `by()` values, one
//! cell (two for averages) per interval, and raw exemplars.
use super::super::hash::FastMap as HashMap;

use super::super::eval::FieldReader;
use super::super::{Intrinsic, KindValue, StatusValue, TraceView, Value};
use super::compare::CompareCells;
use super::{Agg, Function, MAX_GROUP_BYS, MetricsQuery, MetricsRequest, Simple};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ScalarKey {
    Int(i64),
    Float(u64),
    Bool(bool),
    Duration(u64),
    Status(StatusValue),
    Kind(KindValue),
    Nil,
}

/// Gives each distinct value a small id, so series keys are fixed-size arrays and a string is
/// hashed once per span without being copied.
#[derive(Clone, Debug, Default)]
pub(crate) struct Interner {
    strs: HashMap<Box<str>, u32>,
    scalars: HashMap<ScalarKey, u32>,
    values: Vec<Value<'static>>,
}

impl Interner {
    pub(crate) fn id(&mut self, v: &Value<'_>) -> u32 {
        let scalar = match v {
            Value::Str(s) => {
                if let Some(&id) = self.strs.get(s.as_ref()) {
                    return id;
                }
                let id = self.values.len() as u32;
                self.strs.insert(s.as_ref().into(), id);
                self.values.push(v.clone().into_owned());
                return id;
            }
            Value::Int(n) => ScalarKey::Int(*n),
            Value::Float(f) => ScalarKey::Float(f.to_bits()),
            Value::Bool(b) => ScalarKey::Bool(*b),
            Value::Duration(d) => ScalarKey::Duration(*d),
            Value::Status(s) => ScalarKey::Status(*s),
            Value::Kind(k) => ScalarKey::Kind(*k),
            Value::Nil => ScalarKey::Nil,
        };
        if let Some(&id) = self.scalars.get(&scalar) {
            return id;
        }
        let id = self.values.len() as u32;
        self.scalars.insert(scalar, id);
        self.values.push(v.clone().into_owned());
        id
    }

    pub(crate) fn get(&self, id: u32) -> &Value<'static> {
        self.values.get(id as usize).unwrap_or(&Value::Nil)
    }

    /// The id in `self` of value `id` of `other`.
    pub(crate) fn translate(&mut self, other: &Interner, id: u32) -> u32 {
        self.id(other.get(id))
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.values
            .iter()
            .map(|v| match v {
                Value::Str(s) => 2 * s.len() + 64,
                _ => 48,
            })
            .sum()
    }
}

/// `by()` values (ids), then the bucket for histograms; unused slots are [`UNUSED`].
pub(crate) type Key = [u32; MAX_GROUP_BYS + 1];
pub(crate) const UNUSED: u32 = u32::MAX;

/// An exemplar before the final series exist.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RawExemplar {
    pub labels: Vec<(String, Value<'static>)>,
    /// NaN: take the sample's value at the end (counts, rates, histograms).
    pub value: f64,
    pub ts_ns: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Cells {
    pub key: Key,
    pub cells: Vec<f64>,
    pub exemplars: Vec<RawExemplar>,
}

/// What a metrics query has computed over some traces. Partials of the same query and request
/// merge in any order into the same result.
#[derive(Clone, Debug)]
pub struct Partial {
    pub(crate) req: MetricsRequest,
    pub(crate) agg: Option<Agg>,
    pub(crate) interner: Interner,
    index: HashMap<Key, usize>,
    /// Ids of `by()` values read from resources: (resource key, `by` position) → id.
    resource_ids: HashMap<((u64, u32), usize), u32>,
    pub(crate) series: Vec<Cells>,
    pub(crate) compare: Option<CompareCells>,
    pub(crate) exemplar_traces: usize,
    pub(crate) truncated: bool,
    /// Traces offered to [`MetricsQuery::observe`], matching or not.
    pub(crate) traces: u64,
    spans: u64,
    bytes: usize,
}

impl Partial {
    pub(crate) fn new(req: MetricsRequest, agg: Option<Agg>) -> Self {
        Partial {
            req,
            agg,
            interner: Interner::default(),
            index: HashMap::default(),
            resource_ids: HashMap::default(),
            series: Vec::new(),
            compare: agg.is_none().then(CompareCells::default),
            exemplar_traces: 0,
            truncated: false,
            traces: 0,
            spans: 0,
            bytes: 0,
        }
    }

    /// Spans counted so far.
    pub fn spans(&self) -> u64 {
        self.spans
    }

    /// Series (or `compare()` values) held.
    pub fn series_count(&self) -> usize {
        self.series.len() + self.compare.as_ref().map_or(0, CompareCells::len)
    }

    /// Approximate memory held.
    pub fn heap_bytes(&self) -> usize {
        self.bytes + self.interner.heap_bytes()
    }

    /// Whether series were dropped at the request's limit.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub(crate) fn count_span(&mut self) {
        self.spans += 1;
    }

    fn width(&self) -> usize {
        if self.agg == Some(Agg::Avg) { 2 } else { 1 }
    }

    pub(crate) fn new_cells(&self) -> Vec<f64> {
        let n = self.req.intervals() * self.width();
        match self.agg {
            Some(Agg::Sum | Agg::Min | Agg::Max) => vec![f64::NAN; n],
            _ => vec![0.0; n],
        }
    }

    /// The series for `key`, created if the limit allows.
    fn series_index(&mut self, key: &Key) -> Option<usize> {
        if let Some(&i) = self.index.get(key) {
            return Some(i);
        }
        if self.series_count() >= self.req.max_series {
            self.truncated = true;
            return None;
        }
        let cells = self.new_cells();
        self.bytes += cells.len() * size_of::<f64>() + 128;
        self.series.push(Cells {
            key: *key,
            cells,
            exemplars: Vec::new(),
        });
        self.index.insert(*key, self.series.len() - 1);
        Some(self.series.len() - 1)
    }

    fn record(&mut self, series: usize, interval: usize, v: f64) {
        let agg = self.agg;
        let Some(s) = self.series.get_mut(series) else {
            return;
        };
        match agg {
            Some(Agg::Avg) => {
                if !v.is_nan()
                    && let Some(c) = s.cells.get_mut(2 * interval..2 * interval + 2)
                {
                    c[0] += v;
                    c[1] += 1.0;
                }
            }
            Some(a @ (Agg::Sum | Agg::Min | Agg::Max)) => {
                if let Some(c) = s.cells.get_mut(interval) {
                    *c = combine(a, *c, v);
                }
            }
            _ => {
                if let Some(c) = s.cells.get_mut(interval) {
                    *c += 1.0;
                }
            }
        }
    }

    /// Adds `other` (computed for the same query and request) into `self`.
    pub fn merge(&mut self, other: Partial) {
        self.spans += other.spans;
        self.traces += other.traces;
        self.truncated |= other.truncated;
        self.exemplar_traces += other.exemplar_traces;
        let agg = self.agg;
        for s in other.series {
            let mut key = s.key;
            for k in key.iter_mut().filter(|k| **k != UNUSED) {
                *k = self.interner.translate(&other.interner, *k);
            }
            let Some(i) = self.series_index(&key) else {
                continue;
            };
            let mine = &mut self.series[i];
            for (a, b) in mine.cells.iter_mut().zip(&s.cells) {
                *a = match agg {
                    Some(a2 @ (Agg::Sum | Agg::Min | Agg::Max)) => combine(a2, *a, *b),
                    _ => *a + *b,
                };
            }
            mine.exemplars.extend(s.exemplars);
        }
        if let (Some(mine), Some(theirs)) = (self.compare.as_mut(), other.compare) {
            let limit = self.req.max_series.saturating_sub(self.series.len());
            if !mine.merge(&mut self.interner, &other.interner, theirs, limit) {
                self.truncated = true;
            }
        }
    }
}

/// Sum, min or max of a cell and a value; NaN stands for "nothing yet" and a NaN value (a span
/// without the attribute) changes nothing.
fn combine(agg: Agg, cell: f64, v: f64) -> f64 {
    if v.is_nan() {
        return cell;
    }
    if cell.is_nan() {
        return v;
    }
    match agg {
        Agg::Min => cell.min(v),
        Agg::Max => cell.max(v),
        _ => cell + v,
    }
}

/// A number from a field value: ints and floats as they are, durations in seconds; anything
/// else is NaN (the span has no value).
pub(crate) fn to_f64(v: &Value<'_>) -> f64 {
    match v {
        Value::Int(n) => *n as f64,
        Value::Float(f) => *f,
        Value::Duration(d) => *d as f64 / 1e9,
        _ => f64::NAN,
    }
}

/// The power-of-two bucket of a value, as Tempo's histograms (durations in seconds); None drops
/// the span (values under 2, floats, non-numbers).
fn bucket(v: &Value<'_>) -> Option<f64> {
    let (n, seconds) = match v {
        Value::Int(n) => (u64::try_from(*n).ok()?, false),
        Value::Duration(d) => (*d, true),
        _ => return None,
    };
    if n < 2 {
        return None;
    }
    let up = match 1u64.checked_shl(64 - (n - 1).leading_zeros()) {
        Some(p) => p as f64,
        None => 2f64.powi(64),
    };
    Some(if seconds { up / 1e9 } else { up })
}

impl MetricsQuery {
    /// An empty partial for `req`.
    pub fn partial(&self, req: &MetricsRequest) -> Partial {
        let agg = match &self.function {
            Function::Simple(s) => Some(s.agg),
            Function::Compare(_) => None,
        };
        Partial::new(*req, agg)
    }

    /// Observes the spans of one trace (or trace fragment) that the query selects and that
    /// start in the request's range.
    pub fn observe<T: TraceView + ?Sized>(&self, trace: &T, acc: &mut Partial) {
        acc.traces += 1;
        let reader = FieldReader::new(trace);
        let spans: Vec<usize> = if self.match_all {
            (0..trace.span_count()).collect()
        } else {
            reader.pipeline_spans(&self.pipeline)
        };
        if spans.is_empty() {
            return;
        }
        match &self.function {
            Function::Simple(f) => self.observe_simple(f, &reader, &spans, acc),
            Function::Compare(c) => super::compare::observe(c, &reader, &spans, acc),
        }
    }

    fn observe_simple<T: TraceView + ?Sized>(
        &self,
        f: &Simple,
        reader: &FieldReader<'_, T>,
        spans: &[usize],
        acc: &mut Partial,
    ) {
        let trace = reader.trace();
        let mut exemplar: Option<(usize, usize, f64, u64)> = None;
        let mut last: Option<(Key, usize)> = None;
        for &s in spans {
            let ts = trace.start_unix_nanos(s);
            let Some(interval) = acc.req.interval(ts) else {
                continue;
            };
            let mut key = [UNUSED; MAX_GROUP_BYS + 1];
            let resource = trace.resource_key(s);
            for (i, (slot, by)) in key.iter_mut().zip(&f.by).enumerate() {
                *slot = match resource.filter(|_| f.by_resource[i]) {
                    Some(r) => match acc.resource_ids.get(&(r, i)) {
                        Some(&id) => id,
                        None => {
                            let id = acc.interner.id(&reader.field(by, s));
                            acc.resource_ids.insert((r, i), id);
                            id
                        }
                    },
                    None => acc.interner.id(&reader.field(by, s)),
                };
            }
            let value = match &f.field {
                Some(field) => reader.field(field, s),
                None => Value::Nil,
            };
            if f.agg == Agg::Buckets {
                let Some(b) = bucket(&value) else { continue };
                key[MAX_GROUP_BYS] = acc.interner.id(&Value::Float(b));
            }
            let series = match last {
                Some((k, i)) if k == key => i,
                _ => match acc.series_index(&key) {
                    Some(i) => i,
                    None => continue,
                },
            };
            last = Some((key, series));
            let v = to_f64(&value);
            acc.record(series, interval, v);
            acc.spans += 1;
            if exemplar.is_none() {
                exemplar = Some((s, series, v, ts));
            }
        }
        let Some((span, series, v, ts)) = exemplar else {
            return;
        };
        if acc.exemplar_traces >= acc.req.exemplars as usize {
            return;
        }
        acc.exemplar_traces += 1;
        let value = match (f.kind, f.agg) {
            (super::MetricsKind::QuantileOverTime, _)
            | (_, Agg::Sum | Agg::Min | Agg::Max | Agg::Avg) => v,
            _ => f64::NAN,
        };
        let mut labels = Vec::with_capacity(2 + f.by.len());
        for (name, which) in [
            ("trace:id", Intrinsic::TraceId),
            ("span:id", Intrinsic::SpanId),
        ] {
            if let Some(v) = trace.intrinsic(span, which) {
                labels.push((name.to_string(), v.into_owned()));
            }
        }
        for (by, label) in f.by.iter().zip(&f.by_labels) {
            let v = reader.field(by, span);
            if v != Value::Nil {
                labels.push((label.clone(), v.into_owned()));
            }
        }
        if let Some(s) = acc.series.get_mut(series) {
            s.exemplars.push(RawExemplar {
                labels,
                value,
                ts_ns: ts,
            });
        }
    }
}
