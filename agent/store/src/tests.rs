//! Store-level tests: ingest, by-id, search, blocks, compaction, retention, limits, WAL replay.
use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;

use super::{
    ManualClock, Store,
    fsio::FullDisk,
    ids::SINGLE_TENANT,
    query::{Filter, SearchSpec},
    testutil::*,
};

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Store {
    Store::open(&cfg(dir), clock.clone()).unwrap()
}

fn tenants() -> Vec<String> {
    vec![SINGLE_TENANT.to_string()]
}

fn span_names(store: &Store, trace: u64) -> Vec<String> {
    let Some(bytes) = store.find_trace(&tenants(), &tid(trace)).unwrap() else {
        return vec![];
    };
    let td = TracesData::decode(bytes.as_slice()).unwrap();
    let mut names: Vec<String> = td
        .resource_spans
        .iter()
        .flat_map(|rs| {
            rs.scope_spans
                .iter()
                .flat_map(|ss| ss.spans.iter().map(|s| s.name.clone()))
        })
        .collect();
    names.sort();
    names
}

fn spec(filter: Filter) -> SearchSpec {
    SearchSpec {
        filter,
        min_duration_ns: None,
        max_duration_ns: None,
        start_ns: T0 - 3_600_000_000_000,
        end_ns: T0 + 3_600_000_000_000,
        limit: 20,
        spss: 3,
    }
}

fn tags(pairs: &[(&str, &str)]) -> Filter {
    Filter::Tags(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn ql(q: &str) -> Filter {
    Filter::TraceQl(sonde_traceql::parse(q).unwrap())
}

fn found(store: &Store, f: Filter) -> Vec<u64> {
    let r = store.search(&tenants(), &spec(f)).unwrap();
    let mut ids: Vec<u64> = r
        .traces
        .iter()
        .map(|t| u64::from_be_bytes(t.id[8..].try_into().unwrap()))
        .collect();
    ids.sort();
    ids
}

/// Three traces over two services, delivered in pieces.
fn seed(store: &Store) {
    store
        .ingest(
            SINGLE_TENANT,
            req("frontend", vec![span(1, 1, 0, "GET /a", 0, 50)]),
        )
        .unwrap();
    store
        .ingest(
            SINGLE_TENANT,
            req(
                "backend",
                vec![with_attrs(
                    span(1, 2, 1, "SELECT", 5, 20),
                    vec![kv_s("db.system", "postgresql")],
                )],
            ),
        )
        .unwrap();
    store
        .ingest(
            SINGLE_TENANT,
            req(
                "frontend",
                vec![
                    with_error(with_attrs(
                        span(2, 3, 0, "POST /b", 10, 300),
                        vec![kv_i("http.status_code", 500), kv_s("http.method", "POST")],
                    )),
                    with_attrs(
                        span(3, 4, 0, "GET /c", 20, 1),
                        vec![kv_i("http.status_code", 200), kv_s("http.method", "GET")],
                    ),
                ],
            ),
        )
        .unwrap();
}

#[test]
fn spans_arriving_over_time_form_one_trace_live_and_in_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    seed(&store);
    assert_eq!(span_names(&store, 1), vec!["GET /a", "SELECT"]);
    assert_eq!(found(&store, tags(&[("service.name", "backend")])), vec![1]);
    let rep = store.maintain(true);
    assert_eq!(rep.blocks_cut, 1, "{rep:?}");
    assert_eq!(store.tenant(SINGLE_TENANT).unwrap().live_stats().0, 0);
    // A late span of trace 1 arrives after the block was cut: the trace is merged on read.
    store
        .ingest(
            SINGLE_TENANT,
            req("late", vec![span(1, 9, 1, "late", 30, 1)]),
        )
        .unwrap();
    assert_eq!(span_names(&store, 1), vec!["GET /a", "SELECT", "late"]);
    assert_eq!(span_names(&store, 3), vec!["GET /c"]);
    assert!(span_names(&store, 99).is_empty());
}

#[rstest::rstest]
#[case::service_substring(&[("service.name", "front")], vec![1, 2, 3])]
#[case::service_case_sensitive(&[("service.name", "Front")], vec![])]
#[case::name_substring(&[("name", "POST")], vec![2])]
#[case::status_code_int(&[("http.status_code", "500")], vec![2])]
#[case::status_error(&[("status.code", "error")], vec![2])]
#[case::exact_other_key(&[("db.system", "postgresql")], vec![1])]
#[case::exact_no_prefix(&[("db.system", "postgres")], vec![])]
#[case::root_service(&[("root.service.name", "front")], vec![1, 2, 3])]
#[case::two_conditions_across_spans(&[("service.name", "backend"), ("name", "GET /a")], vec![1])]
#[case::no_conditions(&[], vec![1, 2, 3])]
fn tag_search_semantics(#[case] pairs: &[(&str, &str)], #[case] want: Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    seed(&store);
    assert_eq!(found(&store, tags(pairs)), want, "live");
    store.maintain(true);
    assert_eq!(found(&store, tags(pairs)), want, "blocks");
}

#[rstest::rstest]
#[case::service(r#"{ resource.service.name = "backend" }"#, vec![1])]
#[case::status_code(r#"{ span.http.status_code >= 500 }"#, vec![2])]
#[case::duration_and_method(r#"{ duration > 100ms && span.http.method = "POST" }"#, vec![2])]
#[case::all("{}", vec![1, 2, 3])]
#[case::error(r#"{ status = error }"#, vec![2])]
#[case::name_regex(r#"{ name =~ "GET.*" }"#, vec![1, 3])]
fn traceql_search(#[case] q: &str, #[case] want: Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    seed(&store);
    assert_eq!(found(&store, ql(q)), want, "live");
    store.maintain(true);
    assert_eq!(found(&store, ql(q)), want, "blocks");
}

/// Structural operators and the `parent.` scope over the seeded traces (trace 1 arrives in two batches) and trace 4,
/// whose root never arrives: an error span with a missing parent, and its child.
#[rstest::rstest]
#[case::descendant_across_batches(
    r#"{ resource.service.name = "frontend" } >> { resource.service.name = "backend" }"#,
    vec![1]
)]
#[case::child(r#"{ } > { span.db.system = "postgresql" }"#, vec![1])]
#[case::parent(r#"{ span.db.system != nil } < { }"#, vec![1])]
#[case::not_descendant("{ } !>> { status = error }", vec![2, 4])]
#[case::orphan_subtree_unrelated(r#"{ } >> { name = "orphan-child" }"#, vec![])]
#[case::union_child(r#"{ name = "GET /a" } &> { }"#, vec![1])]
#[case::single_root_no_sibling(r#"{ name = "GET /a" } ~ { }"#, vec![])]
#[case::parent_scope("{ parent.resource.service.name != resource.service.name }", vec![1])]
fn structural_search(#[case] q: &str, #[case] want: Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    seed(&store);
    store
        .ingest(
            SINGLE_TENANT,
            req(
                "worker",
                vec![
                    with_error(span(4, 41, 40, "orphan", 0, 5)),
                    span(4, 42, 41, "orphan-child", 1, 2),
                ],
            ),
        )
        .unwrap();
    assert_eq!(found(&store, ql(q)), want, "live");
    store.maintain(true);
    assert_eq!(found(&store, ql(q)), want, "blocks");
}

#[test]
fn search_results_carry_root_and_span_sets() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    seed(&store);
    store.maintain(true);
    let r = store
        .search(&tenants(), &spec(ql(r#"{ span.http.status_code >= 500 }"#)))
        .unwrap();
    assert_eq!(r.traces.len(), 1);
    let t = &r.traces[0];
    assert_eq!(t.root_service.as_deref(), Some("frontend"));
    assert_eq!(t.root_name.as_deref(), Some("POST /b"));
    assert_eq!(t.duration_ns, 300_000_000);
    let set = &t.span_sets[0];
    assert_eq!(set.matched, 1);
    assert_eq!(
        set.spans[0].attrs,
        vec![(
            "http.status_code".to_string(),
            super::query::OutVal::Int(500)
        )]
    );
    assert_eq!(t.service_stats[0].1.error_count, 1);
}

#[test]
fn duration_and_window_filters() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    seed(&store);
    let mut s = spec(tags(&[]));
    s.min_duration_ns = Some(100_000_000);
    assert_eq!(store.search(&tenants(), &s).unwrap().traces.len(), 1);
    let mut s = spec(tags(&[]));
    s.max_duration_ns = Some(2_000_000);
    assert_eq!(store.search(&tenants(), &s).unwrap().traces.len(), 1);
    let mut s = spec(tags(&[]));
    s.start_ns = T0 + 400_000_000;
    assert_eq!(store.search(&tenants(), &s).unwrap().traces.len(), 0);
    let mut s = spec(tags(&[]));
    s.limit = 2;
    assert_eq!(store.search(&tenants(), &s).unwrap().traces.len(), 2);
}

#[test]
fn wal_replay_restores_acknowledged_spans() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    {
        let store = open(dir.path(), &clock);
        seed(&store);
        store.maintain(true);
        store
            .ingest(
                SINGLE_TENANT,
                req("late", vec![span(1, 9, 1, "late", 30, 1)]),
            )
            .unwrap();
        store
            .ingest(
                SINGLE_TENANT,
                req("new", vec![span(7, 70, 0, "fresh", 30, 1)]),
            )
            .unwrap();
    }
    let store = open(dir.path(), &clock);
    assert_eq!(span_names(&store, 1), vec!["GET /a", "SELECT", "late"]);
    assert_eq!(span_names(&store, 7), vec!["fresh"]);
    assert_eq!(found(&store, tags(&[("service.name", "new")])), vec![7]);
}

#[test]
fn wal_segments_are_freed_once_in_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    seed(&store);
    store.maintain(true);
    let wal_dir = dir.path().join(SINGLE_TENANT).join("wal");
    let total: u64 = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(total, 0, "all WAL data is in blocks");
}

#[test]
fn compaction_merges_blocks_and_keeps_every_trace() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for i in 0..5u64 {
        store
            .ingest(
                SINGLE_TENANT,
                req("svc", vec![span(100 + i, 1, 0, "root", i, 5)]),
            )
            .unwrap();
        // Trace 1 gets a span in every block, so compaction must merge it.
        store
            .ingest(
                SINGLE_TENANT,
                req("svc", vec![span(1, 10 + i, 0, &format!("part{i}"), i, 1)]),
            )
            .unwrap();
        clock.advance(1_000_000_000);
        let rep = store.maintain(true);
        assert!(rep.errors.is_empty(), "{rep:?}");
    }
    let t = store.tenant(SINGLE_TENANT).unwrap();
    let mut levels: Vec<u32> = t.blocks().iter().map(|b| b.meta.level).collect();
    levels.sort();
    assert_eq!(
        levels,
        vec![0, 1],
        "the first 4 blocks were compacted into one"
    );
    assert_eq!(
        span_names(&store, 1),
        vec!["part0", "part1", "part2", "part3", "part4"]
    );
    for i in 0..5 {
        assert_eq!(span_names(&store, 100 + i), vec!["root"]);
    }
    assert_eq!(found(&store, tags(&[("name", "part3")])), vec![1]);
    let merged = t.blocks().into_iter().find(|b| b.meta.level == 1).unwrap();
    let g = merged.read_group(0).unwrap();
    let i = g.traces.iter().position(|e| e.id == tid(1)).unwrap();
    assert_eq!(
        g.trace(i).spans.len(),
        4,
        "rows of trace 1 merged from 4 blocks"
    );
    let blocks_dir = dir.path().join(SINGLE_TENANT).join("blocks");
    assert_eq!(
        std::fs::read_dir(blocks_dir).unwrap().count(),
        2,
        "inputs deleted"
    );
}

#[test]
fn retention_deletes_old_blocks_with_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    seed(&store);
    store.maintain(true);
    assert!(!span_names(&store, 1).is_empty());
    clock.advance(167 * 3_600_000_000_000);
    assert_eq!(store.maintain(false).blocks_deleted, 0);
    clock.advance(2 * 3_600_000_000_000);
    assert_eq!(store.maintain(false).blocks_deleted, 1);
    assert!(span_names(&store, 1).is_empty());
    assert!(
        store
            .metrics()
            .render()
            .contains("tempodb_retention_deleted_total 1")
    );
}

#[test]
fn tenants_are_isolated_on_disk_and_in_queries() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    store
        .ingest("team-a", req("a", vec![span(1, 1, 0, "a-root", 0, 1)]))
        .unwrap();
    store
        .ingest("team-b", req("b", vec![span(2, 2, 0, "b-root", 0, 1)]))
        .unwrap();
    let a = vec!["team-a".to_string()];
    let both = vec!["team-a".to_string(), "team-b".to_string()];
    assert!(store.find_trace(&a, &tid(1)).unwrap().is_some());
    assert!(store.find_trace(&a, &tid(2)).unwrap().is_none());
    assert!(store.find_trace(&both, &tid(2)).unwrap().is_some());
    assert_eq!(store.search(&a, &spec(tags(&[]))).unwrap().traces.len(), 1);
    assert_eq!(
        store.search(&both, &spec(tags(&[]))).unwrap().traces.len(),
        2
    );
    assert!(dir.path().join("team-a").join("wal").is_dir());
    assert!(dir.path().join("team-b").join("wal").is_dir());
    assert!(
        store
            .ingest("bad/tenant", req("x", vec![span(3, 3, 0, "x", 0, 1)]))
            .is_err()
    );
}

#[test]
fn oversized_traces_are_rejected_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = cfg(dir.path());
    c.limits.max_bytes_per_trace = 300;
    let store = Store::open(&c, clock.clone()).unwrap();
    let big = with_attrs(
        span(1, 1, 0, "big", 0, 1),
        vec![kv_s("blob", &"x".repeat(400))],
    );
    let o = store
        .ingest(
            SINGLE_TENANT,
            req("svc", vec![big, span(2, 2, 0, "small", 0, 1)]),
        )
        .unwrap();
    assert_eq!((o.accepted_spans, o.rejected_spans), (1, 1));
    assert!(o.message.unwrap().starts_with("TRACE_TOO_LARGE"));
    assert!(store.metrics().render().contains(
        r#"tempo_discarded_spans_total{reason="trace_too_large",tenant="single-tenant"} 1"#
    ));
}

#[test]
fn rate_limit_refuses_whole_requests() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let r = req(
        "svc",
        vec![with_attrs(
            span(1, 1, 0, "x", 0, 1),
            vec![kv_s("pad", &"p".repeat(80))],
        )],
    );
    let size = r.encoded_len() as u64;
    let mut c = cfg(dir.path());
    c.limits.ingestion_rate_limit_bytes = size / 2;
    c.limits.ingestion_burst_size_bytes = size * 3 / 2;
    let store = Store::open(&c, clock.clone()).unwrap();
    assert!(store.ingest(SINGLE_TENANT, r.clone()).is_ok());
    let err = store.ingest(SINGLE_TENANT, r.clone()).unwrap_err();
    assert!(
        matches!(err, super::IngestError::RateLimited { .. }),
        "{err}"
    );
    clock.advance(2_000_000_000);
    assert!(store.ingest(SINGLE_TENANT, r).is_ok());
}

#[test]
fn full_disk_refuses_writes_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let disk = FullDisk::new(i64::MAX / 2);
    {
        let store = Store::open_with_io(&cfg(dir.path()), clock.clone(), disk.clone()).unwrap();
        seed(&store);
        store.maintain(true);
        store
            .ingest(
                SINGLE_TENANT,
                req("svc", vec![span(5, 5, 0, "before-full", 0, 1)]),
            )
            .unwrap();
        disk.set(0);
        let err = store
            .ingest(
                SINGLE_TENANT,
                req("svc", vec![span(6, 6, 0, "refused", 0, 1)]),
            )
            .unwrap_err();
        assert!(err.to_string().contains("No space left on device"), "{err}");
        // Block cutting fails too: the data stays live and queryable.
        let rep = store.maintain(true);
        assert!(!rep.errors.is_empty());
        assert_eq!(span_names(&store, 5), vec!["before-full"]);
        assert!(span_names(&store, 6).is_empty());
        disk.set(i64::MAX / 2);
        store
            .ingest(
                SINGLE_TENANT,
                req("svc", vec![span(7, 7, 0, "after", 0, 1)]),
            )
            .unwrap();
    }
    let store = open(dir.path(), &clock);
    assert_eq!(span_names(&store, 1), vec!["GET /a", "SELECT"]);
    assert_eq!(span_names(&store, 5), vec!["before-full"]);
    assert_eq!(span_names(&store, 7), vec!["after"]);
    assert!(span_names(&store, 6).is_empty());
    let rep = store.maintain(true);
    assert!(rep.errors.is_empty(), "{rep:?}");
    assert_eq!(span_names(&store, 5), vec!["before-full"]);
}

#[test]
fn observer_sees_accepted_batches() {
    struct Count(std::sync::atomic::AtomicUsize);
    impl super::BatchObserver for Count {
        fn observe(
            &self,
            _t: &str,
            b: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        ) {
            let n: usize = b
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            self.0.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let c = Arc::new(Count(Default::default()));
    store.set_observer(c.clone());
    seed(&store);
    let mut bad = span(9, 9, 0, "bad", 0, 1);
    bad.trace_id = vec![1, 2];
    store
        .ingest(
            SINGLE_TENANT,
            req("svc", vec![bad, span(8, 8, 0, "ok", 0, 1)]),
        )
        .unwrap();
    assert_eq!(c.0.load(std::sync::atomic::Ordering::SeqCst), 5);
    let big = with_attrs(
        span(10, 10, 0, "big", 0, 1),
        vec![kv_s("blob", &"x".repeat(6_000_000))],
    );
    let o = store
        .ingest(
            SINGLE_TENANT,
            req("svc", vec![big, span(11, 11, 0, "ok", 0, 1)]),
        )
        .unwrap();
    assert_eq!(o.rejected_spans, 1);
    assert_eq!(
        c.0.load(std::sync::atomic::Ordering::SeqCst),
        6,
        "too-large spans are not observed"
    );
}

#[test]
fn traces_wait_longer_for_a_missing_root() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = cfg(dir.path());
    c.max_block_duration = std::time::Duration::from_secs(1);
    let store = Store::open(&c, clock.clone()).unwrap();
    store
        .ingest(SINGLE_TENANT, req("svc", vec![span(1, 1, 0, "root", 0, 1)]))
        .unwrap();
    store
        .ingest(
            SINGLE_TENANT,
            req("svc", vec![span(2, 2, 1, "orphan-child", 0, 1)]),
        )
        .unwrap();
    clock.advance(2_000_000_000);
    assert_eq!(store.cut_blocks(false).blocks_cut, 1);
    let t = store.tenant(SINGLE_TENANT).unwrap();
    assert_eq!(t.live_stats().0, 1, "the rootless trace stays live");
    store
        .ingest(
            SINGLE_TENANT,
            req("svc", vec![span(2, 1, 0, "late-root", 0, 5)]),
        )
        .unwrap();
    clock.advance(2_000_000_000);
    store.cut_blocks(false);
    assert_eq!(t.live_stats().0, 0);
    let r = store
        .search(&tenants(), &spec(tags(&[("root.name", "late-root")])))
        .unwrap();
    assert_eq!(r.traces.len(), 1, "root and child were cut together");
    assert_eq!(r.traces[0].service_stats[0].1.span_count, 2);
}

#[test]
fn search_skips_blocks_and_groups_that_cannot_match() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for (i, svc) in ["alpha", "beta", "gamma"].iter().enumerate() {
        store
            .ingest(
                SINGLE_TENANT,
                req(svc, vec![span(i as u64 + 1, 1, 0, "op", 0, 1)]),
            )
            .unwrap();
        store.maintain(true);
    }
    let r = store
        .search(
            &tenants(),
            &spec(ql(r#"{ resource.service.name = "beta" }"#)),
        )
        .unwrap();
    assert_eq!(
        (r.traces.len(), r.inspected_traces),
        (1, 1),
        "only beta's group is read"
    );
    let q = format!(r#"{{ trace:id = "{}" }}"#, hex::encode(tid(3)));
    let r = store.search(&tenants(), &spec(ql(&q))).unwrap();
    assert_eq!(
        (r.traces.len(), r.total_blocks),
        (1, 1),
        "only the block holding the id"
    );
    let r = store
        .search(
            &tenants(),
            &spec(ql(r#"{ resource.service.name = "nobody" }"#)),
        )
        .unwrap();
    assert_eq!((r.traces.len(), r.inspected_traces), (0, 0));
    let r = store
        .search(
            &tenants(),
            &spec(ql(r#"{ resource.service.name != "beta" }"#)),
        )
        .unwrap();
    assert_eq!(r.traces.len(), 2, "negations are not pre-filtered");
}

/// `with (most_recent = true)` returns the newest traces wherever they are (here in the
/// oldest block, behind live traces that match first), and skips blocks too old to count.
#[test]
fn most_recent_hint_returns_the_newest_traces_and_skips_older_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let round = |first: u64, start_ms: u64| {
        let spans = (0..20)
            .map(|i| span(first + i, 1, 0, "op", start_ms + i, 1))
            .collect();
        store.ingest(SINGLE_TENANT, req("svc", spans)).unwrap();
    };
    round(1, 300_000); // the newest, written first
    store.maintain(true);
    round(21, 100_000);
    store.maintain(true);
    round(41, 200_000); // live
    let mut sp = spec(ql("{ } with (most_recent = true)"));
    sp.limit = 5;
    let r = store.search(&tenants(), &sp).unwrap();
    let ids: Vec<[u8; 16]> = r.traces.iter().map(|t| t.id).collect();
    assert_eq!(ids, [20, 19, 18, 17, 16].map(tid));
    assert_eq!(
        r.inspected_traces, 40,
        "the live traces and the newest block; the block in between ends too early"
    );
    // Without the hint the search stops at the first five found.
    sp.filter = ql("{ }");
    let r = store.search(&tenants(), &sp).unwrap();
    assert_eq!((r.traces.len(), r.inspected_traces), (5, 5));
}

/// Live traces outside a search's window are passed over, not counted as inspected.
#[test]
fn live_traces_outside_the_window_are_not_inspected() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let spans = (0..10)
        .map(|i| span(i + 1, 1, 0, "op", i * 60_000, 1))
        .collect();
    store.ingest(SINGLE_TENANT, req("svc", spans)).unwrap();
    let mut sp = spec(ql("{ }"));
    // Minutes 2, 3 and 4.
    sp.start_ns = T0 + 120_000_000_000;
    sp.end_ns = T0 + 240_000_000_000;
    let r = store.search(&tenants(), &sp).unwrap();
    assert_eq!((r.traces.len(), r.inspected_traces), (3, 3));
}

#[test]
fn compaction_keeps_a_span_delivered_twice_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for _ in 0..4 {
        // The same span in four blocks (as after a WAL replay of already-cut data).
        store
            .ingest(SINGLE_TENANT, req("svc", vec![span(1, 1, 0, "dup", 0, 1)]))
            .unwrap();
        store.maintain(true);
    }
    let t = store.tenant(SINGLE_TENANT).unwrap();
    assert_eq!(t.blocks().len(), 1);
    let g = t.blocks()[0].read_group(0).unwrap();
    assert_eq!(g.trace(0).spans.len(), 1);
}

#[test]
fn search_hits_get_the_root_from_later_parts_of_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let child = with_attrs(
        span(1, 2, 1, "SELECT", 5, 10),
        vec![kv_s("db.system", "postgresql")],
    );
    store
        .ingest(SINGLE_TENANT, req("db-client", vec![child]))
        .unwrap();
    store.maintain(true);
    store
        .ingest(
            SINGLE_TENANT,
            req("frontend", vec![span(1, 1, 0, "GET /", 0, 50)]),
        )
        .unwrap();
    let r = store
        .search(&tenants(), &spec(tags(&[("db.system", "postgresql")])))
        .unwrap();
    assert_eq!(r.traces.len(), 1);
    let t = &r.traces[0];
    assert_eq!(
        (t.root_service.as_deref(), t.root_name.as_deref()),
        (Some("frontend"), Some("GET /"))
    );
    assert_eq!(t.duration_ns, 50_000_000);
    let counts: Vec<(&str, u32)> = t
        .service_stats
        .iter()
        .map(|(n, s)| (n.as_str(), s.span_count))
        .collect();
    assert_eq!(counts, vec![("db-client", 1), ("frontend", 1)]);
}

#[test]
fn a_long_search_does_not_hold_up_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for chunk in (1..=3000u64).collect::<Vec<_>>().chunks(500) {
        let spans = chunk
            .iter()
            .map(|&t| {
                with_attrs(
                    span(t, t, 0, "op", 0, 5),
                    vec![kv_s("payload", "abcdefghijklmnop")],
                )
            })
            .collect();
        store.ingest(SINGLE_TENANT, req("svc", spans)).unwrap();
    }
    let terms: Vec<String> = (0..300)
        .map(|i| format!("span.payload =~ \"nomatch{i}.*z\""))
        .collect();
    let heavy = spec(ql(&format!("{{ {} }}", terms.join(" || "))));
    let s2 = store.clone();
    let search = std::thread::spawn(move || s2.search(&tenants(), &heavy).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!search.is_finished(), "the search must outlast the ingest");
    store
        .ingest(
            SINGLE_TENANT,
            req("svc", vec![span(9999, 1, 0, "new", 0, 1)]),
        )
        .unwrap();
    assert!(
        !search.is_finished(),
        "ingest waited for the whole search to finish"
    );
    assert!(search.join().unwrap().traces.is_empty());
}

/// A span stamped at `start_ns` lasting `dur_ns` (saturating), trace `trace`.
fn stamped(trace: u64, start_ns: u64, end_ns: u64) -> opentelemetry_proto::tonic::trace::v1::Span {
    let mut s = span(trace, trace, 0, "stamped", 0, 1);
    s.start_time_unix_nano = start_ns;
    s.end_time_unix_nano = end_ns;
    s
}

#[test]
fn retention_follows_ingest_time_not_span_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let day = 24 * 3_600_000_000_000;
    // Stamped 0, eight days in the past, and ending 20 hours from now (u64::MAX is refused at
    // ingest: see the next test).
    for (trace, start, end) in [
        (1, 0, 0),
        (2, T0 - 8 * day, T0 - 8 * day + 1),
        (3, T0, T0 + 20 * 3_600_000_000_000),
    ] {
        store
            .ingest(SINGLE_TENANT, req("svc", vec![stamped(trace, start, end)]))
            .unwrap();
        // One block each, so no block's fate hides another's.
        store.maintain(true);
    }
    clock.advance(11_000_000_000);
    store.maintain(false);
    for trace in 1..=3 {
        assert_eq!(
            span_names(&store, trace),
            ["stamped"],
            "trace {trace} lost after its ack"
        );
    }
    // A week after ingest every one of them is gone, the one ending in the future included.
    clock.advance(7 * day);
    store.maintain(false);
    for trace in 1..=3 {
        assert!(
            span_names(&store, trace).is_empty(),
            "trace {trace} outlived retention"
        );
    }
    assert!(store.tenant(SINGLE_TENANT).unwrap().blocks().is_empty());
}

/// Block files fail to write; the WAL still works.
#[derive(Debug)]
struct BlocksFail;

impl super::fsio::IoHooks for BlocksFail {
    fn before_write(&self, path: &std::path::Path, _len: usize) -> std::io::Result<()> {
        if path.components().any(|c| c.as_os_str() == "blocks") {
            return Err(std::io::Error::other("injected block write failure"));
        }
        Ok(())
    }
}

#[test]
fn memory_limit_counts_cuts_waiting_for_a_failing_block_write() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = cfg(dir.path());
    c.max_block_bytes = 64 * 1024;
    c.limits.max_live_bytes = 256 * 1024;
    let store = Store::open_with_io(&c, clock.clone(), Arc::new(BlocksFail)).unwrap();
    let big = |t: u64| {
        req(
            "svc",
            vec![with_attrs(
                span(t, t, 0, "op", 0, 1),
                vec![kv_s("pad", &"x".repeat(20_000))],
            )],
        )
    };
    let mut acked = Vec::new();
    let mut refused = None;
    for t in 1..=100 {
        match store.ingest(SINGLE_TENANT, big(t)) {
            Ok(_) => acked.push(t),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        assert!(!store.maintain(true).errors.is_empty());
    }
    let err = refused.expect("ingest kept acknowledging while no block could be written");
    assert!(matches!(err, crate::IngestError::Busy { .. }), "{err}");
    assert!(
        err.to_string().contains("store.limits.max_live_bytes"),
        "{err}"
    );
    assert!(acked.len() < 20, "{} requests acked", acked.len());
    // Every acknowledged span is still readable.
    for t in acked {
        assert_eq!(span_names(&store, t), ["op"]);
    }
}

#[test]
fn new_tenants_past_the_limit_are_refused_and_existing_ones_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = cfg(dir.path());
    c.multitenancy_enabled = true;
    c.max_tenants = 3;
    let store = Store::open(&c, clock.clone()).unwrap();
    let push = |t: &str, n: u64| store.ingest(t, req("svc", vec![span(n, n, 0, "op", 0, 1)]));
    for (i, t) in ["a", "b", "c"].iter().enumerate() {
        push(t, i as u64 + 1).unwrap();
    }
    let err = push("d", 4).unwrap_err();
    assert!(
        matches!(err, crate::IngestError::TooManyTenants { max: 3 }),
        "{err}"
    );
    assert!(err.to_string().contains("store.max_tenants"), "{err}");
    assert!(!dir.path().join("d").exists());
    push("a", 5).unwrap();
    assert_eq!(store.tenants().len(), 3);
    // After a restart the limit still counts the tenants on disk.
    drop(store);
    let store = Store::open(&c, clock).unwrap();
    assert!(
        store
            .ingest("e", req("svc", vec![span(6, 6, 0, "op", 0, 1)]))
            .is_err()
    );
    store
        .ingest("b", req("svc", vec![span(7, 7, 0, "op", 0, 1)]))
        .unwrap();
}

#[rstest::rstest]
#[case::flag("-rf")]
#[case::star("*")]
#[case::quote("'")]
fn shell_hostile_tenant_names_are_refused(#[case] name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let err = store
        .ingest(name, req("svc", vec![span(1, 1, 0, "op", 0, 1)]))
        .unwrap_err();
    assert!(matches!(err, crate::IngestError::Tenant(_)), "{err}");
    assert!(!dir.path().join(name).exists());
}

/// Open file descriptors of this process pointing under `dir`.
fn fds_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|p| p.starts_with(dir)))
        .count()
}

#[test]
fn idle_tenants_hold_no_wal_file_handle() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = cfg(dir.path());
    c.multitenancy_enabled = true;
    let store = Store::open(&c, clock.clone()).unwrap();
    for (i, t) in ["a", "b", "c"].iter().enumerate() {
        let n = i as u64 + 1;
        store
            .ingest(t, req("svc", vec![span(n, n, 0, "op", 0, 1)]))
            .unwrap();
    }
    let wal_fds = || fds_under(&dir.path().join("a").join("wal"));
    assert_eq!(wal_fds(), 1);
    clock.advance(61_000_000_000);
    store.maintain(false);
    for t in ["a", "b", "c"] {
        assert_eq!(fds_under(&dir.path().join(t).join("wal")), 0, "tenant {t}");
    }
    // The next push reopens it, and nothing was lost.
    store
        .ingest("a", req("svc", vec![span(9, 9, 0, "again", 0, 1)]))
        .unwrap();
    assert_eq!(wal_fds(), 1);
    drop(store);
    let store = Store::open(&c, clock).unwrap();
    assert!(
        store
            .find_trace(&["a".to_string()], &tid(9))
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .find_trace(&["a".to_string()], &tid(1))
            .unwrap()
            .is_some()
    );
}

#[test]
fn client_facing_ingest_errors_do_not_show_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let disk = FullDisk::new(0);
    let store = Store::open_with_io(&cfg(dir.path()), clock, disk).unwrap();
    let err = store
        .ingest(SINGLE_TENANT, req("svc", vec![span(1, 1, 0, "op", 0, 1)]))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(!msg.contains(dir.path().to_str().unwrap()), "{msg}");
}

#[test]
fn spans_ending_at_absurd_times_are_refused_before_the_ack_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let out = store
        .ingest(
            SINGLE_TENANT,
            req(
                "svc",
                vec![stamped(1, T0, u64::MAX), stamped(2, T0, T0 + 1_000)],
            ),
        )
        .unwrap();
    assert_eq!((out.accepted_spans, out.rejected_spans), (1, 1));
    assert!(out.message.unwrap().contains("more than 24h past"));
    assert!(span_names(&store, 1).is_empty());
    assert_eq!(span_names(&store, 2), ["stamped"]);
    assert!(
        store
            .metrics()
            .render()
            .contains(r#"tempo_discarded_spans_total{reason="invalid",tenant="single-tenant"} 1"#)
    );
}
