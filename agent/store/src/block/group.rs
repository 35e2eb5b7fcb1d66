//! A row group of a block's search data: traces in id order with their span rows, encoded
//! column by column (ids, names, durations, attributes…) so a scan reads only search columns.
use super::super::{
    codec::{Dec, DecodeError, Enc},
    hash::FastMap,
    ids::TraceId,
    query::view::TraceRef,
    rows::{
        Attr, Dict, EventRow, LinkRow, NO_SYM, Range32, Remap, ResourceRow, ScopeRow, SpanRow,
        Table, Val,
    },
};

/// One trace's entry in a group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEntry {
    pub id: TraceId,
    pub spans: Range32,
}

/// Decoded row group.
#[derive(Debug, Default)]
pub struct Group {
    pub table: Table,
    pub spans: Vec<SpanRow>,
    pub traces: Vec<TraceEntry>,
}

impl Group {
    pub fn trace(&self, i: usize) -> TraceRef<'_> {
        let t = &self.traces[i];
        TraceRef {
            table: &self.table,
            id: &t.id,
            spans: &self.spans[t.spans.range()],
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.table.heap_bytes() + self.spans.len() * size_of::<SpanRow>() + self.traces.len() * 24
    }
}

/// Builds a group by copying spans from source tables.
#[derive(Default)]
pub struct GroupBuilder {
    pub group: Group,
    remaps: FastMap<u64, Remap>,
}

impl GroupBuilder {
    /// Add a trace whose spans come from one or more (table, rows) parts. When parts overlap
    /// (a fragment replayed from the WAL after it was already in a block), a span id seen
    /// before is kept once.
    pub fn add(&mut self, id: TraceId, parts: &[(&Table, &[SpanRow])]) {
        let start = self.group.spans.len() as u32;
        let mut seen: Option<std::collections::HashSet<[u8; 8]>> =
            (parts.len() > 1).then(std::collections::HashSet::new);
        for (src, rows) in parts {
            let remap = self.remaps.entry(src.uid()).or_default();
            for r in *rows {
                if let Some(seen) = seen.as_mut()
                    && !seen.insert(r.span_id)
                {
                    continue;
                }
                let row = remap.span(src, &mut self.group.table, r);
                self.group.spans.push(row);
            }
        }
        let len = self.group.spans.len() as u32 - start;
        self.group.traces.push(TraceEntry {
            id,
            spans: Range32 { start, len },
        });
    }

    pub fn len(&self) -> usize {
        self.group.traces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.group.traces.is_empty()
    }

    pub fn take(&mut self) -> Group {
        self.remaps.clear();
        std::mem::take(&mut self.group)
    }
}

fn put_range(e: &mut Enc, prev_end: &mut u32, r: Range32) {
    e.zigzag(i64::from(r.start) - i64::from(*prev_end));
    e.varint(u64::from(r.len));
    *prev_end = r.start + r.len;
}

fn get_range(d: &mut Dec, prev_end: &mut u32, limit: usize) -> Result<Range32, DecodeError> {
    let start = i64::from(*prev_end) + d.zigzag()?;
    let len = d.varint_u32()?;
    if start < 0 || start as u64 + u64::from(len) > limit as u64 {
        return Err(DecodeError(d.pos));
    }
    let r = Range32 {
        start: start as u32,
        len,
    };
    *prev_end = r.start + r.len;
    Ok(r)
}

fn sym1(s: u32) -> u64 {
    if s == NO_SYM { 0 } else { u64::from(s) + 1 }
}

fn get_sym1(d: &mut Dec, nsyms: usize) -> Result<u32, DecodeError> {
    let v = d.varint()?;
    if v == 0 {
        return Ok(NO_SYM);
    }
    if v > nsyms as u64 {
        return Err(DecodeError(d.pos));
    }
    Ok((v - 1) as u32)
}

/// Encode a group, column by column (not compressed).
pub fn encode(g: &Group) -> Vec<u8> {
    let t = &g.table;
    let mut e = Enc::with_capacity(g.spans.len() * 48 + 1024);
    e.varint(t.dict.strings.len() as u64);
    for s in &t.dict.strings {
        e.bytes(s.as_bytes());
    }
    e.varint(t.attrs.len() as u64);
    for a in &t.attrs {
        e.varint(u64::from(a.key));
    }
    for a in &t.attrs {
        e.u8(match a.val {
            Val::Str(_) => 0,
            Val::Int(_) => 1,
            Val::Float(_) => 2,
            Val::Bool(_) => 3,
        });
    }
    for a in &t.attrs {
        match a.val {
            Val::Str(s) => e.varint(u64::from(s)),
            Val::Int(i) => e.zigzag(i),
            Val::Float(f) => e.u64_le(f.to_bits()),
            Val::Bool(b) => e.u8(u8::from(b)),
        }
    }
    let mut pe = 0u32;
    e.varint(t.resources.len() as u64);
    for r in &t.resources {
        put_range(&mut e, &mut pe, r.attrs);
        e.varint(sym1(r.service));
    }
    e.varint(t.scopes.len() as u64);
    for s in &t.scopes {
        e.varint(sym1(s.name));
        e.varint(sym1(s.version));
        put_range(&mut e, &mut pe, s.attrs);
    }
    e.varint(t.events.len() as u64);
    for ev in &t.events {
        e.varint(sym1(ev.name));
        e.varint(ev.since_start);
        put_range(&mut e, &mut pe, ev.attrs);
    }
    e.varint(t.links.len() as u64);
    for l in &t.links {
        e.raw(&l.trace_id);
        e.raw(&l.span_id);
        put_range(&mut e, &mut pe, l.attrs);
    }
    e.varint(g.traces.len() as u64);
    for tr in &g.traces {
        e.raw(&tr.id);
    }
    for tr in &g.traces {
        e.varint(u64::from(tr.spans.len));
    }
    let spans = &g.spans;
    e.varint(spans.len() as u64);
    for s in spans {
        e.raw(&s.span_id);
    }
    // Parent as an index within the trace where possible (cheap to store), else raw.
    let mut raw_parents = Vec::new();
    for tr in &g.traces {
        let ts = &spans[tr.spans.range()];
        for s in ts {
            if s.parent_id == [0; 8] {
                e.varint(0);
            } else if let Some(i) = ts.iter().position(|p| p.span_id == s.parent_id) {
                e.varint(i as u64 + 2);
            } else {
                e.varint(1);
                raw_parents.push(s.parent_id);
            }
        }
    }
    for p in &raw_parents {
        e.raw(p);
    }
    let mut prev = 0u64;
    for s in spans {
        e.zigzag(s.start.wrapping_sub(prev) as i64);
        prev = s.start;
    }
    for s in spans {
        e.varint(s.end - s.start);
    }
    for s in spans {
        e.varint(u64::from(s.name));
    }
    for s in spans {
        e.u8(s.kind | (s.status << 4));
    }
    for s in spans {
        e.varint(sym1(s.status_msg));
    }
    for s in spans {
        e.varint(u64::from(s.resource));
    }
    for s in spans {
        e.varint(u64::from(s.scope));
    }
    let mut pe = 0u32;
    for s in spans {
        put_range(&mut e, &mut pe, s.attrs);
    }
    let mut pe = 0u32;
    for s in spans {
        put_range(&mut e, &mut pe, s.events);
    }
    let mut pe = 0u32;
    for s in spans {
        put_range(&mut e, &mut pe, s.links);
    }
    e.buf
}

/// Decode a group, checking every index so corrupt input cannot cause a panic later.
pub fn decode(buf: &[u8]) -> Result<Group, DecodeError> {
    let mut d = Dec::new(buf);
    let n = d.len()?;
    let mut strings = Vec::with_capacity(n);
    for _ in 0..n {
        strings.push(Box::<str>::from(d.str()?));
    }
    let ns = strings.len();
    let sym = |d: &mut Dec, v: u64| -> Result<u32, DecodeError> {
        if v >= ns as u64 {
            Err(DecodeError(d.pos))
        } else {
            Ok(v as u32)
        }
    };
    let na = d.len()?;
    let mut keys = Vec::with_capacity(na);
    for _ in 0..na {
        let v = d.varint()?;
        keys.push(sym(&mut d, v)?);
    }
    let types = d.raw(na)?.to_vec();
    let mut attrs = Vec::with_capacity(na);
    for (k, ty) in keys.into_iter().zip(types) {
        let val = match ty {
            0 => {
                let v = d.varint()?;
                Val::Str(sym(&mut d, v)?)
            }
            1 => Val::Int(d.zigzag()?),
            2 => Val::Float(f64::from_bits(d.u64_le()?)),
            3 => Val::Bool(d.u8()? != 0),
            _ => return Err(DecodeError(d.pos)),
        };
        attrs.push(Attr { key: k, val });
    }
    let mut pe = 0u32;
    let nr = d.len()?;
    let mut resources = Vec::with_capacity(nr);
    for _ in 0..nr {
        let a = get_range(&mut d, &mut pe, na)?;
        resources.push(ResourceRow {
            attrs: a,
            service: get_sym1(&mut d, ns)?,
        });
    }
    let nsc = d.len()?;
    let mut scopes = Vec::with_capacity(nsc);
    for _ in 0..nsc {
        let name = get_sym1(&mut d, ns)?;
        let version = get_sym1(&mut d, ns)?;
        scopes.push(ScopeRow {
            name,
            version,
            attrs: get_range(&mut d, &mut pe, na)?,
        });
    }
    let ne = d.len()?;
    let mut events = Vec::with_capacity(ne);
    for _ in 0..ne {
        let name = get_sym1(&mut d, ns)?;
        let since_start = d.varint()?;
        events.push(EventRow {
            name,
            since_start,
            attrs: get_range(&mut d, &mut pe, na)?,
        });
    }
    let nl = d.len()?;
    let mut links = Vec::with_capacity(nl);
    for _ in 0..nl {
        let trace_id = d.array()?;
        let span_id = d.array()?;
        links.push(LinkRow {
            trace_id,
            span_id,
            attrs: get_range(&mut d, &mut pe, na)?,
        });
    }
    let nt = d.len()?;
    let mut ids = Vec::with_capacity(nt);
    for _ in 0..nt {
        ids.push(d.array::<16>()?);
    }
    let mut traces = Vec::with_capacity(nt);
    let mut at = 0u32;
    for id in ids {
        let len = d.varint_u32()?;
        traces.push(TraceEntry {
            id,
            spans: Range32 { start: at, len },
        });
        at = at.checked_add(len).ok_or(DecodeError(d.pos))?;
    }
    let nsp = d.len()?;
    if nsp != at as usize {
        return Err(DecodeError(d.pos));
    }
    let mut span_ids = Vec::with_capacity(nsp);
    for _ in 0..nsp {
        span_ids.push(d.array::<8>()?);
    }
    let mut parents = vec![[0u8; 8]; nsp];
    let mut raw_slots = Vec::new();
    for tr in &traces {
        for i in tr.spans.range() {
            match d.varint()? {
                0 => {}
                1 => raw_slots.push(i),
                k => {
                    let j = tr.spans.start as u64 + k - 2;
                    if j >= u64::from(tr.spans.start + tr.spans.len) {
                        return Err(DecodeError(d.pos));
                    }
                    parents[i] = span_ids[j as usize];
                }
            }
        }
    }
    for i in raw_slots {
        parents[i] = d.array()?;
    }
    let mut starts = Vec::with_capacity(nsp);
    let mut prev = 0u64;
    for _ in 0..nsp {
        prev = prev.wrapping_add(d.zigzag()? as u64);
        starts.push(prev);
    }
    let mut durs = Vec::with_capacity(nsp);
    for _ in 0..nsp {
        durs.push(d.varint()?);
    }
    let mut names = Vec::with_capacity(nsp);
    for _ in 0..nsp {
        let v = d.varint()?;
        names.push(sym(&mut d, v)?);
    }
    let ks = d.raw(nsp)?.to_vec();
    let mut msgs = Vec::with_capacity(nsp);
    for _ in 0..nsp {
        msgs.push(get_sym1(&mut d, ns)?);
    }
    let mut res = Vec::with_capacity(nsp);
    for _ in 0..nsp {
        let v = d.varint_u32()?;
        if v as usize >= nr && v != NO_SYM {
            return Err(DecodeError(d.pos));
        }
        res.push(v);
    }
    let mut scs = Vec::with_capacity(nsp);
    for _ in 0..nsp {
        let v = d.varint_u32()?;
        if v as usize >= nsc && v != NO_SYM {
            return Err(DecodeError(d.pos));
        }
        scs.push(v);
    }
    let mut ranges = [
        Vec::with_capacity(nsp),
        Vec::with_capacity(nsp),
        Vec::with_capacity(nsp),
    ];
    for (col, limit) in ranges.iter_mut().zip([na, ne, nl]) {
        let mut pe = 0u32;
        for _ in 0..nsp {
            col.push(get_range(&mut d, &mut pe, limit)?);
        }
    }
    let mut spans = Vec::with_capacity(nsp);
    for i in 0..nsp {
        spans.push(SpanRow {
            span_id: span_ids[i],
            parent_id: parents[i],
            start: starts[i],
            end: starts[i].saturating_add(durs[i]),
            name: names[i],
            status_msg: msgs[i],
            resource: res[i],
            scope: scs[i],
            attrs: ranges[0][i],
            events: ranges[1][i],
            links: ranges[2][i],
            kind: ks[i] & 0x0f,
            status: (ks[i] >> 4) & 0x03,
        });
    }
    let table = Table::from_parts(
        Dict::from_strings(strings),
        attrs,
        resources,
        scopes,
        events,
        links,
    );
    Ok(Group {
        table,
        spans,
        traces,
    })
}
