//! Per-connection state: turns a stream of kernel records into complete HTTP exchanges.
//!
//! The `Tracker` keeps one state machine per connection (keyed by pid, fd and socket id),
//! bounded in number (oldest-idle eviction) and in bytes (only heads are ever buffered,
//! capped by `max_head_bytes`). Behaviour at the edges, chosen and counted in `Stats`:
//! - a server request that never got a response head is dropped (`aborted_exchanges`);
//!   a client request left without a complete response becomes a span with
//!   `error_type = "connection_closed"` (or `"timeout"` when the connection went idle);
//! - a response without usable framing (no length, lost chunk framing, truncated head)
//!   ends at the next request, the close, or the idle timeout (`ended_by_*`), and its end
//!   time is the last response byte seen; one with lost chunk framing or a truncated head
//!   also ends once its connection has been quiet for `QUIET_FLUSH_NS` (at a `sweep`).
//! - a connection whose Open was seen but whose first bytes are not HTTP/1.x (TLS, h2c
//!   prior knowledge, Redis, Postgres, a PROXY-protocol preamble) is marked opaque until
//!   it closes; one first seen mid-life is only tracked from the first record that parses
//!   as a request head (a READ request makes it a server, a WRITE request a client);
//! - a 101 or a 2xx to CONNECT ends parsing of that connection (upgraded or tunnelled).
//!
//! Memory: at most `max_connections` entries, each with at most `MAX_PIPELINE` queued
//! requests (attributes only, bounded strings) and two head buffers of at most
//! `max_head_bytes` plus one copied prefix.
use rustc_hash::FxHashMap as HashMap;

use crate::ebpf::record::{ConnKey, Record, Role, Tuple};
use crate::protocol::http1::looks_like_request;
use crate::span::HttpSpan;
pub use state::QUIET_FLUSH_NS;
use state::{Conn, Ctx, EndReason, Mode, allowed};

mod state;
#[cfg(test)]
mod tests;

/// Limits and capture switches for the tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// Connections tracked at once; the oldest-idle ones are evicted beyond this.
    pub max_connections: usize,
    /// A request/response head longer than this is counted and skipped.
    pub max_head_bytes: usize,
    /// Connections idle longer than this are expired by `sweep`.
    pub idle_timeout_ns: u64,
    /// Make SERVER spans (connections the process accepted).
    pub capture_server: bool,
    /// Make CLIENT spans (connections the process opened).
    pub capture_client: bool,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            max_connections: 65_536,
            max_head_bytes: 16 * 1024,
            idle_timeout_ns: 30_000_000_000,
            capture_server: true,
            capture_client: true,
        }
    }
}

/// Counters of what the tracker saw and did. Plain numbers; the caller exports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records pushed.
    pub records: u64,
    /// Request heads parsed.
    pub requests: u64,
    /// Spans emitted.
    pub spans: u64,
    /// Data records skipped because they were not HTTP/1.x (or out of sync).
    pub non_http_skipped: u64,
    /// Connections recognised as another protocol from their first bytes.
    pub non_http_connections: u64,
    /// Heads that started like HTTP but broke its grammar (and bad chunk framing).
    pub parse_errors: u64,
    /// Heads longer than `max_head_bytes`.
    pub oversized_heads: u64,
    /// Heads cut off by the copied prefix (salvaged from their complete lines).
    pub truncated_heads: u64,
    /// Connections evicted because `max_connections` was reached.
    pub evicted_connections: u64,
    /// Connections expired by `sweep`.
    pub expired_connections: u64,
    /// Connections whose (pid, fd) was taken by a new socket before we saw a close.
    pub replaced_connections: u64,
    /// Requests dropped without a span (no response seen, eviction, garbage response).
    pub aborted_exchanges: u64,
    /// Response heads with no request to pair with.
    pub orphan_responses: u64,
    /// Connections skipped by the capture_server / capture_client switches.
    pub role_filtered: u64,
    /// 1xx interim responses (100 Continue, 103 Early Hints) skipped.
    pub interim_responses: u64,
    /// Connections upgraded (101) or tunnelled (CONNECT), no longer parsed.
    pub upgraded_connections: u64,
    /// Chunked bodies whose framing could not be followed.
    pub chunk_framing_lost: u64,
    /// Chunked bodies seen to end (the last-chunk marker in a record's final bytes) whose
    /// size is left out of the span: bytes the kernel did not copy may hide chunk boundaries.
    pub chunked_size_unknown: u64,
    /// Unframed responses ended by: the last-chunk marker in a record's final bytes,
    /// the next request, the close (or EOF), the idle timeout (or eviction).
    pub ended_by_last_chunk: u64,
    pub ended_by_next_request: u64,
    /// ... the next pipelined response's head (framing lost, more requests queued).
    pub ended_by_next_response: u64,
    pub ended_by_close: u64,
    pub ended_by_timeout: u64,
    /// A side lost sync because uncopied bytes hid where the next head starts.
    pub lost_sync: u64,
    /// Connections resynchronised because the kernel lost some of their records (full ring).
    pub ring_loss_resyncs: u64,
    /// Exchanges dropped without a span because records of their connection were lost.
    pub ring_loss_exchanges: u64,
    /// Exchanges dropped without a span (`aborted_exchanges` + `ring_loss_exchanges`) per
    /// process since the last [`Tracker::take_skipped`], for the RED metrics' loss counters
    /// (at most `MAX_SKIPPED_PIDS` processes; beyond that, counted only in the totals).
    pub skipped_by_pid: std::collections::BTreeMap<u32, u64>,
}

/// Processes whose skipped exchanges are attributed at once (between two takes).
const MAX_SKIPPED_PIDS: usize = 4096;

impl Stats {
    /// `n` exchanges of process `pid` dropped without a span.
    pub(crate) fn skipped(&mut self, pid: u32, n: u64) {
        if n == 0 {
            return;
        }
        if self.skipped_by_pid.len() < MAX_SKIPPED_PIDS || self.skipped_by_pid.contains_key(&pid) {
            *self.skipped_by_pid.entry(pid).or_default() += n;
        }
    }

    /// Every counter with a stable snake_case name, for export as metrics.
    pub fn counters(&self) -> [(&'static str, u64); 26] {
        [
            ("records", self.records),
            ("requests", self.requests),
            ("spans", self.spans),
            ("non_http_skipped", self.non_http_skipped),
            ("non_http_connections", self.non_http_connections),
            ("parse_errors", self.parse_errors),
            ("oversized_heads", self.oversized_heads),
            ("truncated_heads", self.truncated_heads),
            ("evicted_connections", self.evicted_connections),
            ("expired_connections", self.expired_connections),
            ("replaced_connections", self.replaced_connections),
            ("aborted_exchanges", self.aborted_exchanges),
            ("orphan_responses", self.orphan_responses),
            ("role_filtered", self.role_filtered),
            ("interim_responses", self.interim_responses),
            ("upgraded_connections", self.upgraded_connections),
            ("chunk_framing_lost", self.chunk_framing_lost),
            ("chunked_size_unknown", self.chunked_size_unknown),
            ("ended_by_last_chunk", self.ended_by_last_chunk),
            ("ended_by_next_request", self.ended_by_next_request),
            ("ended_by_next_response", self.ended_by_next_response),
            ("ended_by_close", self.ended_by_close),
            ("ended_by_timeout", self.ended_by_timeout),
            ("lost_sync", self.lost_sync),
            ("ring_loss_resyncs", self.ring_loss_resyncs),
            ("ring_loss_exchanges", self.ring_loss_exchanges),
        ]
    }
}

/// Connection table: records in, spans out.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    stats: Stats,
    /// Keyed by kernel-given numbers (pid, fd, socket address): no need for SipHash's
    /// flood resistance, and hashing was a few percent of the agent's CPU.
    conns: HashMap<ConnKey, Conn>,
    /// Which socket currently holds a (pid, fd).
    by_fd: HashMap<(u32, i32), u64>,
    /// Which connection a socket belongs to (for kernel-side closes without an fd).
    by_sock: HashMap<u64, ConnKey>,
    scratch: Vec<u8>,
    /// The kernel's host-wide count of lost records, as of the latest record.
    ring_lost: u32,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            stats: Stats::default(),
            conns: HashMap::default(),
            by_fd: HashMap::default(),
            by_sock: HashMap::default(),
            scratch: Vec::new(),
            ring_lost: 0,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Exchanges dropped without a span per process since the last call.
    pub fn take_skipped(&mut self) -> std::collections::BTreeMap<u32, u64> {
        std::mem::take(&mut self.stats.skipped_by_pid)
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Feeds one record; finished exchanges are appended to `out`. Never panics.
    pub fn push(&mut self, rec: Record, out: &mut Vec<HttpSpan>) {
        self.stats.records += 1;
        if let Some(n) = rec.ring_lost() {
            self.ring_lost = n;
        }
        match rec {
            Record::Data(d) => {
                if let Some(conn) = self.conns.get_mut(&d.key) {
                    let mut ctx = Ctx {
                        cfg: &self.cfg,
                        stats: &mut self.stats,
                        out,
                        scratch: &mut self.scratch,
                    };
                    conn.on_data(&d, &mut ctx);
                    return;
                }
                self.retire_fd(d.key, d.start_unix_ns, out);
                let known = &d.bytes[..d.bytes.len().min(d.len as usize)];
                if !looks_like_request(known) {
                    // Unknown connection and no request line: nothing to learn from it.
                    self.stats.non_http_skipped += 1;
                    return;
                }
                let conn = Conn::new(
                    d.key.pid,
                    None,
                    Mode::Http,
                    d.tuple,
                    d.end_unix_ns,
                    d.sock_lost,
                );
                self.insert(d.key, conn, out);
                if let Some(conn) = self.conns.get_mut(&d.key) {
                    let mut ctx = Ctx {
                        cfg: &self.cfg,
                        stats: &mut self.stats,
                        out,
                        scratch: &mut self.scratch,
                    };
                    conn.on_data(&d, &mut ctx);
                }
            }
            Record::Open {
                key,
                role,
                tuple,
                unix_ns,
                sock_lost,
                ..
            } => self.open(key, role, tuple, unix_ns, sock_lost, out),
            Record::Close {
                key,
                unix_ns,
                sock_lost,
                ..
            } => {
                let found = if key.fd < 0 {
                    self.by_sock.get(&key.sock_id).copied()
                } else if self.conns.contains_key(&key) {
                    Some(key)
                } else {
                    // The close may not know the socket; the fd does.
                    self.by_fd
                        .get(&(key.pid, key.fd))
                        .map(|&sock_id| ConnKey { sock_id, ..key })
                };
                if let Some(k) = found {
                    // Records lost before the close: what is in flight cannot be trusted.
                    if sock_lost == agent_common::LOST_UNKNOWN {
                        self.end(k, unix_ns, EndReason::KernelClose, out);
                    } else {
                        if let Some(conn) = self.conns.get_mut(&k) {
                            let mut ctx = Ctx {
                                cfg: &self.cfg,
                                stats: &mut self.stats,
                                out,
                                scratch: &mut self.scratch,
                            };
                            conn.check_loss(sock_lost, &mut ctx);
                        }
                        self.end(k, unix_ns, EndReason::Close, out);
                    }
                }
            }
            Record::ProcessExit { pid, unix_ns, .. } => {
                let keys: Vec<ConnKey> = self
                    .conns
                    .keys()
                    .filter(|k| k.pid == pid)
                    .copied()
                    .collect();
                for k in keys {
                    self.end(k, unix_ns, EndReason::ProcessExit, out);
                }
            }
            // Process selection, naming and Go's client steps, not connection state: the
            // pipeline acts on them.
            Record::Exec { .. }
            | Record::ExeName { .. }
            | Record::Environ { .. }
            | Record::Go { .. } => {}
        }
    }

    /// Expires connections idle for longer than the timeout, finishing what can be finished.
    pub fn sweep(&mut self, now_unix_ns: u64, out: &mut Vec<HttpSpan>) {
        let timeout = self.cfg.idle_timeout_ns;
        let keys: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| now_unix_ns.saturating_sub(c.last_unix_ns) > timeout)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.stats.expired_connections += 1;
            self.end(k, now_unix_ns, EndReason::Timeout, out);
        }
        // A response whose chunk framing was lost (writev bodies) would otherwise wait for
        // the next request or the close; after a quiet spell it is surely complete enough.
        let mut ctx = Ctx {
            cfg: &self.cfg,
            stats: &mut self.stats,
            out,
            scratch: &mut self.scratch,
        };
        for conn in self.conns.values_mut() {
            conn.flush_quiet(now_unix_ns, &mut ctx);
        }
    }

    fn open(
        &mut self,
        key: ConnKey,
        role: Role,
        tuple: Tuple,
        unix_ns: u64,
        sock_lost: u32,
        out: &mut Vec<HttpSpan>,
    ) {
        self.retire_fd(key, unix_ns, out);
        if self.conns.contains_key(&key) {
            self.stats.replaced_connections += 1;
            self.end(key, unix_ns, EndReason::Replaced, out);
        }
        let mode = if allowed(&self.cfg, role) {
            Mode::Http
        } else {
            self.stats.role_filtered += 1;
            Mode::Ignored
        };
        self.insert(
            key,
            Conn::new(key.pid, Some(role), mode, tuple, unix_ns, sock_lost),
            out,
        );
    }

    /// A different socket on the same (pid, fd) means the old connection is gone.
    fn retire_fd(&mut self, key: ConnKey, unix_ns: u64, out: &mut Vec<HttpSpan>) {
        if let Some(&old) = self.by_fd.get(&(key.pid, key.fd))
            && old != key.sock_id
        {
            self.stats.replaced_connections += 1;
            self.end(
                ConnKey {
                    sock_id: old,
                    ..key
                },
                unix_ns,
                EndReason::Replaced,
                out,
            );
        }
    }

    fn insert(&mut self, key: ConnKey, mut conn: Conn, out: &mut Vec<HttpSpan>) {
        if self.conns.len() >= self.cfg.max_connections.max(1) {
            self.evict_oldest(out);
        }
        conn.ring_lost_seen = self.ring_lost;
        self.conns.insert(key, conn);
        if key.fd >= 0 {
            self.by_fd.insert((key.pid, key.fd), key.sock_id);
        }
        self.by_sock.insert(key.sock_id, key);
    }

    /// Evicts the oldest-idle sixteenth of the table at once, so the scan is amortised.
    fn evict_oldest(&mut self, out: &mut Vec<HttpSpan>) {
        let mut ages: Vec<(u64, ConnKey)> = self
            .conns
            .iter()
            .map(|(k, c)| (c.last_unix_ns, *k))
            .collect();
        if ages.is_empty() {
            return;
        }
        let n = (ages.len() / 16).max(1);
        ages.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        for &(t, k) in &ages[..n] {
            self.stats.evicted_connections += 1;
            self.end(k, t, EndReason::Evicted, out);
        }
    }

    /// Removes a connection and finishes its exchanges.
    fn end(&mut self, key: ConnKey, unix_ns: u64, reason: EndReason, out: &mut Vec<HttpSpan>) {
        let Some(mut conn) = self.conns.remove(&key) else {
            return;
        };
        if self.by_fd.get(&(key.pid, key.fd)) == Some(&key.sock_id) {
            self.by_fd.remove(&(key.pid, key.fd));
        }
        if self.by_sock.get(&key.sock_id) == Some(&key) {
            self.by_sock.remove(&key.sock_id);
        }
        let mut ctx = Ctx {
            cfg: &self.cfg,
            stats: &mut self.stats,
            out,
            scratch: &mut self.scratch,
        };
        // Without a record of its own close, a connection may have lost the answers to what
        // was in flight (with its close) if records were lost since its last one.
        if reason != EndReason::Close && conn.ring_lost_seen != self.ring_lost {
            conn.drop_in_flight(&mut ctx);
        }
        conn.end(unix_ns, reason, &mut ctx);
    }

    /// Pending exchanges of one connection (tests only).
    #[cfg(test)]
    fn pending(&self, key: &ConnKey) -> Option<usize> {
        self.conns.get(key).map(Conn::pending)
    }
}
