//! TraceQL lexer: text → tokens with 1-based line/column positions, following Tempo's scanner.

use super::{ErrorKind, ParseError};

/// 1-based position of a token's first character (columns count characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Scope written before an attribute name (`span.`, `resource.`, or a bare `.`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeDot {
    /// `.foo`
    None,
    Span,
    Resource,
    Event,
    Link,
    Instrumentation,
    /// `parent.foo`
    Parent,
    /// `parent.span.foo`
    ParentSpan,
    /// `parent.resource.foo`
    ParentResource,
}

impl ScopeDot {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeDot::None => ".",
            ScopeDot::Span => "span.",
            ScopeDot::Resource => "resource.",
            ScopeDot::Event => "event.",
            ScopeDot::Link => "link.",
            ScopeDot::Instrumentation => "instrumentation.",
            ScopeDot::Parent => "parent.",
            ScopeDot::ParentSpan => "parent.span.",
            ScopeDot::ParentResource => "parent.resource.",
        }
    }
}

/// Scope written before an intrinsic (`span:`, `trace:`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeColon {
    Span,
    Trace,
    Event,
    Link,
    Instrumentation,
}

impl ScopeColon {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeColon::Span => "span:",
            ScopeColon::Trace => "trace:",
            ScopeColon::Event => "event:",
            ScopeColon::Link => "link:",
            ScopeColon::Instrumentation => "instrumentation:",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    OpenBrace,
    CloseBrace,
    OpenParen,
    CloseParen,
    Comma,
    Eq,
    Neq,
    Re,
    Nre,
    Gt,
    Gte,
    Lt,
    Lte,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    And,
    Or,
    Not,
    Pipe,
    /// `>>`
    Desc,
    /// `<<`
    Ance,
    /// `~`
    Sibl,
    NotChild,
    NotParent,
    NotDesc,
    NotAnce,
    UnionSibl,
    UnionChild,
    UnionParent,
    UnionDesc,
    UnionAnce,
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(u64),
    /// A scoped or unscoped attribute; the name has quotes and escapes resolved.
    Attr(ScopeDot, String),
    /// `span:` and friends; the intrinsic name follows as an identifier.
    Colon(ScopeColon),
    /// A word: keywords (`true`, `status`, `count`, ...) are classified by the parser.
    Ident(String),
    Eof,
}

impl Tok {
    /// How Tempo names the token in `syntax error: unexpected X`.
    pub fn describe(&self) -> String {
        let s = match self {
            Tok::OpenBrace => "{",
            Tok::CloseBrace => "}",
            Tok::OpenParen => "(",
            Tok::CloseParen => ")",
            Tok::Comma => ",",
            Tok::Eq => "=",
            Tok::Neq => "!=",
            Tok::Re => "=~",
            Tok::Nre => "!~",
            Tok::Gt => ">",
            Tok::Gte => ">=",
            Tok::Lt => "<",
            Tok::Lte => "<=",
            Tok::Add => "+",
            Tok::Sub => "-",
            Tok::Mul => "*",
            Tok::Div => "/",
            Tok::Mod => "%",
            Tok::Pow => "^",
            Tok::And => "&&",
            Tok::Or => "||",
            Tok::Not => "!",
            Tok::Pipe => "|",
            Tok::Desc => ">>",
            Tok::Ance => "<<",
            Tok::Sibl => "~",
            Tok::NotChild => "!>",
            Tok::NotParent => "!<",
            Tok::NotDesc => "!>>",
            Tok::NotAnce => "!<<",
            Tok::UnionSibl => "&~",
            Tok::UnionChild => "&>",
            Tok::UnionParent => "&<",
            Tok::UnionDesc => "&>>",
            Tok::UnionAnce => "&<<",
            Tok::Str(_) => "STRING",
            Tok::Int(_) => "INTEGER",
            Tok::Float(_) => "FLOAT",
            Tok::Duration(_) => "DURATION",
            // Tempo reports the scope token that starts the attribute.
            Tok::Attr(scope, _) => scope.as_str(),
            Tok::Colon(c) => c.as_str(),
            Tok::Ident(word) => return describe_word(word).to_string(),
            Tok::Eof => "$end",
        };
        s.to_string()
    }
}

/// Keywords are their own tokens in Tempo; anything else is an IDENTIFIER.
fn describe_word(word: &str) -> &str {
    const KEYWORDS: &[&str] = &[
        "true",
        "false",
        "nil",
        "ok",
        "error",
        "unset",
        "unspecified",
        "internal",
        "server",
        "client",
        "producer",
        "consumer",
        "duration",
        "childCount",
        "name",
        "status",
        "statusMessage",
        "kind",
        "rootName",
        "rootServiceName",
        "rootService",
        "traceDuration",
        "nestedSetLeft",
        "nestedSetRight",
        "nestedSetParent",
        "id",
        "traceID",
        "spanID",
        "parentID",
        "timeSinceStart",
        "version",
        "parent",
        "count",
        "avg",
        "max",
        "min",
        "sum",
        "by",
        "coalesce",
        "select",
        "rate",
        "count_over_time",
        "min_over_time",
        "max_over_time",
        "avg_over_time",
        "sum_over_time",
        "quantile_over_time",
        "histogram_over_time",
        "compare",
        "topk",
        "bottomk",
        "with",
    ];
    if KEYWORDS.contains(&word) {
        word
    } else {
        "IDENTIFIER"
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// Splits a query into tokens; the last one is always [`Tok::Eof`].
pub fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    let mut lx = Lexer {
        chars: input.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        let token = lx.next_token()?;
        let done = token.tok == Tok::Eof;
        out.push(token);
        if done {
            return Ok(out);
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
}

fn syntax(message: impl Into<String>, pos: Pos) -> ParseError {
    ParseError {
        message: message.into(),
        line: pos.line,
        col: pos.col,
        kind: ErrorKind::Syntax,
    }
}

/// Characters that may appear in an unquoted attribute name (Tempo's `isAttributeRune`).
fn is_attribute_char(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            c,
            '{' | '}' | '(' | ')' | '=' | '~' | '!' | '<' | '>' | '&' | '|' | '^' | ','
        )
}

fn is_duration_char(c: char) -> bool {
    matches!(c, 'n' | 's' | 'u' | 'm' | 'h' | 'µ' | 'd' | 'w' | 'y')
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    /// Skips whitespace and Go-style comments (`// ...` and `/* ... */`).
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match (self.peek(), self.peek_at(1)) {
                // Go's scanner skips only these; other Unicode spaces are stray characters.
                (Some(' ' | '\t' | '\n' | '\r'), _) => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(syntax("comment not terminated", start)),
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        self.skip_trivia()?;
        let pos = self.pos();
        let Some(c) = self.peek() else {
            // Like Tempo, an empty query has no position at all.
            let pos = if self.chars.is_empty() {
                Pos { line: 0, col: 0 }
            } else {
                pos
            };
            return Ok(Token { tok: Tok::Eof, pos });
        };
        let tok = match c {
            '"' | '`' => Tok::Str(self.string(pos)?),
            '0'..='9' => self.number(pos)?,
            '.' if self.peek_at(1).is_some_and(|d| d.is_ascii_digit()) => self.number(pos)?,
            '.' => {
                self.bump();
                self.attribute(ScopeDot::None, pos)?
            }
            c if c.is_alphabetic() || c == '_' => self.word(pos)?,
            _ => self.operator(),
        };
        Ok(Token { tok, pos })
    }

    fn operator(&mut self) -> Tok {
        // Longest match first, as Tempo extends tokens while the longer text is still a token.
        const OPS: &[(&str, Tok)] = &[
            ("!>>", Tok::NotDesc),
            ("!<<", Tok::NotAnce),
            ("&>>", Tok::UnionDesc),
            ("&<<", Tok::UnionAnce),
            ("!=", Tok::Neq),
            ("=~", Tok::Re),
            ("!~", Tok::Nre),
            (">=", Tok::Gte),
            ("<=", Tok::Lte),
            ("&&", Tok::And),
            ("||", Tok::Or),
            (">>", Tok::Desc),
            ("<<", Tok::Ance),
            ("!>", Tok::NotChild),
            ("!<", Tok::NotParent),
            ("&~", Tok::UnionSibl),
            ("&>", Tok::UnionChild),
            ("&<", Tok::UnionParent),
            ("{", Tok::OpenBrace),
            ("}", Tok::CloseBrace),
            ("(", Tok::OpenParen),
            (")", Tok::CloseParen),
            (",", Tok::Comma),
            ("=", Tok::Eq),
            (">", Tok::Gt),
            ("<", Tok::Lt),
            ("+", Tok::Add),
            ("-", Tok::Sub),
            ("*", Tok::Mul),
            ("/", Tok::Div),
            ("%", Tok::Mod),
            ("^", Tok::Pow),
            ("!", Tok::Not),
            ("|", Tok::Pipe),
            ("~", Tok::Sibl),
        ];
        for (text, tok) in OPS {
            if text
                .chars()
                .enumerate()
                .all(|(k, ch)| self.peek_at(k) == Some(ch))
            {
                for _ in 0..text.chars().count() {
                    self.bump();
                }
                return tok.clone();
            }
        }
        // Unknown character: Tempo reports it as an IDENTIFIER.
        let c = self.bump().unwrap_or_default();
        Tok::Ident(c.to_string())
    }

    fn word(&mut self, pos: Pos) -> Result<Tok, ParseError> {
        let mut word = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                word.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if self.peek() == Some('.') {
            let scope = match word.as_str() {
                "span" => Some(ScopeDot::Span),
                "resource" => Some(ScopeDot::Resource),
                "event" => Some(ScopeDot::Event),
                "link" => Some(ScopeDot::Link),
                "instrumentation" => Some(ScopeDot::Instrumentation),
                "parent" => Some(ScopeDot::Parent),
                _ => None,
            };
            if let Some(scope) = scope {
                self.bump();
                return self.attribute(scope, pos);
            }
        }
        if self.peek() == Some(':') {
            let scope = match word.as_str() {
                "span" => Some(ScopeColon::Span),
                "trace" => Some(ScopeColon::Trace),
                "event" => Some(ScopeColon::Event),
                "link" => Some(ScopeColon::Link),
                "instrumentation" => Some(ScopeColon::Instrumentation),
                _ => None,
            };
            if let Some(scope) = scope {
                self.bump();
                return Ok(Tok::Colon(scope));
            }
        }
        Ok(Tok::Ident(word))
    }

    /// Reads an attribute name after its scope: unquoted runs and `"quoted"` parts concatenate.
    fn attribute(&mut self, mut scope: ScopeDot, pos: Pos) -> Result<Tok, ParseError> {
        if scope == ScopeDot::Parent {
            // `parent.span.foo` / `parent.resource.foo`: the inner scope narrows the parent's.
            for (prefix, inner) in [
                ("span.", ScopeDot::ParentSpan),
                ("resource.", ScopeDot::ParentResource),
            ] {
                if prefix
                    .chars()
                    .enumerate()
                    .all(|(k, ch)| self.peek_at(k) == Some(ch))
                {
                    for _ in 0..prefix.len() {
                        self.bump();
                    }
                    scope = inner;
                    break;
                }
            }
        }
        let mut name = String::new();
        loop {
            match self.peek() {
                Some('"') => {
                    let quote_pos = pos;
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return Err(syntax(r#"unexpected EOF, expecting ""#, quote_pos));
                            }
                            Some('"') => break,
                            Some('\\') => match self.bump() {
                                Some(c @ ('"' | '\\')) => name.push(c),
                                _ => return Err(syntax("invalid escape sequence", quote_pos)),
                            },
                            Some(c) => name.push(c),
                        }
                    }
                }
                Some(c) if is_attribute_char(c) => {
                    name.push(c);
                    self.bump();
                }
                _ => break,
            }
        }
        if name.is_empty() {
            return Err(syntax(
                "syntax error: unexpected END_ATTRIBUTE, expecting IDENTIFIER",
                pos,
            ));
        }
        Ok(Tok::Attr(scope, name))
    }

    /// Go-style string literal: `"..."` with Go escapes, or a raw `` `...` `` string.
    fn string(&mut self, pos: Pos) -> Result<String, ParseError> {
        let quote = self.bump().unwrap_or('"');
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(syntax("literal not terminated", pos));
            };
            if c == quote {
                return Ok(out);
            }
            if quote == '`' {
                if c != '\r' {
                    out.push(c);
                }
                continue;
            }
            match c {
                '\n' => return Err(syntax("literal not terminated", pos)),
                '\\' => out.push(self.escape(pos)?),
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, pos: Pos) -> Result<char, ParseError> {
        let bad = || syntax("invalid char escape", pos);
        let c = self.bump().ok_or_else(bad)?;
        let simple = match c {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            _ => None,
        };
        if let Some(s) = simple {
            return Ok(s);
        }
        let (digits, radix) = match c {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (3, 8),
            _ => return Err(bad()),
        };
        let mut text = String::new();
        if radix == 8 {
            text.push(c);
        }
        while text.len() < digits {
            match self.peek() {
                Some(d) if d.is_digit(radix) => {
                    text.push(d);
                    self.bump();
                }
                _ => return Err(bad()),
            }
        }
        let code = u32::from_str_radix(&text, radix).map_err(|_| bad())?;
        if c == 'x' || radix == 8 {
            // Go allows raw bytes here; only the ASCII range is meaningful in a UTF-8 string.
            if code > 0x7f {
                return Err(syntax("invalid syntax: non-ASCII byte escape", pos));
            }
        }
        char::from_u32(code)
            .ok_or_else(|| syntax("escape sequence is invalid Unicode code point", pos))
    }

    /// Number, then (as Tempo does) a duration if the following letters make one.
    fn number(&mut self, pos: Pos) -> Result<Tok, ParseError> {
        let start = self.i;
        let mut is_float = false;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || c == '_' {
                self.bump();
            } else if c == '.' && !is_float {
                is_float = true;
                self.bump();
            } else if (c == 'e' || c == 'E')
                && (self.peek_at(1).is_some_and(|d| d.is_ascii_digit())
                    || (matches!(self.peek_at(1), Some('+' | '-'))
                        && self.peek_at(2).is_some_and(|d| d.is_ascii_digit())))
            {
                is_float = true;
                self.bump();
                self.bump();
            } else {
                break;
            }
        }
        let number: String = self.chars[start..self.i].iter().collect();

        // Duration: the number plus following digits, '.', and unit letters up to a non-unit.
        let mut ahead = 0;
        while let Some(c) = self.peek_at(ahead) {
            if c.is_ascii_digit() || c == '.' || is_duration_char(c) {
                ahead += 1;
            } else {
                break;
            }
        }
        if ahead > 0 {
            let text: String = self.chars[start..self.i + ahead].iter().collect();
            if let Some(ns) = parse_duration(&text) {
                for _ in 0..ahead {
                    self.bump();
                }
                return Ok(Tok::Duration(ns));
            }
        }

        let clean = number.replace('_', "");
        if is_float {
            clean.parse::<f64>().map(Tok::Float).map_err(|_| {
                syntax(
                    format!("strconv.ParseFloat: parsing {number:?}: invalid syntax"),
                    pos,
                )
            })
        } else {
            clean.parse::<i64>().map(Tok::Int).map_err(|e| {
                let why = match e.kind() {
                    std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                        "value out of range"
                    }
                    _ => "invalid syntax",
                };
                syntax(format!("strconv.Atoi: parsing {number:?}: {why}"), pos)
            })
        }
    }
}

/// Parses a duration the way Tempo does: Prometheus style (`1d2h`, `1w`, `1y`) first, then Go
/// style (`1.5s`, `1h30m`, `300us`, `2µs`). Returns nanoseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    parse_prometheus_duration(text).or_else(|| parse_go_duration(text))
}

fn parse_prometheus_duration(text: &str) -> Option<u64> {
    const UNITS: &[(&str, u64)] = &[
        ("y", 365 * 24 * 3600 * 1_000_000_000),
        ("w", 7 * 24 * 3600 * 1_000_000_000),
        ("d", 24 * 3600 * 1_000_000_000),
        ("h", 3600 * 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ];
    if text == "0" {
        return Some(0);
    }
    let mut rest = text;
    let mut total: u64 = 0;
    let mut next_unit = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let idx = UNITS[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        total = total.checked_add(n.checked_mul(UNITS[idx].1)?)?;
        next_unit = idx + 1;
        rest = &rest[unit_len..];
    }
    Some(total)
}

fn parse_go_duration(text: &str) -> Option<u64> {
    const UNITS: &[(&str, f64)] = &[
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("μs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3600e9),
    ];
    if text == "0" {
        return Some(0);
    }
    let mut rest = text;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let n: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let (_, scale) = UNITS.iter().find(|(u, _)| *u == unit)?;
        total += n * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    Some(total.round() as u64)
}

#[cfg(test)]
mod tests;
