//! Re-sent events (same `event_id`) are stored once. Ids are remembered in a window of
//! the most recent ones: 10 M ids by default, about 42 bytes an id at most (a 16-byte
//! slot at a load of 5/8 or more, and 16 bytes in the eviction queue: ≈ 420 MB for a
//! full window), far more than a week of a city's events (≈ 600 k).
//!
//! The ids live in an open-addressing table of our own rather than a `HashMap`: at
//! hundreds of thousands of events a second every lookup is a cache miss on a table of
//! millions of ids, and the import loop waited on those one at a time. Here a chunk's
//! ids can be [`RecentIds::prefetch`]ed first (independent loads the CPU overlaps), and
//! a slot is 16 bytes instead of 32.

use std::collections::VecDeque;
use std::hash::BuildHasher;

/// Ids are hashed with foldhash, seeded per process, so a sender cannot aim collisions
/// at the table.
type Hasher = foldhash::fast::RandomState;

pub const DEFAULT_WINDOW: usize = 10_000_000;

/// What the window knew of an id before it was inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never: a new event.
    New,
    /// Only as stored in the lake before this run began ([`RecentIds::seed`]).
    InLake,
    /// Earlier in this run: a re-send.
    ThisRun,
}

/// The most recent `capacity` event ids, oldest forgotten first.
pub struct RecentIds {
    table: IdTable,
    order: VecDeque<u128>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        RecentIds {
            table: IdTable::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers an id seen in this run, and says what was known of it.
    pub fn insert(&mut self, id: u128) -> Seen {
        match self.table.insert(id, true, true) {
            Some(true) => Seen::ThisRun,
            Some(false) => Seen::InLake,
            None => {
                self.remember(id);
                Seen::New
            }
        }
    }

    /// Remembers an id the lake holds (from before this run).
    pub fn seed(&mut self, id: u128) {
        if self.table.insert(id, false, false).is_none() {
            self.remember(id);
        }
    }

    /// [`insert`](Self::insert)s each id in order and says what was known of each. The
    /// slots of the ids a little ahead are prefetched, so the cache misses of a table of
    /// millions of ids overlap instead of coming one after another.
    pub fn insert_all(&mut self, ids: &[u128]) -> Vec<Seen> {
        const AHEAD: usize = 16;
        for &id in ids.iter().take(AHEAD) {
            self.table.prefetch(id);
        }
        let mut seen = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            if let Some(&ahead) = ids.get(i + AHEAD) {
                self.table.prefetch(ahead);
            }
            // With the window full, each new id evicts the oldest: read ahead there too.
            if self.order.len() >= self.capacity
                && let Some(&old) = self.order.get(AHEAD)
            {
                self.table.prefetch(old);
            }
            seen.push(self.insert(id));
        }
        seen
    }

    /// Makes room for `additional` more ids (within the window) at once: growing the
    /// table step by step costs a rehash and fresh pages each time.
    pub fn reserve(&mut self, additional: usize) {
        let want = (self.order.len() + additional).min(self.capacity);
        self.table.reserve(want);
    }

    fn remember(&mut self, id: u128) {
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.table.remove(old);
        }
    }

    /// Forgets an id: its event was read but not stored (a dropped buffer), and must
    /// not count as seen when it is read again.
    pub fn forget(&mut self, id: u128) {
        self.table.remove(id);
    }

    pub fn contains(&self, id: u128) -> bool {
        self.table.contains(id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// A hint to the CPU: this memory is about to be read.
#[inline]
fn prefetch<T>(at: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86_64 baseline, and a prefetch reads nothing the
    // program sees and never faults: the reference is valid anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((at as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// A set of ids, each with one flag (seen in this run): linear probing over a power of
/// two of 16-byte slots, at most 5/8 full, deletion by backward shift (no tombstones, so
/// a window that turns over forever never degrades).
///
/// The slot value 0 marks an empty slot; the id 0 (the nil UUID, which the contract
/// does not forbid) is kept beside the table.
struct IdTable {
    slots: Vec<u128>,
    /// One bit per slot: the id in it was seen in this run.
    this_run: Vec<u64>,
    len: usize,
    nil: Option<bool>,
    hasher: Hasher,
}

enum Probe {
    Found(usize),
    Vacant(usize),
}

impl IdTable {
    const INITIAL_SLOTS: usize = 1 << 12;

    fn new() -> Self {
        IdTable {
            slots: vec![0; Self::INITIAL_SLOTS],
            this_run: vec![0; Self::INITIAL_SLOTS / 64],
            len: 0,
            nil: None,
            hasher: Hasher::default(),
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, id: u128) -> usize {
        self.hasher.hash_one(id) as usize & self.mask()
    }

    fn probe(&self, id: u128) -> Probe {
        let mask = self.mask();
        let mut i = self.home(id);
        loop {
            match self.slots[i] {
                0 => return Probe::Vacant(i),
                k if k == id => return Probe::Found(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn flag(&self, i: usize) -> bool {
        self.this_run[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_flag(&mut self, i: usize, on: bool) {
        if on {
            self.this_run[i / 64] |= 1 << (i % 64);
        } else {
            self.this_run[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Asks the CPU to bring the id's home slot and flag word into the cache.
    fn prefetch(&self, id: u128) {
        let i = self.home(id);
        prefetch(&self.slots[i]);
        prefetch(&self.this_run[i / 64]);
    }

    /// Grows once to hold `len` ids within the load limit.
    fn reserve(&mut self, len: usize) {
        let mut n = self.slots.len();
        while len * 8 > n * 5 {
            n *= 2;
        }
        if n > self.slots.len() {
            self.rehash(n);
        }
    }

    fn contains(&self, id: u128) -> bool {
        if id == 0 {
            return self.nil.is_some();
        }
        matches!(self.probe(id), Probe::Found(_))
    }

    /// Inserts `id` with `this_run`, or, when present and `update`, sets its flag;
    /// returns the flag it had, if present. One probe either way.
    fn insert(&mut self, id: u128, this_run: bool, update: bool) -> Option<bool> {
        if id == 0 {
            let was = self.nil;
            if was.is_none() || update {
                self.nil = Some(this_run);
            }
            return was;
        }
        match self.probe(id) {
            Probe::Found(i) => {
                let was = self.flag(i);
                if update {
                    self.set_flag(i, this_run);
                }
                Some(was)
            }
            Probe::Vacant(i) => {
                if (self.len + 1) * 8 > self.slots.len() * 5 {
                    self.grow();
                    return self.insert(id, this_run, update);
                }
                self.slots[i] = id;
                self.set_flag(i, this_run);
                self.len += 1;
                None
            }
        }
    }

    fn remove(&mut self, id: u128) {
        if id == 0 {
            self.nil = None;
            return;
        }
        let Probe::Found(mut hole) = self.probe(id) else {
            return;
        };
        // Backward shift: pull later members of the run into the hole while that keeps
        // each one at or after its home slot, so every probe still finds what it seeks.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let k = self.slots[j];
            if k == 0 {
                break;
            }
            let home = self.home(k);
            // Distance from home to j, and from home to the hole, going forward.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = k;
                let flag = self.flag(j);
                self.set_flag(hole, flag);
                hole = j;
            }
        }
        self.slots[hole] = 0;
        self.set_flag(hole, false);
        self.len -= 1;
    }

    fn grow(&mut self) {
        self.rehash(self.slots.len() * 2);
    }

    fn rehash(&mut self, n: usize) {
        let slots = std::mem::replace(&mut self.slots, vec![0; n]);
        let flags = std::mem::replace(&mut self.this_run, vec![0; n / 64]);
        self.len = 0;
        for (i, id) in slots.into_iter().enumerate() {
            if id != 0 {
                let flag = flags[i / 64] & (1 << (i % 64)) != 0;
                self.insert(id, flag, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_window_and_forgets_the_oldest() {
        let mut ids = RecentIds::new(3);
        assert_eq!(ids.insert(1), Seen::New);
        assert_eq!(ids.insert(1), Seen::ThisRun);
        assert_eq!(ids.insert(2), Seen::New);
        assert_eq!(ids.insert(3), Seen::New);
        assert_eq!(ids.insert(4), Seen::New); // 1 falls out of the window
        assert_eq!(ids.len(), 3);
        assert_eq!(ids.insert(4), Seen::ThisRun);
        assert_eq!(ids.insert(1), Seen::New, "forgotten after the window");
    }

    #[test]
    fn a_forgotten_id_is_new_again() {
        let mut ids = RecentIds::new(10);
        assert_eq!(ids.insert(7), Seen::New);
        ids.forget(7);
        assert!(!ids.contains(7));
        assert_eq!(ids.insert(7), Seen::New);
    }

    #[test]
    fn ids_from_the_lake_are_told_apart_from_ids_of_this_run() {
        let mut ids = RecentIds::new(10);
        ids.seed(5);
        ids.seed(5);
        assert_eq!(ids.len(), 1);
        assert_eq!(ids.insert(5), Seen::InLake);
        assert_eq!(ids.insert(5), Seen::ThisRun);
        ids.seed(5); // learning it from the lake again changes nothing
        assert_eq!(ids.insert(5), Seen::ThisRun);
    }

    /// The table against a `HashMap` model, through inserts, seeds, forgets and a small
    /// window that turns over many times (every removal a backward shift).
    #[test]
    fn agrees_with_a_map_through_a_turning_window() {
        use std::collections::HashMap;
        let window = 1000;
        let mut ids = RecentIds::new(window);
        let mut model: HashMap<u128, bool> = HashMap::new();
        let mut order: VecDeque<u128> = VecDeque::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for step in 0..200_000 {
            // Ids from a small space, so re-sends, seeds of known ids and the nil id occur.
            let id = (next() % 3000) as u128;
            match next() % 10 {
                0 => {
                    ids.seed(id);
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(id) {
                        e.insert(false);
                        order.push_back(id);
                    }
                }
                1 => {
                    ids.forget(id);
                    model.remove(&id);
                }
                _ => {
                    let expected = match model.insert(id, true) {
                        Some(true) => Seen::ThisRun,
                        Some(false) => Seen::InLake,
                        None => {
                            order.push_back(id);
                            Seen::New
                        }
                    };
                    // Both ways in: one at a time, and through the prefetching pass.
                    let seen = if step % 2 == 0 {
                        ids.insert(id)
                    } else {
                        ids.insert_all(&[id])[0]
                    };
                    assert_eq!(seen, expected, "step {step}, id {id}");
                }
            }
            if order.len() > window {
                let old = order.pop_front().unwrap();
                model.remove(&old);
            }
            if step % 997 == 0 {
                for probe in 0..3000u128 {
                    assert_eq!(ids.contains(probe), model.contains_key(&probe), "{probe}");
                }
            }
        }
        assert_eq!(ids.len(), order.len());
    }

    #[test]
    fn grows_past_its_first_table_and_keeps_every_id() {
        let mut ids = RecentIds::new(1_000_000);
        for id in 1..=100_000u128 {
            assert_eq!(ids.insert(id * 0x9e37_79b9_7f4a_7c15), Seen::New);
        }
        let again: Vec<u128> = (1..=100_000u128)
            .map(|id| id * 0x9e37_79b9_7f4a_7c15)
            .collect();
        ids.reserve(500_000);
        assert!(ids.insert_all(&again).iter().all(|s| *s == Seen::ThisRun));
        assert_eq!(
            ids.insert(0),
            Seen::New,
            "the nil id is an id like any other"
        );
        assert_eq!(ids.insert(0), Seen::ThisRun);
    }
}
