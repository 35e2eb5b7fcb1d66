//! Field expressions inside `{ }`: operator precedence, literals, attributes, intrinsics, and
//! the static type rules Tempo applies before running a query.

use super::super::ast::{AttrRef, BinaryOp, FieldExpr, RegexMatcher, StaticType, UnaryOp};
use super::super::lexer::{Pos, ScopeColon, ScopeDot, Tok};
use super::super::{AttrScope, ErrorKind, Intrinsic, KindValue, ParseError, StatusValue, Value};
use super::Parser;

/// Binding power of a binary operator inside a field expression.
pub(super) fn field_op(tok: &Tok) -> Option<(BinaryOp, u8)> {
    Some(match tok {
        Tok::And => (BinaryOp::And, 1),
        Tok::Or => (BinaryOp::Or, 1),
        Tok::Eq => (BinaryOp::Eq, 2),
        Tok::Neq => (BinaryOp::Neq, 2),
        Tok::Lt => (BinaryOp::Lt, 2),
        Tok::Lte => (BinaryOp::Lte, 2),
        Tok::Gt => (BinaryOp::Gt, 2),
        Tok::Gte => (BinaryOp::Gte, 2),
        Tok::Re => (BinaryOp::Re, 2),
        Tok::Nre => (BinaryOp::Nre, 2),
        Tok::Add => (BinaryOp::Add, 3),
        Tok::Sub => (BinaryOp::Sub, 3),
        Tok::Mul => (BinaryOp::Mul, 5),
        Tok::Div => (BinaryOp::Div, 5),
        Tok::Mod => (BinaryOp::Mod, 5),
        Tok::Pow => (BinaryOp::Pow, 6),
        _ => return None,
    })
}

/// Operand precedence of prefix `-` and `!`: they take everything that binds tighter than `+`.
pub(super) const PREFIX_OPERAND: u8 = 5;

pub(super) fn keyword_static(word: &str) -> Option<Value<'static>> {
    Some(match word {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "nil" => Value::Nil,
        "ok" => Value::Status(StatusValue::Ok),
        "error" => Value::Status(StatusValue::Error),
        "unset" => Value::Status(StatusValue::Unset),
        "unspecified" => Value::Kind(KindValue::Unspecified),
        "internal" => Value::Kind(KindValue::Internal),
        "server" => Value::Kind(KindValue::Server),
        "client" => Value::Kind(KindValue::Client),
        "producer" => Value::Kind(KindValue::Producer),
        "consumer" => Value::Kind(KindValue::Consumer),
        _ => return None,
    })
}

pub(super) fn unscoped_intrinsic(word: &str) -> Option<Intrinsic> {
    Some(match word {
        "duration" => Intrinsic::Duration,
        "name" => Intrinsic::Name,
        "status" => Intrinsic::Status,
        "statusMessage" => Intrinsic::StatusMessage,
        "kind" => Intrinsic::Kind,
        "rootName" => Intrinsic::RootName,
        "rootServiceName" => Intrinsic::RootServiceName,
        "traceDuration" => Intrinsic::TraceDuration,
        "childCount" => Intrinsic::ChildCount,
        "nestedSetLeft" => Intrinsic::NestedSetLeft,
        "nestedSetRight" => Intrinsic::NestedSetRight,
        "nestedSetParent" => Intrinsic::NestedSetParent,
        _ => return None,
    })
}

pub(super) fn scoped_intrinsic(scope: ScopeColon, word: &str) -> Option<Intrinsic> {
    Some(match (scope, word) {
        (ScopeColon::Trace, "duration") => Intrinsic::TraceDuration,
        (ScopeColon::Trace, "rootName") => Intrinsic::RootName,
        (ScopeColon::Trace, "rootService") => Intrinsic::RootServiceName,
        (ScopeColon::Trace, "id") => Intrinsic::TraceId,
        (ScopeColon::Span, "duration") => Intrinsic::Duration,
        (ScopeColon::Span, "name") => Intrinsic::Name,
        (ScopeColon::Span, "kind") => Intrinsic::Kind,
        (ScopeColon::Span, "status") => Intrinsic::Status,
        (ScopeColon::Span, "statusMessage") => Intrinsic::StatusMessage,
        (ScopeColon::Span, "id") => Intrinsic::SpanId,
        (ScopeColon::Span, "parentID") => Intrinsic::ParentId,
        (ScopeColon::Span, "childCount") => Intrinsic::ChildCount,
        (ScopeColon::Event, "name") => Intrinsic::EventName,
        (ScopeColon::Event, "timeSinceStart") => Intrinsic::EventTimeSinceStart,
        (ScopeColon::Link, "traceID") => Intrinsic::LinkTraceId,
        (ScopeColon::Link, "spanID") => Intrinsic::LinkSpanId,
        (ScopeColon::Instrumentation, "name") => Intrinsic::InstrumentationName,
        (ScopeColon::Instrumentation, "version") => Intrinsic::InstrumentationVersion,
        _ => return None,
    })
}

/// Whether the evaluator can compute this intrinsic today.
pub(super) fn intrinsic_type(i: Intrinsic) -> StaticType {
    match i {
        Intrinsic::Duration | Intrinsic::TraceDuration | Intrinsic::EventTimeSinceStart => {
            StaticType::Duration
        }
        Intrinsic::Status => StaticType::Status,
        Intrinsic::Kind => StaticType::Kind,
        Intrinsic::ChildCount
        | Intrinsic::NestedSetLeft
        | Intrinsic::NestedSetRight
        | Intrinsic::NestedSetParent => StaticType::Int,
        Intrinsic::Name
        | Intrinsic::StatusMessage
        | Intrinsic::RootName
        | Intrinsic::RootServiceName
        | Intrinsic::EventName
        | Intrinsic::TraceId
        | Intrinsic::SpanId
        | Intrinsic::ParentId
        | Intrinsic::LinkTraceId
        | Intrinsic::LinkSpanId
        | Intrinsic::InstrumentationName
        | Intrinsic::InstrumentationVersion => StaticType::Str,
    }
}

pub(super) fn value_type(v: &Value<'_>) -> StaticType {
    match v {
        Value::Str(_) => StaticType::Str,
        Value::Int(_) => StaticType::Int,
        Value::Float(_) => StaticType::Float,
        Value::Bool(_) => StaticType::Bool,
        Value::Duration(_) => StaticType::Duration,
        Value::Status(_) => StaticType::Status,
        Value::Kind(_) => StaticType::Kind,
        Value::Nil => StaticType::Nil,
    }
}

/// The type an expression has before looking at data.
pub(super) fn implied_type(e: &FieldExpr) -> StaticType {
    match e {
        FieldExpr::Static(v) => value_type(v),
        FieldExpr::Attribute { .. } => StaticType::Attribute,
        FieldExpr::Intrinsic(i) => intrinsic_type(*i),
        FieldExpr::Binary { op, lhs, rhs, .. } => {
            if op.is_arithmetic() {
                match implied_type(lhs) {
                    StaticType::Attribute => implied_type(rhs),
                    t => t,
                }
            } else {
                StaticType::Bool
            }
        }
        FieldExpr::Unary {
            op: UnaryOp::Not, ..
        } => StaticType::Bool,
        FieldExpr::Unary {
            op: UnaryOp::Neg,
            expr,
        } => implied_type(expr),
    }
}

pub(super) fn operands_match(a: StaticType, b: StaticType) -> bool {
    a == StaticType::Attribute
        || b == StaticType::Attribute
        || a == b
        || (a.is_numeric() && b.is_numeric())
        || a == StaticType::Nil
        || b == StaticType::Nil
}

/// Which operators a statically typed operand allows (Tempo's `binaryTypeValid`).
pub(super) fn op_allowed(op: BinaryOp, t: StaticType) -> bool {
    use BinaryOp as B;
    match t {
        StaticType::Attribute => true,
        StaticType::Bool => matches!(op, B::And | B::Or | B::Eq | B::Neq),
        StaticType::Int | StaticType::Float | StaticType::Duration => {
            op.is_arithmetic() || matches!(op, B::Eq | B::Neq | B::Gt | B::Gte | B::Lt | B::Lte)
        }
        StaticType::Str => {
            matches!(
                op,
                B::Eq | B::Neq | B::Re | B::Nre | B::Gt | B::Gte | B::Lt | B::Lte
            )
        }
        StaticType::Nil | StaticType::Status | StaticType::Kind => matches!(op, B::Eq | B::Neq),
    }
}

impl Parser {
    pub(super) fn field_expr(&mut self, min: u8) -> Result<FieldExpr, ParseError> {
        self.enter()?;
        let out = self.field_expr_inner(min);
        self.depth -= 1;
        out
    }

    fn field_expr_inner(&mut self, min: u8) -> Result<FieldExpr, ParseError> {
        let mut lhs = self.field_unary()?;
        while let Some((op, prec)) = field_op(self.peek()) {
            if prec < min {
                break;
            }
            let pos = self.advance().pos;
            let next = if op == BinaryOp::Pow { prec } else { prec + 1 };
            let rhs = self.field_expr(next)?;
            lhs = self.binary(op, lhs, rhs, pos);
        }
        Ok(lhs)
    }

    fn field_unary(&mut self) -> Result<FieldExpr, ParseError> {
        let op = match self.peek() {
            Tok::Sub => UnaryOp::Neg,
            Tok::Not => UnaryOp::Not,
            _ => return self.field_primary(),
        };
        let pos = self.advance().pos;
        let expr = self.field_expr(PREFIX_OPERAND)?;
        // Fold negative number literals so `-1` is a static like in Tempo.
        if op == UnaryOp::Neg {
            match expr {
                FieldExpr::Static(Value::Int(n)) => return Ok(FieldExpr::Static(Value::Int(-n))),
                FieldExpr::Static(Value::Float(f)) => {
                    return Ok(FieldExpr::Static(Value::Float(-f)));
                }
                _ => {}
            }
        }
        let t = implied_type(&expr);
        let ok = match op {
            UnaryOp::Neg => t == StaticType::Attribute || t.is_numeric(),
            UnaryOp::Not => t == StaticType::Attribute || t == StaticType::Bool,
        };
        let e = FieldExpr::Unary {
            op,
            expr: Box::new(expr),
        };
        if !ok {
            self.defer(
                ErrorKind::Invalid,
                format!("illegal operation for the given type: {e}"),
                pos,
            );
        }
        Ok(e)
    }

    pub(super) fn field_primary(&mut self) -> Result<FieldExpr, ParseError> {
        let token = self.peek().clone();
        let pos = self.pos();
        let expr = match token {
            Tok::OpenParen => {
                self.advance();
                let e = self.field_expr(1)?;
                self.expect(Tok::CloseParen)?;
                return Ok(e);
            }
            Tok::Str(s) => FieldExpr::Static(Value::Str(s.into())),
            Tok::Int(n) => FieldExpr::Static(Value::Int(n)),
            Tok::Float(f) => FieldExpr::Static(Value::Float(f)),
            Tok::Duration(d) => FieldExpr::Static(Value::Duration(d)),
            Tok::Attr(scope, name) => {
                let scope = match scope {
                    ScopeDot::None => AttrRef::Unscoped,
                    ScopeDot::Span => AttrRef::Scoped(AttrScope::Span),
                    ScopeDot::Resource => AttrRef::Scoped(AttrScope::Resource),
                    ScopeDot::Event => AttrRef::Scoped(AttrScope::Event),
                    ScopeDot::Link => AttrRef::Scoped(AttrScope::Link),
                    ScopeDot::Instrumentation => AttrRef::Scoped(AttrScope::Instrumentation),
                    ScopeDot::Parent => AttrRef::Parent(None),
                    ScopeDot::ParentSpan => AttrRef::Parent(Some(AttrScope::Span)),
                    ScopeDot::ParentResource => AttrRef::Parent(Some(AttrScope::Resource)),
                };
                FieldExpr::Attribute { scope, name }
            }
            Tok::Colon(scope) => {
                self.advance();
                let word = match self.peek() {
                    Tok::Ident(w) => w.clone(),
                    _ => return Err(self.unexpected()),
                };
                let Some(i) = scoped_intrinsic(scope, &word) else {
                    return Err(self.unexpected());
                };
                FieldExpr::Intrinsic(i)
            }
            Tok::Ident(w) => {
                if let Some(v) = keyword_static(&w) {
                    FieldExpr::Static(v)
                } else if let Some(i) = unscoped_intrinsic(&w) {
                    FieldExpr::Intrinsic(i)
                } else if w == "parent" {
                    self.unsupported("intrinsic parent", pos);
                    FieldExpr::Intrinsic(Intrinsic::ParentId)
                } else {
                    return Err(self.unexpected());
                }
            }
            _ => return Err(self.unexpected()),
        };
        self.advance();
        Ok(expr)
    }

    /// Builds a binary node, checking operand types and compiling regexes like Tempo does.
    fn binary(&mut self, op: BinaryOp, lhs: FieldExpr, rhs: FieldExpr, pos: Pos) -> FieldExpr {
        let (lt, rt) = (implied_type(&lhs), implied_type(&rhs));
        let mut problem = None;
        let mut regex = None;
        if !operands_match(lt, rt) {
            problem = Some("binary operations must operate on the same type");
        } else if !op_allowed(op, lt) || !op_allowed(op, rt) {
            problem = Some("illegal operation for the given types");
        } else if matches!(op, BinaryOp::Re | BinaryOp::Nre) {
            match &rhs {
                FieldExpr::Static(Value::Str(pattern)) => {
                    match regex::Regex::new(&format!("^(?s:{pattern})$")) {
                        Ok(re) => regex = Some(RegexMatcher(re)),
                        Err(_) => problem = Some("invalid regex"),
                    }
                }
                _ => problem = Some("invalid type for =~ or !~"),
            }
        } else if op == BinaryOp::Eq && (rt == StaticType::Nil || lt == StaticType::Nil) {
            match if rt == StaticType::Nil { &lhs } else { &rhs } {
                FieldExpr::Intrinsic(_) => {
                    problem = Some("intrinsics cannot be nil");
                }
                FieldExpr::Attribute {
                    scope: AttrRef::Scoped(AttrScope::Resource),
                    name,
                } if name == "service.name" => {
                    problem = Some("resource.service.name cannot be nil");
                }
                _ => {}
            }
        }
        let e = FieldExpr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
            regex,
        };
        if let Some(problem) = problem {
            let message = match problem {
                "intrinsics cannot be nil" | "resource.service.name cannot be nil" => {
                    format!("{e} is not valid because {problem}")
                }
                "invalid regex" | "invalid type for =~ or !~" => match &e {
                    FieldExpr::Binary { rhs, .. } => format!("{problem}: {rhs}"),
                    _ => problem.to_string(),
                },
                _ => format!("{problem}: {e}"),
            };
            self.defer(ErrorKind::Invalid, message, pos);
        }
        e
    }
}
