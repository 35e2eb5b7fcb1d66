//! Pure `HttpSpan` → OTLP protobuf conversion, following the stable OpenTelemetry HTTP
//! semantic conventions, and grouping of a batch into one `ResourceSpans` per process.
use std::{net::SocketAddr, sync::Arc};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{
        ResourceSpans, ScopeSpans, Span, Status,
        span::{Link, SpanKind as OtlpKind},
        status::StatusCode,
    },
};

use crate::span::{
    HttpSpan, SpanKind,
    resource::{AttrValue, ProcessResource, SDK_NAME, SDK_VERSION},
};

/// Options of the conversion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Export `url.query` (off by default: query strings often carry tokens).
    pub export_query: bool,
}

/// Methods the HTTP semantic conventions know; anything else becomes `_OTHER`.
const KNOWN_METHODS: &[&str] = &[
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE",
];

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

pub(crate) fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

pub(crate) fn kv_int(key: &str, value: i64) -> KeyValue {
    kv(key, Value::IntValue(value))
}

/// Split a `Host` header into host and optional port (`[::1]:80`, `a.b:8080`, `a.b`).
/// Returns `None` for an empty or malformed value.
pub fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let host = host.trim();
    if host.is_empty() {
        return None;
    }
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if addr.is_empty() {
            return None;
        }
        return match after {
            "" => Some((addr, None)),
            _ => Some((addr, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match host.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address, no port.
        Some((h, _)) if h.contains(':') => Some((host, None)),
        Some((h, p)) if !h.is_empty() => Some((h, Some(p.parse().ok()?))),
        Some(_) => None,
        None => Some((host, None)),
    }
}

/// The span name's parts: `METHOD` (or `HTTP` for a method outside the known set) and the
/// route when there is one.
pub fn span_name_parts(span: &HttpSpan) -> (&str, Option<&str>) {
    let method = if KNOWN_METHODS.contains(&span.method.as_str()) {
        span.method.as_str()
    } else {
        "HTTP"
    };
    (method, span.route.as_deref().filter(|r| !r.is_empty()))
}

/// The span name: `METHOD route`, `METHOD`, or `HTTP` for a method outside the known set.
pub fn span_name(span: &HttpSpan) -> String {
    match span_name_parts(span) {
        (method, Some(route)) => format!("{method} {route}"),
        (method, None) => method.to_owned(),
    }
}

/// `(error.type, status message)` when the span is an error, `None` when its status is unset.
pub fn error_of(span: &HttpSpan) -> Option<(String, String)> {
    let status_error = span.status_code.filter(|c| match span.kind {
        SpanKind::Server => *c >= 500,
        SpanKind::Client => *c >= 400,
    });
    // Codes outside 100..=599 are not valid HTTP: an error whatever the kind.
    let invalid = span.status_code.filter(|c| !(100..=599).contains(c));
    match (status_error.or(invalid), &span.error_type) {
        (Some(code), _) => Some((code.to_string(), String::new())),
        (None, Some(e)) if !e.is_empty() => Some((e.clone(), e.clone())),
        _ => None,
    }
}

/// Where span attributes go: OTLP structs (`Vec<KeyValue>`) or protobuf bytes straight away
/// (`wire`). One attribute list, two encodings.
pub trait AttrSink {
    fn str(&mut self, key: &'static str, value: &str);
    fn int(&mut self, key: &'static str, value: i64);
    /// A string attribute that needs formatting (URLs).
    fn fmt(&mut self, key: &'static str, value: std::fmt::Arguments<'_>);
    /// An IP address attribute, in its usual text form.
    fn ip(&mut self, key: &'static str, ip: std::net::IpAddr) {
        self.fmt(key, format_args!("{ip}"));
    }
}

impl AttrSink for Vec<KeyValue> {
    fn str(&mut self, key: &'static str, value: &str) {
        self.push(kv_str(key, value));
    }
    fn int(&mut self, key: &'static str, value: i64) {
        self.push(kv_int(key, value));
    }
    fn fmt(&mut self, key: &'static str, value: std::fmt::Arguments<'_>) {
        self.push(kv_str(key, value.to_string()));
    }
}

/// The OTLP attributes of one span.
pub fn span_attributes(span: &HttpSpan, opts: ConvertOptions) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(16);
    write_attributes(span, opts, &mut a);
    a
}

/// Write the attributes of one span, per the stable HTTP semantic conventions.
pub fn write_attributes(span: &HttpSpan, opts: ConvertOptions, a: &mut impl AttrSink) {
    if KNOWN_METHODS.contains(&span.method.as_str()) {
        a.str("http.request.method", &span.method);
    } else {
        a.str("http.request.method", "_OTHER");
        a.str("http.request.method_original", &span.method);
    }
    a.str("url.path", &span.path);
    a.str("url.scheme", "http");
    let query = span
        .query
        .as_deref()
        .filter(|q| opts.export_query && !q.is_empty());
    if let Some(q) = query {
        a.str("url.query", q);
    }
    if let Some(code) = span.status_code {
        a.int("http.response.status_code", i64::from(code));
    }
    let host = span.host.as_deref().and_then(split_host);
    match span.kind {
        SpanKind::Server => {
            if let Some(route) = span.route.as_deref().filter(|r| !r.is_empty()) {
                a.str("http.route", route);
            }
            match host {
                Some((h, p)) => {
                    a.str("server.address", h);
                    a.int("server.port", i64::from(p.unwrap_or(span.local.port())));
                }
                None => {
                    a.ip("server.address", span.local.ip());
                    a.int("server.port", i64::from(span.local.port()));
                }
            }
            a.ip("client.address", span.peer.ip());
            a.int("client.port", i64::from(span.peer.port()));
        }
        SpanKind::Client => {
            let ip;
            let (addr, port): (&dyn std::fmt::Display, u16) = match &host {
                Some((h, p)) => (h, p.unwrap_or(span.peer.port())),
                None => {
                    ip = span.peer.ip();
                    (&ip, span.peer.port())
                }
            };
            let url = FullUrl {
                host: addr,
                port,
                path: &span.path,
                query,
            };
            a.fmt("url.full", format_args!("{url}"));
            a.fmt("server.address", format_args!("{addr}"));
            a.int("server.port", i64::from(port));
        }
    }
    a.ip("network.peer.address", span.peer.ip());
    a.int("network.peer.port", i64::from(span.peer.port()));
    if !span.protocol_version.is_empty() {
        a.str("network.protocol.version", span.protocol_version);
    }
    if let Some(ua) = span.user_agent.as_deref().filter(|u| !u.is_empty()) {
        a.str("user_agent.original", ua);
    }
    if let Some(n) = span.request_body_size {
        a.int("http.request.body.size", saturating_i64(n));
    }
    if let Some(n) = span.response_body_size {
        a.int("http.response.body.size", saturating_i64(n));
    }
    if let Some((error_type, _)) = error_of(span) {
        a.str("error.type", &error_type);
    }
    a.str("sonde.link", span.link.as_str());
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `http://host[:port]/path[?query]`, with brackets around IPv6 literals and the default port
/// left out.
struct FullUrl<'a> {
    host: &'a dyn std::fmt::Display,
    port: u16,
    path: &'a str,
    query: Option<&'a str>,
}

impl std::fmt::Display for FullUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host.to_string();
        if host.contains(':') {
            write!(f, "http://[{host}]")?;
        } else {
            write!(f, "http://{host}")?;
        }
        if self.port != 80 {
            write!(f, ":{}", self.port)?;
        }
        if !self.path.starts_with('/') {
            f.write_str("/")?;
        }
        f.write_str(self.path)?;
        if let Some(q) = self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// Convert one span.
pub fn to_otlp_span(span: &HttpSpan, opts: ConvertOptions) -> Span {
    let status = match error_of(span) {
        Some((_, message)) => Status {
            message,
            code: StatusCode::Error as i32,
        },
        None => Status {
            message: String::new(),
            code: StatusCode::Unset as i32,
        },
    };
    Span {
        trace_id: span.trace_id.to_vec(),
        span_id: span.span_id.to_vec(),
        trace_state: span.trace_state.clone().unwrap_or_default(),
        parent_span_id: span.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags: 0,
        name: span_name(span),
        kind: match span.kind {
            SpanKind::Server => OtlpKind::Server as i32,
            SpanKind::Client => OtlpKind::Client as i32,
        },
        start_time_unix_nano: span.start_unix_ns,
        end_time_unix_nano: span.end_unix_ns.max(span.start_unix_ns),
        attributes: span_attributes(span, opts),
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: span
            .links
            .iter()
            .map(|l| Link {
                trace_id: l.trace_id.to_vec(),
                span_id: l.span_id.to_vec(),
                trace_state: String::new(),
                attributes: Vec::new(),
                dropped_attributes_count: 0,
                flags: 0,
            })
            .collect(),
        dropped_links_count: 0,
        status: Some(status),
    }
}

/// The OTLP resource of a process.
pub fn to_otlp_resource(resource: &ProcessResource) -> Resource {
    Resource {
        attributes: resource
            .attributes
            .iter()
            .map(|a| match &a.value {
                AttrValue::Str(s) => kv_str(&a.key, s.clone()),
                AttrValue::Int(i) => kv_int(&a.key, *i),
            })
            .collect(),
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    }
}

/// The instrumentation scope of every span Sonde produces.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SDK_NAME.to_owned(),
        version: SDK_VERSION.to_owned(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }
}

/// Group a batch into one `ResourceSpans` per process (same `Arc`, or equal content), in order of
/// first appearance, each with a single `sonde` scope.
pub fn build_request(
    batch: &[(Arc<ProcessResource>, HttpSpan)],
    opts: ConvertOptions,
) -> ExportTraceServiceRequest {
    let mut groups: Vec<(&Arc<ProcessResource>, Vec<Span>)> = Vec::new();
    for (resource, span) in batch {
        let converted = to_otlp_span(span, opts);
        match groups
            .iter_mut()
            .find(|(r, _)| Arc::ptr_eq(r, resource) || ***r == **resource)
        {
            Some((_, spans)) => spans.push(converted),
            None => groups.push((resource, vec![converted])),
        }
    }
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(resource, spans)| ResourceSpans {
                resource: Some(to_otlp_resource(resource)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// Number of spans in a request.
pub fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Both addresses of a span as `client -> server` (used by `--print`).
pub fn client_server(span: &HttpSpan) -> (SocketAddr, SocketAddr) {
    match span.kind {
        SpanKind::Server => (span.peer, span.local),
        SpanKind::Client => (span.local, span.peer),
    }
}

#[cfg(test)]
mod tests;
