//! Block tests: write → open → find by id, row groups round trip, bloom skips, corrupt files.
use std::sync::Arc;

use rstest::rstest;

use super::{Block, BlockWriter, WriteOptions, group};
use crate::{
    fsio::{FullDisk, RealIo},
    ids::TraceId,
    rows::{SpanRow, Table},
    testutil::*,
};

/// (id, payload, rows) of one trace.
type Trace = (TraceId, Vec<u8>, Vec<SpanRow>);

/// A table with `n` two-span traces (ids `tid(i)`), sorted by id.
fn traces(n: u64) -> (Table, Vec<Trace>) {
    let mut t = Table::new();
    let mut out = Vec::new();
    for i in 0..n {
        let r = req(
            &format!("svc-{}", i % 3),
            vec![
                with_attrs(
                    span(i, i * 10 + 1, 0, &format!("root-{i}"), i, 10),
                    vec![kv_i("n", i as i64)],
                ),
                span(i, i * 10 + 2, i * 10 + 1, "child", i, 5),
            ],
        );
        let rs = &r.resource_spans[0];
        let res = t.add_resource(rs.resource.as_ref(), format!("svc-{}", i % 3).as_bytes());
        let sc = t.add_scope(None, b"");
        let rows: Vec<SpanRow> = rs.scope_spans[0]
            .spans
            .iter()
            .map(|s| t.add_span(s, res, sc))
            .collect();
        out.push((tid(i), format!("payload-{i}").into_bytes(), rows));
    }
    out.sort_by_key(|x| x.0);
    (t, out)
}

fn write(dir: &std::path::Path, n: u64, opts: WriteOptions) -> Block {
    let (t, tr) = traces(n);
    let mut w = BlockWriter::create(dir, "b1", 0, Arc::new(RealIo), opts).unwrap();
    for (id, p, rows) in &tr {
        w.add(*id, p, &[(&t, rows)]).unwrap();
    }
    let meta = w.finish(T0).unwrap();
    assert_eq!((meta.traces, meta.spans), (n, 2 * n));
    Block::open(&dir.join("b1")).unwrap()
}

#[rstest]
#[case::one_page(50, WriteOptions::default())]
#[case::many_pages_and_groups(500, WriteOptions { page_bytes: 256, group_traces: 7, zstd_level: 1 })]
fn find_every_trace_and_only_those(#[case] n: u64, #[case] opts: WriteOptions) {
    let dir = tempfile::tempdir().unwrap();
    let b = write(dir.path(), n, opts);
    for i in 0..n {
        assert_eq!(
            b.find(&tid(i)).unwrap(),
            Some(format!("payload-{i}").into_bytes()),
            "trace {i}"
        );
    }
    assert_eq!(b.find(&tid(n + 1)).unwrap(), None);
    assert_eq!(b.find(&[0xff; 16]).unwrap(), None);
    let spans: usize = (0..b.groups.len())
        .map(|g| b.read_group(g).unwrap().spans.len())
        .sum();
    assert_eq!(spans as u64, 2 * n);
    assert_eq!(b.meta.min_start_ns, T0);
}

#[test]
fn group_round_trip_keeps_rows_and_parents() {
    let dir = tempfile::tempdir().unwrap();
    let b = write(dir.path(), 20, WriteOptions::default());
    let g = b.read_group(0).unwrap();
    let i = g.traces.iter().position(|t| t.id == tid(3)).unwrap();
    let t = g.trace(i);
    assert_eq!(t.root_name(), Some("root-3"));
    assert_eq!(t.root_service(), Some("svc-0"));
    let child = t.spans.iter().find(|s| t.str(s.name) == "child").unwrap();
    assert_eq!(child.parent_id, (31u64).to_be_bytes());
    assert_eq!((t.start(), t.end()), (T0 + 3_000_000, T0 + 13_000_000));
    let re = group::decode(&group::encode(&g)).unwrap();
    assert_eq!(re.spans, g.spans);
    assert_eq!(re.traces, g.traces);
}

#[rstest]
#[case::empty(&[][..])]
#[case::garbage(&[0xff; 64][..])]
#[case::huge_count(&[0xff, 0xff, 0xff, 0xff, 0x0f][..])]
fn group_decode_rejects_garbage(#[case] buf: &[u8]) {
    assert!(group::decode(buf).is_err());
}

#[test]
fn group_decode_rejects_every_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let b = write(dir.path(), 5, WriteOptions::default());
    let raw = group::encode(&b.read_group(0).unwrap());
    for cut in 0..raw.len() {
        assert!(group::decode(&raw[..cut]).is_err(), "truncated at {cut}");
    }
}

#[test]
fn corrupt_index_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 10, WriteOptions::default());
    let idx = dir.path().join("b1").join("index");
    let mut bytes = std::fs::read(&idx).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&idx, bytes).unwrap();
    let err = Block::open(&dir.path().join("b1")).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn failed_write_leaves_no_block() {
    let dir = tempfile::tempdir().unwrap();
    let (t, tr) = traces(10);
    let disk = FullDisk::new(100);
    let mut w = BlockWriter::create(dir.path(), "b2", 0, disk, WriteOptions::default()).unwrap();
    for (id, p, rows) in &tr {
        w.add(*id, p, &[(&t, rows)]).unwrap();
    }
    assert!(w.finish(T0).is_err());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temporary directory removed"
    );
}

/// A table holding one one-span trace `tid(n)` of service `service`, its strings interned
/// after `padding` others (so its symbol numbers differ from another table's).
fn one_trace(n: u64, service: &str, padding: usize) -> (Table, Vec<SpanRow>) {
    let mut t = Table::new();
    for i in 0..padding {
        t.intern(&format!("pad-{i}"));
    }
    let r = req(service, vec![span(n, n, 0, &format!("op-{service}"), 0, 1)]);
    let rs = &r.resource_spans[0];
    let res = t.add_resource(rs.resource.as_ref(), service.as_bytes());
    let sc = t.add_scope(None, b"");
    let rows = rs.scope_spans[0]
        .spans
        .iter()
        .map(|s| t.add_span(s, res, sc))
        .collect();
    (t, rows)
}

#[test]
fn a_table_in_the_place_of_an_earlier_one_keeps_its_own_strings() {
    // Compaction reads row groups one after another into the same place; the group being
    // built must not reuse what it remapped for the table that was there before.
    let mut gb = group::GroupBuilder::default();
    let (first, rows1) = one_trace(1, "svc-a", 0);
    let mut slot = first;
    gb.add(tid(1), &[(&slot, &rows1)]);
    let (second, rows2) = one_trace(2, "svc-b", 5);
    slot = second;
    gb.add(tid(2), &[(&slot, &rows2)]);
    let g = gb.take();
    let services: Vec<Option<&str>> = (0..2)
        .map(|i| {
            let t = g.trace(i);
            t.service_of(&t.spans[0])
        })
        .collect();
    assert_eq!(services, vec![Some("svc-a"), Some("svc-b")]);
    let names: Vec<&str> = (0..2)
        .map(|i| g.trace(i).str(g.trace(i).spans[0].name))
        .collect();
    assert_eq!(names, vec!["op-svc-a", "op-svc-b"]);
}
