//! `TraceView` for TraceQL over the store's search form: the evaluator reads rows, never OTLP.
use std::{borrow::Cow, cell::OnceCell};

use crate::{
    hash::FastMap,
    ids::SpanId,
    query::view::TraceRef,
    rows::{Attr, NO_SYM, STATUS_ERROR, STATUS_OK, Val},
};
use sonde_traceql::{AttrScope, Intrinsic, KindValue, StatusValue, TraceView, Value};

/// A trace as the TraceQL evaluator sees it.
pub struct QlTrace<'a> {
    pub t: TraceRef<'a>,
    parents: OnceCell<Vec<Option<usize>>>,
}

impl<'a> QlTrace<'a> {
    pub fn new(t: TraceRef<'a>) -> Self {
        Self {
            t,
            parents: OnceCell::new(),
        }
    }

    fn parents(&self) -> &[Option<usize>] {
        self.parents.get_or_init(|| {
            let spans = self.t.spans;
            if spans.len() <= 16 {
                return spans
                    .iter()
                    .map(|s| {
                        if s.parent_id == [0; 8] {
                            None
                        } else {
                            spans.iter().position(|p| p.span_id == s.parent_id)
                        }
                    })
                    .collect();
            }
            let by_id: FastMap<SpanId, usize> = spans
                .iter()
                .enumerate()
                .map(|(i, s)| (s.span_id, i))
                .collect();
            spans
                .iter()
                .map(|s| {
                    if s.parent_id == [0; 8] {
                        None
                    } else {
                        by_id.get(&s.parent_id).copied()
                    }
                })
                .collect()
        })
    }
}

/// A stored value as a TraceQL value.
pub fn to_value<'a>(t: &TraceRef<'a>, v: Val) -> Value<'a> {
    match v {
        Val::Str(s) => Value::Str(Cow::Borrowed(t.str(s))),
        Val::Int(i) => Value::Int(i),
        Val::Float(f) => Value::Float(f),
        Val::Bool(b) => Value::Bool(b),
    }
}

pub fn status_value(code: u8) -> StatusValue {
    match code {
        STATUS_OK => StatusValue::Ok,
        STATUS_ERROR => StatusValue::Error,
        _ => StatusValue::Unset,
    }
}

pub fn kind_value(kind: u8) -> KindValue {
    match kind {
        1 => KindValue::Internal,
        2 => KindValue::Server,
        3 => KindValue::Client,
        4 => KindValue::Producer,
        5 => KindValue::Consumer,
        _ => KindValue::Unspecified,
    }
}

impl TraceView for QlTrace<'_> {
    fn span_count(&self) -> usize {
        self.t.spans.len()
    }

    fn attribute(&self, span: usize, scope: AttrScope, name: &str) -> Option<Value<'_>> {
        let s = self.t.spans.get(span)?;
        let attrs = match scope {
            AttrScope::Span => self.t.span_attrs(s),
            AttrScope::Resource => self.t.resource_attrs(s),
            AttrScope::Instrumentation => self.t.scope_attrs(s),
            AttrScope::Event | AttrScope::Link => {
                return self.attribute_values(span, scope, name).into_iter().next();
            }
        };
        attrs
            .iter()
            .find(|a| self.t.str(a.key) == name)
            .map(|a| to_value(&self.t, a.val))
    }

    fn attribute_values(&self, span: usize, scope: AttrScope, name: &str) -> Vec<Value<'_>> {
        let Some(s) = self.t.spans.get(span) else {
            return Vec::new();
        };
        let pick = |attrs: &[Attr]| {
            attrs
                .iter()
                .filter(|a| self.t.str(a.key) == name)
                .map(|a| to_value(&self.t, a.val))
                .collect::<Vec<_>>()
        };
        let table = self.t.table;
        match scope {
            AttrScope::Span => pick(self.t.span_attrs(s)),
            AttrScope::Resource => pick(self.t.resource_attrs(s)),
            AttrScope::Instrumentation => pick(self.t.scope_attrs(s)),
            AttrScope::Event => table.events[s.events.range()]
                .iter()
                .flat_map(|e| pick(&table.attrs[e.attrs.range()]))
                .collect(),
            AttrScope::Link => table.links[s.links.range()]
                .iter()
                .flat_map(|l| pick(&table.attrs[l.attrs.range()]))
                .collect(),
        }
    }

    fn intrinsic_values(&self, span: usize, which: Intrinsic) -> Vec<Value<'_>> {
        let Some(s) = self.t.spans.get(span) else {
            return Vec::new();
        };
        let table = self.t.table;
        match which {
            Intrinsic::EventName => self.event_names(span).into_iter().map(Value::Str).collect(),
            Intrinsic::EventTimeSinceStart => table.events[s.events.range()]
                .iter()
                .map(|e| Value::Duration(e.since_start))
                .collect(),
            Intrinsic::LinkTraceId => table.links[s.links.range()]
                .iter()
                .map(|l| Value::Str(Cow::Owned(hex::encode(l.trace_id))))
                .collect(),
            Intrinsic::LinkSpanId => table.links[s.links.range()]
                .iter()
                .map(|l| Value::Str(Cow::Owned(hex::encode(l.span_id))))
                .collect(),
            other => self.intrinsic(span, other).into_iter().collect(),
        }
    }

    fn intrinsic(&self, span: usize, which: Intrinsic) -> Option<Value<'_>> {
        let s = self.t.spans.get(span)?;
        let scope = self.t.table.scopes.get(s.scope as usize);
        Some(match which {
            Intrinsic::Name => Value::Str(Cow::Borrowed(self.t.str(s.name))),
            Intrinsic::Status => Value::Status(status_value(s.status)),
            Intrinsic::StatusMessage => Value::Str(Cow::Borrowed(if s.status_msg == NO_SYM {
                ""
            } else {
                self.t.str(s.status_msg)
            })),
            Intrinsic::Kind => Value::Kind(kind_value(s.kind)),
            Intrinsic::Duration => Value::Duration(s.duration()),
            Intrinsic::SpanId => Value::Str(Cow::Owned(hex::encode(s.span_id))),
            Intrinsic::TraceId => Value::Str(Cow::Owned(hex::encode(self.t.id))),
            Intrinsic::ParentId if s.parent_id != [0; 8] => {
                Value::Str(Cow::Owned(hex::encode(s.parent_id)))
            }
            Intrinsic::InstrumentationName => Value::Str(Cow::Borrowed(self.t.str(scope?.name))),
            Intrinsic::InstrumentationVersion => {
                Value::Str(Cow::Borrowed(self.t.str(scope?.version)))
            }
            _ => return None,
        })
    }

    fn parent_index(&self, span: usize) -> Option<usize> {
        self.parents().get(span).copied().flatten()
    }

    fn start_unix_nanos(&self, span: usize) -> u64 {
        self.t.spans.get(span).map_or(0, |s| s.start)
    }

    fn end_unix_nanos(&self, span: usize) -> u64 {
        self.t.spans.get(span).map_or(0, |s| s.end)
    }

    fn is_root(&self, span: usize) -> bool {
        self.t
            .spans
            .get(span)
            .is_some_and(|s| s.parent_id == [0; 8])
    }

    fn resource_key(&self, span: usize) -> Option<(u64, u32)> {
        // Tables are never given another's uid, and a table's resources never change.
        Some((self.t.table.uid(), self.t.spans.get(span)?.resource))
    }

    fn for_each_attribute(&self, span: usize, f: &mut dyn FnMut(AttrScope, &str, Value<'_>)) {
        let Some(s) = self.t.spans.get(span) else {
            return;
        };
        for (scope, attrs) in [
            (AttrScope::Resource, self.t.resource_attrs(s)),
            (AttrScope::Span, self.t.span_attrs(s)),
            (AttrScope::Instrumentation, self.t.scope_attrs(s)),
        ] {
            for a in attrs {
                f(scope, self.t.str(a.key), to_value(&self.t, a.val));
            }
        }
    }

    fn event_names(&self, span: usize) -> Vec<Cow<'_, str>> {
        let Some(s) = self.t.spans.get(span) else {
            return Vec::new();
        };
        self.t.table.events[s.events.range()]
            .iter()
            .map(|e| Cow::Borrowed(self.t.str(e.name)))
            .collect()
    }
}
