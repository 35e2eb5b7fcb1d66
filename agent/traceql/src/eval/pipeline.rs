//! Pipeline stages after the first spanset expression: later spanset filters, scalar filters
//! over aggregates (`| count() > 2`, `| avg(duration) > 1s`), `by(...)`, `coalesce()` and
//! `select(...)`, over the span sets of one trace, as Tempo's engine runs them.

use std::cmp::Ordering;

use super::super::ast::{AggregateKind, BinaryOp, FieldExpr, Pipeline, ScalarExpr, Stage};
use super::super::{TraceView, Value};
use super::{Ctx, arithmetic, compare};

/// One span set a query returns for a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanSet {
    /// Span indexes, ascending.
    pub spans: Vec<usize>,
    /// What the pipeline computed for the set, under Tempo's names: `by(resource.service.name)`
    /// for the group's value, `count()`, `avg(duration)`, ... for aggregates.
    pub attributes: Vec<(String, Value<'static>)>,
}

impl<T: TraceView + ?Sized> Ctx<'_, T> {
    /// Runs `p` over the spans of `domain` (every span when None).
    pub(super) fn run(&self, p: &Pipeline, domain: Option<&[usize]>) -> Vec<SpanSet> {
        let (input, rest) = match p.stages.split_first() {
            // The common first stage reads the spans directly, without a set of them all.
            Some((Stage::Spanset(e), rest)) => {
                let spans = self.spanset(e, domain);
                if spans.is_empty() {
                    return Vec::new();
                }
                let attributes = Vec::new();
                (vec![SpanSet { spans, attributes }], rest)
            }
            _ => {
                let spans = match domain {
                    Some(d) => d.to_vec(),
                    None => (0..self.trace.span_count()).collect(),
                };
                let attributes = Vec::new();
                (vec![SpanSet { spans, attributes }], p.stages.as_slice())
            }
        };
        self.stages(rest, input)
    }

    /// Runs `stages` over `input`, one after the other.
    fn stages(&self, stages: &[Stage], mut input: Vec<SpanSet>) -> Vec<SpanSet> {
        for stage in stages {
            if input.is_empty() {
                break;
            }
            input = match stage {
                Stage::Spanset(e) => input
                    .into_iter()
                    .filter_map(|ss| {
                        let spans = self.spanset(e, Some(&ss.spans));
                        (!spans.is_empty()).then_some(SpanSet {
                            spans,
                            attributes: ss.attributes,
                        })
                    })
                    .collect(),
                Stage::ScalarFilter { op, lhs, rhs } => self.scalar_filter(*op, lhs, rhs, input),
                Stage::GroupBy(field) => input
                    .into_iter()
                    .flat_map(|ss| self.group_by(field, ss))
                    .collect(),
                // Tempo merges the sets back into one and drops their attributes.
                Stage::Coalesce => {
                    let mut spans: Vec<usize> = input.into_iter().flat_map(|ss| ss.spans).collect();
                    spans.sort_unstable();
                    spans.dedup();
                    vec![SpanSet {
                        spans,
                        attributes: Vec::new(),
                    }]
                }
                // The fields are printed on the spans by the store (`Query::referenced_fields`).
                Stage::Select(_) => input,
            };
        }
        input
    }

    /// Keeps the sets whose aggregate satisfies the comparison, noting the aggregate's value.
    fn scalar_filter(
        &self,
        op: BinaryOp,
        lhs: &ScalarExpr,
        rhs: &ScalarExpr,
        input: Vec<SpanSet>,
    ) -> Vec<SpanSet> {
        // The parser only lets `aggregate op constant` (either way round) through.
        let (kind, field, op, constant) = match (lhs, rhs) {
            (ScalarExpr::Aggregate { kind, field }, other) => (*kind, field, op, other),
            (other, ScalarExpr::Aggregate { kind, field }) => (*kind, field, flip(op), other),
            _ => return Vec::new(),
        };
        let Some(constant) = constant_value(constant) else {
            return Vec::new();
        };
        let name = aggregate_name(kind, field.as_ref());
        input
            .into_iter()
            .filter_map(|mut ss| {
                let value = self.aggregate(kind, field.as_ref(), &ss.spans)?;
                let keep = compare(op, &value, &constant, None);
                ss.attributes.push((name.clone(), value));
                keep.then_some(ss)
            })
            .collect()
    }

    /// `count()`, or `avg/min/max/sum` over the spans that have a numeric value for `field`
    /// (None when none has: Tempo drops such a set).
    fn aggregate(
        &self,
        kind: AggregateKind,
        field: Option<&FieldExpr>,
        spans: &[usize],
    ) -> Option<Value<'static>> {
        let Some(field) = field else {
            return Some(Value::Int(spans.len() as i64));
        };
        let values: Vec<Value<'static>> = spans
            .iter()
            .map(|&s| self.field(field, s).into_owned())
            .filter(|v| matches!(v, Value::Int(_) | Value::Float(_) | Value::Duration(_)))
            .collect();
        let first = values.first()?.clone();
        Some(match kind {
            AggregateKind::Count => Value::Int(spans.len() as i64),
            AggregateKind::Min | AggregateKind::Max => {
                let want = if kind == AggregateKind::Min {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
                values.into_iter().fold(first, |best, v| {
                    if numeric_cmp(&v, &best) == Some(want) {
                        v
                    } else {
                        best
                    }
                })
            }
            AggregateKind::Sum | AggregateKind::Avg => {
                let n = values.len();
                let sum = values
                    .iter()
                    .skip(1)
                    .fold(first, |acc, v| sum_values(&acc, v));
                if kind == AggregateKind::Sum {
                    sum
                } else {
                    match sum {
                        // An average duration stays a duration, as in Tempo.
                        Value::Duration(d) => Value::Duration(d / n as u64),
                        other => {
                            arithmetic(BinaryOp::Div, &as_float(&other), &Value::Float(n as f64))
                        }
                    }
                }
            }
        })
    }

    /// Splits a set by the value of `field` on each span, in order of first appearance.
    fn group_by(&self, field: &FieldExpr, ss: SpanSet) -> Vec<SpanSet> {
        let name = format!("by({field})");
        let mut groups: Vec<(Value<'static>, Vec<usize>)> = Vec::new();
        for s in ss.spans {
            let v = self.field(field, s).into_owned();
            match groups.iter_mut().find(|(g, _)| same_group(g, &v)) {
                Some((_, spans)) => spans.push(s),
                None => groups.push((v, vec![s])),
            }
        }
        groups
            .into_iter()
            .map(|(v, spans)| {
                let mut attributes = ss.attributes.clone();
                attributes.push((name.clone(), v));
                SpanSet { spans, attributes }
            })
            .collect()
    }
}

/// Tempo's name for an aggregate: `count()`, `avg(duration)`, `max(span.http.status_code)`.
fn aggregate_name(kind: AggregateKind, field: Option<&FieldExpr>) -> String {
    let f = match kind {
        AggregateKind::Count => "count",
        AggregateKind::Avg => "avg",
        AggregateKind::Max => "max",
        AggregateKind::Min => "min",
        AggregateKind::Sum => "sum",
    };
    match field {
        Some(e) => format!("{f}({e})"),
        None => format!("{f}()"),
    }
}

/// `2 < count()` is `count() > 2`.
fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Lte => BinaryOp::Gte,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Gte => BinaryOp::Lte,
        other => other,
    }
}

/// The value of a scalar expression without aggregates (`2`, `1s`, `1 + 1`).
pub(crate) fn constant_value(e: &ScalarExpr) -> Option<Value<'static>> {
    match e {
        ScalarExpr::Static(v) => Some(v.clone()),
        ScalarExpr::Binary { op, lhs, rhs } => {
            let v = arithmetic(*op, &constant_value(lhs)?, &constant_value(rhs)?);
            (v != Value::Nil).then_some(v)
        }
        ScalarExpr::Aggregate { .. } | ScalarExpr::Pipeline { .. } => None,
    }
}

fn as_float(v: &Value<'_>) -> Value<'static> {
    match v {
        Value::Int(n) => Value::Float(*n as f64),
        Value::Duration(d) => Value::Float(*d as f64),
        other => other.clone().into_owned(),
    }
}

fn numeric_cmp(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Duration(x), Value::Duration(y)) => Some(x.cmp(y)),
        _ => {
            let (Value::Float(x), Value::Float(y)) = (as_float(a), as_float(b)) else {
                return None;
            };
            x.partial_cmp(&y)
        }
    }
}

/// Sums keep ints and durations exact; mixing types gives a float.
fn sum_values(a: &Value<'_>, b: &Value<'_>) -> Value<'static> {
    match (a, b) {
        (Value::Duration(x), Value::Duration(y)) => Value::Duration(x.saturating_add(*y)),
        _ => arithmetic(BinaryOp::Add, a, b),
    }
}

/// Whether two values fall in the same `by()` group (same type and value; nil with nil).
fn same_group(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}
