//! HTTP/1.x request and response heads: pure parsers over byte slices (no allocation).
//!
//! Only the headers the agent needs are kept (framing, `Host`, `User-Agent`, trace context);
//! credentials such as `Authorization` or `Cookie` are never looked at.
pub mod chunked;

use std::mem::MaybeUninit;

/// Most headers a head may carry before it is treated as invalid.
pub const MAX_HEADERS: usize = 100;

/// Outcome of parsing the start of a byte stream as an HTTP/1.x head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// A whole head, and how many bytes it took (including the blank line).
    Complete(T, usize),
    /// The bytes so far are the start of a head; more are needed.
    Partial,
    /// The bytes are not HTTP/1.x at all (another protocol, TLS, binary).
    NotHttp,
    /// The bytes start like HTTP/1.x but break its grammar.
    Invalid(&'static str),
}

/// The headers of a head that matter for framing, naming and trace context.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    pub content_length: Option<u64>,
    /// The final transfer coding is `chunked`.
    pub chunked: bool,
    /// A `Transfer-Encoding` header was present (with or without `chunked`).
    pub transfer_encoding: bool,
    pub connection_close: bool,
    pub connection_keep_alive: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
    pub host: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
}

/// A parsed request head, borrowing from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// The request target as sent (origin-form, absolute-form, `*` or authority).
    pub target: &'a str,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Headers<'a>,
}

/// A parsed response head, borrowing from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    pub minor: u8,
    pub status: u16,
    pub headers: Headers<'a>,
}

/// Methods accepted as the start of a request. Method names are case-sensitive, so `get`
/// is not HTTP as far as classification goes.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"TRACE",
    b"CONNECT",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"PURGE",
];

/// Whether `buf` starts with a known method and a space (`Some(true)`), could still become
/// one with more bytes (`None`), or cannot (`Some(false)`).
fn starts_with_method(buf: &[u8]) -> Option<bool> {
    let mut maybe = false;
    for m in METHODS {
        if buf.len() > m.len() {
            if buf.starts_with(m) && buf[m.len()] == b' ' {
                return Some(true);
            }
        } else if m.starts_with(buf) {
            maybe = true;
        }
    }
    if maybe { None } else { Some(false) }
}

/// Cheap test: does `buf` start (or could it start) a request line? Used to resynchronise
/// a stream at a record boundary and to classify a connection seen mid-life.
pub fn looks_like_request(buf: &[u8]) -> bool {
    !buf.is_empty() && starts_with_method(buf) != Some(false)
}

/// Whether `buf` starts with a whole known method and a space (stricter than
/// `looks_like_request`: a lone `G` does not qualify).
pub fn starts_with_method_and_space(buf: &[u8]) -> bool {
    starts_with_method(buf) == Some(true)
}

const RESPONSE_PREFIX: &[u8] = b"HTTP/1.";

/// Cheap test: does `buf` start (or could it start) a status line?
pub fn looks_like_response(buf: &[u8]) -> bool {
    let n = buf.len().min(RESPONSE_PREFIX.len());
    n > 0 && buf[..n] == RESPONSE_PREFIX[..n]
}

/// Parses a request head at the start of `buf`.
pub fn parse_request_head(buf: &[u8]) -> Parse<RequestHead<'_>> {
    match starts_with_method(buf) {
        Some(false) => return Parse::NotHttp,
        None => return Parse::Partial,
        Some(true) => {}
    }
    // Uninitialised header slots: no 3 KiB memset on every parse.
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut none: [httparse::Header<'_>; 0] = [];
    let mut req = httparse::Request::new(&mut none);
    match req.parse_with_uninit_headers(buf, &mut raw) {
        Ok(httparse::Status::Partial) => Parse::Partial,
        Err(e) => Parse::Invalid(error_reason(e)),
        Ok(httparse::Status::Complete(consumed)) => {
            let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version)
            else {
                return Parse::Invalid("incomplete request line");
            };
            match collect_headers(req.headers) {
                Ok(headers) => {
                    if headers.transfer_encoding && !headers.chunked {
                        return Parse::Invalid("request transfer-encoding without chunked");
                    }
                    Parse::Complete(
                        RequestHead {
                            method,
                            target,
                            minor,
                            headers,
                        },
                        consumed,
                    )
                }
                Err(reason) => Parse::Invalid(reason),
            }
        }
    }
}

/// Parses a response head at the start of `buf`.
pub fn parse_response_head(buf: &[u8]) -> Parse<ResponseHead<'_>> {
    if buf.len() < RESPONSE_PREFIX.len() {
        return if looks_like_response(buf) || buf.is_empty() {
            Parse::Partial
        } else {
            Parse::NotHttp
        };
    }
    if !buf.starts_with(RESPONSE_PREFIX) {
        return Parse::NotHttp;
    }
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut none: [httparse::Header<'_>; 0] = [];
    let mut resp = httparse::Response::new(&mut none);
    match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut raw)
    {
        Ok(httparse::Status::Partial) => Parse::Partial,
        Err(e) => Parse::Invalid(error_reason(e)),
        Ok(httparse::Status::Complete(consumed)) => {
            let (Some(minor), Some(status)) = (resp.version, resp.code) else {
                return Parse::Invalid("incomplete status line");
            };
            match collect_headers(resp.headers) {
                Ok(headers) => Parse::Complete(
                    ResponseHead {
                        minor,
                        status,
                        headers,
                    },
                    consumed,
                ),
                Err(reason) => Parse::Invalid(reason),
            }
        }
    }
}

/// Turns a head that was cut off (the copied prefix ended inside it) into a parseable one:
/// keeps the complete lines and appends the blank line. Returns false when not even the
/// first line is complete. `scratch` is reused to avoid allocating on every call.
pub fn close_truncated_head(buf: &[u8], scratch: &mut Vec<u8>) -> bool {
    let Some(last_lf) = buf.iter().rposition(|&b| b == b'\n') else {
        return false;
    };
    scratch.clear();
    scratch.extend_from_slice(&buf[..=last_lf]);
    scratch.extend_from_slice(b"\r\n");
    true
}

fn error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid version",
    }
}

fn collect_headers<'a>(raw: &[httparse::Header<'a>]) -> Result<Headers<'a>, &'static str> {
    let mut h = Headers::default();
    for header in raw {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(value).ok_or("invalid content-length")?;
            if h.content_length.is_some_and(|prev| prev != n) {
                return Err("conflicting content-length");
            }
            h.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            h.transfer_encoding = true;
            // The last coding decides; a later header line overrides an earlier one.
            h.chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| trim(last).eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    h.connection_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    h.connection_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            h.expect_continue = trim(value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("upgrade") {
            h.upgrade = true;
        } else if name.eq_ignore_ascii_case("host") {
            h.host = as_str(value);
        } else if name.eq_ignore_ascii_case("user-agent") {
            h.user_agent = as_str(value);
        } else if name.eq_ignore_ascii_case("traceparent") {
            // Keep the first valid-looking one; the context parser validates it later.
            if h.traceparent.is_none() {
                h.traceparent = as_str(value);
            }
        } else if name.eq_ignore_ascii_case("tracestate") && h.tracestate.is_none() {
            h.tracestate = as_str(value);
        }
    }
    if h.transfer_encoding {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
        h.content_length = None;
    }
    Ok(h)
}

/// `Content-Length`: digits only, possibly a list of identical values (`5, 5`).
fn parse_content_length(value: &[u8]) -> Option<u64> {
    let mut result: Option<u64> = None;
    for part in value.split(|&b| b == b',') {
        let part = trim(part);
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        if result.is_some_and(|prev| prev != n) {
            return None;
        }
        result = Some(n);
    }
    result
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

fn as_str(v: &[u8]) -> Option<&str> {
    std::str::from_utf8(trim(v)).ok()
}

/// Splits a request target into path and query (`/a?b` → `/a`, `Some("b")`). An
/// absolute-form target (`http://host/a`) yields its path. The fragment is dropped.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    let target = target.split('#').next().unwrap_or(target);
    let rest = if let Some(after_scheme) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        match after_scheme.find(['/', '?']) {
            Some(i) => &after_scheme[i..],
            None => "/",
        }
    } else {
        target
    };
    match rest.split_once('?') {
        Some((path, query)) => (if path.is_empty() { "/" } else { path }, Some(query)),
        None => (rest, None),
    }
}

#[cfg(test)]
mod tests;
