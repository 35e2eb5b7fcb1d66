//! Pre-filter conditions a store may check before evaluating a trace, and the list of fields
//! a query references (what search results show per span).

use super::super::ast::{AttrRef, BinaryOp, FieldExpr, Pipeline, SpansetExpr, SpansetOp, Stage};
use super::super::{AttrScope, Intrinsic, Value};
use super::compare;

/// Comparison operators a [`Condition`] can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
    /// Anchored regex match (`=~`).
    Re,
}

/// The field a [`Condition`] tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConditionField {
    /// `scope: None` is an unscoped `.name`: the first of the span, resource, event, link and
    /// instrumentation attributes that has it. A store may simply check them all (that only
    /// lets more traces through). Array attributes hold every element.
    Attribute {
        scope: Option<AttrScope>,
        name: String,
    },
    /// Span-level intrinsics, and trace-level ones (`rootServiceName`, `traceDuration`, ...),
    /// which hold for the trace as a whole. Values must be computed as the evaluator does
    /// (`duration` = end − start, `traceDuration` = last end − first start, ids as lowercase
    /// hex); a store that cannot should ignore the condition. `childCount` and the nested-set
    /// numbers never appear here.
    Intrinsic(Intrinsic),
}

/// A necessary condition for a trace to match; see
/// [`Query::conditions`](crate::Query::conditions).
#[derive(Clone, Debug)]
pub struct Condition {
    pub field: ConditionField,
    pub op: CompareOp,
    pub value: Value<'static>,
    regex: Option<regex::Regex>,
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && self.op == other.op && self.value == other.value
    }
}

impl Condition {
    /// Whether a field value satisfies the condition, with exactly the evaluator's semantics.
    pub fn matches(&self, value: &Value<'_>) -> bool {
        let op = match self.op {
            CompareOp::Eq => BinaryOp::Eq,
            CompareOp::Lt => BinaryOp::Lt,
            CompareOp::Lte => BinaryOp::Lte,
            CompareOp::Gt => BinaryOp::Gt,
            CompareOp::Gte => BinaryOp::Gte,
            CompareOp::Re => BinaryOp::Re,
        };
        compare(op, value, &self.value, self.regex.as_ref())
    }
}

pub(super) fn pipeline_fields(p: &Pipeline, out: &mut Vec<ConditionField>) {
    for stage in &p.stages {
        match stage {
            Stage::Spanset(e) => spanset_fields(e, out),
            Stage::GroupBy(f) => field_refs(f, out),
            Stage::Select(fields) => fields.iter().for_each(|f| field_refs(f, out)),
            Stage::ScalarFilter { .. } | Stage::Coalesce => {}
        }
    }
}

fn spanset_fields(e: &SpansetExpr, out: &mut Vec<ConditionField>) {
    match e {
        SpansetExpr::Filter(f) => field_refs(f, out),
        SpansetExpr::Binary { lhs, rhs, .. } => {
            spanset_fields(lhs, out);
            spanset_fields(rhs, out);
        }
        SpansetExpr::Pipeline(p) => pipeline_fields(p, out),
    }
}

fn field_refs(e: &FieldExpr, out: &mut Vec<ConditionField>) {
    let found = match e {
        FieldExpr::Binary { lhs, rhs, .. } => {
            field_refs(lhs, out);
            field_refs(rhs, out);
            return;
        }
        FieldExpr::Unary { expr, .. } => return field_refs(expr, out),
        FieldExpr::Static(_) => return,
        FieldExpr::Attribute {
            scope: AttrRef::Unscoped,
            name,
        } => ConditionField::Attribute {
            scope: None,
            name: name.clone(),
        },
        FieldExpr::Attribute {
            scope: AttrRef::Scoped(s),
            name,
        } => ConditionField::Attribute {
            scope: Some(*s),
            name: name.clone(),
        },
        FieldExpr::Attribute { .. } => return,
        FieldExpr::Intrinsic(i) => ConditionField::Intrinsic(*i),
    };
    if !out.contains(&found) {
        out.push(found);
    }
}

pub(super) fn pipeline_conditions(p: &Pipeline) -> Vec<Condition> {
    // Later stages only narrow what the first one selects.
    match p.stages.first() {
        Some(Stage::Spanset(e)) => spanset_conditions(e),
        _ => Vec::new(),
    }
}

fn spanset_conditions(e: &SpansetExpr) -> Vec<Condition> {
    match e {
        SpansetExpr::Filter(f) => field_conditions(f),
        SpansetExpr::Pipeline(p) => pipeline_conditions(p),
        SpansetExpr::Binary { op, lhs, rhs } => match op {
            SpansetOp::Or => intersect(spanset_conditions(lhs), spanset_conditions(rhs)),
            // The negated structural operators return right-hand spans whether or not the
            // left side matched anything.
            SpansetOp::NotChild
            | SpansetOp::NotParent
            | SpansetOp::NotDescendant
            | SpansetOp::NotAncestor
            | SpansetOp::NotSibling => spanset_conditions(rhs),
            _ => {
                let mut out = spanset_conditions(lhs);
                out.extend(spanset_conditions(rhs));
                out
            }
        },
    }
}

fn intersect(a: Vec<Condition>, b: Vec<Condition>) -> Vec<Condition> {
    a.into_iter().filter(|c| b.contains(c)).collect()
}

fn field_conditions(e: &FieldExpr) -> Vec<Condition> {
    let FieldExpr::Binary {
        op,
        lhs,
        rhs,
        regex,
    } = e
    else {
        return Vec::new();
    };
    match op {
        BinaryOp::And => {
            let mut out = field_conditions(lhs);
            out.extend(field_conditions(rhs));
            out
        }
        BinaryOp::Or => intersect(field_conditions(lhs), field_conditions(rhs)),
        _ => {
            let (field, value, flipped) = match (
                condition_field(lhs),
                rhs.as_ref(),
                condition_field(rhs),
                lhs.as_ref(),
            ) {
                (Some(f), FieldExpr::Static(v), _, _) => (f, v, false),
                (_, _, Some(f), FieldExpr::Static(v)) => (f, v, true),
                _ => return Vec::new(),
            };
            if matches!(value, Value::Nil) {
                return Vec::new();
            }
            let op = match (op, flipped) {
                (BinaryOp::Eq, _) => CompareOp::Eq,
                (BinaryOp::Re, false) => CompareOp::Re,
                (BinaryOp::Lt, false) | (BinaryOp::Gt, true) => CompareOp::Lt,
                (BinaryOp::Lte, false) | (BinaryOp::Gte, true) => CompareOp::Lte,
                (BinaryOp::Gt, false) | (BinaryOp::Lt, true) => CompareOp::Gt,
                (BinaryOp::Gte, false) | (BinaryOp::Lte, true) => CompareOp::Gte,
                _ => return Vec::new(),
            };
            vec![Condition {
                field,
                op,
                value: value.clone(),
                regex: regex.as_ref().map(|r| r.0.clone()),
            }]
        }
    }
}

fn condition_field(e: &FieldExpr) -> Option<ConditionField> {
    match e {
        FieldExpr::Attribute {
            scope: AttrRef::Unscoped,
            name,
        } => Some(ConditionField::Attribute {
            scope: None,
            name: name.clone(),
        }),
        FieldExpr::Attribute {
            scope: AttrRef::Scoped(s),
            name,
        } => Some(ConditionField::Attribute {
            scope: Some(*s),
            name: name.clone(),
        }),
        // These only exist as the evaluator computes them; stores cannot check them.
        FieldExpr::Intrinsic(
            Intrinsic::ChildCount
            | Intrinsic::NestedSetLeft
            | Intrinsic::NestedSetRight
            | Intrinsic::NestedSetParent,
        ) => None,
        FieldExpr::Intrinsic(i) => Some(ConditionField::Intrinsic(*i)),
        _ => None,
    }
}
