//! `HttpSpan`s → OTLP `ExportTraceServiceRequest` protobuf bytes, written straight from the
//! spans. Building the `opentelemetry-proto` structs first cost a dozen `String`s per span
//! and more CPU than everything else the agent does; this writes the same message (the tests
//! decode it with prost and compare it with `otlp::build_request`) into reused buffers.
//!
//! Nested messages need their length before their bytes: they are written in place after room
//! for a guessed length (`nested`), moved only when the guess was wrong; attributes
//! (`KeyValue { key, AnyValue }`) have lengths known up front.
use std::{fmt::Write as _, sync::Arc};

use bytes::Bytes;
use prost::encoding::{WireType, encode_key, encoded_len_varint};

use super::otlp::{AttrSink, ConvertOptions, error_of, span_name_parts, write_attributes};
use crate::span::{
    HttpSpan, SpanKind,
    resource::{AttrValue, ProcessResource, SDK_NAME, SDK_VERSION},
};

// Field numbers (opentelemetry/proto/trace/v1/trace.proto and common.proto).
const REQUEST_RESOURCE_SPANS: u32 = 1;
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
const RESOURCE_ATTRIBUTES: u32 = 1;
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;
const SCOPE_NAME: u32 = 1;
const SCOPE_VERSION: u32 = 2;
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_TRACE_STATE: u32 = 3;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START: u32 = 7;
const SPAN_END: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_LINKS: u32 = 13;
const SPAN_STATUS: u32 = 15;
const LINK_TRACE_ID: u32 = 1;
const LINK_SPAN_ID: u32 = 2;
const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;
const KEY_VALUE_KEY: u32 = 1;
const KEY_VALUE_VALUE: u32 = 2;
const ANY_STRING: u32 = 1;
const ANY_INT: u32 = 3;
/// `SpanKind` and `StatusCode` enum values.
const KIND_SERVER: u64 = 2;
const KIND_CLIENT: u64 = 3;
const STATUS_ERROR: u64 = 2;

/// Encodes batches; keeps its scratch space between calls.
#[derive(Default)]
pub struct WireEncoder {
    text: String,
    groups: Vec<(usize, Vec<usize>)>,
    /// Size of the last request, to size the next one's buffer.
    last_len: usize,
}

impl WireEncoder {
    /// One request for `batch`: one `ResourceSpans` per process (same `Arc` or equal
    /// content), in order of first appearance, each with the single `sonde` scope.
    pub fn encode(
        &mut self,
        batch: &[(Arc<ProcessResource>, HttpSpan)],
        opts: ConvertOptions,
    ) -> Bytes {
        self.groups.clear();
        for (i, (resource, _)) in batch.iter().enumerate() {
            let found = self.groups.iter_mut().find(|(first, _)| {
                let r = &batch[*first].0;
                Arc::ptr_eq(r, resource) || **r == **resource
            });
            match found {
                Some((_, members)) => members.push(i),
                None => self.groups.push((i, vec![i])),
            }
        }
        let mut out = Vec::with_capacity(self.last_len.max(batch.len() * 512) + 256);
        let text = &mut self.text;
        for (first, members) in &self.groups {
            nested(&mut out, REQUEST_RESOURCE_SPANS, 3, |out| {
                nested(out, RESOURCE_SPANS_RESOURCE, 2, |out| {
                    put_resource(out, &batch[*first].0);
                });
                nested(out, RESOURCE_SPANS_SCOPE_SPANS, 3, |out| {
                    nested(out, SCOPE_SPANS_SCOPE, 1, put_scope);
                    for &i in members {
                        nested(out, SCOPE_SPANS_SPANS, 2, |out| {
                            encode_span(&batch[i].1, opts, out, text);
                        });
                    }
                });
            });
        }
        self.groups.clear();
        self.last_len = out.len();
        Bytes::from(out)
    }
}

/// A length-delimited field whose bytes `body` writes in place: room for a `guess`-byte
/// length is left before them and adjusted afterwards (one move of the body only when the
/// guess was wrong), so nested messages need no scratch buffer and no second copy.
fn nested(out: &mut Vec<u8>, tag: u32, guess: usize, body: impl FnOnce(&mut Vec<u8>)) {
    encode_key(tag, WireType::LengthDelimited, out);
    let at = out.len();
    out.resize(at + guess, 0);
    body(out);
    let len = out.len() - at - guess;
    let need = encoded_len_varint(len as u64);
    if need != guess {
        // Shift the body to fit the real length's size.
        if need > guess {
            out.splice(at..at, std::iter::repeat_n(0, need - guess));
        } else {
            out.drain(at..at + (guess - need));
        }
    }
    let mut v = len as u64;
    for b in &mut out[at..at + need] {
        *b = (v as u8 & 0x7f) | if v >= 0x80 { 0x80 } else { 0 };
        v >>= 7;
    }
}

/// A varint, with the common one-byte case first.
#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A field key (all tags here are below 16, so it is one byte).
#[inline]
fn put_key(out: &mut Vec<u8>, tag: u32, wire: WireType) {
    put_varint(out, u64::from(tag << 3 | wire as u32));
}

/// Bytes of a length-delimited field carrying `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    prost::encoding::key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_len_field(out: &mut Vec<u8>, tag: u32, len: usize) {
    put_key(out, tag, WireType::LengthDelimited);
    put_varint(out, len as u64);
}

fn put_bytes_field(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_len_field(out, tag, bytes.len());
    out.extend_from_slice(bytes);
}

/// A proto3 string or bytes field: left out when empty.
fn put_opt_bytes(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_bytes_field(out, tag, bytes);
    }
}

fn put_varint_field(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        put_key(out, tag, WireType::Varint);
        put_varint(out, v);
    }
}

fn put_fixed64_field(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        put_key(out, tag, WireType::SixtyFourBit);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_scope(out: &mut Vec<u8>) {
    put_opt_bytes(out, SCOPE_NAME, SDK_NAME.as_bytes());
    put_opt_bytes(out, SCOPE_VERSION, SDK_VERSION.as_bytes());
}

/// `AnyValue` bytes of a string / an int (a oneof: written even when empty or zero).
fn any_str_len(v: &str) -> usize {
    field_len(ANY_STRING, v.len())
}

fn any_int_len(v: i64) -> usize {
    prost::encoding::key_len(ANY_INT) + encoded_len_varint(v as u64)
}

fn kv_len(key: &str, any_len: usize) -> usize {
    let key_part = if key.is_empty() {
        0
    } else {
        field_len(KEY_VALUE_KEY, key.len())
    };
    key_part + field_len(KEY_VALUE_VALUE, any_len)
}

fn put_kv_str(out: &mut Vec<u8>, tag: u32, key: &str, v: &str) {
    let any = any_str_len(v);
    put_len_field(out, tag, kv_len(key, any));
    put_opt_bytes(out, KEY_VALUE_KEY, key.as_bytes());
    put_len_field(out, KEY_VALUE_VALUE, any);
    put_bytes_field(out, ANY_STRING, v.as_bytes());
}

fn put_kv_int(out: &mut Vec<u8>, tag: u32, key: &str, v: i64) {
    let any = any_int_len(v);
    put_len_field(out, tag, kv_len(key, any));
    put_opt_bytes(out, KEY_VALUE_KEY, key.as_bytes());
    put_len_field(out, KEY_VALUE_VALUE, any);
    put_key(out, ANY_INT, WireType::Varint);
    put_varint(out, v as u64);
}

fn put_resource(out: &mut Vec<u8>, resource: &ProcessResource) {
    for a in &resource.attributes {
        match &a.value {
            AttrValue::Str(s) => put_kv_str(out, RESOURCE_ATTRIBUTES, &a.key, s),
            AttrValue::Int(i) => put_kv_int(out, RESOURCE_ATTRIBUTES, &a.key, *i),
        }
    }
}

/// Span attributes written as `Span.attributes` fields.
struct SpanAttrs<'a> {
    out: &'a mut Vec<u8>,
    text: &'a mut String,
}

impl AttrSink for SpanAttrs<'_> {
    fn str(&mut self, key: &'static str, value: &str) {
        put_kv_str(self.out, SPAN_ATTRIBUTES, key, value);
    }
    fn int(&mut self, key: &'static str, value: i64) {
        put_kv_int(self.out, SPAN_ATTRIBUTES, key, value);
    }
    fn fmt(&mut self, key: &'static str, value: std::fmt::Arguments<'_>) {
        self.text.clear();
        let _ = self.text.write_fmt(value);
        put_kv_str(self.out, SPAN_ATTRIBUTES, key, self.text);
    }
    fn ip(&mut self, key: &'static str, ip: std::net::IpAddr) {
        match ip {
            // Every span has two or three of these: the formatting machinery was a visible
            // part of the export thread's time.
            std::net::IpAddr::V4(v4) => {
                self.text.clear();
                push_ipv4(self.text, v4);
                put_kv_str(self.out, SPAN_ATTRIBUTES, key, self.text);
            }
            std::net::IpAddr::V6(_) => self.fmt(key, format_args!("{ip}")),
        }
    }
}

/// Dotted-quad text of an IPv4 address, as `Ipv4Addr`'s `Display` writes it.
fn push_ipv4(out: &mut String, ip: std::net::Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

fn encode_span(span: &HttpSpan, opts: ConvertOptions, out: &mut Vec<u8>, text: &mut String) {
    put_bytes_field(out, SPAN_TRACE_ID, &span.trace_id);
    put_bytes_field(out, SPAN_SPAN_ID, &span.span_id);
    if let Some(ts) = &span.trace_state {
        put_opt_bytes(out, SPAN_TRACE_STATE, ts.as_bytes());
    }
    if let Some(parent) = &span.parent_span_id {
        put_bytes_field(out, SPAN_PARENT_SPAN_ID, parent);
    }
    let (method, route) = span_name_parts(span);
    match route {
        Some(route) => {
            put_len_field(out, SPAN_NAME, method.len() + 1 + route.len());
            out.extend_from_slice(method.as_bytes());
            out.push(b' ');
            out.extend_from_slice(route.as_bytes());
        }
        None => put_opt_bytes(out, SPAN_NAME, method.as_bytes()),
    }
    let kind = match span.kind {
        SpanKind::Server => KIND_SERVER,
        SpanKind::Client => KIND_CLIENT,
    };
    put_varint_field(out, SPAN_KIND, kind);
    put_fixed64_field(out, SPAN_START, span.start_unix_ns);
    put_fixed64_field(out, SPAN_END, span.end_unix_ns.max(span.start_unix_ns));
    write_attributes(span, opts, &mut SpanAttrs { out, text });
    for link in &span.links {
        put_len_field(
            out,
            SPAN_LINKS,
            field_len(LINK_TRACE_ID, 16) + field_len(LINK_SPAN_ID, 8),
        );
        put_bytes_field(out, LINK_TRACE_ID, &link.trace_id);
        put_bytes_field(out, LINK_SPAN_ID, &link.span_id);
    }
    // The status is always present (an empty message when unset), as prost writes it.
    match error_of(span) {
        Some((_, message)) => {
            let len = if message.is_empty() {
                0
            } else {
                field_len(STATUS_MESSAGE, message.len())
            } + prost::encoding::key_len(STATUS_CODE)
                + encoded_len_varint(STATUS_ERROR);
            put_len_field(out, SPAN_STATUS, len);
            put_opt_bytes(out, STATUS_MESSAGE, message.as_bytes());
            put_varint_field(out, STATUS_CODE, STATUS_ERROR);
        }
        None => put_len_field(out, SPAN_STATUS, 0),
    }
}

#[cfg(test)]
mod tests;
