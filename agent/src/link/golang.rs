//! Which goroutine a Go program's client request was made by. Go's HTTP client writes a
//! request from a pooled connection's writer goroutine, not from the goroutine that asked for
//! it (a handler, in a server), and goroutines move between threads: neither the thread nor
//! the writing goroutine says which request a call belongs to. Two uprobe steps do
//! (`ebpf::record::GoStep`), both naming the request by its `*http.Request` address: a
//! goroutine handing the request to the client (`RoundTrip`), then a goroutine starting to
//! write it (`WriteRequest`). The hand-over is looked up when the write starts (the kernel
//! reports the steps in the order they happened), so a request address reused later does not
//! matter; a request written by writer `w` at `t` is the last one `w` started before `t`,
//! provided no record was lost on the host in between (a lost step would make an older one
//! look like the last).
//!
//! Bounded: at most `MAX_REQUESTS` hand-overs and `MAX_WRITERS` writers are remembered (half
//! is forgotten when full), each writer with its last `WRITES` requests.
use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::ebpf::record::{GoCall, GoStep};

const MAX_REQUESTS: usize = 65_536;
const MAX_WRITERS: usize = 65_536;
const MAX_PIDS: usize = 4096;
/// Requests kept per writer: more than one drain interval's worth (spans reach the linker
/// after the records of their drain, and the writer's later requests may be among them).
const WRITES: usize = 16;

/// A request a writer started: when, the goroutine that made it (`None`: not known, a step
/// was missed), and the host's lost-record count then.
#[derive(Clone, Copy, Debug)]
struct Write {
    at: u64,
    maker: Option<u64>,
    ring_lost: u32,
}

#[derive(Debug, Default)]
pub(super) struct GoClients {
    /// Processes whose client steps are seen (their uprobes fire).
    pids: HashSet<u32>,
    /// (pid, request) → the goroutine that handed it over.
    requests: HashMap<(u32, u64), u64>,
    /// (pid, writer goroutine) → the requests it started writing, oldest first.
    writes: HashMap<(u32, u64), VecDeque<Write>>,
}

impl GoClients {
    pub fn step(&mut self, pid: u32, call: GoCall) {
        if self.pids.len() >= MAX_PIDS {
            self.pids.clear();
        }
        self.pids.insert(pid);
        match call.step {
            GoStep::RoundTrip => {
                if self.requests.len() >= MAX_REQUESTS {
                    forget_half(&mut self.requests);
                }
                self.requests.insert((pid, call.request), call.goroutine);
            }
            GoStep::WriteRequest => {
                // A request whose hand-over was not seen (lost, before the probes, or a
                // second write of one request) names no maker, and hides the ones before.
                let maker = self.requests.remove(&(pid, call.request));
                if self.writes.len() >= MAX_WRITERS {
                    forget_half(&mut self.writes);
                }
                let writes = self.writes.entry((pid, call.goroutine)).or_default();
                if writes.len() >= WRITES {
                    writes.pop_front();
                }
                writes.push_back(Write {
                    at: call.at,
                    maker,
                    ring_lost: call.ring_lost,
                });
            }
        }
    }

    /// Whether `pid`'s client steps are seen: its spans' goroutines are the keys to use.
    pub fn knows(&self, pid: u32) -> bool {
        self.pids.contains(&pid)
    }

    /// The goroutine a request written by `writer` at `at` was made by, the host having lost
    /// `ring_lost` records by then. `Some(writer)` when `writer` never started writing a
    /// request through the client (it makes its requests itself); `None` when it did but the
    /// maker of the last one before `at` is not known for sure.
    pub fn maker(&self, pid: u32, writer: u64, at: u64, ring_lost: u32) -> Option<u64> {
        let Some(writes) = self.writes.get(&(pid, writer)) else {
            return Some(writer);
        };
        let last = writes.iter().rev().find(|w| w.at <= at)?;
        (last.ring_lost == ring_lost)
            .then_some(last.maker)
            .flatten()
    }

    pub fn forget_process(&mut self, pid: u32) {
        if self.pids.remove(&pid) {
            self.requests.retain(|(p, _), _| *p != pid);
            self.writes.retain(|(p, _), _| *p != pid);
        }
    }
}

fn forget_half<K: Copy + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    let drop: Vec<K> = map.keys().take(map.len() / 2 + 1).copied().collect();
    for k in drop {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(step: GoStep, goroutine: u64, request: u64, at: u64) -> GoCall {
        GoCall {
            step,
            goroutine,
            request,
            at,
            ring_lost: 0,
        }
    }

    #[test]
    fn a_request_belongs_to_the_goroutine_that_handed_it_over() {
        use GoStep::{RoundTrip, WriteRequest};
        let mut go = GoClients::default();
        assert!(!go.knows(7));
        go.step(7, call(RoundTrip, 0xa, 0x100, 10));
        go.step(7, call(RoundTrip, 0xb, 0x200, 11));
        go.step(7, call(WriteRequest, 0xf0, 0x200, 12));
        go.step(7, call(WriteRequest, 0xf0, 0x100, 14));
        // The first request's address is reused for a later request of another goroutine:
        // what was written before keeps its maker.
        go.step(7, call(RoundTrip, 0xc, 0x100, 20));
        go.step(7, call(WriteRequest, 0xf1, 0x100, 21));
        assert!(go.knows(7));
        assert_eq!(go.maker(7, 0xf0, 13, 0), Some(0xb));
        assert_eq!(go.maker(7, 0xf0, 30, 0), Some(0xa));
        assert_eq!(go.maker(7, 0xf1, 22, 0), Some(0xc));
        // Before the writer's first request: unknown. A goroutine that writes no
        // handed-over request makes its own.
        assert_eq!(go.maker(7, 0xf0, 11, 0), None);
        assert_eq!(go.maker(7, 0xa, 30, 0), Some(0xa));
        // Records lost between the write's start and the request's bytes: not sure.
        assert_eq!(go.maker(7, 0xf0, 30, 1), None);
        // A write whose hand-over was not seen hides the writer's earlier requests.
        go.step(7, call(WriteRequest, 0xf0, 0x999, 40));
        assert_eq!(go.maker(7, 0xf0, 41, 0), None);
        go.forget_process(7);
        assert!(!go.knows(7));
        assert_eq!(go.maker(7, 0xf0, 30, 0), Some(0xf0));
    }

    #[test]
    fn memory_is_bounded() {
        use GoStep::{RoundTrip, WriteRequest};
        let mut go = GoClients::default();
        for i in 0..(MAX_REQUESTS as u64 + 10) {
            go.step(1, call(RoundTrip, i, i, i));
            go.step(1, call(RoundTrip, i, i + (1 << 40), i));
            go.step(1, call(WriteRequest, i, i, i));
        }
        for t in 0..(WRITES as u64 * 2) {
            go.step(1, call(RoundTrip, 5, t + (1 << 41), t));
            go.step(1, call(WriteRequest, 1 << 42, t + (1 << 41), t));
        }
        assert!(go.requests.len() <= MAX_REQUESTS);
        assert!(go.writes.len() <= MAX_WRITERS);
        assert!(go.writes.values().all(|w| w.len() <= WRITES));
    }
}
