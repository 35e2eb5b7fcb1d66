//! Connected traces: finished spans wait here a short while for their partners, and leave
//! with a trace id, a parent and a `LinkKind` saying how the parent was found.
//!
//! Spans reach the agent when their exchange ends, children before parents (a backend
//! answers before the proxy that called it), so each span is held at most `hold` after it
//! arrived. The rules, in the order they are tried:
//! - **traceparent**: a request that carried a valid header joins the trace it names (the
//!   header's parent, or a traced client on this node that sent that same context);
//! - **connection** (same-node stitching): a server span whose peer is a traced client on
//!   this node becomes the child of that client span (reversed 4-tuple, the same request
//!   line, and the client's exchange in flight when the server read the request: the n-th
//!   request of a keep-alive connection pairs with the n-th client exchange), whichever
//!   arrives first;
//! - **goroutine** (in-process, Go): a client request made by the goroutine serving a request
//!   is its child. Go's HTTP client writes requests from another goroutine than the one that
//!   made them; uprobes on it tell which made each (`golang`);
//! - **thread** (in-process): a client span started by a thread (same pid and tid) while it
//!   was serving a request (between that server span's start and end) is its child, unless
//!   the process serves several requests on one thread at once (an event loop);
//! - **proxy** (in-process): a client request whose method, path and query equal those of the
//!   one server request of the same process open at that time is its child (nginx
//!   `proxy_pass`).
//!
//! A wrong link is worse than a missing one: when two parents fit, none is chosen (counted
//! as `ambiguous`). Decisions that could still change (a client's parent, a server waiting
//! for its client) are taken `hold / 2` after arrival; a span whose ancestors are still
//! undecided at `hold` makes the topmost decide now. Links only go from server to client
//! (connection) and from client to server (in process), each with the child starting inside
//! its parent, so no cycle can form; one is refused anyway. A span leaves with the trace id
//! of its root, and its parent left before it or with it: every parent is in the trace, or
//! is the remote parent a header named.
//!
//! Memory: at most `max_spans` spans are remembered (held, or already sent and kept for
//! late partners until `2 × hold`); beyond that the oldest is decided and forgotten at
//! once (`evicted_for_memory`).
use std::{
    collections::VecDeque,
    hash::BuildHasher,
    net::{IpAddr, SocketAddr},
};

use rustc_hash::FxHashSet as HashSet;

use golang::GoClients;
use index::{Index, Slab};

use crate::ebpf::record::GoCall;
use crate::span::{HttpSpan, LinkKind, SpanKind, context::TraceParentError, context::new_span_id};

mod golang;
mod index;
mod rules;
#[cfg(test)]
mod tests;

/// How long spans wait and how many are remembered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// Longest a span is held back (ns); 0 turns linking off.
    pub hold_ns: u64,
    /// Spans remembered at most (held or recently sent).
    pub max_spans: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            hold_ns: 1_000_000_000,
            max_spans: 65_536,
        }
    }
}

/// Counters of the linking stage. Plain numbers; the caller exports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Spans sent on with each `sonde.link` value.
    pub linked_traceparent: u64,
    pub linked_connection: u64,
    pub linked_thread: u64,
    pub linked_proxy: u64,
    pub linked_goroutine: u64,
    pub unlinked: u64,
    /// Parent choices refused because more than one parent fitted.
    pub ambiguous: u64,
    /// Server spans from a peer on this node whose client span never came in time.
    pub expired_unlinked: u64,
    /// Spans decided early and forgotten because `max_spans` was reached.
    pub evicted_for_memory: u64,
    /// Incoming `traceparent` headers ignored: malformed, or an all-zero id.
    pub traceparent_malformed: u64,
    pub traceparent_zero: u64,
    /// Spans held right now (a gauge).
    pub held: u64,
}

impl Stats {
    /// Every counter with a stable snake_case name, for export as metrics (`held` is a
    /// gauge and is not among them).
    pub fn counters(&self) -> [(&'static str, u64); 11] {
        [
            ("linked_traceparent", self.linked_traceparent),
            ("linked_connection", self.linked_connection),
            ("linked_thread", self.linked_thread),
            ("linked_proxy", self.linked_proxy),
            ("linked_goroutine", self.linked_goroutine),
            ("unlinked", self.unlinked),
            ("ambiguous", self.ambiguous),
            ("expired_unlinked", self.expired_unlinked),
            ("evicted_for_memory", self.evicted_for_memory),
            ("traceparent_malformed", self.traceparent_malformed),
            ("traceparent_zero", self.traceparent_zero),
        ]
    }
}

/// Where a span stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No parent yet: a server waiting for its client, or a client to be decided.
    Waiting,
    /// Has a parent that is not decided yet.
    Attached,
    /// Ids final; sent on (or about to be).
    Resolved,
}

/// What the linker remembers of one span.
#[derive(Debug)]
struct Entry<T> {
    arrival: u64,
    kind: SpanKind,
    pid: u32,
    tid: u32,
    /// A Go program's goroutine that read (server) or wrote (client) the request head.
    goroutine: u64,
    /// A Go program's client request: the goroutine that made it (found at arrival, while
    /// the hand-over is still remembered).
    go_maker: Option<u64>,
    start: u64,
    end: u64,
    /// (client end, server end) of the connection.
    conn: (SocketAddr, SocketAddr),
    /// Hash of method, path and query (the proxy rule).
    route: u64,
    /// The context the request carried: its trace id and the span id it names (a server's
    /// remote parent, a client's own id).
    header: Option<([u8; 16], [u8; 8])>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    state: State,
    parent: Option<(u64, LinkKind)>,
    children: Vec<u64>,
    /// A client already paired with a server span.
    claimed: bool,
    /// A response was seen (a client cut off before one has no known end).
    answered: bool,
    /// The span itself until it is sent on.
    payload: Option<(T, HttpSpan)>,
}

/// The linking stage. `T` travels with each span (the process's resource).
#[derive(Debug)]
pub struct Linker<T> {
    cfg: LinkConfig,
    stats: Stats,
    entries: Slab<Entry<T>>,
    next_id: u64,
    /// Ids in arrival order, once per timed step: decide, release, forget.
    to_decide: VecDeque<u64>,
    to_release: VecDeque<u64>,
    to_forget: VecDeque<u64>,
    /// Server spans waiting for their client, and client spans no server claimed yet, by
    /// connection.
    waiting_servers: Index<(SocketAddr, SocketAddr)>,
    open_clients: Index<(SocketAddr, SocketAddr)>,
    /// Server spans by (pid, tid), by (pid, route), and by (pid, goroutine) in Go programs
    /// whose client steps are seen.
    by_thread: Index<(u32, u32)>,
    by_route: Index<(u32, u64)>,
    by_goroutine: Index<(u32, u64)>,
    /// Processes seen serving two requests on one thread (goroutine) at once.
    multiplexed: HashSet<u32>,
    multiplexed_go: HashSet<u32>,
    go: GoClients,
    /// Addresses seen as the local end of a traced socket: a peer there is on this node.
    local_ips: HashSet<IpAddr>,
    route_hasher: std::hash::RandomState,
    ready: Vec<(T, HttpSpan)>,
}

/// Bound on the small sets (cleared when reached).
const MAX_SET: usize = 4096;

impl<T> Linker<T> {
    pub fn new(cfg: LinkConfig) -> Self {
        Self {
            cfg,
            stats: Stats::default(),
            entries: Slab::new(),
            next_id: 0,
            to_decide: VecDeque::new(),
            to_release: VecDeque::new(),
            to_forget: VecDeque::new(),
            waiting_servers: Index::new(),
            open_clients: Index::new(),
            by_thread: Index::new(),
            by_route: Index::new(),
            by_goroutine: Index::new(),
            multiplexed: HashSet::default(),
            multiplexed_go: HashSet::default(),
            go: GoClients::default(),
            local_ips: HashSet::default(),
            route_hasher: std::hash::RandomState::new(),
            ready: Vec::new(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Takes a step of a Go program's HTTP client (at `at`, Unix ns), in the order the
    /// kernel saw them, before the spans of the same drain.
    pub fn go_step(&mut self, pid: u32, call: GoCall) {
        self.go.step(pid, call);
    }

    /// Forgets what was learnt of a process that exited.
    pub fn forget_process(&mut self, pid: u32) {
        self.go.forget_process(pid);
        self.multiplexed.remove(&pid);
        self.multiplexed_go.remove(&pid);
    }

    /// Takes one finished span at `now` (Unix ns, the clock of the spans' times).
    pub fn push(&mut self, now: u64, payload: T, span: HttpSpan) {
        match span.traceparent_rejected {
            Some(TraceParentError::ZeroId(_)) => self.stats.traceparent_zero += 1,
            Some(_) => self.stats.traceparent_malformed += 1,
            None => {}
        }
        if self.cfg.hold_ns == 0 {
            self.count(span.link);
            self.ready.push((payload, span));
            return;
        }
        while self.entries.len() >= self.cfg.max_spans.max(1) {
            let Some(old) = self.to_forget.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|e| e.payload.is_some()) {
                self.stats.evicted_for_memory += 1;
            }
            self.forget(old);
        }
        let id = self.next_id;
        self.next_id += 1;
        let entry = self.entry(now, payload, span);
        if self.local_ips.len() >= MAX_SET {
            self.local_ips.clear();
        }
        self.local_ips.insert(entry.conn_local().ip());
        self.index(id, &entry);
        let kind = entry.kind;
        self.entries.insert(id, entry);
        self.stats.held += 1;
        self.to_decide.push_back(id);
        self.to_release.push_back(id);
        self.to_forget.push_back(id);
        match kind {
            SpanKind::Server => self.server_arrived(id),
            SpanKind::Client => self.client_arrived(id),
        }
    }

    /// Takes the timed steps due at `now` and moves the spans that are ready into `out`.
    pub fn poll(&mut self, now: u64, out: &mut Vec<(T, HttpSpan)>) {
        let hold = self.cfg.hold_ns;
        let due = |entries: &Slab<Entry<T>>, id: u64, after: u64| {
            entries
                .get(&id)
                .is_none_or(|e| e.arrival.saturating_add(after) <= now)
        };
        while let Some(&id) = self.to_decide.front() {
            if !due(&self.entries, id, hold / 2) {
                break;
            }
            self.to_decide.pop_front();
            if self.state(id) == Some(State::Waiting) {
                self.decide(id);
            }
        }
        while let Some(&id) = self.to_release.front() {
            if !due(&self.entries, id, hold) {
                break;
            }
            self.to_release.pop_front();
            self.force(id);
        }
        while let Some(&id) = self.to_forget.front() {
            if !due(&self.entries, id, hold.saturating_mul(2)) {
                break;
            }
            self.to_forget.pop_front();
            self.forget(id);
        }
        out.append(&mut self.ready);
    }

    /// Decides everything still held and moves it into `out` (the agent is stopping).
    pub fn flush(&mut self, out: &mut Vec<(T, HttpSpan)>) {
        let ids: Vec<u64> = self.to_release.drain(..).collect();
        for id in ids {
            self.force(id);
        }
        out.append(&mut self.ready);
    }

    fn entry(&self, now: u64, payload: T, span: HttpSpan) -> Entry<T> {
        let conn = match span.kind {
            SpanKind::Server => (span.peer, span.local),
            SpanKind::Client => (span.local, span.peer),
        };
        let header = (span.link == LinkKind::Traceparent).then(|| match span.kind {
            SpanKind::Server => (span.trace_id, span.parent_span_id.unwrap_or_default()),
            SpanKind::Client => (span.trace_id, span.span_id),
        });
        let route = self
            .route_hasher
            .hash_one((&span.method, &span.path, &span.query));
        // Go's client writes a request on a connection's writer goroutine, for the goroutine
        // that made it.
        let go_maker = (span.kind == SpanKind::Client && self.go.knows(span.pid))
            .then(|| {
                self.go.maker(
                    span.pid,
                    span.goroutine,
                    span.start_unix_ns,
                    span.head_ring_lost,
                )
            })
            .flatten();
        Entry {
            arrival: now,
            kind: span.kind,
            pid: span.pid,
            tid: span.tid,
            goroutine: span.goroutine,
            go_maker,
            start: span.start_unix_ns,
            end: span.end_unix_ns.max(span.start_unix_ns),
            conn,
            route,
            header,
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            state: State::Waiting,
            parent: None,
            children: Vec::new(),
            claimed: false,
            answered: span.status_code.is_some(),
            payload: Some((payload, span)),
        }
    }

    /// Indexes a new span (a server's wait for its client is indexed by `server_arrived`).
    fn index(&mut self, id: u64, e: &Entry<T>) {
        let entries = &self.entries;
        let end_of = |old: u64| entries.get(&old).map_or(0, |o| o.end);
        match e.kind {
            SpanKind::Client => self.open_clients.push(e.conn, id, end_of),
            SpanKind::Server => {
                // Two requests served on one thread at once: an event loop, where the thread
                // says nothing about which request a client call belongs to.
                if overlapping(&self.by_thread, (e.pid, e.tid), e, entries) {
                    if self.multiplexed.len() >= MAX_SET {
                        self.multiplexed.clear();
                    }
                    self.multiplexed.insert(e.pid);
                }
                self.by_thread.push((e.pid, e.tid), id, end_of);
                self.by_route.push((e.pid, e.route), id, end_of);
                if self.go.knows(e.pid) {
                    let key = (e.pid, e.goroutine);
                    if overlapping(&self.by_goroutine, key, e, entries) {
                        if self.multiplexed_go.len() >= MAX_SET {
                            self.multiplexed_go.clear();
                        }
                        self.multiplexed_go.insert(e.pid);
                    }
                    self.by_goroutine.push(key, id, end_of);
                }
            }
        }
    }

    fn forget(&mut self, id: u64) {
        self.force(id);
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        match e.kind {
            SpanKind::Client => self.open_clients.remove(&e.conn, id),
            SpanKind::Server => {
                self.waiting_servers.remove(&e.conn, id);
                self.by_thread.remove(&(e.pid, e.tid), id);
                self.by_route.remove(&(e.pid, e.route), id);
                self.by_goroutine.remove(&(e.pid, e.goroutine), id);
            }
        }
    }

    fn state(&self, id: u64) -> Option<State> {
        self.entries.get(&id).map(|e| e.state)
    }

    /// Makes `child` a child of `parent`, unless that would close a cycle.
    fn attach(&mut self, child: u64, parent: u64, kind: LinkKind) -> bool {
        let mut up = Some(parent);
        let mut depth = 0;
        while let Some(p) = up {
            if p == child || depth > 64 {
                return false;
            }
            up = self
                .entries
                .get(&p)
                .and_then(|e| e.parent)
                .map(|(id, _)| id);
            depth += 1;
        }
        let Some(p) = self.entries.get_mut(&parent) else {
            return false;
        };
        let parent_resolved = p.state == State::Resolved;
        if !parent_resolved {
            p.children.push(child);
        }
        if let Some(c) = self.entries.get_mut(&child) {
            c.parent = Some((parent, kind));
            c.state = State::Attached;
        }
        if parent_resolved {
            self.resolve(child);
        }
        true
    }

    /// Fixes the ids of `id` (from its parent, its header, or as a root), sends it on, and
    /// does the same for the children that waited for it.
    fn resolve(&mut self, id: u64) {
        let mut work = vec![id];
        while let Some(id) = work.pop() {
            let parent = self
                .entries
                .get(&id)
                .and_then(|e| e.parent)
                .and_then(|(p, kind)| {
                    let p = self.entries.get(&p)?;
                    (p.state == State::Resolved).then_some((
                        p.trace_id,
                        p.span_id,
                        p.parent_span_id,
                        kind,
                    ))
                });
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if e.state == State::Resolved {
                continue;
            }
            let link = match (parent, e.header) {
                // A header naming another trace than the parent's: the header wins.
                (Some((trace, ..)), Some((h_trace, _))) if trace != h_trace => e.take_header(),
                (Some((trace, span, grandparent, kind)), _) => {
                    e.trace_id = trace;
                    e.parent_span_id = Some(span);
                    // A client that forwarded the context it received unchanged names its
                    // caller's span as its own: give it an id of its own.
                    if e.span_id == span || Some(e.span_id) == grandparent {
                        e.span_id = new_span_id();
                    }
                    kind
                }
                (None, Some(_)) => e.take_header(),
                (None, None) => {
                    e.parent = None;
                    e.parent_span_id = None;
                    LinkKind::None
                }
            };
            e.state = State::Resolved;
            work.append(&mut e.children);
            if let Some((payload, mut span)) = e.payload.take() {
                span.trace_id = e.trace_id;
                span.span_id = e.span_id;
                span.parent_span_id = e.parent_span_id;
                span.link = link;
                self.ready.push((payload, span));
                self.stats.held = self.stats.held.saturating_sub(1);
                self.count(link);
            }
        }
    }

    fn count(&mut self, link: LinkKind) {
        let s = &mut self.stats;
        match link {
            LinkKind::None => s.unlinked += 1,
            LinkKind::Traceparent => s.linked_traceparent += 1,
            LinkKind::Connection => s.linked_connection += 1,
            LinkKind::Thread => s.linked_thread += 1,
            LinkKind::Proxy => s.linked_proxy += 1,
            LinkKind::Goroutine => s.linked_goroutine += 1,
        }
    }

    /// Sends `id` on now: the topmost undecided ancestor decides with what is known, and a
    /// chain that still does not end is cut above `id`.
    fn force(&mut self, id: u64) {
        for _ in 0..64 {
            let Some(state) = self.state(id) else {
                return;
            };
            if state == State::Resolved {
                return;
            }
            let mut top = id;
            while let Some((p, _)) = self.entries.get(&top).and_then(|e| e.parent) {
                if self.state(p) == Some(State::Resolved) {
                    break;
                }
                top = p;
            }
            match self.state(top) {
                Some(State::Waiting) => self.decide(top),
                // Attached to a resolved parent but not resolved: cannot happen; cut it.
                _ => {
                    self.detach(top);
                    self.resolve(top);
                }
            }
        }
        self.detach(id);
        self.resolve(id);
    }

    fn detach(&mut self, id: u64) {
        let Some(parent) = self.entries.get_mut(&id).and_then(|e| e.parent.take()) else {
            return;
        };
        if let Some(p) = self.entries.get_mut(&parent.0) {
            p.children.retain(|&c| c != id);
        }
    }
}

/// Whether a server span under `key` (among its newest) overlaps `e` in time.
fn overlapping<K: std::hash::Hash + Eq + Copy, T>(
    index: &Index<K>,
    key: K,
    e: &Entry<T>,
    entries: &Slab<Entry<T>>,
) -> bool {
    index.get(&key).is_some_and(|slot| {
        slot.ids.iter().rev().take(8).any(|other| {
            entries
                .get(other)
                .is_some_and(|o| o.start < e.end && e.start < o.end)
        })
    })
}

impl<T> Entry<T> {
    /// The traced process's own end of the connection.
    fn conn_local(&self) -> SocketAddr {
        match self.kind {
            SpanKind::Server => self.conn.1,
            SpanKind::Client => self.conn.0,
        }
    }

    /// The ids the request's header gave (a server's remote parent, a client's own span).
    fn take_header(&mut self) -> LinkKind {
        let Some((trace, named)) = self.header else {
            return LinkKind::None;
        };
        self.parent = None;
        self.trace_id = trace;
        match self.kind {
            SpanKind::Server => self.parent_span_id = Some(named),
            SpanKind::Client => {
                self.span_id = named;
                self.parent_span_id = None;
            }
        }
        LinkKind::Traceparent
    }
}
