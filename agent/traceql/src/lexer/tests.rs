//! Lexer table tests: durations, numbers, strings and escapes, attributes, positions, errors.
use super::*;
use rstest::rstest;

fn toks(input: &str) -> Vec<Tok> {
    lex(input)
        .expect("lexes")
        .into_iter()
        .map(|t| t.tok)
        .collect()
}

#[rstest]
#[case::ms("100ms", 100_000_000)]
#[case::fractional_s("1.5s", 1_500_000_000)]
#[case::hours("2h", 7_200_000_000_000)]
#[case::compound("1h30m", 5_400_000_000_000)]
#[case::ns("10ns", 10)]
#[case::us("3us", 3_000)]
#[case::micro_sign("3µs", 3_000)]
#[case::days("1d", 86_400_000_000_000)]
#[case::weeks("1w", 604_800_000_000_000)]
#[case::fractional_ms("0.5ms", 500_000)]
#[case::zero_unit("0s", 0)]
fn durations(#[case] input: &str, #[case] ns: u64) {
    assert_eq!(toks(input), vec![Tok::Duration(ns), Tok::Eof]);
}

#[rstest]
#[case::int("42", Tok::Int(42))]
#[case::zero("0", Tok::Int(0))]
#[case::float("4.25", Tok::Float(4.25))]
#[case::leading_dot(".5", Tok::Float(0.5))]
#[case::exponent("1e3", Tok::Float(1000.0))]
#[case::max_int("9223372036854775807", Tok::Int(i64::MAX))]
fn numbers(#[case] input: &str, #[case] want: Tok) {
    assert_eq!(toks(input), vec![want, Tok::Eof]);
}

#[rstest]
#[case::plain(r#""abc""#, "abc")]
#[case::empty(r#""""#, "")]
#[case::quote(r#""a\"b""#, "a\"b")]
#[case::backslash(r#""a\\b""#, "a\\b")]
#[case::newline(r#""a\nb""#, "a\nb")]
#[case::tab(r#""\t""#, "\t")]
#[case::hex(r#""\x41""#, "A")]
#[case::octal(r#""\101""#, "A")]
#[case::unicode_escape(r#""\u00e9""#, "é")]
#[case::big_unicode_escape(r#""\U0001F600""#, "😀")]
#[case::unicode_literal(r#""héllo 世界""#, "héllo 世界")]
#[case::raw("`a\\d+`", "a\\d+")]
#[case::regex_escape(r#""a\\.b""#, "a\\.b")]
fn strings(#[case] input: &str, #[case] want: &str) {
    assert_eq!(toks(input), vec![Tok::Str(want.to_string()), Tok::Eof]);
}

#[rstest]
#[case::span("span.foo", ScopeDot::Span, "foo")]
#[case::resource_dotted("resource.service.name", ScopeDot::Resource, "service.name")]
#[case::unscoped(".http.method", ScopeDot::None, "http.method")]
#[case::quoted(r#"span."foo bar""#, ScopeDot::Span, "foo bar")]
#[case::quoted_escape(r#"span."a\"b\\c""#, ScopeDot::Span, "a\"b\\c")]
#[case::mixed_quoted(r#".a."b c".d"#, ScopeDot::None, "a.b c.d")]
#[case::dash_and_slash(".foo-bar/baz", ScopeDot::None, "foo-bar/baz")]
#[case::unicode(".größe", ScopeDot::None, "größe")]
#[case::event("event.foo", ScopeDot::Event, "foo")]
#[case::parent("parent.foo", ScopeDot::Parent, "foo")]
#[case::parent_span("parent.span.foo", ScopeDot::ParentSpan, "foo")]
#[case::parent_resource(
    "parent.resource.service.name",
    ScopeDot::ParentResource,
    "service.name"
)]
fn attributes(#[case] input: &str, #[case] scope: ScopeDot, #[case] name: &str) {
    assert_eq!(
        toks(input),
        vec![Tok::Attr(scope, name.to_string()), Tok::Eof]
    );
}

#[rstest]
#[case::filter(
    "{ .a = 1 }",
    vec![Tok::OpenBrace, Tok::Attr(ScopeDot::None, "a".into()), Tok::Eq, Tok::Int(1), Tok::CloseBrace]
)]
#[case::no_spaces(
    "{span.x>=2}",
    vec![Tok::OpenBrace, Tok::Attr(ScopeDot::Span, "x".into()), Tok::Gte, Tok::Int(2), Tok::CloseBrace]
)]
#[case::operators(
    "= != =~ !~ > >= < <= && || ! | >> << ~ !>> !<< !> !< &~ &> &< &>> &<<",
    vec![
        Tok::Eq, Tok::Neq, Tok::Re, Tok::Nre, Tok::Gt, Tok::Gte, Tok::Lt, Tok::Lte, Tok::And,
        Tok::Or, Tok::Not, Tok::Pipe, Tok::Desc, Tok::Ance, Tok::Sibl, Tok::NotDesc,
        Tok::NotAnce, Tok::NotChild, Tok::NotParent, Tok::UnionSibl, Tok::UnionChild,
        Tok::UnionParent, Tok::UnionDesc, Tok::UnionAnce,
    ]
)]
#[case::arith("+ - * / % ^", vec![Tok::Add, Tok::Sub, Tok::Mul, Tok::Div, Tok::Mod, Tok::Pow])]
#[case::colon(
    "span:name trace:id",
    vec![
        Tok::Colon(ScopeColon::Span), Tok::Ident("name".into()),
        Tok::Colon(ScopeColon::Trace), Tok::Ident("id".into()),
    ]
)]
#[case::duration_then_brace(
    "duration>100ms}",
    vec![Tok::Ident("duration".into()), Tok::Gt, Tok::Duration(100_000_000), Tok::CloseBrace]
)]
#[case::int_then_word("5 foo", vec![Tok::Int(5), Tok::Ident("foo".into())])]
#[case::int_not_duration("5x", vec![Tok::Int(5), Tok::Ident("x".into())])]
#[case::comments(
    "{ /* c */ true // trailing\n }",
    vec![Tok::OpenBrace, Tok::Ident("true".into()), Tok::CloseBrace]
)]
#[case::empty("", vec![])]
#[case::whitespace_only(" \t\r\n ", vec![])]
#[case::unknown_char("@", vec![Tok::Ident("@".into())])]
#[case::non_ascii_space_is_stray("\u{a0}", vec![Tok::Ident("\u{a0}".into())])]
#[case::crlf("{\r\n}", vec![Tok::OpenBrace, Tok::CloseBrace])]
fn sequences(#[case] input: &str, #[case] mut want: Vec<Tok>) {
    want.push(Tok::Eof);
    assert_eq!(toks(input), want);
}

#[rstest]
#[case::first("{", 1, 1)]
#[case::after_spaces("   }", 1, 4)]
#[case::second_line("{\n  .a", 2, 3)]
#[case::after_unicode(r#""é" ."#, 1, 5)]
fn positions(#[case] input: &str, #[case] line: usize, #[case] col: usize) {
    let tokens = lex(input).unwrap_or_else(|e| {
        vec![Token {
            tok: Tok::Eof,
            pos: Pos {
                line: e.line,
                col: e.col,
            },
        }]
    });
    let last = tokens
        .iter()
        .rev()
        .find(|t| t.tok != Tok::Eof)
        .unwrap_or(&tokens[0]);
    assert_eq!(last.pos, Pos { line, col });
}

#[rstest]
#[case::unterminated_string(r#"{ .a = "abc }"#, "literal not terminated", 8)]
#[case::newline_in_string("\"a\nb\"", "literal not terminated", 1)]
#[case::bad_escape(r#""\q""#, "invalid char escape", 1)]
#[case::short_hex(r#""\x4""#, "invalid char escape", 1)]
#[case::unterminated_quoted_attr(r#"span."foo"#, r#"unexpected EOF, expecting ""#, 1)]
#[case::bad_attr_escape(r#"span."a\nb""#, "invalid escape sequence", 1)]
#[case::empty_attr("span. = 1", "unexpected END_ATTRIBUTE", 1)]
#[case::int_overflow("99999999999999999999", "value out of range", 1)]
#[case::open_comment("/* x", "comment not terminated", 1)]
fn errors(#[case] input: &str, #[case] needle: &str, #[case] col: usize) {
    let err = lex(input).expect_err("should fail");
    assert!(err.message.contains(needle), "{err}");
    assert_eq!((err.line, err.col), (1, col), "{err}");
}
