//! A read-only view of one trace in search form, with what search results need: root span,
//! time range, service stats, and Tempo's `tags=` matching.
use crate::{
    ids::TraceId,
    rows::{Attr, NO_SYM, STATUS_ERROR, STATUS_OK, STATUS_UNSET, SpanRow, Table, Val},
};

/// One trace: the table its rows point into and its span rows.
#[derive(Clone, Copy)]
pub struct TraceRef<'a> {
    pub table: &'a Table,
    pub id: &'a TraceId,
    pub spans: &'a [SpanRow],
}

/// Per-service counts for `serviceStats`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceStats {
    pub span_count: u32,
    pub error_count: u32,
}

impl<'a> TraceRef<'a> {
    pub fn start(&self) -> u64 {
        self.spans.iter().map(|s| s.start).min().unwrap_or(0)
    }

    pub fn end(&self) -> u64 {
        self.spans.iter().map(|s| s.end).max().unwrap_or(0)
    }

    /// The root span: no parent; failing that, the earliest span whose parent is absent.
    pub fn root(&self) -> Option<&'a SpanRow> {
        self.spans.iter().find(|s| s.parent_id == [0u8; 8])
    }

    pub fn str(&self, sym: u32) -> &'a str {
        self.table.dict.get(sym)
    }

    pub fn service_of(&self, s: &SpanRow) -> Option<&'a str> {
        let r = self.table.resources.get(s.resource as usize)?;
        if r.service == NO_SYM {
            None
        } else {
            Some(self.str(r.service))
        }
    }

    pub fn root_service(&self) -> Option<&'a str> {
        self.root().and_then(|r| self.service_of(r))
    }

    pub fn root_name(&self) -> Option<&'a str> {
        self.root().map(|r| self.str(r.name))
    }

    pub fn span_attrs(&self, s: &SpanRow) -> &'a [Attr] {
        &self.table.attrs[s.attrs.range()]
    }

    /// Attributes of the span's instrumentation scope.
    pub fn scope_attrs(&self, s: &SpanRow) -> &'a [Attr] {
        match self.table.scopes.get(s.scope as usize) {
            Some(sc) => &self.table.attrs[sc.attrs.range()],
            None => &[],
        }
    }

    pub fn resource_attrs(&self, s: &SpanRow) -> &'a [Attr] {
        match self.table.resources.get(s.resource as usize) {
            Some(r) => &self.table.attrs[r.attrs.range()],
            None => &[],
        }
    }

    /// Service stats sorted by service name.
    pub fn service_stats(&self) -> Vec<(&'a str, ServiceStats)> {
        let mut out: Vec<(&'a str, ServiceStats)> = Vec::new();
        for s in self.spans {
            let name = self.service_of(s).unwrap_or("");
            let idx = match out.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    out.push((name, ServiceStats::default()));
                    out.len() - 1
                }
            };
            out[idx].1.span_count += 1;
            if s.status == STATUS_ERROR {
                out[idx].1.error_count += 1;
            }
        }
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Every value of `key` (several for an array attribute).
    fn attr_vals<'k>(&self, attrs: &'k [Attr], key: &'k str) -> impl Iterator<Item = Val> + 'k
    where
        'a: 'k,
    {
        let dict = &self.table.dict;
        attrs
            .iter()
            .filter(move |a| dict.get(a.key) == key)
            .map(|a| a.val)
    }

    /// Whether some string value of `key` satisfies `test`.
    fn any_str(&self, attrs: &[Attr], key: &str, test: impl Fn(&str) -> bool) -> bool {
        self.attr_vals(attrs, key).any(|v| match v {
            Val::Str(s) => test(self.str(s)),
            _ => false,
        })
    }

    /// Does the trace satisfy one `tags=` condition, with Tempo's semantics?
    pub fn matches_tag(&self, key: &str, value: &str) -> bool {
        const SUBSTRING_SPAN: &[&str] = &["http.method", "http.url", "http.route"];
        const SUBSTRING_RES: &[&str] = &[
            "service.name",
            "cluster",
            "namespace",
            "pod",
            "container",
            "k8s.cluster.name",
            "k8s.namespace.name",
            "k8s.pod.name",
            "k8s.container.name",
        ];
        match key {
            "name" => self.spans.iter().any(|s| self.str(s.name).contains(value)),
            "root.name" => self.root_name().is_some_and(|n| n.contains(value)),
            "root.service.name" => self.root_service().is_some_and(|n| n.contains(value)),
            "status.code" => {
                let want = match value {
                    "ok" => STATUS_OK,
                    "error" => STATUS_ERROR,
                    "unset" => STATUS_UNSET,
                    _ => return false,
                };
                self.spans.iter().any(|s| s.status == want)
            }
            "http.status_code" if value.parse::<i64>().is_ok() => {
                let want = value.parse::<i64>().unwrap_or_default();
                self.spans.iter().any(|s| {
                    self.attr_vals(self.span_attrs(s), key)
                        .any(|v| v == Val::Int(want))
                })
            }
            k if SUBSTRING_RES.contains(&k) => self
                .spans
                .iter()
                .any(|s| self.any_str(self.resource_attrs(s), k, |v| v.contains(value))),
            k if SUBSTRING_SPAN.contains(&k) => self
                .spans
                .iter()
                .any(|s| self.any_str(self.span_attrs(s), k, |v| v.contains(value))),
            // Any element of an array attribute may match.
            k => self.spans.iter().any(|s| {
                [self.span_attrs(s), self.resource_attrs(s)]
                    .iter()
                    .any(|attrs| {
                        self.attr_vals(attrs, k).any(|v| match v {
                            Val::Str(sym) => self.str(sym) == value,
                            Val::Int(i) => value.parse::<i64>() == Ok(i),
                            Val::Bool(b) => value.parse::<bool>() == Ok(b),
                            Val::Float(_) => false,
                        })
                    })
            }),
        }
    }
}

/// Render a stored value as a string (for v1 tag values).
pub fn val_string(table: &Table, v: Val) -> String {
    match v {
        Val::Str(s) => table.dict.get(s).to_string(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => f.to_string(),
        Val::Bool(b) => b.to_string(),
    }
}

/// Tempo's type name for a stored value (v2 tag values).
pub fn val_type(v: Val) -> &'static str {
    match v {
        Val::Str(_) => "string",
        Val::Int(_) => "int",
        Val::Float(_) => "float",
        Val::Bool(_) => "bool",
    }
}
