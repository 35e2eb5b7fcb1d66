//! Live traces: the traces of a tenant still accepting spans (each appended to the WAL first),
//! and the cuts taken out of them that wait to be written as a block. Both are queryable.
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::{
    hash::FastMap,
    ids::TraceId,
    rows::{SpanRow, Table},
    wal::Wal,
};

/// A trace still accepting spans.
#[derive(Debug, Default)]
pub struct LiveTrace {
    /// Concatenated `TracesData` fields (one per fragment).
    pub payload: Vec<u8>,
    pub spans: Vec<SpanRow>,
    /// Ingest-clock time of the first and last append.
    pub first_ns: u64,
    pub last_ns: u64,
    /// Oldest WAL segment holding part of this trace.
    pub min_seg: u64,
    /// A span without a parent arrived (the root usually comes last).
    pub has_root: bool,
}

impl LiveTrace {
    pub(crate) fn mem_bytes(&self) -> usize {
        self.payload.capacity() + self.spans.capacity() * size_of::<SpanRow>() + 96
    }
}

/// Live traces and the table their rows point into.
#[derive(Debug, Default)]
pub struct Live {
    pub table: Table,
    pub traces: FastMap<TraceId, LiveTrace>,
    /// Approximate memory held by traces (payload + rows).
    pub bytes: usize,
}

/// Live state guarded by one lock, with the WAL so appends stay in ingest order.
#[derive(Debug)]
pub struct LiveState {
    pub live: Live,
    pub wal: Wal,
}

/// Traces taken out of live, waiting to be written as a block. Immutable and queryable.
#[derive(Debug)]
pub struct Pending {
    pub table: Table,
    /// Sorted by id.
    pub traces: Vec<(TraceId, LiveTrace)>,
    /// WAL segments below this one hold nothing newer than these traces.
    pub wal_seq: u64,
    /// Memory the traces hold.
    pub bytes: usize,
}

impl Pending {
    pub fn find(&self, id: &TraceId) -> Option<&LiveTrace> {
        self.traces
            .binary_search_by(|(t, _)| t.cmp(id))
            .ok()
            .map(|i| &self.traces[i].1)
    }
}

/// Insert one fragment's spans (already in the WAL) into live.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per path (ingest, replay); a struct would only rename them"
)]
pub(crate) fn insert_fragment(
    live: &mut Live,
    id: TraceId,
    payload: &[u8],
    rs: &ResourceSpans,
    res_key: &[u8],
    scope_keys: &[Vec<u8>],
    spans: impl Iterator<Item = (usize, usize)>,
    now_ns: u64,
    seg: u64,
) {
    let res = live.table.add_resource(rs.resource.as_ref(), res_key);
    let t = live.traces.entry(id).or_insert_with(|| LiveTrace {
        first_ns: now_ns,
        min_seg: seg,
        ..LiveTrace::default()
    });
    let before = t.mem_bytes();
    t.payload.extend_from_slice(payload);
    t.spans.reserve(spans.size_hint().0);
    for (si, pi) in spans {
        let ss = &rs.scope_spans[si];
        let scope = live.table.add_scope(ss.scope.as_ref(), &scope_keys[si]);
        let row = live.table.add_span(&ss.spans[pi], res, scope);
        t.has_root |= row.parent_id == [0; 8];
        t.spans.push(row);
    }
    t.last_ns = now_ns;
    t.min_seg = t.min_seg.min(seg);
    live.bytes += t.mem_bytes() - before;
}
