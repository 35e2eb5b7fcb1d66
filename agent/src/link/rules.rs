//! The linking rules: which span is whose parent (connection, goroutine, thread, proxy), and
//! when a span stops waiting for one.
use super::{Linker, State, index::Slot};
use crate::span::{LinkKind, SpanKind};

/// How much later than the server's read a client's request write may seem to start. The
/// kernel stamps a syscall when it returns, and a write that wakes the reader on its CPU
/// returns after the reader has (by as much as the reader runs before it yields).
pub(super) const WRITE_RETURN_SLACK_NS: u64 = 5_000_000;

/// Whether client span `c` can be the other end of server span `s` on their connection: the
/// same request line (the bytes one wrote are the bytes the other read), and the client's
/// exchange in flight when the server read the request. A client exchange cut off before any
/// response (`connection_closed`, `timeout`) has no known end.
fn same_exchange<T>(c: &super::Entry<T>, s: &super::Entry<T>) -> bool {
    c.route == s.route
        && c.start <= s.start.saturating_add(WRITE_RETURN_SLACK_NS)
        && (s.start <= c.end || !c.answered)
}

/// What a rule found.
#[derive(Clone, Copy, Debug)]
enum Found {
    None,
    One(u64),
    /// More than one parent fits.
    Many,
    /// One that fitted may have been dropped from the index for room.
    Unsure,
}

impl<T> Linker<T> {
    /// A server span: its client may already be here (connection); else it waits for it when
    /// the peer can be on this node, and is decided now when it cannot.
    pub(super) fn server_arrived(&mut self, id: u64) {
        if let Some(client) = self.client_of(id) {
            self.claim(client);
            if self.attach(id, client, LinkKind::Connection) {
                return;
            }
        }
        let Some(e) = self.entries.get(&id) else {
            return;
        };
        let peer = e.conn.0.ip();
        let local = peer.is_loopback() || peer == e.conn.1.ip() || self.local_ips.contains(&peer);
        if local {
            let entries = &self.entries;
            self.waiting_servers
                .push(e.conn, id, |old| entries.get(&old).map_or(0, |o| o.end));
        } else {
            self.resolve(id);
        }
    }

    /// A client span: a server span on the same connection may be waiting for it. Its own
    /// parent is decided later (`decide`), once the server spans that may contain it came.
    pub(super) fn client_arrived(&mut self, id: u64) {
        let Some(c) = self.entries.get(&id) else {
            return;
        };
        let conn = c.conn;
        let server = self.waiting_servers.get(&conn).and_then(|slot| {
            slot.ids
                .iter()
                .filter_map(|&s| Some((s, self.entries.get(&s)?)))
                .filter(|(_, s)| s.state == State::Waiting && same_exchange(c, s))
                .min_by_key(|(_, s)| s.start)
                .map(|(s, _)| s)
        });
        if let Some(server) = server
            && self.attach(server, id, LinkKind::Connection)
        {
            self.waiting_servers.remove(&conn, server);
            self.claim(id);
        }
    }

    fn claim(&mut self, client: u64) {
        if let Some(c) = self.entries.get_mut(&client) {
            c.claimed = true;
            let conn = c.conn;
            self.open_clients.remove(&conn, client);
        }
    }

    /// The unclaimed client span whose exchange was in flight when server span `id` read
    /// its request (the earliest, for pipelined requests).
    fn client_of(&self, id: u64) -> Option<u64> {
        let s = self.entries.get(&id)?;
        let slot = self.open_clients.get(&s.conn)?;
        if s.start <= slot.horizon {
            // Its client may have been dropped for room.
            return None;
        }
        slot.ids
            .iter()
            .filter_map(|&c| Some((c, self.entries.get(&c)?)))
            .filter(|(_, c)| !c.claimed && same_exchange(c, s))
            .min_by_key(|(_, c)| c.start)
            .map(|(c, _)| c)
    }

    /// The wait is over for `id`: a client looks for the server span it was made under
    /// (thread, then proxy); a server that found no client, or a client no server, takes
    /// its header's context or starts a trace.
    pub(super) fn decide(&mut self, id: u64) {
        let Some(e) = self.entries.get(&id) else {
            return;
        };
        if e.kind == SpanKind::Server {
            if e.header.is_none() {
                self.stats.expired_unlinked += 1;
            }
            let conn = e.conn;
            self.waiting_servers.remove(&conn, id);
            self.resolve(id);
            return;
        }
        let (pid, tid, start, end, route) = (e.pid, e.tid, e.start, e.end, e.route);
        let maker = e.go_maker;
        // The parent is the request open when the call started (all of them count towards
        // ambiguity), and it must have waited for the call: a call that outlives the request
        // may be background work, and a context is never inherited past its request's end.
        let waited = |found: Found| match found {
            Found::One(p) if self.entries.get(&p).is_none_or(|s| s.end < end) => Found::None,
            other => other,
        };
        let inside = |s: &super::Entry<T>| {
            s.kind == SpanKind::Server && s.pid == pid && s.start <= start && start <= s.end
        };
        // The rules in order; the first that finds one parent wins.
        let mut ambiguous = false;
        let mut chosen = None;
        if let Some(g) = maker {
            let mut found = self.only(self.by_goroutine.get(&(pid, g)), start, |s| {
                inside(s) && s.goroutine == g
            });
            if matches!(found, Found::One(_)) && self.multiplexed_go.contains(&pid) {
                found = Found::Many;
            }
            tracing::trace!(
                pid,
                goroutine = format_args!("{:#x}", e.goroutine),
                maker = format_args!("{g:#x}"),
                start,
                found = ?found,
                "Go client call"
            );
            match waited(found) {
                Found::One(p) => chosen = Some((p, LinkKind::Goroutine)),
                Found::Many | Found::Unsure => ambiguous = true,
                Found::None => {}
            }
        }
        if chosen.is_none() {
            let mut thread = self.only(self.by_thread.get(&(pid, tid)), start, |s| {
                inside(s) && s.tid == tid
            });
            if matches!(thread, Found::Many) {
                self.multiplexed.insert(pid);
            } else if matches!(thread, Found::One(_)) && self.multiplexed.contains(&pid) {
                // An event loop: the one request open on the thread now may not be the one
                // this call is for.
                thread = Found::Many;
            }
            match waited(thread) {
                Found::One(p) => chosen = Some((p, LinkKind::Thread)),
                Found::Many | Found::Unsure => ambiguous = true,
                Found::None => {}
            }
        }
        if chosen.is_none() {
            match waited(self.only(self.by_route.get(&(pid, route)), start, |s| {
                inside(s) && s.route == route
            })) {
                Found::One(p) => chosen = Some((p, LinkKind::Proxy)),
                Found::Many | Found::Unsure => ambiguous = true,
                Found::None => {}
            }
        }
        match chosen {
            Some((parent, kind)) if self.attach(id, parent, kind) => {}
            _ => {
                if ambiguous {
                    self.stats.ambiguous += 1;
                }
                self.resolve(id);
            }
        }
    }

    /// The one span of `slot` that fits.
    fn only(&self, slot: Option<&Slot>, at: u64, fits: impl Fn(&super::Entry<T>) -> bool) -> Found {
        let Some(slot) = slot else {
            return Found::None;
        };
        if at <= slot.horizon {
            return Found::Unsure;
        }
        let mut found = Found::None;
        // Newest first: a span arrives after it ended, so once one arrived before `at`, none
        // older can contain `at`.
        for &s in slot.ids.iter().rev() {
            let Some(e) = self.entries.get(&s) else {
                continue;
            };
            if e.arrival < at {
                break;
            }
            if fits(e) {
                found = match found {
                    Found::None => Found::One(s),
                    _ => return Found::Many,
                };
            }
        }
        found
    }
}
