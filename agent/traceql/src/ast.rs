//! TraceQL syntax tree: a pipeline of stages whose first stage is a spanset expression.
//!
//! The tree already has shapes for what the evaluator does not run yet (metrics functions) so
//! adding them later is a matter of evaluation, not a new parser.

use std::fmt;

use super::{AttrScope, Intrinsic, Value};

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub root: RootExpr,
    /// `with (name = value, ...)`.
    pub hints: Vec<(String, Value<'static>)>,
}

impl Query {
    /// The value of hint `name` (the last one given wins, as in Tempo).
    pub fn hint(&self, name: &str) -> Option<&Value<'static>> {
        self.hints
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// `with (most_recent = true)`: the search must return the newest traces that match, not
    /// the first ones found.
    pub fn most_recent(&self) -> bool {
        matches!(self.hint("most_recent"), Some(Value::Bool(true)))
    }
}

/// What a query computes: spansets (search) or time series (metrics).
#[derive(Clone, Debug, PartialEq)]
pub enum RootExpr {
    /// A spanset pipeline, including `({ a } | count()) > 2` style scalar filters.
    Pipeline(Pipeline),
    /// `{ ... } | rate() by (...)`, metrics math and second stages.
    Metrics(MetricsExpr),
}

/// `stage | stage | ...`; spans flow left to right.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    /// A spanset expression: filters, `&&`/`||` and structural operators between spansets.
    Spanset(SpansetExpr),
    /// `count() > 2`, `avg(duration) > 1s`: keeps spansets whose aggregate satisfies the test.
    ScalarFilter {
        op: BinaryOp,
        lhs: ScalarExpr,
        rhs: ScalarExpr,
    },
    /// `by(field)`.
    GroupBy(FieldExpr),
    /// `coalesce()`.
    Coalesce,
    /// `select(field, ...)`.
    Select(Vec<FieldExpr>),
}

/// A metrics query: a pipeline feeding a metrics function, combined arithmetically.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricsExpr {
    /// `pipeline | rate() ...`
    Function {
        pipeline: Pipeline,
        function: MetricsFn,
    },
    /// `(a) + (b)`, `(a) * 100`.
    Binary {
        op: BinaryOp,
        lhs: Box<MetricsExpr>,
        rhs: Box<MetricsExpr>,
    },
    /// A constant operand of metrics math.
    Scalar(Value<'static>),
    /// `expr | topk(5) > 10`.
    SecondStage {
        expr: Box<MetricsExpr>,
        stage: SecondStage,
    },
}

/// What may follow a metrics function.
#[derive(Clone, Debug, PartialEq)]
pub enum SecondStage {
    /// `topk(n)` / `bottomk(n)`.
    TopK { bottom: bool, k: i64 },
    /// `> 10`: keeps series whose values satisfy the comparison.
    Filter { op: BinaryOp, value: Value<'static> },
}

/// Operators between spansets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpansetOp {
    /// `&&`: the trace has both sides; the result is the union of both sides' spans.
    And,
    /// `||`: the union of both sides.
    Or,
    /// `>`
    Child,
    /// `<`
    Parent,
    /// `>>`
    Descendant,
    /// `<<`
    Ancestor,
    /// `~`
    Sibling,
    /// `!>`
    NotChild,
    /// `!<`
    NotParent,
    /// `!>>`
    NotDescendant,
    /// `!<<`
    NotAncestor,
    /// `!~`
    NotSibling,
    /// `&>`
    UnionChild,
    /// `&<`
    UnionParent,
    /// `&>>`
    UnionDescendant,
    /// `&<<`
    UnionAncestor,
    /// `&~`
    UnionSibling,
}

impl SpansetOp {
    pub fn as_str(self) -> &'static str {
        match self {
            SpansetOp::And => "&&",
            SpansetOp::Or => "||",
            SpansetOp::Child => ">",
            SpansetOp::Parent => "<",
            SpansetOp::Descendant => ">>",
            SpansetOp::Ancestor => "<<",
            SpansetOp::Sibling => "~",
            SpansetOp::NotChild => "!>",
            SpansetOp::NotParent => "!<",
            SpansetOp::NotDescendant => "!>>",
            SpansetOp::NotAncestor => "!<<",
            SpansetOp::NotSibling => "!~",
            SpansetOp::UnionChild => "&>",
            SpansetOp::UnionParent => "&<",
            SpansetOp::UnionDescendant => "&>>",
            SpansetOp::UnionAncestor => "&<<",
            SpansetOp::UnionSibling => "&~",
        }
    }

    /// `&&` and `||`; everything else relates spans through the tree.
    pub fn is_logical(self) -> bool {
        matches!(self, SpansetOp::And | SpansetOp::Or)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum SpansetExpr {
    /// `{ expr }`: the spans for which `expr` is true (`{}` is `{ true }`).
    Filter(FieldExpr),
    Binary {
        op: SpansetOp,
        lhs: Box<SpansetExpr>,
        rhs: Box<SpansetExpr>,
    },
    /// `( pipeline )` used as an operand, e.g. `({ a } | count() > 1) && { b }`.
    Pipeline(Box<Pipeline>),
}

/// Where an attribute reference looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrRef {
    /// `.foo`: span attribute first, then resource.
    Unscoped,
    /// `span.`, `resource.`, `event.`, `link.`, `instrumentation.`.
    Scoped(AttrScope),
    /// `parent.foo` (None), `parent.span.foo`, `parent.resource.foo`: the attribute of the
    /// span's parent (beyond Tempo, which parses these but does not answer them).
    Parent(Option<AttrScope>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Re,
    Nre,
    And,
    Or,
}

impl BinaryOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
            BinaryOp::Eq => "=",
            BinaryOp::Neq => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Lte => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Gte => ">=",
            BinaryOp::Re => "=~",
            BinaryOp::Nre => "!~",
            BinaryOp::And => "&&",
            BinaryOp::Or => "||",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq
                | BinaryOp::Neq
                | BinaryOp::Lt
                | BinaryOp::Lte
                | BinaryOp::Gt
                | BinaryOp::Gte
                | BinaryOp::Re
                | BinaryOp::Nre
        )
    }

    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Div
                | BinaryOp::Mod
                | BinaryOp::Pow
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `!x`
    Not,
}

/// An expression over one span's fields.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldExpr {
    Static(Value<'static>),
    Attribute {
        scope: AttrRef,
        name: String,
    },
    Intrinsic(Intrinsic),
    Binary {
        op: BinaryOp,
        lhs: Box<FieldExpr>,
        rhs: Box<FieldExpr>,
        regex: Option<RegexMatcher>,
    },
    Unary {
        op: UnaryOp,
        expr: Box<FieldExpr>,
    },
}

/// A regex compiled at parse time, anchored like Tempo's (`^(?:...)$`).
#[derive(Clone, Debug)]
pub struct RegexMatcher(pub regex::Regex);

impl PartialEq for RegexMatcher {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// The static type a field expression is known to have before evaluation (`Attribute` when
/// only the data can tell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaticType {
    Attribute,
    Str,
    Int,
    Float,
    Bool,
    Duration,
    Status,
    Kind,
    Nil,
}

impl StaticType {
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            StaticType::Int | StaticType::Float | StaticType::Duration
        )
    }
}

/// Aggregates usable in scalar filters and `by`-grouped spansets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateKind {
    Count,
    Avg,
    Max,
    Min,
    Sum,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ScalarExpr {
    Static(Value<'static>),
    Aggregate {
        kind: AggregateKind,
        field: Option<FieldExpr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<ScalarExpr>,
        rhs: Box<ScalarExpr>,
    },
    /// `({ ... } | count())`: a pipeline reduced to one number per spanset.
    Pipeline {
        pipeline: Box<Pipeline>,
        aggregate: Box<ScalarExpr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsKind {
    Rate,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    AvgOverTime,
    SumOverTime,
    QuantileOverTime,
    HistogramOverTime,
    Compare,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricsFn {
    pub kind: MetricsKind,
    /// The field measured (`duration` in `quantile_over_time(duration, .9)`).
    pub field: Option<FieldExpr>,
    /// Extra arguments: quantiles, `compare` selector arguments.
    pub args: Vec<Value<'static>>,
    /// `compare({ selector }, ...)`.
    pub selector: Option<Box<SpansetExpr>>,
    pub by: Vec<FieldExpr>,
    /// How each `by` field was written (`span:name`, `name`, `.foo`): Tempo labels series with
    /// the attribute as written.
    pub by_labels: Vec<String>,
}

impl fmt::Display for FieldExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldExpr::Static(v) => write!(f, "{v}"),
            FieldExpr::Attribute { scope, name } => {
                let prefix = match scope {
                    AttrRef::Unscoped => ".",
                    AttrRef::Scoped(AttrScope::Span) => "span.",
                    AttrRef::Scoped(AttrScope::Resource) => "resource.",
                    AttrRef::Scoped(AttrScope::Event) => "event.",
                    AttrRef::Scoped(AttrScope::Link) => "link.",
                    AttrRef::Scoped(AttrScope::Instrumentation) => "instrumentation.",
                    AttrRef::Parent(None) => "parent.",
                    AttrRef::Parent(Some(AttrScope::Span)) => "parent.span.",
                    AttrRef::Parent(Some(AttrScope::Resource)) => "parent.resource.",
                    AttrRef::Parent(Some(_)) => "parent.",
                };
                if name
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
                {
                    write!(f, "{prefix}{name}")
                } else {
                    write!(
                        f,
                        "{prefix}\"{}\"",
                        name.replace('\\', "\\\\").replace('"', "\\\"")
                    )
                }
            }
            FieldExpr::Intrinsic(i) => f.write_str(i.as_str()),
            FieldExpr::Binary { op, lhs, rhs, .. } => {
                write_operand(f, lhs)?;
                write!(f, " {} ", op.as_str())?;
                write_operand(f, rhs)
            }
            FieldExpr::Unary { op, expr } => {
                f.write_str(match op {
                    UnaryOp::Neg => "-",
                    UnaryOp::Not => "!",
                })?;
                write_operand(f, expr)
            }
        }
    }
}

/// Nested operations are parenthesised so the printed form re-parses to the same tree.
fn write_operand(f: &mut fmt::Formatter<'_>, e: &FieldExpr) -> fmt::Result {
    match e {
        FieldExpr::Binary { .. } | FieldExpr::Unary { .. } => write!(f, "({e})"),
        _ => write!(f, "{e}"),
    }
}
