//! TraceQL for the embedded store: lexer → parser → AST → evaluator over a [`TraceView`].
//!
//! Evaluated today: spanset filters `{ ... }` with scoped (`span.`, `resource.`, `event.`,
//! `link.`, `instrumentation.`), unscoped (`.foo`) and quoted attribute names, the span and
//! trace intrinsics (both spellings, e.g. `rootServiceName` / `trace:rootService`), every
//! comparison, `&&` `||` `!`, arithmetic, `&&` / `||` between spansets, the structural
//! operators (`>>`, `>`, `<<`, `<`, `~`, their `!` negations and `&` unions; see
//! `eval/structural.rs`) and pipelines (`| count() > 2`, `| avg(duration) > 1s`, `| by(..)`,
//! `| coalesce()`, `| select(..)`, later `| { ... }` filters; see `eval/pipeline.rs`), which
//! [`Query::eval_spansets`] answers as one span set per group. Hints
//! (`with (most_recent=true)`, `exemplars=N`) are kept in [`Query::hints`]; the store acts on
//! `most_recent` (the newest matches, not the first found) and `exemplars`. Beyond Tempo, `parent.foo`,
//! `parent.span.foo` and `parent.resource.foo` read the span's parent's attributes. Metrics
//! queries (`{ } | rate() by (...)`, the `*_over_time` functions, `compare()`, `topk`,
//! `bottomk`, `> 10`) are compiled by [`parse_metrics`] and computed by [`metrics`]; [`parse`]
//! rejects them with [`ErrorKind::Unsupported`], and [`parse_search`] accepts one for its
//! spanset part, as Tempo's search endpoint does. The bare `parent` intrinsic and scalar
//! filters other than `aggregate op number` are rejected as unsupported.
//!
//! Semantics follow Tempo:
//! * regexes are RE2 syntax, fully anchored and `.` matches newlines (`^(?s:re)$`);
//! * comparing values of different types (a string attribute with an int literal) is false,
//!   not an error; ints, floats and durations (as nanoseconds) compare numerically;
//! * a missing attribute makes every comparison false, `!=` included; `= nil` tests absence
//!   and `!= nil` presence;
//! * unscoped `.foo` reads the first of the span, resource, event, link and instrumentation
//!   scope that has the attribute;
//! * an array attribute matches when any element does, except `!=` and `!~`, which must hold
//!   for every element; `event.` and `link.` attributes, `event:name`, `event:timeSinceStart`
//!   and `link:traceID`/`link:spanID` match when any event or link of the span does;
//! * `&&` and `||` share one precedence level and associate left, inside a filter and between
//!   spansets (`{a} || {b} && {c}` is `({a} || {b}) && {c}`);
//! * `{a} && {b}` matches a trace where both match and returns the union of their spans;
//! * `event:name` matches when any event of the span matches;
//! * `{a} >> {b}` returns the spans of `b` (the right-hand side) related to a span of `a`; the
//!   negations return those related to none, the `&` forms both sides' related spans; spans
//!   cut off from a root by a missing parent are related to nothing, and roots are siblings;
//! * a span whose parent is not in the trace (a root, or a parent not received) has no
//!   `parent.` attributes: only `= nil` holds for them;
//! * a later `| { ... }` stage sees only the spans of each set; `avg/min/max/sum` skip spans
//!   without a numeric value and drop a set that has none; `by()` puts spans without the
//!   value in one group; `coalesce()` merges the sets and drops what they computed.
//!
//! Errors read like Tempo's (`parse error at line 1, col 14: syntax error: unexpected }`);
//! grammar errors win over type errors, which win over "not supported yet". Queries are
//! bounded (2048 tokens, 256 levels of nesting) so a hostile query cannot exhaust the stack.

pub(crate) mod ast;
pub(crate) mod eval;
pub mod hash;
pub(crate) mod lexer;
pub mod metrics;
pub(crate) mod parser;

#[cfg(test)]
mod examples_test;

use std::borrow::Cow;
use std::fmt;

pub use ast::{Pipeline, Query, SpansetExpr, Stage};
pub use eval::{CompareOp, Condition, ConditionField, FieldReader, SpanSet};
pub use metrics::{MetricsQuery, parse_metrics};

/// Parses a TraceQL query. Syntax errors carry Tempo-style messages and positions.
pub fn parse(query: &str) -> Result<Query, ParseError> {
    parser::parse(query)
}

pub use parser::parse_search;

/// What kind of failure a [`ParseError`] is (maps to a 400 in the HTTP API either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not TraceQL: a lexer or grammar error.
    Syntax,
    /// Valid grammar but an invalid query (type mismatch, bad regex, `name = nil`).
    Invalid,
    /// Valid TraceQL that this store does not evaluate yet (metrics functions, `parent`).
    Unsupported,
}

/// A query that cannot be run, with a 1-based position (line, column in characters).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub message: String,
    pub line: usize,
    pub col: usize,
    pub kind: ErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 && self.col == 0 {
            // Tempo's wording when there is no position (the empty query).
            return write!(f, "parse error : {}", self.message);
        }
        write!(
            f,
            "parse error at line {}, col {}: {}",
            self.line, self.col, self.message
        )
    }
}

/// Where a scoped attribute lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrScope {
    Span,
    Resource,
    /// `event.foo`: attributes of the span's events (a span matches if any event does).
    Event,
    /// `link.foo`: attributes of the span's links (a span matches if any link does).
    Link,
    /// `instrumentation.foo`: attributes of the span's instrumentation scope.
    Instrumentation,
}

impl AttrScope {
    /// The scope as written before the attribute name, without the dot.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrScope::Span => "span",
            AttrScope::Resource => "resource",
            AttrScope::Event => "event",
            AttrScope::Link => "link",
            AttrScope::Instrumentation => "instrumentation",
        }
    }

    /// Whether the scope has one value per event or link rather than one per span.
    pub fn is_per_item(self) -> bool {
        matches!(self, AttrScope::Event | AttrScope::Link)
    }
}

/// TraceQL intrinsics: fields of the span or trace rather than attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    /// `name`, `span:name`.
    Name,
    /// `status`, `span:status`.
    Status,
    /// `statusMessage`, `span:statusMessage`.
    StatusMessage,
    /// `kind`, `span:kind`.
    Kind,
    /// `duration`, `span:duration`.
    Duration,
    /// `traceDuration`, `trace:duration`.
    TraceDuration,
    /// `rootName`, `trace:rootName`.
    RootName,
    /// `rootServiceName`, `trace:rootService`.
    RootServiceName,
    /// `event:name` (one value per event of the span).
    EventName,
    /// `trace:id` (lowercase hex).
    TraceId,
    /// `span:id` (lowercase hex).
    SpanId,
    /// `span:parentID` (lowercase hex; absent on roots).
    ParentId,
    /// `span:childCount`: computed by the evaluator from `parent_index`.
    ChildCount,
    /// `event:timeSinceStart` (one value per event of the span).
    EventTimeSinceStart,
    /// `link:traceID` (one value per link of the span).
    LinkTraceId,
    /// `link:spanID` (one value per link of the span).
    LinkSpanId,
    /// `instrumentation:name`.
    InstrumentationName,
    /// `instrumentation:version`.
    InstrumentationVersion,
    /// Tempo's hidden nested-set numbering, computed by the evaluator from `parent_index`
    /// (Grafana's Traces Drilldown asks for root spans with `nestedSetParent < 0`).
    NestedSetLeft,
    NestedSetRight,
    NestedSetParent,
}

impl Intrinsic {
    /// The canonical TraceQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Intrinsic::Name => "name",
            Intrinsic::Status => "status",
            Intrinsic::StatusMessage => "statusMessage",
            Intrinsic::Kind => "kind",
            Intrinsic::Duration => "duration",
            Intrinsic::TraceDuration => "traceDuration",
            Intrinsic::RootName => "rootName",
            Intrinsic::RootServiceName => "rootServiceName",
            Intrinsic::EventName => "event:name",
            Intrinsic::TraceId => "trace:id",
            Intrinsic::SpanId => "span:id",
            Intrinsic::ParentId => "span:parentID",
            Intrinsic::ChildCount => "span:childCount",
            Intrinsic::EventTimeSinceStart => "event:timeSinceStart",
            Intrinsic::LinkTraceId => "link:traceID",
            Intrinsic::LinkSpanId => "link:spanID",
            Intrinsic::InstrumentationName => "instrumentation:name",
            Intrinsic::InstrumentationVersion => "instrumentation:version",
            Intrinsic::NestedSetLeft => "nestedSetLeft",
            Intrinsic::NestedSetRight => "nestedSetRight",
            Intrinsic::NestedSetParent => "nestedSetParent",
        }
    }

    /// Computed from the whole trace rather than read from one span.
    pub fn is_trace_level(self) -> bool {
        matches!(
            self,
            Intrinsic::TraceDuration | Intrinsic::RootName | Intrinsic::RootServiceName
        )
    }
}

/// Span status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusValue {
    Unset,
    Ok,
    Error,
}

impl StatusValue {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusValue::Unset => "unset",
            StatusValue::Ok => "ok",
            StatusValue::Error => "error",
        }
    }
}

/// Span kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KindValue {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl KindValue {
    pub fn as_str(self) -> &'static str {
        match self {
            KindValue::Unspecified => "unspecified",
            KindValue::Internal => "internal",
            KindValue::Server => "server",
            KindValue::Client => "client",
            KindValue::Producer => "producer",
            KindValue::Consumer => "consumer",
        }
    }
}

/// A TraceQL value: a literal in a query or a field read from a span.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Nanoseconds.
    Duration(u64),
    Status(StatusValue),
    Kind(KindValue),
    Nil,
}

impl Value<'_> {
    /// Detaches the value from the borrowed trace.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Int(v) => Value::Int(v),
            Value::Float(v) => Value::Float(v),
            Value::Bool(v) => Value::Bool(v),
            Value::Duration(v) => Value::Duration(v),
            Value::Status(v) => Value::Status(v),
            Value::Kind(v) => Value::Kind(v),
            Value::Nil => Value::Nil,
        }
    }

    /// A short name of the type, as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bool(_) => "bool",
            Value::Duration(_) => "duration",
            Value::Status(_) => "status",
            Value::Kind(_) => "kind",
            Value::Nil => "nil",
        }
    }
}

impl fmt::Display for Value<'_> {
    /// TraceQL literal syntax: quoted strings, Go-style durations (`1.5s`), keywords.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(&quote(s)),
            Value::Int(n) => write!(f, "{n}"),
            // Debug keeps the decimal point (`1000.0`), so the text reads back as a float.
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Duration(ns) => f.write_str(&format_duration(*ns)),
            Value::Status(s) => f.write_str(s.as_str()),
            Value::Kind(k) => f.write_str(k.as_str()),
            Value::Nil => f.write_str("nil"),
        }
    }
}

/// Quotes a string as a TraceQL (Go) string literal that the lexer reads back unchanged.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) <= 0xffff => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Formats nanoseconds like Go's `time.Duration.String()` (`1h2m3.5s`, `1.5ms`, `0s`), which
/// is how Tempo prints durations in search results.
pub fn format_duration(ns: u64) -> String {
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    fn frac(whole: u64, rem: u64, digits: usize) -> String {
        let mut s = whole.to_string();
        if rem > 0 {
            let f = format!("{rem:0digits$}");
            s.push('.');
            s.push_str(f.trim_end_matches('0'));
        }
        s
    }
    match ns {
        0 => "0s".to_string(),
        n if n < US => format!("{n}ns"),
        n if n < MS => format!("{}µs", frac(n / US, n % US, 3)),
        n if n < S => format!("{}ms", frac(n / MS, n % MS, 6)),
        n => {
            let (h, rest) = (n / (3600 * S), n % (3600 * S));
            let (m, rest) = (rest / (60 * S), rest % (60 * S));
            let secs = frac(rest / S, rest % S, 9);
            match (h, m) {
                (0, 0) => format!("{secs}s"),
                (0, m) => format!("{m}m{secs}s"),
                (h, m) => format!("{h}h{m}m{secs}s"),
            }
        }
    }
}

/// What the store gives the evaluator: one trace, spans addressed by index `0..span_count()`.
pub trait TraceView {
    fn span_count(&self) -> usize;

    /// A span attribute (scope Span) or its resource's attribute (scope Resource); None if absent.
    /// For an array attribute, its first element.
    fn attribute(&self, span: usize, scope: AttrScope, name: &str) -> Option<Value<'_>>;

    /// Every value of an attribute: the elements of an array attribute, one value per event or
    /// link carrying it (scopes Event and Link); empty if absent. The default asks
    /// [`TraceView::attribute`] for a single value.
    fn attribute_values(&self, span: usize, scope: AttrScope, name: &str) -> Vec<Value<'_>> {
        self.attribute(span, scope, name).into_iter().collect()
    }

    /// Every value of an intrinsic that spans can have several of, one per event or link
    /// (`event:name`, `event:timeSinceStart`, `link:traceID`, `link:spanID`). The default
    /// answers `event:name` from [`TraceView::event_names`] and the rest from
    /// [`TraceView::intrinsic`].
    fn intrinsic_values(&self, span: usize, which: Intrinsic) -> Vec<Value<'_>> {
        match which {
            Intrinsic::EventName => self.event_names(span).into_iter().map(Value::Str).collect(),
            _ => self.intrinsic(span, which).into_iter().collect(),
        }
    }

    /// Span-level intrinsics: Name, Status, StatusMessage, Kind, Duration, SpanId, TraceId,
    /// ParentId. `Duration` falls back to `end - start` when this returns None.
    ///
    /// Trace-level ones (TraceDuration, RootName, RootServiceName) are computed by the evaluator
    /// from the spans (root = span for which [`TraceView::is_root`] holds). A store may answer
    /// them here as a shortcut: a `Some` from this method wins over the computed value.
    /// `EventName` is read through [`TraceView::event_names`].
    fn intrinsic(&self, span: usize, which: Intrinsic) -> Option<Value<'_>>;

    /// Index of the span's parent within this trace (None for roots and orphans).
    fn parent_index(&self, span: usize) -> Option<usize>;

    fn start_unix_nanos(&self, span: usize) -> u64;

    fn end_unix_nanos(&self, span: usize) -> u64;

    /// Whether the span is the trace's root. The default treats any span without a parent in
    /// the trace as a root; a store that knows the parent span id can say "no parent id" instead.
    fn is_root(&self, span: usize) -> bool {
        self.parent_index(span).is_none()
    }

    /// Names of the span's events, one per event (`event:name` matches if any of them does).
    /// The default asks [`TraceView::intrinsic`] for a single `EventName`.
    fn event_names(&self, span: usize) -> Vec<Cow<'_, str>> {
        match self.intrinsic(span, Intrinsic::EventName) {
            Some(Value::Str(s)) => vec![s],
            _ => Vec::new(),
        }
    }

    /// An identity of the span's resource that no other resource has while the evaluator
    /// runs (not even one read later into the same memory), so what is read from a resource
    /// once can be reused for its other spans. The default is None: nothing is reused.
    fn resource_key(&self, span: usize) -> Option<(u64, u32)> {
        let _ = span;
        None
    }

    /// Every span, resource and instrumentation-scope attribute of the span, with its scope
    /// (what `compare()` breaks down by), resource attributes first. The default has none.
    fn for_each_attribute(&self, span: usize, f: &mut dyn FnMut(AttrScope, &str, Value<'_>)) {
        let _ = (span, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::zero(0, "0s")]
    #[case::nanos(999, "999ns")]
    #[case::micros(1_500, "1.5µs")]
    #[case::millis(100_000_000, "100ms")]
    #[case::fractional_millis(1_250_000, "1.25ms")]
    #[case::seconds(1_406_666_666, "1.406666666s")]
    #[case::minutes(90_000_000_000, "1m30s")]
    #[case::hours(5_400_000_000_000, "1h30m0s")]
    #[case::hours_fraction(3_600_000_000_001, "1h0m0.000000001s")]
    fn durations_print_like_go(#[case] ns: u64, #[case] want: &str) {
        assert_eq!(format_duration(ns), want);
    }

    #[rstest]
    #[case::plain("abc", r#""abc""#)]
    #[case::empty("", r#""""#)]
    #[case::quote_and_backslash(r#"a"b\c"#, r#""a\"b\\c""#)]
    #[case::controls("\t\n\r\u{1}", r#""\t\n\r\u0001""#)]
    #[case::unicode("é 世界", r#""é 世界""#)]
    fn strings_quote_for_the_lexer(#[case] raw: &str, #[case] want: &str) {
        let quoted = quote(raw);
        assert_eq!(quoted, want);
        let tokens = lexer::lex(&quoted).expect("lexes");
        assert_eq!(tokens[0].tok, lexer::Tok::Str(raw.to_string()));
    }

    #[rstest]
    #[case::positioned(ParseError { message: "m".into(), line: 2, col: 5, kind: ErrorKind::Syntax }, "parse error at line 2, col 5: m")]
    #[case::unpositioned(ParseError { message: "m".into(), line: 0, col: 0, kind: ErrorKind::Syntax }, "parse error : m")]
    fn parse_error_display(#[case] err: ParseError, #[case] want: &str) {
        assert_eq!(err.to_string(), want);
    }
}
