//! TraceQL evaluation over a [`TraceView`], and the pre-filter [`Condition`]s a store may use.

use std::cell::OnceCell;
use std::cmp::Ordering;

use super::ast::{
    AttrRef, BinaryOp, FieldExpr, MetricsExpr, Pipeline, Query, RootExpr, SpansetExpr, SpansetOp,
    Stage, UnaryOp,
};
use super::{AttrScope, Intrinsic, TraceView, Value};

mod conditions;
mod pipeline;
#[cfg(test)]
mod pipeline_tests;
mod structural;
#[cfg(test)]
mod tests;

pub use conditions::{CompareOp, Condition, ConditionField};
use conditions::{pipeline_conditions, pipeline_fields};
pub use pipeline::SpanSet;

/// The pre-filter conditions of one pipeline (see [`Query::conditions`]).
pub(crate) fn pipeline_conditions_of(p: &Pipeline) -> Vec<Condition> {
    pipeline_conditions(p)
}

impl Query {
    /// Indexes of the spans that the query selects in `trace`, ascending (empty = no match):
    /// the spans of all of [`Query::eval_spansets`].
    pub fn eval<T: TraceView + ?Sized>(&self, trace: &T) -> Vec<usize> {
        self.eval_spansets(trace)
            .into_iter()
            .map(|ss| ss.spans)
            .reduce(union)
            .unwrap_or_default()
    }

    /// The span sets the query returns for `trace` (none = no match): one, or one per group
    /// after `by(...)`, each with what the pipeline computed for it.
    pub fn eval_spansets<T: TraceView + ?Sized>(&self, trace: &T) -> Vec<SpanSet> {
        let ctx = Ctx {
            trace,
            info: OnceCell::new(),
        };
        match self.search_pipeline() {
            Some(p) => ctx.run(p, None),
            None => Vec::new(),
        }
    }

    /// Necessary conditions a storage layer may use to skip whole traces before [`Query::eval`].
    ///
    /// Each condition reads: "some span of the trace (or that span's resource) has `field` with a
    /// value for which [`Condition::matches`] holds". A trace failing any one of them cannot
    /// match, so skipping it is safe; ignoring the list is always correct. Negations (`!=`,
    /// `!~`, `!`), `nil` tests and the branches of `||` that differ produce no condition.
    pub fn conditions(&self) -> Vec<Condition> {
        self.search_pipeline()
            .map(pipeline_conditions)
            .unwrap_or_default()
    }

    /// `{}` or `{ true }` (hints aside): every span of every trace.
    pub fn is_match_all(&self) -> bool {
        let RootExpr::Pipeline(p) = &self.root else {
            return false;
        };
        matches!(
            p.stages.as_slice(),
            [Stage::Spanset(SpansetExpr::Filter(FieldExpr::Static(
                Value::Bool(true)
            )))]
        )
    }

    /// The spanset pipeline the query's spans come from: the whole query for a search, the
    /// leftmost input pipeline of a metrics query.
    pub fn search_pipeline(&self) -> Option<&Pipeline> {
        fn leftmost(m: &MetricsExpr) -> Option<&Pipeline> {
            match m {
                MetricsExpr::Function { pipeline, .. } => Some(pipeline),
                MetricsExpr::Binary { lhs, rhs, .. } => leftmost(lhs).or_else(|| leftmost(rhs)),
                MetricsExpr::SecondStage { expr, .. } => leftmost(expr),
                MetricsExpr::Scalar(_) => None,
            }
        }
        match &self.root {
            RootExpr::Pipeline(p) => Some(p),
            RootExpr::Metrics(m) => leftmost(m),
        }
    }

    /// Every attribute and intrinsic the query mentions (filters, `select`, `by`), in order of
    /// first appearance, without duplicates: what a search result shows for each matched span.
    pub fn referenced_fields(&self) -> Vec<ConditionField> {
        let mut out = Vec::new();
        if let Some(p) = self.search_pipeline() {
            pipeline_fields(p, &mut out);
        }
        out
    }

    /// The boolean value of hint `name` (`with (most_recent=true)`), if given.
    pub fn hint_bool(&self, name: &str) -> Option<bool> {
        self.hints
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| match v {
                Value::Bool(b) => Some(*b),
                _ => None,
            })
    }
}

/// Intrinsic values of a trace's spans as the evaluator computes them (`span:childCount`, the
/// nested-set numbers and the trace-level ones included), for printing matched spans. Trace-wide
/// facts are computed once per reader.
pub struct FieldReader<'t, T: ?Sized> {
    ctx: Ctx<'t, T>,
}

impl<'t, T: TraceView + ?Sized> FieldReader<'t, T> {
    pub fn new(trace: &'t T) -> Self {
        let ctx = Ctx {
            trace,
            info: OnceCell::new(),
        };
        FieldReader { ctx }
    }

    /// The intrinsic's values on `span`: one per event or link for those that have several,
    /// otherwise one; empty when the span has none.
    pub fn intrinsic_values(&self, span: usize, which: Intrinsic) -> Vec<Value<'_>> {
        if is_per_item(which) {
            return self.ctx.trace.intrinsic_values(span, which);
        }
        match self.ctx.intrinsic(span, which) {
            Value::Nil => Vec::new(),
            v => vec![v],
        }
    }

    /// The spans `p` selects, ascending (what a metrics function observes).
    pub(crate) fn pipeline_spans(&self, p: &Pipeline) -> Vec<usize> {
        self.ctx.pipeline(p, None)
    }

    /// The value of a field expression on `span` (Nil when absent).
    pub(crate) fn field<'s>(&'s self, e: &'s FieldExpr, span: usize) -> Value<'s> {
        self.ctx.field(e, span)
    }

    /// An intrinsic as the evaluator computes it (trace-level ones included).
    pub(crate) fn intrinsic(&self, span: usize, which: Intrinsic) -> Value<'_> {
        self.ctx.intrinsic(span, which)
    }

    pub(crate) fn trace(&self) -> &'t T {
        self.ctx.trace
    }
}

/// Trace-wide facts computed once per evaluation when a query needs them.
struct TraceInfo {
    root: Option<usize>,
    duration: u64,
    child_counts: Vec<i64>,
    /// Nested-set numbering `(left, right, parent's left)` from a depth-first walk from the
    /// roots, as Tempo stores it: roots have parent -1; spans not reachable from a root
    /// (orphans) stay 0.
    nested: Vec<(i64, i64, i64)>,
    /// Each span's parent, for spans reachable from a root (what structural operators follow).
    tree_parent: Vec<Option<usize>>,
    /// Whether the span is reachable from a root (numbered in `nested`).
    reachable: Vec<bool>,
}

/// Numbers the span tree depth-first (iteratively, so deep traces cannot exhaust the stack).
fn nested_set<T: TraceView + ?Sized>(trace: &T, children: &[Vec<usize>]) -> Vec<(i64, i64, i64)> {
    let n = children.len();
    let mut nested = vec![(0, 0, 0); n];
    let mut visited = vec![false; n];
    let mut counter = 0i64;
    for root in (0..n).filter(|&s| trace.is_root(s)) {
        // (span, next child to visit, parent's left)
        let mut stack = vec![(root, 0usize, -1i64)];
        visited[root] = true;
        counter += 1;
        nested[root] = (counter, 0, -1);
        while let Some(top) = stack.last_mut() {
            let (span, next, _) = *top;
            match children[span].get(next) {
                Some(&child) => {
                    top.1 += 1;
                    if visited[child] {
                        continue; // a cycle in bad data: number each span once
                    }
                    visited[child] = true;
                    counter += 1;
                    let parent_left = nested[span].0;
                    nested[child] = (counter, 0, parent_left);
                    stack.push((child, 0, parent_left));
                }
                None => {
                    counter += 1;
                    nested[span].1 = counter;
                    stack.pop();
                }
            }
        }
    }
    nested
}

struct Ctx<'t, T: ?Sized> {
    trace: &'t T,
    info: OnceCell<TraceInfo>,
}

impl<'t, T: TraceView + ?Sized> Ctx<'t, T> {
    fn info(&self) -> &TraceInfo {
        self.info.get_or_init(|| {
            let n = self.trace.span_count();
            let root = (0..n).find(|&s| self.trace.is_root(s));
            let start = (0..n)
                .map(|s| self.trace.start_unix_nanos(s))
                .min()
                .unwrap_or(0);
            let end = (0..n)
                .map(|s| self.trace.end_unix_nanos(s))
                .max()
                .unwrap_or(0);
            let mut children = vec![Vec::new(); n];
            for s in 0..n {
                if let Some(p) = self.trace.parent_index(s)
                    && let Some(c) = children.get_mut(p)
                {
                    c.push(s);
                }
            }
            let child_counts = children.iter().map(|c| c.len() as i64).collect();
            let nested = nested_set(self.trace, &children);
            let reachable: Vec<bool> = nested.iter().map(|&(left, _, _)| left != 0).collect();
            let tree_parent = (0..n)
                .map(|s| {
                    if !reachable[s] || self.trace.is_root(s) {
                        None
                    } else {
                        self.trace.parent_index(s)
                    }
                })
                .collect();
            TraceInfo {
                root,
                duration: end.saturating_sub(start),
                child_counts,
                nested,
                tree_parent,
                reachable,
            }
        })
    }

    /// The spans of all the sets `p` returns over `domain` (every span when None).
    fn pipeline(&self, p: &Pipeline, domain: Option<&[usize]>) -> Vec<usize> {
        self.run(p, domain)
            .into_iter()
            .map(|ss| ss.spans)
            .reduce(union)
            .unwrap_or_default()
    }

    /// The spans of `domain` (every span when None) that `e` selects, ascending; structural
    /// operators still follow the whole trace's tree.
    fn spanset(&self, e: &SpansetExpr, domain: Option<&[usize]>) -> Vec<usize> {
        match e {
            SpansetExpr::Filter(f) => {
                let keep = |&s: &usize| matches!(self.field(f, s), Value::Bool(true));
                match domain {
                    Some(d) => d.iter().copied().filter(keep).collect(),
                    None => (0..self.trace.span_count()).filter(keep).collect(),
                }
            }
            SpansetExpr::Pipeline(p) => self.pipeline(p, domain),
            SpansetExpr::Binary {
                op: SpansetOp::And,
                lhs,
                rhs,
            } => {
                let l = self.spanset(lhs, domain);
                if l.is_empty() {
                    return l;
                }
                let r = self.spanset(rhs, domain);
                if r.is_empty() {
                    return r;
                }
                union(l, r)
            }
            SpansetExpr::Binary {
                op: SpansetOp::Or,
                lhs,
                rhs,
            } => union(self.spanset(lhs, domain), self.spanset(rhs, domain)),
            SpansetExpr::Binary { op, lhs, rhs } => {
                let r = self.spanset(rhs, domain);
                if r.is_empty() {
                    return r;
                }
                let l = self.spanset(lhs, domain);
                let info = self.info();
                let tree = structural::Tree {
                    parent: &info.tree_parent,
                    reachable: &info.reachable,
                };
                structural::relate(*op, &l, &r, &tree)
            }
        }
    }

    /// Every value of an attribute and how a comparison combines them. Unscoped `.foo` reads
    /// the first of span, resource, event, link and instrumentation scope that has it.
    fn attribute_values<'s>(
        &'s self,
        span: usize,
        scope: AttrRef,
        name: &str,
    ) -> (Vec<Value<'s>>, Combine) {
        const UNSCOPED: [AttrScope; 5] = [
            AttrScope::Span,
            AttrScope::Resource,
            AttrScope::Event,
            AttrScope::Link,
            AttrScope::Instrumentation,
        ];
        match scope {
            AttrRef::Unscoped => UNSCOPED
                .iter()
                .map(|&sc| (self.trace.attribute_values(span, sc, name), sc))
                .find(|(v, _)| !v.is_empty())
                .map_or((Vec::new(), Combine::Elements), |(v, sc)| {
                    (v, Combine::of(sc))
                }),
            AttrRef::Scoped(sc) => (self.trace.attribute_values(span, sc, name), Combine::of(sc)),
            AttrRef::Parent(scope) => match self.trace.parent_index(span) {
                Some(parent) => {
                    let scope = scope.map_or(AttrRef::Unscoped, AttrRef::Scoped);
                    self.attribute_values(parent, scope, name)
                }
                None => (Vec::new(), Combine::Elements),
            },
        }
    }

    fn attribute<'s>(&'s self, span: usize, scope: AttrRef, name: &str) -> Value<'s> {
        match scope {
            AttrRef::Scoped(sc) if !sc.is_per_item() => self.trace.attribute(span, sc, name),
            _ => self
                .attribute_values(span, scope, name)
                .0
                .into_iter()
                .next(),
        }
        .unwrap_or(Value::Nil)
    }

    /// The values of a field that can have several (attributes, per-event and per-link
    /// intrinsics); None for any other expression.
    fn leaf_values<'s>(&'s self, e: &FieldExpr, span: usize) -> Option<(Vec<Value<'s>>, Combine)> {
        match e {
            FieldExpr::Attribute { scope, name } => Some(self.attribute_values(span, *scope, name)),
            FieldExpr::Intrinsic(i) if is_per_item(*i) => {
                Some((self.trace.intrinsic_values(span, *i), Combine::AnyItem))
            }
            _ => None,
        }
    }

    fn intrinsic<'s>(&'s self, span: usize, which: Intrinsic) -> Value<'s> {
        if let Some(v) = self.trace.intrinsic(span, which) {
            return v;
        }
        match which {
            Intrinsic::Duration => Value::Duration(
                self.trace
                    .end_unix_nanos(span)
                    .saturating_sub(self.trace.start_unix_nanos(span)),
            ),
            Intrinsic::TraceDuration => Value::Duration(self.info().duration),
            Intrinsic::RootName => match self.info().root {
                Some(root) => self
                    .trace
                    .intrinsic(root, Intrinsic::Name)
                    .unwrap_or(Value::Nil),
                None => Value::Nil,
            },
            Intrinsic::RootServiceName => match self.info().root {
                Some(root) => self
                    .trace
                    .attribute(root, AttrScope::Resource, "service.name")
                    .unwrap_or(Value::Nil),
                None => Value::Nil,
            },
            Intrinsic::NestedSetLeft | Intrinsic::NestedSetRight | Intrinsic::NestedSetParent => {
                let (left, right, parent) =
                    self.info().nested.get(span).copied().unwrap_or_default();
                Value::Int(match which {
                    Intrinsic::NestedSetLeft => left,
                    Intrinsic::NestedSetRight => right,
                    _ => parent,
                })
            }
            Intrinsic::ChildCount => {
                Value::Int(self.info().child_counts.get(span).copied().unwrap_or(0))
            }
            i if is_per_item(i) => self
                .trace
                .intrinsic_values(span, i)
                .into_iter()
                .next()
                .unwrap_or(Value::Nil),
            _ => Value::Nil,
        }
    }

    fn field<'s>(&'s self, e: &'s FieldExpr, span: usize) -> Value<'s> {
        match e {
            FieldExpr::Static(v) => borrow_static(v),
            FieldExpr::Attribute { scope, name } => self.attribute(span, *scope, name),
            FieldExpr::Intrinsic(i) => self.intrinsic(span, *i),
            FieldExpr::Unary {
                op: UnaryOp::Not,
                expr,
            } => match self.field(expr, span) {
                Value::Bool(b) => Value::Bool(!b),
                _ => Value::Nil,
            },
            FieldExpr::Unary {
                op: UnaryOp::Neg,
                expr,
            } => match self.field(expr, span) {
                Value::Int(n) => Value::Int(n.wrapping_neg()),
                Value::Float(f) => Value::Float(-f),
                Value::Duration(d) => Value::Float(-(d as f64)),
                _ => Value::Nil,
            },
            FieldExpr::Binary {
                op: BinaryOp::And,
                lhs,
                rhs,
                ..
            } => Value::Bool(
                matches!(self.field(lhs, span), Value::Bool(true))
                    && matches!(self.field(rhs, span), Value::Bool(true)),
            ),
            FieldExpr::Binary {
                op: BinaryOp::Or,
                lhs,
                rhs,
                ..
            } => Value::Bool(
                matches!(self.field(lhs, span), Value::Bool(true))
                    || matches!(self.field(rhs, span), Value::Bool(true)),
            ),
            FieldExpr::Binary {
                op,
                lhs,
                rhs,
                regex,
            } if op.is_comparison() => {
                let regex = regex.as_ref().map(|r| &r.0);
                // `x = nil` tests absence, `x != nil` presence.
                let nil_lhs = matches!(lhs.as_ref(), FieldExpr::Static(Value::Nil));
                let nil_rhs = matches!(rhs.as_ref(), FieldExpr::Static(Value::Nil));
                if nil_lhs || nil_rhs {
                    let other = if nil_rhs { lhs } else { rhs };
                    let absent = match self.leaf_values(other, span) {
                        Some((values, _)) => values.is_empty(),
                        None => matches!(self.field(other, span), Value::Nil),
                    };
                    return Value::Bool(match op {
                        BinaryOp::Eq => absent,
                        BinaryOp::Neq => !absent,
                        _ => false,
                    });
                }
                // Arrays, events and links: compare each value (see `Combine`).
                if let Some((values, combine)) = self.leaf_values(lhs, span) {
                    let other = self.field(rhs, span);
                    return Value::Bool(
                        combine.holds(*op, &values, |v| compare(*op, v, &other, regex)),
                    );
                }
                if let Some((values, combine)) = self.leaf_values(rhs, span) {
                    let other = self.field(lhs, span);
                    return Value::Bool(
                        combine.holds(*op, &values, |v| compare(*op, &other, v, regex)),
                    );
                }
                let l = self.field(lhs, span);
                let r = self.field(rhs, span);
                Value::Bool(compare(*op, &l, &r, regex))
            }
            FieldExpr::Binary { op, lhs, rhs, .. } => {
                arithmetic(*op, &self.field(lhs, span), &self.field(rhs, span))
            }
        }
    }
}

/// How a comparison combines the several values of one field.
#[derive(Clone, Copy)]
enum Combine {
    /// The elements of an array attribute (or its one value): `!=` and `!~` hold when they
    /// hold for every element, the other operators when they hold for one, as in Tempo.
    Elements,
    /// One value per event or link: the comparison holds when it holds for one of them.
    AnyItem,
}

impl Combine {
    fn of(scope: AttrScope) -> Combine {
        if scope.is_per_item() {
            Combine::AnyItem
        } else {
            Combine::Elements
        }
    }

    fn holds(self, op: BinaryOp, values: &[Value<'_>], test: impl Fn(&Value<'_>) -> bool) -> bool {
        match self {
            Combine::Elements if matches!(op, BinaryOp::Neq | BinaryOp::Nre) => {
                !values.is_empty() && values.iter().all(test)
            }
            _ => values.iter().any(test),
        }
    }
}

/// Intrinsics with one value per event or link of the span.
fn is_per_item(i: Intrinsic) -> bool {
    matches!(
        i,
        Intrinsic::EventName
            | Intrinsic::EventTimeSinceStart
            | Intrinsic::LinkTraceId
            | Intrinsic::LinkSpanId
    )
}

fn borrow_static<'s>(v: &'s Value<'static>) -> Value<'s> {
    match v {
        Value::Str(s) => Value::Str(std::borrow::Cow::Borrowed(s.as_ref())),
        other => other.clone(),
    }
}

/// Sorted union of two ascending index lists.
fn union(a: Vec<usize>, b: Vec<usize>) -> Vec<usize> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn as_f64(v: &Value<'_>) -> Option<f64> {
    match v {
        Value::Int(n) => Some(*n as f64),
        Value::Float(f) => Some(*f),
        Value::Duration(d) => Some(*d as f64),
        _ => None,
    }
}

fn ordering_holds(op: BinaryOp, ord: Option<Ordering>) -> bool {
    let Some(ord) = ord else { return false };
    match op {
        BinaryOp::Eq => ord == Ordering::Equal,
        BinaryOp::Neq => ord != Ordering::Equal,
        BinaryOp::Lt => ord == Ordering::Less,
        BinaryOp::Lte => ord != Ordering::Greater,
        BinaryOp::Gt => ord == Ordering::Greater,
        BinaryOp::Gte => ord != Ordering::Less,
        _ => false,
    }
}

/// Compares two values like Tempo: mismatched types are false (never an error), `nil` stands
/// for "absent", numbers of different types compare as floats, strings byte-wise, and `=~`/`!~`
/// use the query's anchored regex.
pub(crate) fn compare(
    op: BinaryOp,
    l: &Value<'_>,
    r: &Value<'_>,
    regex: Option<&regex::Regex>,
) -> bool {
    match (l, r) {
        // Absent on either side: nothing holds (`= nil` / `!= nil` are handled by the caller).
        (Value::Nil, _) | (_, Value::Nil) => false,
        (Value::Str(a), Value::Str(b)) => match op {
            BinaryOp::Re => regex.is_some_and(|re| re.is_match(a)),
            BinaryOp::Nre => regex.is_some_and(|re| !re.is_match(a)),
            _ => ordering_holds(op, Some(a.as_ref().cmp(b.as_ref()))),
        },
        (Value::Int(a), Value::Int(b)) => ordering_holds(op, Some(a.cmp(b))),
        (Value::Duration(a), Value::Duration(b)) => ordering_holds(op, Some(a.cmp(b))),
        (Value::Bool(a), Value::Bool(b)) if matches!(op, BinaryOp::Eq | BinaryOp::Neq) => {
            ordering_holds(op, Some(a.cmp(b)))
        }
        (Value::Status(a), Value::Status(b)) if matches!(op, BinaryOp::Eq | BinaryOp::Neq) => {
            (a == b) == (op == BinaryOp::Eq)
        }
        (Value::Kind(a), Value::Kind(b)) if matches!(op, BinaryOp::Eq | BinaryOp::Neq) => {
            (a == b) == (op == BinaryOp::Eq)
        }
        _ => match (as_f64(l), as_f64(r)) {
            (Some(a), Some(b)) => ordering_holds(op, a.partial_cmp(&b)),
            _ => false,
        },
    }
}

/// `+ - * / % ^`: ints stay ints (division by zero gives nil), anything else numeric is a float.
pub(crate) fn arithmetic(op: BinaryOp, l: &Value<'_>, r: &Value<'_>) -> Value<'static> {
    if let (Value::Int(a), Value::Int(b)) = (l, r) {
        let (a, b) = (*a, *b);
        return match op {
            BinaryOp::Add => Value::Int(a.wrapping_add(b)),
            BinaryOp::Sub => Value::Int(a.wrapping_sub(b)),
            BinaryOp::Mul => Value::Int(a.wrapping_mul(b)),
            BinaryOp::Div => a.checked_div(b).map_or(Value::Nil, Value::Int),
            BinaryOp::Mod => a.checked_rem(b).map_or(Value::Nil, Value::Int),
            BinaryOp::Pow => match u32::try_from(b) {
                Ok(e) => Value::Int(a.wrapping_pow(e)),
                Err(_) => Value::Float((a as f64).powf(b as f64)),
            },
            _ => Value::Nil,
        };
    }
    let (Some(a), Some(b)) = (as_f64(l), as_f64(r)) else {
        return Value::Nil;
    };
    Value::Float(match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Mod => a % b,
        BinaryOp::Pow => a.powf(b),
        _ => return Value::Nil,
    })
}
