//! A bounded index from a key (a connection, a thread, a route) to the spans remembered
//! under it, oldest first. When a key holds too many, the oldest leave the index and its
//! `horizon` remembers the latest end among them: a question about a time before the horizon
//! may be missing an answer, and is treated as ambiguous rather than answered wrongly.
use std::{collections::VecDeque, hash::Hash};

use rustc_hash::FxHashMap as HashMap;

/// Spans kept under one key at most.
pub(super) const MAX_PER_KEY: usize = 512;

#[derive(Debug, Default)]
pub(super) struct Slot {
    pub ids: VecDeque<u64>,
    /// Latest end time (Unix ns) of a span dropped from this slot for room.
    pub horizon: u64,
}

#[derive(Debug)]
pub(super) struct Index<K> {
    map: HashMap<K, Slot>,
}

impl<K: Hash + Eq + Copy> Index<K> {
    pub fn new() -> Self {
        Self {
            map: HashMap::default(),
        }
    }

    /// Adds `id` under `key`; `end_of` gives the end time of a span dropped for room.
    pub fn push(&mut self, key: K, id: u64, end_of: impl Fn(u64) -> u64) {
        let slot = self.map.entry(key).or_default();
        if slot.ids.len() >= MAX_PER_KEY
            && let Some(old) = slot.ids.pop_front()
        {
            slot.horizon = slot.horizon.max(end_of(old));
        }
        slot.ids.push_back(id);
    }

    pub fn get(&self, key: &K) -> Option<&Slot> {
        self.map.get(key)
    }

    /// Removes `id` from under `key` (cheap when it is the oldest, as when spans are
    /// forgotten in arrival order).
    pub fn remove(&mut self, key: &K, id: u64) {
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        if slot.ids.front() == Some(&id) {
            slot.ids.pop_front();
        } else if let Some(i) = slot.ids.iter().position(|&x| x == id) {
            slot.ids.remove(i);
        }
        if slot.ids.is_empty() {
            self.map.remove(key);
        }
    }
}
