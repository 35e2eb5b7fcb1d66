//! Pipeline stages after `|` (`by`, `select`, `coalesce`), aggregates and scalar filters, and
//! metrics functions with their arguments.

use super::super::ast::{
    AggregateKind, BinaryOp, FieldExpr, MetricsFn, MetricsKind, ScalarExpr, Stage,
};
use super::super::lexer::Tok;
use super::super::{ParseError, Value};
use super::Parser;
use super::field::field_op;

pub(super) fn has_aggregate(e: &ScalarExpr) -> bool {
    match e {
        ScalarExpr::Static(_) => false,
        ScalarExpr::Aggregate { .. } | ScalarExpr::Pipeline { .. } => true,
        ScalarExpr::Binary { lhs, rhs, .. } => has_aggregate(lhs) || has_aggregate(rhs),
    }
}

/// A constant operand of metrics math or a metrics filter: a number (durations are not allowed,
/// as in Tempo).
pub(super) fn metrics_scalar(e: &ScalarExpr) -> Option<Value<'static>> {
    fn has_duration(e: &ScalarExpr) -> bool {
        match e {
            ScalarExpr::Static(v) => matches!(v, Value::Duration(_)),
            ScalarExpr::Binary { lhs, rhs, .. } => has_duration(lhs) || has_duration(rhs),
            _ => false,
        }
    }
    if has_duration(e) {
        return None;
    }
    fold_scalar(e)
}

/// Folds a constant scalar expression (`1 / 2`, `-(3 * 2)`) into one value.
pub(super) fn fold_scalar(e: &ScalarExpr) -> Option<Value<'static>> {
    match e {
        ScalarExpr::Static(v) => Some(v.clone()),
        ScalarExpr::Binary { op, lhs, rhs } => {
            let v = super::super::eval::arithmetic(*op, &fold_scalar(lhs)?, &fold_scalar(rhs)?);
            if v == Value::Nil { None } else { Some(v) }
        }
        _ => None,
    }
}

pub(super) fn aggregate_kind(word: &str) -> Option<AggregateKind> {
    Some(match word {
        "count" => AggregateKind::Count,
        "avg" => AggregateKind::Avg,
        "max" => AggregateKind::Max,
        "min" => AggregateKind::Min,
        "sum" => AggregateKind::Sum,
        _ => return None,
    })
}

pub(super) fn metrics_kind(word: &str) -> Option<MetricsKind> {
    Some(match word {
        "rate" => MetricsKind::Rate,
        "count_over_time" => MetricsKind::CountOverTime,
        "min_over_time" => MetricsKind::MinOverTime,
        "max_over_time" => MetricsKind::MaxOverTime,
        "avg_over_time" => MetricsKind::AvgOverTime,
        "sum_over_time" => MetricsKind::SumOverTime,
        "quantile_over_time" => MetricsKind::QuantileOverTime,
        "histogram_over_time" => MetricsKind::HistogramOverTime,
        "compare" => MetricsKind::Compare,
        _ => return None,
    })
}

impl Parser {
    /// A pipeline stage other than aggregates and metrics functions.
    pub(super) fn stage(&mut self) -> Result<Stage, ParseError> {
        match self.peek().clone() {
            Tok::OpenBrace | Tok::OpenParen => Ok(Stage::Spanset(self.spanset_expr(1)?)),
            Tok::Ident(w) if w == "by" => {
                self.advance();
                self.expect(Tok::OpenParen)?;
                let field = self.field_expr(1)?;
                self.expect(Tok::CloseParen)?;
                Ok(Stage::GroupBy(field))
            }
            Tok::Ident(w) if w == "coalesce" => {
                self.advance();
                self.expect(Tok::OpenParen)?;
                self.expect(Tok::CloseParen)?;
                Ok(Stage::Coalesce)
            }
            Tok::Ident(w) if w == "select" => {
                self.advance();
                self.expect(Tok::OpenParen)?;
                let fields = self.attribute_list()?;
                self.expect(Tok::CloseParen)?;
                Ok(Stage::Select(fields))
            }
            _ => Err(self.unexpected()),
        }
    }

    /// An attribute or intrinsic (what `select`, `by` and metrics functions take).
    pub(super) fn attribute(&mut self) -> Result<FieldExpr, ParseError> {
        let at = self.i;
        let field = self.field_primary()?;
        if !matches!(field, FieldExpr::Attribute { .. } | FieldExpr::Intrinsic(_)) {
            self.i = at;
            return Err(self.unexpected());
        }
        Ok(field)
    }

    /// `attr, attr, ...`.
    pub(super) fn attribute_list(&mut self) -> Result<Vec<FieldExpr>, ParseError> {
        let mut fields = Vec::new();
        loop {
            fields.push(self.attribute()?);
            if *self.peek() != Tok::Comma {
                return Ok(fields);
            }
            self.advance();
        }
    }

    pub(super) fn metrics_fn(&mut self) -> Result<MetricsFn, ParseError> {
        let Tok::Ident(word) = self.peek().clone() else {
            return Err(self.unexpected());
        };
        let kind = metrics_kind(&word).ok_or_else(|| self.unexpected())?;
        self.advance();
        self.expect(Tok::OpenParen)?;
        let mut f = MetricsFn {
            kind,
            field: None,
            args: Vec::new(),
            selector: None,
            by: Vec::new(),
            by_labels: Vec::new(),
        };
        match kind {
            MetricsKind::Rate | MetricsKind::CountOverTime => {}
            MetricsKind::Compare => {
                f.selector = Some(Box::new(self.spanset_filter()?));
                while *self.peek() == Tok::Comma {
                    self.advance();
                    match self.peek() {
                        Tok::Int(n) => f.args.push(Value::Int(*n)),
                        _ => return Err(self.unexpected()),
                    }
                    self.advance();
                }
            }
            _ => {
                f.field = Some(self.attribute()?);
                if kind == MetricsKind::QuantileOverTime {
                    self.expect(Tok::Comma)?;
                    loop {
                        match self.peek() {
                            Tok::Int(n) => f.args.push(Value::Float(*n as f64)),
                            Tok::Float(x) => f.args.push(Value::Float(*x)),
                            _ => return Err(self.unexpected()),
                        }
                        self.advance();
                        if *self.peek() != Tok::Comma {
                            break;
                        }
                        self.advance();
                    }
                }
            }
        }
        self.expect(Tok::CloseParen)?;
        if self.is_word("by") {
            self.advance();
            self.expect(Tok::OpenParen)?;
            loop {
                let scoped = match (self.peek(), self.peek_at(1)) {
                    (Tok::Colon(scope), Tok::Ident(word)) => {
                        Some(format!("{}{word}", scope.as_str()))
                    }
                    _ => None,
                };
                let field = self.attribute()?;
                f.by_labels
                    .push(scoped.unwrap_or_else(|| field.to_string()));
                f.by.push(field);
                if *self.peek() != Tok::Comma {
                    break;
                }
                self.advance();
            }
            self.expect(Tok::CloseParen)?;
        }
        Ok(f)
    }

    pub(super) fn scalar_expr(&mut self, min: u8) -> Result<ScalarExpr, ParseError> {
        self.enter()?;
        let out = self.scalar_expr_inner(min);
        self.depth -= 1;
        out
    }

    fn scalar_expr_inner(&mut self, min: u8) -> Result<ScalarExpr, ParseError> {
        let mut lhs = self.scalar_operand()?;
        while let Some((op, prec)) = field_op(self.peek()) {
            if !op.is_arithmetic() || prec < min {
                break;
            }
            self.advance();
            let next = if op == BinaryOp::Pow { prec } else { prec + 1 };
            let rhs = self.scalar_expr(next)?;
            lhs = ScalarExpr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        Ok(lhs)
    }

    pub(super) fn scalar_operand(&mut self) -> Result<ScalarExpr, ParseError> {
        match self.peek().clone() {
            Tok::OpenParen => {
                self.advance();
                let e = self.scalar_expr(1)?;
                self.expect(Tok::CloseParen)?;
                Ok(e)
            }
            Tok::Ident(w) if aggregate_kind(&w).is_some() => {
                self.advance();
                let kind = aggregate_kind(&w).ok_or_else(|| self.unexpected())?;
                self.expect_only(Tok::OpenParen)?;
                let field = if kind == AggregateKind::Count {
                    None
                } else {
                    Some(self.field_expr(1)?)
                };
                if kind == AggregateKind::Count {
                    self.expect_only(Tok::CloseParen)?;
                } else {
                    self.expect(Tok::CloseParen)?;
                }
                Ok(ScalarExpr::Aggregate { kind, field })
            }
            Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) | Tok::Sub => {
                Ok(ScalarExpr::Static(self.static_value()?))
            }
            _ => Err(self.unexpected()),
        }
    }
}
