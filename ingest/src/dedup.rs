//! Re-sent events (same `event_id`) are stored once. Ids are remembered in a window of
//! the most recent ones: 10 M ids by default, far more than a week of a city's events
//! (≈ 600 k), in 29 bytes an id at that size (≈ 295 MB for a full window; at most 42
//! bytes an id for other sizes, see [`RecentIds`]).
//!
//! The ids live in an open-addressing table of our own rather than a `HashMap`: at
//! hundreds of thousands of events a second every lookup is a cache miss on a table of
//! millions of ids, and the import loop waited on those one at a time. Here a chunk's
//! ids can be [`RecentIds::prefetch`]ed first (independent loads the CPU overlaps).

use std::hash::BuildHasher;

/// Ids are hashed with foldhash, seeded per process, so a sender cannot aim collisions
/// at the table.
type Hasher = foldhash::fast::RandomState;

pub const DEFAULT_WINDOW: usize = 10_000_000;

/// The largest window: a ring position must fit the 32 bits a slot keeps of it (and a
/// billion ids would be ≈ 30 GB anyway).
pub const MAX_WINDOW: usize = 1 << 30;

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
///
/// The ids themselves sit once, in arrival order, in a ring (16 bytes each); the hash
/// table holds 8-byte slots pointing into the ring: 32 bits of the id's hash (which
/// also name its home slot, so the table rehashes and shifts without reading the
/// ring) and the id's ring position. A full window of 10 M ids is 160 MB of ring and
/// 134 MB of table (2²⁴ slots, at most 5/8 full), where a table of ids and a queue of
/// ids beside it took twice that. The flag "seen in this run" is a bit per ring
/// position.
pub struct RecentIds {
    table: IdTable,
    /// The ids in arrival order; once `capacity` long, a circle whose oldest is at
    /// `head`.
    ring: Vec<u128>,
    /// One bit per ring position: the id there was seen in this run.
    this_run: Vec<u64>,
    head: usize,
    capacity: usize,
}

impl RecentIds {
    /// A window of `capacity` ids, at least 1 and at most [`MAX_WINDOW`].
    pub fn new(capacity: usize) -> Self {
        RecentIds {
            table: IdTable::new(),
            ring: Vec::new(),
            this_run: Vec::new(),
            head: 0,
            capacity: capacity.clamp(1, MAX_WINDOW),
        }
    }

    /// Remembers an id seen in this run, and says what was known of it.
    pub fn insert(&mut self, id: u128) -> Seen {
        match self.find(id) {
            Some(at) => {
                let was = self.flag(at);
                self.set_flag(at, true);
                if was { Seen::ThisRun } else { Seen::InLake }
            }
            None => {
                self.remember(id, true);
                Seen::New
            }
        }
    }

    /// Remembers an id the lake holds (from before this run).
    pub fn seed(&mut self, id: u128) {
        if self.find(id).is_none() {
            self.remember(id, false);
        }
    }

    /// How far ahead of the id being inserted [`prefetch`](Self::prefetch) pays: enough
    /// loads in flight to hide a miss, few enough that they are still cached when used.
    pub const AHEAD: usize = 16;

    /// [`insert`](Self::insert)s each id in order and says what was known of each. The
    /// slots of the ids a little ahead are prefetched, so the cache misses of a table of
    /// millions of ids overlap instead of coming one after another.
    pub fn insert_all(&mut self, ids: &[u128]) -> Vec<Seen> {
        for &id in ids.iter().take(Self::AHEAD) {
            self.prefetch(id);
        }
        let mut seen = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            if let Some(&ahead) = ids.get(i + Self::AHEAD) {
                self.prefetch(ahead);
            }
            seen.push(self.insert(id));
        }
        seen
    }

    /// Asks the CPU for the memory that inserting `id` about [`Self::AHEAD`] inserts
    /// from now will read: its home slot and, with the window full, the slot of the id
    /// it will evict. Only a hint: it changes nothing.
    pub fn prefetch(&self, id: u128) {
        self.table.prefetch(self.table.hash(id));
        if self.ring.len() == self.capacity {
            let old = self.ring[(self.head + Self::AHEAD) % self.capacity];
            self.table.prefetch(self.table.hash(old));
        }
    }

    /// Makes room for `additional` more ids (within the window) at once: growing the
    /// table step by step costs a rehash and fresh pages each time.
    pub fn reserve(&mut self, additional: usize) {
        let want = (self.ring.len() + additional).min(self.capacity);
        self.table.reserve(want);
        self.ring.reserve_exact(want - self.ring.len());
        self.this_run
            .resize(want.div_ceil(64).max(self.this_run.len()), 0);
    }

    /// Forgets an id: its event was read but not stored (a dropped buffer), and must
    /// not count as seen when it is read again. Its ring position stays taken until
    /// the window moves past it.
    pub fn forget(&mut self, id: u128) {
        let hash = self.table.hash(id);
        let ring = &self.ring;
        self.table.remove(hash, |at| ring[at] == id);
    }

    pub fn contains(&self, id: u128) -> bool {
        self.find(id).is_some()
    }

    /// Ids in the window (forgotten ones count until the window moves past them).
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Bytes the window holds on the heap, for the memory figures of the docs.
    pub fn heap_bytes(&self) -> usize {
        self.table.slots.capacity() * 8 + self.ring.capacity() * 16 + self.this_run.capacity() * 8
    }

    /// The ring position of `id`, if the window holds it.
    fn find(&self, id: u128) -> Option<usize> {
        let ring = &self.ring;
        match self.table.probe(self.table.hash(id), |at| ring[at] == id) {
            Probe::Found(_, at) => Some(at),
            Probe::Vacant(_) => None,
        }
    }

    /// Puts a new id in the ring (evicting the oldest when full) and in the table.
    fn remember(&mut self, id: u128, this_run: bool) {
        let at = if self.ring.len() < self.capacity {
            if self.ring.len() == self.ring.capacity() {
                // The whole window at once, up to 16 M ids (256 MB of address space, but
                // pages only count once written, and the ring is written in order):
                // growing by doubling copied the ring each time, and at its last step a
                // full 10 M window held 134 + 160 MB at once. Larger windows double,
                // never past the window.
                let more = if self.capacity <= 1 << 24 {
                    self.capacity - self.ring.len()
                } else {
                    self.ring
                        .len()
                        .max(1024)
                        .min(self.capacity - self.ring.len())
                };
                self.ring.reserve_exact(more);
            }
            self.ring.push(id);
            let at = self.ring.len() - 1;
            if at / 64 >= self.this_run.len() {
                self.this_run
                    .resize((at / 64 + 1).max(self.this_run.len() * 2), 0);
            }
            at
        } else {
            let at = self.head;
            let old = self.ring[at];
            // Only the slot that points here: the old id may have been forgotten, or
            // forgotten and remembered again at a newer position.
            self.table.remove(self.table.hash(old), |p| p == at);
            self.ring[at] = id;
            self.head = (at + 1) % self.capacity;
            at
        };
        self.set_flag(at, this_run);
        self.table.insert(self.table.hash(id), at);
    }

    fn flag(&self, at: usize) -> bool {
        self.this_run[at / 64] & (1 << (at % 64)) != 0
    }

    fn set_flag(&mut self, at: usize, on: bool) {
        if on {
            self.this_run[at / 64] |= 1 << (at % 64);
        } else {
            self.this_run[at / 64] &= !(1 << (at % 64));
        }
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

/// Ring positions, found by their id's hash: linear probing over a power of two (at
/// most 2³²) of 8-byte slots, at most 5/8 full, deletion by backward shift (no
/// tombstones, so a window that turns over forever never degrades).
///
/// A slot is `hash << 32 | position + 1`, where `hash` is the low 32 bits of the id's
/// hash; 0 is an empty slot. The home slot is `hash & mask`, so moving a slot never
/// needs its id; the hash's bits above the mask spare most false matches a look at the
/// ring, and the ring confirms the rest.
struct IdTable {
    slots: Vec<u64>,
    len: usize,
    hasher: Hasher,
}

enum Probe {
    /// The slot index and the ring position it names.
    Found(usize, usize),
    Vacant(usize),
}

impl IdTable {
    const INITIAL_SLOTS: usize = 1 << 12;

    fn new() -> Self {
        IdTable {
            slots: zeroed(Self::INITIAL_SLOTS),
            len: 0,
            hasher: Hasher::default(),
        }
    }

    fn hash(&self, id: u128) -> u32 {
        self.hasher.hash_one(id) as u32
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Looks for the slot with this hash whose position `is` the one sought.
    fn probe(&self, hash: u32, is: impl Fn(usize) -> bool) -> Probe {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            match self.slots[i] {
                0 => return Probe::Vacant(i),
                s if (s >> 32) as u32 == hash && is(position(s)) => {
                    return Probe::Found(i, position(s));
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Asks the CPU to bring a hash's home slot into the cache.
    fn prefetch(&self, hash: u32) {
        prefetch(&self.slots[hash as usize & self.mask()]);
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

    /// Adds a position known to be absent.
    fn insert(&mut self, hash: u32, at: usize) {
        if (self.len + 1) * 8 > self.slots.len() * 5 {
            self.rehash(self.slots.len() * 2);
        }
        let Probe::Vacant(i) = self.probe(hash, |_| false) else {
            unreachable!("a probe that matches nothing ends at a vacant slot");
        };
        self.slots[i] = (hash as u64) << 32 | (at as u64 + 1);
        self.len += 1;
    }

    fn remove(&mut self, hash: u32, is: impl Fn(usize) -> bool) {
        let Probe::Found(mut hole, _) = self.probe(hash, is) else {
            return;
        };
        // Backward shift: pull later members of the run into the hole while that keeps
        // each one at or after its home slot, so every probe still finds what it seeks.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = (s >> 32) as usize & mask;
            // Distance from home to j, and from home to the hole, going forward.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = 0;
        self.len -= 1;
    }

    fn rehash(&mut self, n: usize) {
        let slots = std::mem::replace(&mut self.slots, zeroed(n));
        let mask = self.mask();
        for s in slots.into_iter().filter(|s| *s != 0) {
            let mut i = (s >> 32) as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }
}

/// `n` empty slots, written now. `vec![0; n]` would take fresh pages from the kernel
/// untouched, and the table's random probes would read each page first (mapping the
/// shared zero page) and write it after: a second fault per page, and a TLB flush on
/// every core the process runs on. That was ~8 % of the ingest thread's time on a 2 M
/// event run; writing the zeros at once costs one fault per page.
#[allow(
    clippy::slow_vector_initialization,
    reason = "the point: vec![0; n] leaves the pages untouched"
)]
fn zeroed(n: usize) -> Vec<u64> {
    let mut slots = Vec::with_capacity(n);
    slots.resize(n, 0);
    slots
}

/// The ring position a slot names.
fn position(slot: u64) -> usize {
    (slot as u32 - 1) as usize
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

    /// The window against a `HashMap` model, through inserts, seeds, forgets and a
    /// small window that turns over many times (every removal a backward shift). The
    /// model knows each id's latest arrival: an id forgotten and seen again stays until
    /// the window moves past its *new* arrival.
    #[test]
    fn agrees_with_a_map_through_a_turning_window() {
        use std::collections::{HashMap, VecDeque};
        let window = 1000;
        let mut ids = RecentIds::new(window);
        // id → (seen in this run, arrival); arrivals in order.
        let mut model: HashMap<u128, (bool, u64)> = HashMap::new();
        let mut order: VecDeque<(u128, u64)> = VecDeque::new();
        let mut arrivals = 0u64;
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
            let mut arrive = |model: &mut HashMap<u128, (bool, u64)>, this_run| {
                arrivals += 1;
                model.insert(id, (this_run, arrivals));
                order.push_back((id, arrivals));
            };
            match next() % 10 {
                0 => {
                    ids.seed(id);
                    if !model.contains_key(&id) {
                        arrive(&mut model, false);
                    }
                }
                1 => {
                    ids.forget(id);
                    model.remove(&id);
                }
                _ => {
                    let expected = match model.get_mut(&id) {
                        Some((true, _)) => Seen::ThisRun,
                        Some((flag, _)) => {
                            *flag = true;
                            Seen::InLake
                        }
                        None => {
                            arrive(&mut model, true);
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
                let (old, arrival) = order.pop_front().unwrap();
                if model.get(&old).is_some_and(|(_, a)| *a == arrival) {
                    model.remove(&old);
                }
            }
            if step % 997 == 0 {
                for probe in 0..3000u128 {
                    assert_eq!(ids.contains(probe), model.contains_key(&probe), "{probe}");
                }
            }
        }
        assert_eq!(ids.len(), order.len());
    }

    /// The memory figures the docs give: the default window of 10 M ids costs under 30
    /// bytes an id; any window at most 16 + 8 × 8/5 × 2 ≈ 42 (a table just doubled).
    #[test]
    fn a_window_costs_under_thirty_bytes_an_id_at_the_default_and_at_most_42() {
        let mut ids = RecentIds::new(DEFAULT_WINDOW);
        ids.reserve(DEFAULT_WINDOW); // as import does, from the file's size
        let per_id = ids.heap_bytes() as f64 / DEFAULT_WINDOW as f64;
        assert!((24.0..30.0).contains(&per_id), "{per_id} bytes an id");

        // Grown step by step to a window just past a table size, and turned over.
        let window = (1 << 21) * 5 / 8 + 1;
        let mut ids = RecentIds::new(window);
        for id in 1..=(window as u128 * 3 / 2) {
            ids.insert(id);
        }
        assert_eq!(ids.len(), window);
        let per_id = ids.heap_bytes() as f64 / window as f64;
        assert!(per_id <= 42.0, "{per_id} bytes an id");
        assert!(ids.contains(window as u128 * 3 / 2) && !ids.contains(1));
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
