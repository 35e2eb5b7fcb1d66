//! TraceQL parser: tokens → [`Query`], with Tempo's operator precedence and type checks.
//!
//! Precedence (lowest first), as in Tempo's grammar: `|`; `&&` `||` (same level, left
//! associative); comparisons and structural operators; `+` `-`; prefix `!`; `*` `/` `%`;
//! `^` (right associative). Semantic errors (type mismatches, bad regexes) and "not supported
//! yet" errors are reported only when the whole query is syntactically valid, as Tempo
//! validates after parsing.

mod field;
mod stages;
#[cfg(test)]
mod tests;

use field::{field_op, implied_type, keyword_static};
use stages::{aggregate_kind, has_aggregate, metrics_kind, metrics_scalar};

use super::ast::{
    BinaryOp, FieldExpr, MetricsExpr, MetricsKind, Pipeline, Query, RootExpr, ScalarExpr,
    SecondStage, SpansetExpr, SpansetOp, Stage, StaticType,
};
use super::lexer::{Pos, Tok, Token, lex};
use super::{ErrorKind, ParseError, Value};

/// Parses and checks a query. See the module docs for the error order.
pub fn parse(input: &str) -> Result<Query, ParseError> {
    parse_with(input, false)
}

/// Like [`parse`], but a metrics query is accepted for what its spanset part selects
/// ([`Query::search_pipeline`]), as Tempo's `/api/search` answers `{ ... } | rate()` with the
/// traces of `{ ... }`. Anything else unsupported is still an error.
pub fn parse_search(input: &str) -> Result<Query, ParseError> {
    parse_with(input, true)
}

fn parse_with(input: &str, allow_metrics: bool) -> Result<Query, ParseError> {
    let tokens = lex(input)?;
    if tokens.len() > MAX_TOKENS {
        let message = format!("query is too long: more than {MAX_TOKENS} tokens");
        return Err(error(ErrorKind::Invalid, message, Pos { line: 1, col: 1 }));
    }
    let mut p = Parser {
        tokens,
        i: 0,
        deferred: None,
        metrics: None,
        depth: 0,
    };
    let query = p.query()?;
    match (p.deferred, p.metrics) {
        (Some(err), _) => Err(err),
        (None, Some(err)) if !allow_metrics => Err(err),
        _ => Ok(query),
    }
}

/// A whole-query operand before we know whether the query searches or computes metrics.
enum Node {
    /// `true` when the pipeline may be an operand of `&&`, `||` or a structural operator: a
    /// plain spanset expression, or anything in parentheses.
    Pipe(Pipeline, bool),
    Scalar(ScalarExpr),
    /// `true` when parenthesised (or already math), so it may be an operand of metrics math.
    Metrics(MetricsExpr, bool),
}

/// A pipeline used as a spanset operand: unwrapped when it is a single spanset expression.
fn into_spanset(mut p: Pipeline) -> SpansetExpr {
    if let [Stage::Spanset(_)] = p.stages.as_slice()
        && let Some(Stage::Spanset(e)) = p.stages.pop()
    {
        return e;
    }
    SpansetExpr::Pipeline(Box::new(p))
}

/// A scalar without aggregates or pipelines: a number, a duration, or arithmetic on them.
fn is_constant(e: &ScalarExpr) -> bool {
    match e {
        ScalarExpr::Static(_) => true,
        ScalarExpr::Binary { lhs, rhs, .. } => is_constant(lhs) && is_constant(rhs),
        ScalarExpr::Aggregate { .. } | ScalarExpr::Pipeline { .. } => false,
    }
}

fn negate(v: &Value<'static>) -> Option<Value<'static>> {
    match v {
        Value::Int(n) => Some(Value::Int(n.checked_neg()?)),
        Value::Float(f) => Some(Value::Float(-f)),
        // Durations are unsigned here; a negative one is only meaningful as a float.
        Value::Duration(d) => Some(Value::Float(-(*d as f64))),
        _ => None,
    }
}

/// Bounds the syntax tree so that parsing, evaluating and dropping it cannot exhaust the stack:
/// the token count bounds the depth of operator chains, the nesting limit the recursion of
/// parentheses and prefix operators.
const MAX_TOKENS: usize = 2048;
const MAX_NESTING: usize = 256;

struct Parser {
    tokens: Vec<Token>,
    i: usize,
    /// First semantic or "unsupported" error; reported if the syntax is fine.
    deferred: Option<ParseError>,
    /// "Metrics functions are not supported yet", kept apart for [`parse_search`].
    metrics: Option<ParseError>,
    /// Current recursion depth of the expression parsers.
    depth: usize,
}

fn error(kind: ErrorKind, message: impl Into<String>, pos: Pos) -> ParseError {
    ParseError {
        message: message.into(),
        line: pos.line,
        col: pos.col,
        kind,
    }
}

fn spanset_op(tok: &Tok) -> Option<(SpansetOp, u8)> {
    Some(match tok {
        Tok::And => (SpansetOp::And, 1),
        Tok::Or => (SpansetOp::Or, 1),
        Tok::Gt => (SpansetOp::Child, 2),
        Tok::Lt => (SpansetOp::Parent, 2),
        Tok::Desc => (SpansetOp::Descendant, 2),
        Tok::Ance => (SpansetOp::Ancestor, 2),
        Tok::Sibl => (SpansetOp::Sibling, 2),
        Tok::NotChild => (SpansetOp::NotChild, 2),
        Tok::NotParent => (SpansetOp::NotParent, 2),
        Tok::NotDesc => (SpansetOp::NotDescendant, 2),
        Tok::NotAnce => (SpansetOp::NotAncestor, 2),
        Tok::Nre => (SpansetOp::NotSibling, 2),
        Tok::UnionChild => (SpansetOp::UnionChild, 2),
        Tok::UnionParent => (SpansetOp::UnionParent, 2),
        Tok::UnionDesc => (SpansetOp::UnionDescendant, 2),
        Tok::UnionAnce => (SpansetOp::UnionAncestor, 2),
        Tok::UnionSibl => (SpansetOp::UnionSibling, 2),
        _ => return None,
    })
}

fn scalar_cmp(tok: &Tok) -> Option<BinaryOp> {
    Some(match tok {
        Tok::Eq => BinaryOp::Eq,
        Tok::Neq => BinaryOp::Neq,
        Tok::Lt => BinaryOp::Lt,
        Tok::Lte => BinaryOp::Lte,
        Tok::Gt => BinaryOp::Gt,
        Tok::Gte => BinaryOp::Gte,
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.i.min(self.tokens.len() - 1)].tok
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        &self.tokens[(self.i + ahead).min(self.tokens.len() - 1)].tok
    }

    fn pos(&self) -> Pos {
        self.tokens[self.i.min(self.tokens.len() - 1)].pos
    }

    fn advance(&mut self) -> Token {
        let t = self.tokens[self.i.min(self.tokens.len() - 1)].clone();
        if self.i < self.tokens.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w == word)
    }

    /// `syntax error: unexpected X` at the current token.
    fn unexpected(&self) -> ParseError {
        error(
            ErrorKind::Syntax,
            format!("syntax error: unexpected {}", self.peek().describe()),
            self.pos(),
        )
    }

    /// `syntax error: unexpected X, expecting Y` where only Y can follow.
    fn unexpected_expecting(&self, what: &str) -> ParseError {
        let mut e = self.unexpected();
        e.message = format!("{}, expecting {what}", e.message);
        e
    }

    /// Like [`Parser::expect`] where `tok` is the only token the grammar allows.
    fn expect_only(&mut self, tok: Tok) -> Result<Token, ParseError> {
        if *self.peek() == tok {
            Ok(self.advance())
        } else {
            Err(self.unexpected_expecting(&tok.describe()))
        }
    }

    fn expect(&mut self, tok: Tok) -> Result<Token, ParseError> {
        if *self.peek() == tok {
            Ok(self.advance())
        } else {
            Err(self.unexpected())
        }
    }

    /// Counts one level of recursion; see [`MAX_NESTING`].
    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            let message = format!("query nests too deeply: more than {MAX_NESTING} levels");
            return Err(error(ErrorKind::Invalid, message, self.pos()));
        }
        Ok(())
    }

    fn defer(&mut self, kind: ErrorKind, message: impl Into<String>, pos: Pos) {
        if self.deferred.is_none() {
            self.deferred = Some(error(kind, message, pos));
        }
    }

    fn unsupported(&mut self, what: impl std::fmt::Display, pos: Pos) {
        self.defer(
            ErrorKind::Unsupported,
            format!("{what} is not supported yet"),
            pos,
        );
    }

    // ----- root: pipelines, scalar filters, metrics -----

    fn query(&mut self) -> Result<Query, ParseError> {
        let node = self.root_expr(0)?;
        let mut hints = Vec::new();
        while self.is_word("with") {
            self.advance();
            hints.extend(self.hints()?);
        }
        if *self.peek() != Tok::Eof {
            return Err(self.unexpected());
        }
        let root = match node {
            Node::Pipe(p, _) => RootExpr::Pipeline(p),
            Node::Metrics(m, _) => {
                let is_compare = |m: &MetricsExpr| {
                    matches!(m, MetricsExpr::Function { function, .. }
                        if function.kind == MetricsKind::Compare)
                };
                let compare_used_further = match &m {
                    MetricsExpr::Binary { lhs, rhs, .. } => is_compare(lhs) || is_compare(rhs),
                    MetricsExpr::SecondStage { expr, .. } => is_compare(expr),
                    _ => false,
                };
                if compare_used_further {
                    let message = "`compare()` cannot be used with second stage functions or math";
                    self.defer(ErrorKind::Invalid, message, Pos { line: 1, col: 1 });
                }
                RootExpr::Metrics(m)
            }
            // A bare number or `({ } | count())` without a comparison.
            Node::Scalar(_) => return Err(self.unexpected()),
        };
        Ok(Query { root, hints })
    }

    fn hints(&mut self) -> Result<Vec<(String, Value<'static>)>, ParseError> {
        self.expect(Tok::OpenParen)?;
        let mut out = Vec::new();
        loop {
            let name = match self.peek().clone() {
                Tok::Ident(w) if Tok::Ident(w.clone()).describe() == "IDENTIFIER" => {
                    self.advance();
                    w
                }
                _ => return Err(self.unexpected()),
            };
            self.expect(Tok::Eq)?;
            let value = self.static_value()?;
            out.push((name, value));
            match self.peek() {
                Tok::Comma => {
                    self.advance();
                }
                Tok::CloseParen => {
                    self.advance();
                    return Ok(out);
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    /// A literal, including a negated number (`-1`, `-1.5`).
    fn static_value(&mut self) -> Result<Value<'static>, ParseError> {
        let negative = *self.peek() == Tok::Sub;
        if negative {
            self.advance();
        }
        let v = match self.peek().clone() {
            Tok::Str(s) if !negative => Value::Str(s.into()),
            Tok::Int(n) => Value::Int(if negative { -n } else { n }),
            Tok::Float(f) => Value::Float(if negative { -f } else { f }),
            Tok::Duration(d) if !negative => Value::Duration(d),
            Tok::Ident(w) if !negative => keyword_static(&w).ok_or_else(|| self.unexpected())?,
            _ => return Err(self.unexpected()),
        };
        self.advance();
        Ok(v)
    }

    /// Precedence climbing over whole-query operands; what an operator means depends on the
    /// operand kinds (`>` is "child" between spansets and "greater" between numbers).
    fn root_expr(&mut self, min: u8) -> Result<Node, ParseError> {
        self.enter()?;
        let out = self.root_expr_inner(min);
        self.depth -= 1;
        out
    }

    fn root_expr_inner(&mut self, min: u8) -> Result<Node, ParseError> {
        let mut lhs = self.root_operand()?;
        loop {
            let pos = self.pos();
            if *self.peek() == Tok::Pipe {
                if min > 0 {
                    break;
                }
                self.advance();
                lhs = self.pipe_stage(lhs, pos)?;
                continue;
            }
            if let Node::Pipe(_, combinable) = lhs {
                let Some((op, prec)) = spanset_op(self.peek()) else {
                    break;
                };
                if prec < min || !combinable {
                    break;
                }
                self.advance();
                if !matches!(self.peek(), Tok::OpenBrace | Tok::OpenParen) {
                    return Err(self.unexpected_expecting("{ or ("));
                }
                let rhs_pos = self.pos();
                let rhs = self.root_expr(prec + 1)?;
                let (Node::Pipe(l, _), Node::Pipe(r, true)) = (lhs, rhs) else {
                    return Err(error(
                        ErrorKind::Syntax,
                        "syntax error: unexpected (, expecting {",
                        rhs_pos,
                    ));
                };
                let expr = SpansetExpr::Binary {
                    op,
                    lhs: Box::new(into_spanset(l)),
                    rhs: Box::new(into_spanset(r)),
                };
                lhs = Node::Pipe(
                    Pipeline {
                        stages: vec![Stage::Spanset(expr)],
                    },
                    true,
                );
                continue;
            }
            let Some((op, prec)) = field_op(self.peek()) else {
                break;
            };
            let is_cmp = scalar_cmp(self.peek()).is_some();
            if (!op.is_arithmetic() && !is_cmp) || prec < min {
                break;
            }
            self.advance();
            let rhs = self.root_expr(if op == BinaryOp::Pow { prec } else { prec + 1 })?;
            lhs = self.combine(op, lhs, rhs, pos)?;
        }
        Ok(lhs)
    }

    /// Applies an arithmetic or comparison operator to two numeric root operands.
    fn combine(
        &mut self,
        op: BinaryOp,
        lhs: Node,
        rhs: Node,
        pos: Pos,
    ) -> Result<Node, ParseError> {
        let unexpected = || {
            error(
                ErrorKind::Syntax,
                format!("syntax error: unexpected {}", op.as_str()),
                pos,
            )
        };
        let metrics_op = matches!(
            op,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div
        );
        Ok(match (lhs, rhs) {
            (Node::Scalar(l), Node::Scalar(r)) if op.is_comparison() => {
                if !has_aggregate(&l) && !has_aggregate(&r) {
                    return Err(unexpected());
                }
                // `({ a } | count()) > 2` is `{ a } | count() > 2`.
                let (mut stages, l, r) = match (l, r) {
                    (
                        ScalarExpr::Pipeline {
                            pipeline,
                            aggregate,
                        },
                        r,
                    ) if is_constant(&r) => (pipeline.stages, *aggregate, r),
                    (
                        l,
                        ScalarExpr::Pipeline {
                            pipeline,
                            aggregate,
                        },
                    ) if is_constant(&l) => (pipeline.stages, l, *aggregate),
                    (l, r) => (Vec::new(), l, r),
                };
                stages.push(self.scalar_filter(op, l, r, pos));
                Node::Pipe(Pipeline { stages }, false)
            }
            (Node::Scalar(l), Node::Scalar(r)) => Node::Scalar(ScalarExpr::Binary {
                op,
                lhs: Box::new(l),
                rhs: Box::new(r),
            }),
            (Node::Metrics(m, wrapped), Node::Scalar(s)) if op.is_comparison() => {
                // A filter may compare with a plain duration, math may not use them.
                let value = match s {
                    ScalarExpr::Static(v @ Value::Duration(_)) => v,
                    s => metrics_scalar(&s).ok_or_else(unexpected)?,
                };
                let stage = SecondStage::Filter { op, value };
                let expr = MetricsExpr::SecondStage {
                    expr: Box::new(m),
                    stage,
                };
                Node::Metrics(expr, wrapped)
            }
            // Metrics math needs parenthesised operands: `({} | rate()) * 2`, not `{} | rate() * 2`.
            (Node::Metrics(l, true), Node::Metrics(r, true)) if metrics_op => {
                let expr = MetricsExpr::Binary {
                    op,
                    lhs: Box::new(l),
                    rhs: Box::new(r),
                };
                Node::Metrics(expr, true)
            }
            (Node::Metrics(l, true), Node::Scalar(s)) if metrics_op => {
                let r = MetricsExpr::Scalar(metrics_scalar(&s).ok_or_else(unexpected)?);
                let expr = MetricsExpr::Binary {
                    op,
                    lhs: Box::new(l),
                    rhs: Box::new(r),
                };
                Node::Metrics(expr, true)
            }
            (Node::Scalar(s), Node::Metrics(r, true)) if metrics_op => {
                let l = MetricsExpr::Scalar(metrics_scalar(&s).ok_or_else(unexpected)?);
                let expr = MetricsExpr::Binary {
                    op,
                    lhs: Box::new(l),
                    rhs: Box::new(r),
                };
                Node::Metrics(expr, true)
            }
            _ => return Err(unexpected()),
        })
    }

    fn root_operand(&mut self) -> Result<Node, ParseError> {
        self.enter()?;
        let out = self.root_operand_inner();
        self.depth -= 1;
        out
    }

    fn root_operand_inner(&mut self) -> Result<Node, ParseError> {
        match self.peek().clone() {
            Tok::OpenBrace => {
                let filter = self.spanset_filter()?;
                Ok(Node::Pipe(
                    Pipeline {
                        stages: vec![Stage::Spanset(filter)],
                    },
                    true,
                ))
            }
            Tok::OpenParen => {
                self.advance();
                let inner = self.root_expr(0)?;
                self.expect(Tok::CloseParen)?;
                Ok(match inner {
                    Node::Pipe(p, _) => Node::Pipe(p, true),
                    Node::Metrics(m, _) => Node::Metrics(m, true),
                    other => other,
                })
            }
            Tok::Int(_) | Tok::Float(_) | Tok::Duration(_) => {
                Ok(Node::Scalar(ScalarExpr::Static(self.static_value()?)))
            }
            Tok::Sub => {
                self.advance();
                match self.root_operand()? {
                    Node::Scalar(ScalarExpr::Static(v)) => match negate(&v) {
                        Some(v) => Ok(Node::Scalar(ScalarExpr::Static(v))),
                        None => Err(self.unexpected()),
                    },
                    _ => Err(self.unexpected()),
                }
            }
            Tok::Ident(w) if aggregate_kind(&w).is_some() => {
                Ok(Node::Scalar(self.scalar_operand()?))
            }
            Tok::Ident(w) if w == "by" || w == "select" => {
                let stage = self.stage()?;
                Ok(Node::Pipe(
                    Pipeline {
                        stages: vec![stage],
                    },
                    false,
                ))
            }
            _ => Err(self.unexpected()),
        }
    }

    /// What follows a `|`: a stage, an aggregate, a metrics function or a second stage.
    fn pipe_stage(&mut self, lhs: Node, pipe: Pos) -> Result<Node, ParseError> {
        match lhs {
            Node::Pipe(mut p, _) => match self.peek().clone() {
                Tok::Ident(w) if metrics_kind(&w).is_some() => {
                    let pos = self.pos();
                    let function = self.metrics_fn()?;
                    if self.metrics.is_none() {
                        let message = format!("metrics function {w}() is not supported yet");
                        self.metrics = Some(error(ErrorKind::Unsupported, message, pos));
                    }
                    let expr = MetricsExpr::Function {
                        pipeline: p,
                        function,
                    };
                    Ok(Node::Metrics(expr, false))
                }
                Tok::Ident(w) if w == "by" || w == "select" || w == "coalesce" => {
                    p.stages.push(self.stage()?);
                    Ok(Node::Pipe(p, false))
                }
                Tok::OpenBrace => {
                    p.stages.push(self.stage()?);
                    Ok(Node::Pipe(p, false))
                }
                Tok::OpenParen if self.parens_open_spanset() => {
                    p.stages.push(self.stage()?);
                    Ok(Node::Pipe(p, false))
                }
                _ => {
                    let lhs = self.scalar_expr(1)?;
                    if let Some(op) = scalar_cmp(self.peek()) {
                        let op_pos = self.advance().pos;
                        let rhs = self.scalar_expr(1)?;
                        if !has_aggregate(&lhs) && !has_aggregate(&rhs) {
                            return Err(error(
                                ErrorKind::Syntax,
                                format!("syntax error: unexpected {}", op.as_str()),
                                op_pos,
                            ));
                        }
                        let stage = self.scalar_filter(op, lhs, rhs, op_pos);
                        p.stages.push(stage);
                        return Ok(Node::Pipe(p, false));
                    }
                    if matches!(lhs, ScalarExpr::Aggregate { .. }) {
                        let aggregate = Box::new(lhs);
                        return Ok(Node::Scalar(ScalarExpr::Pipeline {
                            pipeline: Box::new(p),
                            aggregate,
                        }));
                    }
                    Err(self.unexpected())
                }
            },
            Node::Metrics(m, wrapped) => match self.peek().clone() {
                Tok::Ident(w) if w == "topk" || w == "bottomk" => {
                    self.advance();
                    self.expect(Tok::OpenParen)?;
                    let k_pos = self.pos();
                    let k = match self.peek() {
                        Tok::Int(k) => *k,
                        _ => return Err(self.unexpected_expecting("INTEGER")),
                    };
                    self.advance();
                    if k <= 0 {
                        let message = format!("{w}() needs a limit greater than 0, got {k}");
                        self.defer(ErrorKind::Invalid, message, k_pos);
                    }
                    self.expect(Tok::CloseParen)?;
                    let stage = SecondStage::TopK {
                        bottom: w == "bottomk",
                        k,
                    };
                    let expr = MetricsExpr::SecondStage {
                        expr: Box::new(m),
                        stage,
                    };
                    Ok(Node::Metrics(expr, wrapped))
                }
                _ => Err(self.unexpected()),
            },
            Node::Scalar(_) => Err(error(ErrorKind::Syntax, "syntax error: unexpected |", pipe)),
        }
    }

    /// A scalar filter stage; only `aggregate op constant` (either way round) is evaluated, as
    /// in Tempo.
    fn scalar_filter(&mut self, op: BinaryOp, lhs: ScalarExpr, rhs: ScalarExpr, pos: Pos) -> Stage {
        let aggregate = |e: &ScalarExpr| matches!(e, ScalarExpr::Aggregate { .. });
        let supported =
            (aggregate(&lhs) && is_constant(&rhs)) || (is_constant(&lhs) && aggregate(&rhs));
        if !supported {
            self.unsupported("a scalar filter other than `aggregate op number`", pos);
        }
        Stage::ScalarFilter { op, lhs, rhs }
    }

    /// Whether the upcoming `(`... opens a spanset (`({`, `(({`) rather than a scalar.
    fn parens_open_spanset(&self) -> bool {
        let mut k = 0;
        while *self.peek_at(k) == Tok::OpenParen {
            k += 1;
        }
        *self.peek_at(k) == Tok::OpenBrace
    }

    // ----- spanset expressions (pipeline stages) -----

    fn spanset_expr(&mut self, min: u8) -> Result<SpansetExpr, ParseError> {
        self.enter()?;
        let out = self.spanset_expr_inner(min);
        self.depth -= 1;
        out
    }

    fn spanset_expr_inner(&mut self, min: u8) -> Result<SpansetExpr, ParseError> {
        let mut lhs = match self.peek() {
            Tok::OpenParen => {
                self.advance();
                let e = self.spanset_expr(1)?;
                self.expect(Tok::CloseParen)?;
                e
            }
            _ => self.spanset_filter()?,
        };
        while let Some((op, prec)) = spanset_op(self.peek()) {
            if prec < min {
                break;
            }
            self.advance();
            let rhs = self.spanset_expr(prec + 1)?;
            lhs = SpansetExpr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
        Ok(lhs)
    }

    /// `{ }` or `{ expr }`.
    fn spanset_filter(&mut self) -> Result<SpansetExpr, ParseError> {
        let open = self.expect(Tok::OpenBrace)?.pos;
        if *self.peek() == Tok::CloseBrace {
            self.advance();
            return Ok(SpansetExpr::Filter(FieldExpr::Static(Value::Bool(true))));
        }
        let expr = self.field_expr(1)?;
        self.expect(Tok::CloseBrace)?;
        let t = implied_type(&expr);
        if t != StaticType::Attribute && t != StaticType::Bool {
            self.defer(
                ErrorKind::Invalid,
                format!("span filter field expressions must resolve to a boolean: {{ {expr} }}"),
                open,
            );
        }
        Ok(SpansetExpr::Filter(expr))
    }
}
