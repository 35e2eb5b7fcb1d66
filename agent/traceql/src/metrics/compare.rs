//! `compare({ selection }, topN, start, end)`: for every attribute of the observed spans, how
//! many spans carry each value inside the selection and outside it (the baseline), per
//! interval — what Grafana's Traces Drilldown shows as "comparison".
use super::super::hash::FastMap as HashMap;

use super::super::eval::FieldReader;
use super::super::{AttrScope, Intrinsic, TraceView, Value};
use super::accumulate::{Interner, Partial, RawExemplar};
use super::{CompareSpec, LabelValue, Labels};

/// Counts per `(selection?, attribute, value)` and totals per `(selection?, attribute)`; the
/// attribute is interned as its label (`resource.service.name`, `name`).
#[derive(Clone, Debug, Default)]
pub(crate) struct CompareCells {
    values: HashMap<(bool, u32, u32), Vec<f64>>,
    totals: HashMap<(bool, u32), Vec<f64>>,
    /// Attribute labels by scope and name, so a span's attribute is found without formatting.
    names: HashMap<Option<AttrScope>, HashMap<Box<str>, u32>>,
    /// Distinct values kept per `(selection?, attribute)`.
    distinct: HashMap<(bool, u32), usize>,
    /// `(attribute, value)` ids of the resources seen, by resource key.
    resource_attrs: HashMap<(u64, u32), Vec<(u32, u32)>>,
    /// One span per sampled trace, inside the selection or not, with its attributes' ids.
    exemplars: Vec<(bool, Pairs, RawExemplar)>,
}

/// `(attribute, value)` ids of a span's attributes.
type Pairs = Vec<(u32, u32)>;

/// Distinct values kept per attribute (inside or outside the selection): an attribute with more
/// (ids, URLs) keeps its first ones and leaves room for the others.
pub(crate) const MAX_VALUES_PER_ATTRIBUTE: usize = 500;

enum Admit {
    Yes,
    /// The attribute has [`MAX_VALUES_PER_ATTRIBUTE`] values already.
    AttributeFull,
    /// The query's series limit is reached.
    Full,
}

impl CompareCells {
    pub(crate) fn len(&self) -> usize {
        self.values.len() + self.totals.len()
    }

    /// Whether a count for `key` may be kept (counting a new value against the limits).
    fn admit(&mut self, key: (bool, u32, u32), max: usize) -> Admit {
        if self.values.contains_key(&key) {
            return Admit::Yes;
        }
        let distinct = self.distinct.entry((key.0, key.1)).or_insert(0);
        if *distinct >= MAX_VALUES_PER_ATTRIBUTE {
            return Admit::AttributeFull;
        }
        if self.values.len() + self.totals.len() >= max {
            return Admit::Full;
        }
        *distinct += 1;
        Admit::Yes
    }

    /// Adds `other`; false when values were dropped at `limit`.
    pub(crate) fn merge(
        &mut self,
        interner: &mut Interner,
        from: &Interner,
        other: CompareCells,
        limit: usize,
    ) -> bool {
        let mut complete = true;
        for ((sel, a, v), counts) in other.values {
            let key = (
                sel,
                interner.translate(from, a),
                interner.translate(from, v),
            );
            if !self.values.contains_key(&key) && self.len() >= limit {
                complete = false;
                continue;
            }
            add(
                self.values
                    .entry(key)
                    .or_insert_with(|| vec![0.0; counts.len()]),
                &counts,
            );
        }
        for ((sel, a), counts) in other.totals {
            let key = (sel, interner.translate(from, a));
            add(
                self.totals
                    .entry(key)
                    .or_insert_with(|| vec![0.0; counts.len()]),
                &counts,
            );
        }
        complete
    }
}

fn add(into: &mut [f64], from: &[f64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// The label of an attribute, interned once per distinct name.
fn name_id(
    cells: &mut CompareCells,
    interner: &mut Interner,
    scope: Option<AttrScope>,
    name: &str,
) -> u32 {
    if let Some(&id) = cells.names.get(&scope).and_then(|m| m.get(name)) {
        return id;
    }
    let label = match scope {
        Some(s) => format!("{}.{name}", s.as_str()),
        None => name.to_string(),
    };
    let id = interner.id(&Value::Str(label.into()));
    cells
        .names
        .entry(scope)
        .or_default()
        .insert(name.into(), id);
    id
}

/// Span intrinsics `compare()` breaks down by (durations and ids are left out, as in Tempo).
const SPAN_INTRINSICS: [Intrinsic; 4] = [
    Intrinsic::Name,
    Intrinsic::Status,
    Intrinsic::Kind,
    Intrinsic::StatusMessage,
];

/// Trace intrinsics `compare()` breaks down by: the same for every span of a trace.
const TRACE_INTRINSICS: [Intrinsic; 2] = [Intrinsic::RootName, Intrinsic::RootServiceName];

/// `(attribute, value)` ids of an intrinsic on `span`; None when it has no value.
fn intrinsic_pair<T: TraceView + ?Sized>(
    reader: &FieldReader<'_, T>,
    cells: &mut CompareCells,
    interner: &mut Interner,
    span: usize,
    i: Intrinsic,
) -> Option<(u32, u32)> {
    let v = match reader.intrinsic(span, i) {
        Value::Nil => return None,
        Value::Str(s) if s.is_empty() => return None,
        v => v,
    };
    Some((name_id(cells, interner, None, i.as_str()), interner.id(&v)))
}

pub(crate) fn observe<T: TraceView + ?Sized>(
    spec: &CompareSpec,
    reader: &FieldReader<'_, T>,
    spans: &[usize],
    acc: &mut Partial,
) {
    let trace = reader.trace();
    let req = acc.req;
    let n = req.intervals();
    let max = req.max_series;
    let Some(mut cells) = acc.compare.take() else {
        return;
    };
    let mut dropped = false;
    let mut sampled = acc.exemplar_traces >= req.exemplars as usize;
    let mut trace_pairs: Option<Vec<(u32, u32)>> = None;
    let mut attrs: Vec<(u32, u32)> = Vec::new();
    for &s in spans {
        let ts = trace.start_unix_nanos(s);
        let Some(interval) = req.interval(ts) else {
            continue;
        };
        let in_window = spec.window == (0, 0) || (ts > spec.window.0 && ts <= spec.window.1);
        let sel = in_window && matches!(reader.field(&spec.selection, s), Value::Bool(true));
        attrs.clear();
        {
            let interner = &mut acc.interner;
            let tp = trace_pairs.get_or_insert_with(|| {
                TRACE_INTRINSICS
                    .iter()
                    .filter_map(|&i| intrinsic_pair(reader, &mut cells, interner, s, i))
                    .collect()
            });
            attrs.extend_from_slice(tp);
            for i in SPAN_INTRINSICS {
                attrs.extend(intrinsic_pair(reader, &mut cells, interner, s, i));
            }
            // A resource's attributes are the same for all its spans: read them once.
            let resource = trace.resource_key(s);
            let cached = match resource.and_then(|r| cells.resource_attrs.get(&r)) {
                Some(pairs) => {
                    attrs.extend_from_slice(pairs);
                    true
                }
                None => false,
            };
            let mut fresh: Vec<(u32, u32)> = Vec::new();
            trace.for_each_attribute(s, &mut |scope, name, v| {
                if matches!(v, Value::Duration(_)) || (cached && scope == AttrScope::Resource) {
                    return;
                }
                let pair = (
                    name_id(&mut cells, interner, Some(scope), name),
                    interner.id(&v),
                );
                if scope == AttrScope::Resource {
                    fresh.push(pair);
                }
                attrs.push(pair);
            });
            if let (false, Some(r)) = (cached, resource) {
                cells.resource_attrs.insert(r, fresh);
            }
        }
        for &(a, v) in &attrs {
            if let Some(c) = cells
                .totals
                .entry((sel, a))
                .or_insert_with(|| vec![0.0; n])
                .get_mut(interval)
            {
                *c += 1.0;
            }
            match cells.admit((sel, a, v), max) {
                Admit::Yes => {}
                Admit::AttributeFull => continue,
                Admit::Full => {
                    dropped = true;
                    continue;
                }
            }
            if let Some(c) = cells
                .values
                .entry((sel, a, v))
                .or_insert_with(|| vec![0.0; n])
                .get_mut(interval)
            {
                *c += 1.0;
            }
        }
        acc.count_span();
        if !sampled {
            // The trace's first counted span is its exemplar (Tempo's value: the total's).
            sampled = true;
            acc.exemplar_traces += 1;
            let labels = [
                ("trace:id", Intrinsic::TraceId),
                ("span:id", Intrinsic::SpanId),
            ]
            .into_iter()
            .filter_map(|(k, i)| Some((k.to_string(), trace.intrinsic(s, i)?.into_owned())))
            .collect();
            let e = RawExemplar {
                labels,
                value: f64::NAN,
                ts_ns: ts,
            };
            cells.exemplars.push((sel, attrs.clone(), e));
        }
    }
    acc.truncated |= dropped;
    acc.compare = Some(cells);
}

/// The final series of `compare()`: the top values of each attribute by total count, inside
/// and outside the selection, and the totals per attribute, with Tempo's `__meta_type` labels.
pub(crate) fn series(
    cells: &CompareCells,
    interner: &Interner,
    top_n: usize,
) -> Vec<(Labels, Vec<f64>, Vec<RawExemplar>)> {
    let label = |id: u32| match interner.get(id) {
        Value::Str(s) => s.to_string(),
        _ => String::new(),
    };
    let meta = |t: &str| ("__meta_type".to_string(), LabelValue::Str(t.to_string()));
    let mut out = Vec::new();
    // Per (selection?, attribute): (value, counts, total count).
    type Ranked<'a> = Vec<(u32, &'a Vec<f64>, f64)>;
    let mut by_attr: HashMap<(bool, u32), Ranked<'_>> = HashMap::default();
    for (&(sel, a, v), counts) in &cells.values {
        by_attr
            .entry((sel, a))
            .or_default()
            .push((v, counts, counts.iter().sum()));
    }
    for ((sel, a), mut values) in by_attr {
        values.sort_by(|x, y| {
            y.2.total_cmp(&x.2).then_with(|| {
                super::finish::label_value(interner.get(x.0))
                    .sort_key()
                    .cmp(&super::finish::label_value(interner.get(y.0)).sort_key())
            })
        });
        for (v, counts, _) in values.into_iter().take(top_n) {
            let labels = vec![
                meta(if sel { "selection" } else { "baseline" }),
                (label(a), super::finish::label_value(interner.get(v))),
            ];
            out.push((labels, counts.clone(), Vec::new()));
        }
    }
    for (&(sel, a), counts) in &cells.totals {
        let labels = vec![
            meta(if sel {
                "selection_total"
            } else {
                "baseline_total"
            }),
            (label(a), LabelValue::Str("nil".into())),
        ];
        // Exemplars go with the totals of the attributes their span has, as in Tempo.
        let exemplars = cells
            .exemplars
            .iter()
            .filter(|(s, pairs, _)| *s == sel && pairs.iter().any(|p| p.0 == a))
            .map(|(_, pairs, e)| {
                let mut e = e.clone();
                e.labels.extend(
                    pairs
                        .iter()
                        .map(|&(a, v)| (label(a), interner.get(v).clone())),
                );
                e
            })
            .collect();
        out.push((labels, counts.clone(), exemplars));
    }
    out
}
