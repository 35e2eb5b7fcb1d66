//! The store's search form of spans: dictionary-encoded rows that search, tag lookups and
//! TraceQL read without decoding whole OTLP traces. Live data and block row groups share it.
use super::hash::FastMap;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    resource::v1::Resource,
    trace::v1::Span,
};

use super::ids::{SpanId, TraceId};

/// Marks an absent string.
pub const NO_SYM: u32 = u32::MAX;

/// A typed attribute value; strings are symbols in the table's dictionary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    Str(u32),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// One attribute (key symbol + value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attr {
    pub key: u32,
    pub val: Val,
}

/// A `start..start+len` range into one of the table's vectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range32 {
    pub start: u32,
    pub len: u32,
}

impl Range32 {
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// A resource: its attributes and the `service.name` symbol (or `NO_SYM`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceRow {
    pub attrs: Range32,
    pub service: u32,
}

/// An instrumentation scope.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScopeRow {
    pub name: u32,
    pub version: u32,
    pub attrs: Range32,
}

/// A span event: name, time since the span started, attributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRow {
    pub name: u32,
    pub since_start: u64,
    pub attrs: Range32,
}

/// A span link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkRow {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub attrs: Range32,
}

/// Status codes as stored (OTLP numbering).
pub const STATUS_UNSET: u8 = 0;
pub const STATUS_OK: u8 = 1;
pub const STATUS_ERROR: u8 = 2;

/// One span in search form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanRow {
    pub span_id: SpanId,
    pub parent_id: SpanId,
    pub start: u64,
    pub end: u64,
    pub name: u32,
    pub status_msg: u32,
    pub resource: u32,
    pub scope: u32,
    pub attrs: Range32,
    pub events: Range32,
    pub links: Range32,
    pub kind: u8,
    pub status: u8,
}

impl SpanRow {
    pub fn duration(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
}

/// String dictionary; the index is kept only while the table is being built.
#[derive(Debug, Default, Clone)]
pub struct Dict {
    pub strings: Vec<Box<str>>,
    index: FastMap<Box<str>, u32>,
}

impl Dict {
    pub fn get(&self, sym: u32) -> &str {
        self.strings.get(sym as usize).map(|s| &**s).unwrap_or("")
    }

    pub fn opt(&self, sym: u32) -> Option<&str> {
        self.strings.get(sym as usize).map(|s| &**s)
    }

    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.strings.len() as u32;
        self.strings.push(s.into());
        self.index.insert(s.into(), i);
        i
    }

    /// Build from decoded strings (no interning afterwards).
    pub fn from_strings(strings: Vec<Box<str>>) -> Self {
        Self {
            strings,
            index: FastMap::default(),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.strings.iter().map(|s| s.len() * 2 + 48).sum()
    }
}

/// Tells live tables apart. A table's address is no identity: the next table decoded into the
/// same place (a compaction cursor moving to its next row group) has it too, and symbols
/// remapped for the old one must not be applied to the new one. A clone is another table.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TableUid(u64);

impl Default for TableUid {
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        TableUid(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl Clone for TableUid {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Everything spans point at: dictionary, attributes, resources, scopes, events, links.
#[derive(Debug, Default, Clone)]
pub struct Table {
    pub dict: Dict,
    pub attrs: Vec<Attr>,
    pub resources: Vec<ResourceRow>,
    pub scopes: Vec<ScopeRow>,
    pub events: Vec<EventRow>,
    pub links: Vec<LinkRow>,
    res_index: FastMap<Vec<u8>, u32>,
    scope_index: FastMap<Vec<u8>, u32>,
    uid: TableUid,
}

pub(crate) fn render_any(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::ArrayValue(a)) => {
            let parts: Vec<String> = a.values.iter().map(render_any).collect();
            format!("[{}]", parts.join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let parts: Vec<String> = kv
                .values
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        k.key,
                        k.value.as_ref().map(render_any).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Some(any_value::Value::BytesValue(b)) => hex::encode(b),
        Some(any_value::Value::StringValueStrindex(i)) => i.to_string(),
        None => String::new(),
    }
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    /// Assemble a (read-only) table from decoded parts.
    pub fn from_parts(
        dict: Dict,
        attrs: Vec<Attr>,
        resources: Vec<ResourceRow>,
        scopes: Vec<ScopeRow>,
        events: Vec<EventRow>,
        links: Vec<LinkRow>,
    ) -> Self {
        Self {
            dict,
            attrs,
            resources,
            scopes,
            events,
            links,
            ..Self::default()
        }
    }

    pub fn intern(&mut self, s: &str) -> u32 {
        self.dict.intern(s)
    }

    /// This table's identity while it lives (see [`TableUid`]).
    pub fn uid(&self) -> u64 {
        self.uid.0
    }

    fn value(&mut self, v: &AnyValue) -> Option<Val> {
        Some(match v.value.as_ref()? {
            any_value::Value::StringValue(s) => Val::Str(self.intern(s)),
            any_value::Value::BoolValue(b) => Val::Bool(*b),
            any_value::Value::IntValue(i) => Val::Int(*i),
            any_value::Value::DoubleValue(d) => Val::Float(*d),
            _ => Val::Str(self.intern(&render_any(v))),
        })
    }

    fn add_attrs(&mut self, kvs: &[KeyValue]) -> Range32 {
        let start = self.attrs.len() as u32;
        for kv in kvs {
            let Some(v) = kv.value.as_ref() else {
                continue;
            };
            // An array is kept as one attribute per element under the same key, so that TraceQL
            // compares each element and tag lookups list them (Tempo's array attributes).
            let elements = match &v.value {
                Some(any_value::Value::ArrayValue(a)) => a.values.as_slice(),
                _ => std::slice::from_ref(v),
            };
            for e in elements {
                let Some(val) = self.value(e) else {
                    continue;
                };
                let key = self.intern(&kv.key);
                self.attrs.push(Attr { key, val });
            }
        }
        Range32 {
            start,
            len: self.attrs.len() as u32 - start,
        }
    }

    /// Add (or find) a resource; `key` is its encoded form, used to de-duplicate.
    pub fn add_resource(&mut self, res: Option<&Resource>, key: &[u8]) -> u32 {
        if let Some(&i) = self.res_index.get(key) {
            return i;
        }
        let attrs = res
            .map(|r| self.add_attrs(&r.attributes))
            .unwrap_or_default();
        let service = self.attrs[attrs.range()]
            .iter()
            .find(|a| self.dict.get(a.key) == "service.name")
            .and_then(|a| {
                if let Val::Str(s) = a.val {
                    Some(s)
                } else {
                    None
                }
            })
            .unwrap_or(NO_SYM);
        let i = self.resources.len() as u32;
        self.resources.push(ResourceRow { attrs, service });
        self.res_index.insert(key.to_vec(), i);
        i
    }

    /// Add (or find) an instrumentation scope; `key` is its encoded form.
    pub fn add_scope(&mut self, scope: Option<&InstrumentationScope>, key: &[u8]) -> u32 {
        if let Some(&i) = self.scope_index.get(key) {
            return i;
        }
        let row = match scope {
            Some(s) => {
                let name = self.intern(&s.name);
                let version = self.intern(&s.version);
                let attrs = self.add_attrs(&s.attributes);
                ScopeRow {
                    name,
                    version,
                    attrs,
                }
            }
            None => {
                let e = self.intern("");
                ScopeRow {
                    name: e,
                    version: e,
                    attrs: Range32::default(),
                }
            }
        };
        let i = self.scopes.len() as u32;
        self.scopes.push(row);
        self.scope_index.insert(key.to_vec(), i);
        i
    }

    /// Convert one OTLP span (ids already checked) into a row.
    pub fn add_span(&mut self, s: &Span, resource: u32, scope: u32) -> SpanRow {
        let mut span_id = [0u8; 8];
        if s.span_id.len() == 8 {
            span_id.copy_from_slice(&s.span_id);
        }
        let mut parent_id = [0u8; 8];
        if s.parent_span_id.len() == 8 {
            parent_id.copy_from_slice(&s.parent_span_id);
        }
        let name = self.intern(&s.name);
        let (status, status_msg) = match &s.status {
            Some(st) => (
                st.code.clamp(0, 2) as u8,
                if st.message.is_empty() {
                    NO_SYM
                } else {
                    self.intern(&st.message)
                },
            ),
            None => (STATUS_UNSET, NO_SYM),
        };
        let attrs = self.add_attrs(&s.attributes);
        let ev_start = self.events.len() as u32;
        for e in &s.events {
            let name = self.intern(&e.name);
            let attrs = self.add_attrs(&e.attributes);
            let since_start = e.time_unix_nano.saturating_sub(s.start_time_unix_nano);
            self.events.push(EventRow {
                name,
                since_start,
                attrs,
            });
        }
        let events = Range32 {
            start: ev_start,
            len: self.events.len() as u32 - ev_start,
        };
        let ln_start = self.links.len() as u32;
        for l in &s.links {
            let mut trace_id = [0u8; 16];
            let mut lspan = [0u8; 8];
            if l.trace_id.len() == 16 {
                trace_id.copy_from_slice(&l.trace_id);
            }
            if l.span_id.len() == 8 {
                lspan.copy_from_slice(&l.span_id);
            }
            let attrs = self.add_attrs(&l.attributes);
            self.links.push(LinkRow {
                trace_id,
                span_id: lspan,
                attrs,
            });
        }
        let links = Range32 {
            start: ln_start,
            len: self.links.len() as u32 - ln_start,
        };
        SpanRow {
            span_id,
            parent_id,
            start: s.start_time_unix_nano,
            end: s.end_time_unix_nano.max(s.start_time_unix_nano),
            name,
            status_msg,
            resource,
            scope,
            attrs,
            events,
            links,
            kind: s.kind.clamp(0, 5) as u8,
            status,
        }
    }

    /// Approximate heap use, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.dict.heap_bytes()
            + self.attrs.len() * size_of::<Attr>()
            + self.resources.len() * 64
            + self.scopes.len() * 64
            + self.events.len() * size_of::<EventRow>()
            + self.links.len() * size_of::<LinkRow>()
    }
}

/// Copies rows from one table into another, remapping symbols and de-duplicating resources
/// and scopes. One cache per (source, destination) pair.
#[derive(Debug, Default)]
pub struct Remap {
    syms: FastMap<u32, u32>,
    res: FastMap<u32, u32>,
    scopes: FastMap<u32, u32>,
}

impl Remap {
    pub fn new() -> Self {
        Self::default()
    }

    fn sym(&mut self, src: &Table, dst: &mut Table, s: u32) -> u32 {
        if s == NO_SYM {
            return NO_SYM;
        }
        *self
            .syms
            .entry(s)
            .or_insert_with(|| dst.dict.intern(src.dict.get(s)))
    }

    fn attrs(&mut self, src: &Table, dst: &mut Table, r: Range32) -> Range32 {
        let start = dst.attrs.len() as u32;
        for a in &src.attrs[r.range()] {
            let key = self.sym(src, dst, a.key);
            let val = match a.val {
                Val::Str(s) => Val::Str(self.sym(src, dst, s)),
                v => v,
            };
            dst.attrs.push(Attr { key, val });
        }
        Range32 { start, len: r.len }
    }

    /// Copy one span row (and what it points at) from `src` into `dst`.
    pub fn span(&mut self, src: &Table, dst: &mut Table, row: &SpanRow) -> SpanRow {
        let resource = match self.res.get(&row.resource) {
            Some(&r) => r,
            None => match src.resources.get(row.resource as usize) {
                Some(src_res) => {
                    let attrs = self.attrs(src, dst, src_res.attrs);
                    let service = self.sym(src, dst, src_res.service);
                    let i = dst.resources.len() as u32;
                    dst.resources.push(ResourceRow { attrs, service });
                    self.res.insert(row.resource, i);
                    i
                }
                None => NO_SYM,
            },
        };
        let scope = match self.scopes.get(&row.scope) {
            Some(&r) => r,
            None => match src.scopes.get(row.scope as usize) {
                Some(s) => {
                    let name = self.sym(src, dst, s.name);
                    let version = self.sym(src, dst, s.version);
                    let attrs = self.attrs(src, dst, s.attrs);
                    let i = dst.scopes.len() as u32;
                    dst.scopes.push(ScopeRow {
                        name,
                        version,
                        attrs,
                    });
                    self.scopes.insert(row.scope, i);
                    i
                }
                None => NO_SYM,
            },
        };
        let attrs = self.attrs(src, dst, row.attrs);
        let ev_start = dst.events.len() as u32;
        for i in row.events.range() {
            let e = src.events[i];
            let name = self.sym(src, dst, e.name);
            let attrs = self.attrs(src, dst, e.attrs);
            dst.events.push(EventRow {
                name,
                since_start: e.since_start,
                attrs,
            });
        }
        let ln_start = dst.links.len() as u32;
        for i in row.links.range() {
            let l = src.links[i];
            let attrs = self.attrs(src, dst, l.attrs);
            dst.links.push(LinkRow {
                trace_id: l.trace_id,
                span_id: l.span_id,
                attrs,
            });
        }
        SpanRow {
            name: self.sym(src, dst, row.name),
            status_msg: self.sym(src, dst, row.status_msg),
            resource,
            scope,
            attrs,
            events: Range32 {
                start: ev_start,
                len: row.events.len,
            },
            links: Range32 {
                start: ln_start,
                len: row.links.len,
            },
            ..*row
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{AnyValue, KeyValue, any_value::Value},
        resource::v1::Resource,
        trace::v1::{Span, Status, span::Event},
    };

    use super::*;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn span_rows_keep_attributes_and_remap_into_another_table() {
        let mut t = Table::new();
        let res = Resource {
            attributes: vec![kv("service.name", Value::StringValue("svc".into()))],
            ..Default::default()
        };
        let r = t.add_resource(Some(&res), b"k1");
        assert_eq!(
            t.add_resource(Some(&res), b"k1"),
            r,
            "resources de-duplicate"
        );
        let sc = t.add_scope(None, b"");
        let span = Span {
            span_id: vec![1; 8],
            name: "GET /x".into(),
            start_time_unix_nano: 10,
            end_time_unix_nano: 25,
            kind: 2,
            attributes: vec![
                kv("http.status_code", Value::IntValue(500)),
                kv("ok", Value::BoolValue(true)),
                kv("ratio", Value::DoubleValue(0.5)),
                kv("empty", Value::StringValue(String::new())),
            ],
            events: vec![Event {
                time_unix_nano: 12,
                name: "exception".into(),
                ..Default::default()
            }],
            status: Some(Status {
                code: 2,
                message: "boom".into(),
            }),
            ..Default::default()
        };
        let row = t.add_span(&span, r, sc);
        assert_eq!(
            (row.duration(), row.kind, row.status),
            (15, 2, STATUS_ERROR)
        );
        assert_eq!(t.dict.get(row.status_msg), "boom");
        assert_eq!(t.attrs[row.attrs.range()][0].val, Val::Int(500));
        assert_eq!(t.events[row.events.range()][0].since_start, 2);

        let mut dst = Table::new();
        dst.intern("unrelated");
        let mut m = Remap::new();
        let copied = m.span(&t, &mut dst, &row);
        assert_eq!(dst.dict.get(copied.name), "GET /x");
        assert_eq!(
            dst.dict
                .get(dst.resources[copied.resource as usize].service),
            "svc"
        );
        let keys: Vec<&str> = dst.attrs[copied.attrs.range()]
            .iter()
            .map(|a| dst.dict.get(a.key))
            .collect();
        assert_eq!(keys, vec!["http.status_code", "ok", "ratio", "empty"]);
        assert_eq!(
            dst.dict.get(dst.events[copied.events.range()][0].name),
            "exception"
        );
        let again = m.span(&t, &mut dst, &row);
        assert_eq!(again.resource, copied.resource);
    }

    #[test]
    fn missing_status_and_out_of_range_kind() {
        let mut t = Table::new();
        let span = Span {
            kind: 99,
            end_time_unix_nano: 0,
            start_time_unix_nano: 5,
            ..Default::default()
        };
        let row = t.add_span(&span, 0, 0);
        assert_eq!(
            (row.kind, row.status, row.status_msg, row.end),
            (5, STATUS_UNSET, NO_SYM, 5)
        );
    }
}
