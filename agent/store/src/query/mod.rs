//! Queries over one or more tenants: trace by id (live → pending → blocks, merged) and search
//! (newest data first, stopping at the limit) with `tags=` or TraceQL filters, over the
//! trace [`view`] and its TraceQL [`traceql_view`].
pub mod budget;
pub mod metrics;
pub mod scan;
#[cfg(test)]
mod span_set_tests;
pub mod traceql_view;
pub mod view;

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex},
};

use super::{
    Store, StoreError,
    block::{Block, group::Group},
    hash::FastMap,
    ids::TraceId,
    query::traceql_view::QlTrace,
    query::view::{ServiceStats, TraceRef},
    rows::{SpanRow, Table},
    tenant::Tenant,
};
use budget::{Budget, QueryError};
use sonde_traceql::{self as traceql, ConditionField, Intrinsic};

/// Live traces evaluated per hold of the tenant's live lock, so ingest is never held up for
/// longer than a few traces' evaluation by a long search.
const LIVE_CHUNK: usize = 64;

/// Decoded search row groups, shared between queries, bounded by bytes.
pub struct GroupCache {
    max_bytes: usize,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    map: FastMap<(String, usize), (Arc<Group>, usize)>,
    order: VecDeque<(String, usize)>,
    bytes: usize,
}

impl GroupCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::new(CacheState::default()),
        }
    }

    pub fn get(&self, b: &Block, gi: usize) -> Result<Arc<Group>, StoreError> {
        let key = (b.meta.id.clone(), gi);
        if let Some((g, _)) = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .get(&key)
        {
            return Ok(g.clone());
        }
        let g = Arc::new(b.read_group(gi)?);
        let size = g.heap_bytes();
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if size <= self.max_bytes && !st.map.contains_key(&key) {
            while st.bytes + size > self.max_bytes {
                let Some(old) = st.order.pop_front() else {
                    break;
                };
                if let Some((_, sz)) = st.map.remove(&old) {
                    st.bytes -= sz;
                }
            }
            st.map.insert(key.clone(), (g.clone(), size));
            st.order.push_back(key);
            st.bytes += size;
        }
        Ok(g)
    }
}

/// How traces are filtered.
pub enum Filter {
    /// Tempo's `tags=` search (logfmt pairs).
    Tags(Vec<(String, String)>),
    /// A TraceQL query.
    TraceQl(traceql::Query),
}

/// A search to run.
pub struct SearchSpec {
    pub filter: Filter,
    pub min_duration_ns: Option<u64>,
    pub max_duration_ns: Option<u64>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub limit: usize,
    /// Spans per span set (0 = all).
    pub spss: usize,
}

/// A value to print in search results.
#[derive(Debug, Clone, PartialEq)]
pub enum OutVal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// One span of a span set.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanHit {
    pub span_id: [u8; 8],
    pub name: Option<String>,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub attrs: Vec<(String, OutVal)>,
}

/// One trace in search results.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceHit {
    pub id: TraceId,
    pub root_service: Option<String>,
    pub root_name: Option<String>,
    pub start_ns: u64,
    pub duration_ns: u64,
    /// The span sets of a TraceQL search (one, or one per `by()` group); none for `tags=`.
    pub span_sets: Vec<SpanSetHit>,
    pub service_stats: Vec<(String, ServiceStats)>,
}

/// One span set of a search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanSetHit {
    /// The first spans of the set (at most the search's spans per span set).
    pub spans: Vec<SpanHit>,
    /// How many spans the set has.
    pub matched: usize,
    /// What the pipeline computed for the set: `by(...)` values, aggregates (`count()`).
    pub attributes: Vec<(String, OutVal)>,
}

impl TraceHit {
    /// Approximate memory this hit holds, and about what it takes printed as JSON.
    pub fn heap_bytes(&self) -> usize {
        let val = |v: &OutVal| match v {
            OutVal::Str(s) => s.len() + 32,
            _ => 32,
        };
        let attrs = |a: &[(String, OutVal)]| -> usize {
            a.iter().map(|(k, v)| k.len() + val(v) + 32).sum()
        };
        let spans: usize = self
            .span_sets
            .iter()
            .map(|set| {
                size_of::<SpanSetHit>()
                    + attrs(&set.attributes)
                    + set
                        .spans
                        .iter()
                        .map(|s| {
                            size_of::<SpanHit>()
                                + 64
                                + s.name.as_ref().map_or(0, String::len)
                                + attrs(&s.attrs)
                        })
                        .sum::<usize>()
            })
            .sum();
        size_of::<TraceHit>()
            + 128
            + self.root_service.as_ref().map_or(0, String::len)
            + self.root_name.as_ref().map_or(0, String::len)
            + self
                .service_stats
                .iter()
                .map(|(n, _)| n.len() + 64)
                .sum::<usize>()
            + spans
    }
}

/// Search results and what was read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SearchResult {
    pub traces: Vec<TraceHit>,
    pub inspected_traces: u64,
    pub inspected_bytes: u64,
    pub total_blocks: u64,
}

/// What a TraceQL query references, to print on matched spans: as Tempo does, every attribute
/// and intrinsic the query names (negated conditions, `select` and `by` included), except the
/// span's name (printed as its own field), durations, the trace-level intrinsics and the ids.
struct Referenced {
    fields: Vec<ConditionField>,
    name: bool,
    /// Which element of an array (or which event) to print: the first that a condition on the
    /// same field accepts.
    conditions: Vec<traceql::Condition>,
}

fn referenced(q: &traceql::Query) -> Referenced {
    let mut r = Referenced {
        fields: Vec::new(),
        name: false,
        conditions: q.conditions(),
    };
    for f in q.referenced_fields() {
        match f {
            ConditionField::Intrinsic(Intrinsic::Name) => r.name = true,
            ConditionField::Intrinsic(
                Intrinsic::Duration
                | Intrinsic::TraceDuration
                | Intrinsic::RootName
                | Intrinsic::RootServiceName
                | Intrinsic::TraceId
                | Intrinsic::SpanId,
            ) => {}
            f => r.fields.push(f),
        }
    }
    r
}

/// A TraceQL value as search results print it (durations like Go, status and kind as words).
fn out_value(v: traceql::Value<'_>) -> OutVal {
    use traceql::Value as V;
    match v {
        V::Str(s) => OutVal::Str(s.into_owned()),
        V::Int(i) => OutVal::Int(i),
        V::Float(f) => OutVal::Float(f),
        V::Bool(b) => OutVal::Bool(b),
        V::Duration(d) => OutVal::Str(traceql::format_duration(d)),
        V::Status(st) => OutVal::Str(st.as_str().into()),
        V::Kind(k) => OutVal::Str(k.as_str().into()),
        V::Nil => OutVal::Str("nil".into()),
    }
}

fn span_hit(
    view: &QlTrace<'_>,
    fields: &traceql::FieldReader<'_, QlTrace<'_>>,
    span: usize,
    refs: &Referenced,
) -> Option<SpanHit> {
    use traceql::{AttrScope, TraceView};
    const UNSCOPED: [AttrScope; 5] = [
        AttrScope::Span,
        AttrScope::Resource,
        AttrScope::Event,
        AttrScope::Link,
        AttrScope::Instrumentation,
    ];
    let t = &view.t;
    let s = t.spans.get(span)?;
    let mut attrs = Vec::new();
    for field in &refs.fields {
        let (key, values) = match field {
            ConditionField::Attribute {
                scope: Some(scope),
                name,
            } => (name.as_str(), view.attribute_values(span, *scope, name)),
            ConditionField::Attribute { scope: None, name } => (
                name.as_str(),
                UNSCOPED
                    .iter()
                    .map(|&sc| view.attribute_values(span, sc, name))
                    .find(|v| !v.is_empty())
                    .unwrap_or_default(),
            ),
            ConditionField::Intrinsic(i) => (i.as_str(), fields.intrinsic_values(span, *i)),
        };
        let accepted = |v: &traceql::Value<'_>| {
            refs.conditions
                .iter()
                .any(|c| c.field == *field && c.matches(v))
        };
        let pos = values.iter().position(accepted).unwrap_or(0);
        if let Some(v) = values.into_iter().nth(pos) {
            attrs.push((key.to_string(), out_value(v)));
        }
    }
    Some(SpanHit {
        span_id: s.span_id,
        name: refs.name.then(|| t.str(s.name).to_string()),
        start_ns: s.start,
        duration_ns: s.duration(),
        attrs,
    })
}

/// What a query needs for a row group or block to be worth reading: strings that must be in a
/// group's dictionary, and trace ids one of which the block must hold.
#[derive(Debug, Default)]
struct Prefilter {
    strings: Vec<TraceId>,
    trace_ids: Vec<TraceId>,
}

fn prefilter(spec: &SearchSpec) -> Prefilter {
    match &spec.filter {
        Filter::TraceQl(q) => prefilter_conditions(&q.conditions()),
        Filter::Tags(_) => Prefilter::default(),
    }
}

fn prefilter_conditions(conditions: &[traceql::Condition]) -> Prefilter {
    use traceql::{CompareOp, Value};
    let mut p = Prefilter::default();
    for c in conditions {
        let (CompareOp::Eq, Value::Str(s)) = (c.op, &c.value) else {
            continue;
        };
        if s.is_empty() {
            continue;
        }
        match c.field {
            ConditionField::Attribute { .. }
            | ConditionField::Intrinsic(
                Intrinsic::Name
                | Intrinsic::StatusMessage
                | Intrinsic::RootName
                | Intrinsic::RootServiceName
                | Intrinsic::EventName
                | Intrinsic::InstrumentationName
                | Intrinsic::InstrumentationVersion,
            ) => p.strings.push(super::block::bloom::str_key(s)),
            ConditionField::Intrinsic(Intrinsic::TraceId) => {
                if let Ok(id) = super::ids::parse_trace_id(s) {
                    p.trace_ids.push(id);
                }
            }
            ConditionField::Intrinsic(_) => {}
        }
    }
    p
}

/// Evaluate one trace against the spec; `Some(hit)` if it matches.
fn eval(t: TraceRef<'_>, spec: &SearchSpec, refs: Option<&Referenced>) -> Option<TraceHit> {
    if t.spans.is_empty() {
        return None;
    }
    let (start, end) = (t.start(), t.end());
    if start > spec.end_ns || end < spec.start_ns {
        return None;
    }
    let dur = end - start;
    if spec.min_duration_ns.is_some_and(|m| dur < m)
        || spec.max_duration_ns.is_some_and(|m| m > 0 && dur > m)
    {
        return None;
    }
    let span_sets = match &spec.filter {
        Filter::Tags(tags) => {
            if !tags.iter().all(|(k, v)| t.matches_tag(k, v)) {
                return None;
            }
            Vec::new()
        }
        Filter::TraceQl(q) => {
            let view = QlTrace::new(t);
            let sets = q.eval_spansets(&view);
            if sets.is_empty() {
                return None;
            }
            let refs = refs?;
            let fields = traceql::FieldReader::new(&view);
            sets.into_iter()
                .map(|set| {
                    let take = if spec.spss == 0 {
                        set.spans.len()
                    } else {
                        spec.spss.min(set.spans.len())
                    };
                    SpanSetHit {
                        spans: set.spans[..take]
                            .iter()
                            .filter_map(|&i| span_hit(&view, &fields, i, refs))
                            .collect(),
                        matched: set.spans.len(),
                        attributes: set
                            .attributes
                            .into_iter()
                            .map(|(k, v)| (k, out_value(v)))
                            .collect(),
                    }
                })
                .collect()
        }
    };
    Some(TraceHit {
        id: *t.id,
        root_service: t.root_service().map(str::to_string),
        root_name: t.root_name().map(str::to_string),
        start_ns: start,
        duration_ns: dur,
        span_sets,
        service_stats: t
            .service_stats()
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect(),
    })
}

/// Fill a hit's root, time range and service stats from the trace's full payload.
fn complete_from_payload(hit: &mut TraceHit, bytes: &[u8]) {
    use opentelemetry_proto::tonic::{common::v1::any_value, trace::v1::TracesData};
    use prost::Message;
    let Ok(td) = TracesData::decode(bytes) else {
        return;
    };
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let (mut start, mut end) = (u64::MAX, 0u64);
    let mut stats: Vec<(String, ServiceStats)> = Vec::new();
    for rs in &td.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            });
        for sp in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            if !seen.insert(sp.span_id.clone()) {
                continue;
            }
            start = start.min(sp.start_time_unix_nano);
            end = end.max(sp.end_time_unix_nano);
            if sp.parent_span_id.is_empty() && hit.root_name.is_none() {
                hit.root_name = Some(sp.name.clone());
                hit.root_service = service.clone();
            }
            let name = service.clone().unwrap_or_default();
            let i = match stats.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    stats.push((name, ServiceStats::default()));
                    stats.len() - 1
                }
            };
            stats[i].1.span_count += 1;
            if sp.status.as_ref().is_some_and(|st| st.code == 2) {
                stats[i].1.error_count += 1;
            }
        }
    }
    if start <= end {
        hit.start_ns = start;
        hit.duration_ns = end - start;
    }
    stats.sort_by(|a, b| a.0.cmp(&b.0));
    hit.service_stats = stats;
}

impl Store {
    /// The tenants of a query that exist (unknown tenants simply have no data).
    pub fn query_tenants(&self, names: &[String]) -> Vec<Arc<Tenant>> {
        names
            .iter()
            .filter_map(|n| self.existing_tenant(n))
            .collect()
    }

    /// The time range (`min_start_ns`, `max_end_ns`) of every block of these tenants: what a
    /// query over a window has to read.
    pub fn block_ranges(&self, tenants: &[String]) -> Vec<(u64, u64)> {
        self.query_tenants(tenants)
            .iter()
            .flat_map(|t| t.blocks())
            .map(|b| (b.meta.min_start_ns, b.meta.max_end_ns))
            .collect()
    }

    /// The trace's payload (`TracesData` bytes, fragments concatenated) and bytes inspected.
    pub fn find_trace(
        &self,
        tenants: &[String],
        id: &TraceId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for t in self.query_tenants(tenants) {
            if let Some(lt) = t.lock_state().live.traces.get(id) {
                out.extend_from_slice(&lt.payload);
            }
            for p in t.pendings() {
                if let Some(lt) = p.find(id) {
                    out.extend_from_slice(&lt.payload);
                }
            }
            for b in t.blocks() {
                if let Some(p) = b.find(id)? {
                    out.extend_from_slice(&p);
                }
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }

    /// Run a search over the given tenants with no deadline or memory cap.
    pub fn search(
        &self,
        tenants: &[String],
        spec: &SearchSpec,
    ) -> Result<SearchResult, QueryError> {
        self.search_within(tenants, spec, &mut Budget::unlimited())
    }

    /// Run a search over the given tenants, stopping when `budget` runs out.
    pub fn search_within(
        &self,
        tenants: &[String],
        spec: &SearchSpec,
        budget: &mut Budget,
    ) -> Result<SearchResult, QueryError> {
        let refs = match &spec.filter {
            Filter::TraceQl(q) => Some(referenced(q)),
            Filter::Tags(_) => None,
        };
        let pre = prefilter(spec);
        let mut res = SearchResult::default();
        let mut seen: HashSet<TraceId> = HashSet::new();
        // `with (most_recent = true)`: go on past the limit and keep the newest hits. Once
        // `limit` are kept, `floor` is the start of the oldest of them: a block or row group
        // that ends before it holds no trace that could take a place.
        let most_recent = matches!(&spec.filter, Filter::TraceQl(q) if q.most_recent());
        let floor = std::cell::Cell::new(0u64);
        // Whether the search is done.
        let mut push = |hit: TraceHit,
                        res: &mut SearchResult,
                        budget: &mut Budget|
         -> Result<bool, QueryError> {
            if seen.insert(hit.id) {
                budget.charge(hit.heap_bytes())?;
                res.traces.push(hit);
            }
            if !most_recent {
                return Ok(res.traces.len() >= spec.limit);
            }
            if res.traces.len() >= 2 * spec.limit.max(1) {
                keep_newest(&mut res.traces, spec.limit);
                floor.set(res.traces.last().map_or(0, |t| t.start_ns));
            }
            Ok(false)
        };
        'tenants: for t in self.query_tenants(tenants) {
            // Live traces in chunks: the lock is released between chunks so ingest proceeds.
            let ids: Vec<TraceId> = t.lock_state().live.traces.keys().copied().collect();
            for chunk in ids.chunks(LIVE_CHUNK) {
                let st = t.lock_state();
                for id in chunk {
                    budget.check()?;
                    let Some(lt) = st.live.traces.get(id) else {
                        continue;
                    };
                    let tr = TraceRef {
                        table: &st.live.table,
                        id,
                        spans: &lt.spans,
                    };
                    // Live traces outside the window are passed over, not inspected (a
                    // streamed search asks each time shard and sums what they inspected).
                    if !in_window(&tr, spec) {
                        continue;
                    }
                    res.inspected_traces += 1;
                    res.inspected_bytes += lt.payload.len() as u64;
                    if let Some(hit) = eval(tr, spec, refs.as_ref())
                        && push(hit, &mut res, budget)?
                    {
                        break 'tenants;
                    }
                }
            }
            for p in t.pendings().iter().rev() {
                for (id, lt) in &p.traces {
                    budget.check()?;
                    let tr = TraceRef {
                        table: &p.table,
                        id,
                        spans: &lt.spans,
                    };
                    if !in_window(&tr, spec) {
                        continue;
                    }
                    res.inspected_traces += 1;
                    if let Some(hit) = eval(tr, spec, refs.as_ref())
                        && push(hit, &mut res, budget)?
                    {
                        break 'tenants;
                    }
                }
            }
            let mut blocks = t.blocks();
            blocks.retain(|b| {
                b.meta.min_start_ns <= spec.end_ns
                    && b.meta.max_end_ns >= spec.start_ns.max(floor.get())
                    && (pre.trace_ids.is_empty()
                        || pre.trace_ids.iter().any(|id| b.may_contain(id)))
            });
            blocks.sort_by_key(|b| std::cmp::Reverse(b.meta.max_end_ns));
            res.total_blocks += blocks.len() as u64;
            for b in blocks {
                let mut order: Vec<usize> = (0..b.groups.len())
                    .filter(|&i| {
                        b.groups[i].min_start <= spec.end_ns
                            && b.groups[i].max_end >= spec.start_ns.max(floor.get())
                            && b.group_may_have_all(i, &pre.strings)
                    })
                    .collect();
                order.sort_by(|&x, &y| b.groups[y].max_end.cmp(&b.groups[x].max_end));
                for gi in order {
                    if b.groups[gi].max_end < floor.get() {
                        continue;
                    }
                    budget.check()?;
                    let g = self.inner.cache.get(&b, gi)?;
                    res.inspected_bytes += u64::from(b.groups[gi].len);
                    for i in 0..g.traces.len() {
                        budget.check()?;
                        res.inspected_traces += 1;
                        if let Some(hit) = eval(g.trace(i), spec, refs.as_ref())
                            && push(hit, &mut res, budget)?
                        {
                            break 'tenants;
                        }
                    }
                }
            }
        }
        // A hit whose part holds no root span (the rest of the trace arrived later, in another
        // block or still live): take root, time range and service stats from the whole trace.
        for hit in res.traces.iter_mut().filter(|h| h.root_name.is_none()) {
            budget.check()?;
            if let Some(bytes) = self.find_trace(tenants, &hit.id)? {
                complete_from_payload(hit, &bytes);
            }
        }
        keep_newest(&mut res.traces, spec.limit);
        Ok(res)
    }
}

/// Whether a trace has a span in the search's window.
fn in_window(t: &TraceRef<'_>, spec: &SearchSpec) -> bool {
    !t.spans.is_empty() && t.start() <= spec.end_ns && t.end() >= spec.start_ns
}

/// Sorts hits newest first and keeps the first `limit`.
fn keep_newest(hits: &mut Vec<TraceHit>, limit: usize) {
    hits.sort_by_key(|t| std::cmp::Reverse(t.start_ns));
    hits.truncate(limit);
}

/// Attribute scopes for tag names.
pub const SCOPES: [&str; 5] = ["resource", "span", "event", "link", "instrumentation"];

/// Collect attribute keys per scope (index into `SCOPES`) from one trace. Returns the bytes
/// of the keys it added (for the query's memory cap).
pub fn collect_keys<'a>(
    t: &TraceRef<'a>,
    spans: impl Iterator<Item = &'a SpanRow>,
    out: &mut [std::collections::BTreeSet<String>; 5],
    per_scope_limit: usize,
) -> usize {
    let tab: &Table = t.table;
    let mut added = 0;
    let mut add = |scope: usize, key: u32| {
        let set = &mut out[scope];
        if set.len() < per_scope_limit {
            let k = tab.dict.get(key);
            if !set.contains(k) {
                added += k.len() + 64;
                set.insert(k.to_string());
            }
        }
    };
    for s in spans {
        for a in t.resource_attrs(s) {
            add(0, a.key);
        }
        for a in t.span_attrs(s) {
            add(1, a.key);
        }
        for e in &tab.events[s.events.range()] {
            for a in &tab.attrs[e.attrs.range()] {
                add(2, a.key);
            }
        }
        for l in &tab.links[s.links.range()] {
            for a in &tab.attrs[l.attrs.range()] {
                add(3, a.key);
            }
        }
        if let Some(sc) = tab.scopes.get(s.scope as usize) {
            for a in &tab.attrs[sc.attrs.range()] {
                add(4, a.key);
            }
        }
    }
    added
}
