//! `--print text|json`: one span and its process per line on stdout, for debugging without a
//! backend. JSON lines carry the same attributes the OTLP export would.
use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value},
    trace::v1::status::StatusCode,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use super::otlp::{ConvertOptions, client_server, to_otlp_resource, to_otlp_span};
use crate::span::{HttpSpan, SpanKind, resource::ProcessResource};

/// How `--print` writes spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PrintFormat {
    /// `SERVER python3[1234] GET /items/{id} 200 1.23ms 127.0.0.1:50000 -> 127.0.0.1:8000`
    Text,
    /// One JSON object per line with the OTLP fields.
    Json,
}

/// Format one span (no trailing newline).
pub fn format_span(
    format: PrintFormat,
    resource: &ProcessResource,
    span: &HttpSpan,
    opts: ConvertOptions,
) -> String {
    match format {
        PrintFormat::Text => text_line(resource, span),
        PrintFormat::Json => json_line(resource, span, opts),
    }
}

/// The one-line text form. Wire-derived strings are escaped so a hostile path cannot forge
/// extra lines or terminal escapes.
pub fn text_line(resource: &ProcessResource, span: &HttpSpan) -> String {
    let kind = match span.kind {
        SpanKind::Server => "SERVER",
        SpanKind::Client => "CLIENT",
    };
    let target = span
        .route
        .as_deref()
        .filter(|r| !r.is_empty())
        .unwrap_or(&span.path);
    let status = match (span.status_code, span.error_type.as_deref()) {
        (Some(code), Some(e)) => format!("{code} error={}", clean(e)),
        (Some(code), None) => code.to_string(),
        (None, Some(e)) => format!("error={}", clean(e)),
        (None, None) => "-".to_owned(),
    };
    let (client, server) = client_server(span);
    format!(
        "{kind} {}[{}] {} {} {status} {} {client} -> {server}",
        clean(&resource.service_name),
        span.pid,
        clean(&span.method),
        clean(target),
        duration_text(span.end_unix_ns.saturating_sub(span.start_unix_ns)),
    )
}

/// `0.05ms`, `1.23ms`, `1234.57ms`: always milliseconds, two decimals.
fn duration_text(ns: u64) -> String {
    let whole = ns / 1_000_000;
    let hundredths = (ns % 1_000_000 + 5_000) / 10_000;
    // Rounding 0.995 up carries into the whole part.
    let (whole, hundredths) = if hundredths == 100 {
        (whole + 1, 0)
    } else {
        (whole, hundredths)
    };
    format!("{whole}.{hundredths:02}ms")
}

/// Replace control characters and spaces (fields are space-separated) with escapes.
fn clean(s: &str) -> String {
    if s.is_empty() {
        return "\"\"".to_owned();
    }
    s.chars()
        .flat_map(|c| match c {
            ' ' => "%20".chars().collect::<Vec<_>>(),
            c if c.is_control() => c.escape_default().collect(),
            c => vec![c],
        })
        .collect()
}

fn attrs_json(attrs: &[KeyValue]) -> Json {
    let map: Map<String, Json> = attrs
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => Json::from(s.as_str()),
                Some(Value::IntValue(i)) => Json::from(*i),
                Some(Value::BoolValue(b)) => Json::from(*b),
                Some(Value::DoubleValue(d)) => Json::from(*d),
                _ => Json::Null,
            };
            (kv.key.clone(), v)
        })
        .collect();
    Json::Object(map)
}

/// The JSON-lines form: the OTLP span fields, ids in hex, attributes as a flat object.
pub fn json_line(resource: &ProcessResource, span: &HttpSpan, opts: ConvertOptions) -> String {
    let o = to_otlp_span(span, opts);
    let status = o.status.as_ref().map_or(0, |s| s.code);
    let status = if status == StatusCode::Error as i32 {
        "ERROR"
    } else {
        "UNSET"
    };
    let links: Vec<Json> = o
        .links
        .iter()
        .map(|l| json!({"trace_id": hex::encode(&l.trace_id), "span_id": hex::encode(&l.span_id)}))
        .collect();
    let value = json!({
        "kind": if span.kind == SpanKind::Server { "SERVER" } else { "CLIENT" },
        "name": o.name,
        "trace_id": hex::encode(&o.trace_id),
        "span_id": hex::encode(&o.span_id),
        "parent_span_id": (!o.parent_span_id.is_empty()).then(|| hex::encode(&o.parent_span_id)),
        "trace_state": (!o.trace_state.is_empty()).then_some(o.trace_state.as_str()),
        "start_time_unix_nano": o.start_time_unix_nano,
        "end_time_unix_nano": o.end_time_unix_nano,
        "duration_ns": o.end_time_unix_nano - o.start_time_unix_nano,
        "status": status,
        "attributes": attrs_json(&o.attributes),
        "links": links,
        "resource": attrs_json(&to_otlp_resource(resource).attributes),
    });
    value.to_string()
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::export::testutil::{resource, server_span};

    #[rstest]
    #[case::server(
        server_span(),
        "SERVER python3[1234] GET /items/{id} 200 1.23ms 127.0.0.1:50000 -> 127.0.0.1:8000"
    )]
    #[case::client(
        HttpSpan { kind: SpanKind::Client, route: None, local: "10.0.0.1:4000".parse().unwrap(), peer: "10.0.0.2:80".parse().unwrap(), ..server_span() },
        "CLIENT python3[1234] GET /items/42 200 1.23ms 10.0.0.1:4000 -> 10.0.0.2:80"
    )]
    #[case::no_status(
        HttpSpan { status_code: None, error_type: Some("timeout".into()), ..server_span() },
        "SERVER python3[1234] GET /items/{id} error=timeout 1.23ms 127.0.0.1:50000 -> 127.0.0.1:8000"
    )]
    #[case::status_and_error(
        HttpSpan { status_code: Some(200), error_type: Some("connection_closed".into()), ..server_span() },
        "SERVER python3[1234] GET /items/{id} 200 error=connection_closed 1.23ms 127.0.0.1:50000 -> 127.0.0.1:8000"
    )]
    #[case::nothing(
        HttpSpan { status_code: None, route: None, ..server_span() },
        "SERVER python3[1234] GET /items/42 - 1.23ms 127.0.0.1:50000 -> 127.0.0.1:8000"
    )]
    #[case::hostile_path(
        HttpSpan { route: None, path: "/a b\n\x1b[31m".into(), ..server_span() },
        "SERVER python3[1234] GET /a%20b\\n\\u{1b}[31m 200 1.23ms 127.0.0.1:50000 -> 127.0.0.1:8000"
    )]
    #[case::empty_path(
        HttpSpan { route: None, path: String::new(), ..server_span() },
        "SERVER python3[1234] GET \"\" 200 1.23ms 127.0.0.1:50000 -> 127.0.0.1:8000"
    )]
    #[case::end_before_start(
        HttpSpan { end_unix_ns: 0, ..server_span() },
        "SERVER python3[1234] GET /items/{id} 200 0.00ms 127.0.0.1:50000 -> 127.0.0.1:8000"
    )]
    #[case::ipv6(
        HttpSpan { local: "[::1]:8000".parse().unwrap(), peer: "[::1]:5".parse().unwrap(), ..server_span() },
        "SERVER python3[1234] GET /items/{id} 200 1.23ms [::1]:5 -> [::1]:8000"
    )]
    fn text(#[case] span: HttpSpan, #[case] want: &str) {
        assert_eq!(text_line(&resource(1234, "python3"), &span), want);
    }

    #[rstest]
    #[case::zero(0, "0.00ms")]
    #[case::tiny(4_999, "0.00ms")]
    #[case::rounds_up(5_000, "0.01ms")]
    #[case::typical(1_234_567, "1.23ms")]
    #[case::carry(999_999, "1.00ms")]
    #[case::seconds(1_234_567_890, "1234.57ms")]
    #[case::max(u64::MAX, "18446744073709.55ms")]
    fn durations(#[case] ns: u64, #[case] want: &str) {
        assert_eq!(duration_text(ns), want);
    }

    #[test]
    fn json_has_otlp_fields() {
        let mut span = server_span();
        span.parent_span_id = Some([0xab; 8]);
        span.status_code = Some(500);
        let line = json_line(&resource(1234, "python3"), &span, ConvertOptions::default());
        assert!(!line.contains('\n'));
        let v: Json = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "SERVER");
        assert_eq!(v["name"], "GET /items/{id}");
        assert_eq!(v["trace_id"], "11".repeat(16));
        assert_eq!(v["span_id"], "22".repeat(8));
        assert_eq!(v["parent_span_id"], "ab".repeat(8));
        assert_eq!(v["trace_state"], Json::Null);
        assert_eq!(v["duration_ns"], 1_230_000);
        assert_eq!(v["status"], "ERROR");
        assert_eq!(v["attributes"]["http.response.status_code"], 500);
        assert_eq!(v["attributes"]["error.type"], "500");
        assert_eq!(v["attributes"]["url.path"], "/items/42");
        assert_eq!(v["attributes"].get("url.query"), None);
        assert_eq!(v["resource"]["service.name"], "python3");
        assert_eq!(v["resource"]["process.pid"], 1234);
        let with_query = json_line(
            &resource(1, "x"),
            &server_span(),
            ConvertOptions { export_query: true },
        );
        let v: Json = serde_json::from_str(&with_query).unwrap();
        assert_eq!(v["attributes"]["url.query"], "q=1");
        assert_eq!(
            format_span(
                PrintFormat::Json,
                &resource(1, "x"),
                &server_span(),
                ConvertOptions { export_query: true }
            ),
            with_query
        );
    }
}
