//! A bounded index from a key (a connection, a thread, a route) to the spans remembered
//! under it, oldest first. When a key holds too many, the oldest leave the index and its
//! `horizon` remembers the latest end among them: a question about a time before the horizon
//! may be missing an answer, and is treated as ambiguous rather than answered wrongly.
use std::{collections::VecDeque, hash::Hash};

use rustc_hash::FxHashMap as HashMap;

/// Spans kept under one key at most.
pub(super) const MAX_PER_KEY: usize = 4096;

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

    /// Removes `id` from under `key`. Ids are pushed in increasing order, so a slot is
    /// sorted: cheap when `id` is the oldest (spans are forgotten in arrival order) or was
    /// already dropped for room.
    pub fn remove(&mut self, key: &K, id: u64) {
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        if slot.ids.front() == Some(&id) {
            slot.ids.pop_front();
        } else if let Ok(i) = slot.ids.binary_search(&id) {
            slot.ids.remove(i);
        }
        if slot.ids.is_empty() {
            self.map.remove(key);
        }
    }
}

/// The spans remembered, by id. Ids are handed out in sequence and forgotten nearly in the
/// same order, so they index a ring: no hashing, and no rehash moving large entries.
#[derive(Debug)]
pub(super) struct Slab<E> {
    /// Id of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<E>>,
    live: usize,
}

impl<E> Slab<E> {
    pub fn new() -> Self {
        Self {
            base: 0,
            slots: VecDeque::new(),
            live: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    fn index(&self, id: u64) -> Option<usize> {
        usize::try_from(id.checked_sub(self.base)?).ok()
    }

    pub fn get(&self, id: &u64) -> Option<&E> {
        self.slots.get(self.index(*id)?)?.as_ref()
    }

    pub fn get_mut(&mut self, id: &u64) -> Option<&mut E> {
        let i = self.index(*id)?;
        self.slots.get_mut(i)?.as_mut()
    }

    /// Stores the entry of `id`, the next id in sequence.
    pub fn insert(&mut self, id: u64, entry: E) {
        debug_assert_eq!(id, self.base + self.slots.len() as u64, "ids in sequence");
        if self.slots.is_empty() {
            self.base = id;
        }
        self.slots.push_back(Some(entry));
        self.live += 1;
    }

    pub fn remove(&mut self, id: &u64) -> Option<E> {
        let i = self.index(*id)?;
        let entry = self.slots.get_mut(i)?.take()?;
        self.live -= 1;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(entry)
    }
}
