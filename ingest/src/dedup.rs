//! Re-sent events (same `event_id`) are stored once. Ids are remembered in a window of
//! the most recent ones: 10 M ids by default, far more than a week of a city's events
//! (≈ 600 k), in 22 bytes an id at that size (≈ 215 MB for a full window; at most 34
//! bytes an id for other sizes, see [`RecentIds`]).
//!
//! The window keeps a keyed 80-bit fingerprint of each id rather than the id's 128
//! bits: two different ids are taken for one only if 80 bits of their keyed hashes
//! agree, ≈ 10⁻¹⁷ for a new id against a full window, ≈ 3 × 10⁻¹⁰ over a year of a
//! city's events (31 M) — far below the odds of the disk flipping a bit the checksums
//! miss. [`RecentIds::fingerprint_bits`] gives the figure for any window.
//!
//! The ids live in an open-addressing table of our own rather than a `HashMap`: at
//! hundreds of thousands of events a second every lookup is a cache miss on a table of
//! millions of ids, and the import loop waited on those one at a time. Here a chunk's
//! ids can be [`RecentIds::prefetch`]ed first (independent loads the CPU overlaps).

use std::hash::BuildHasher;

/// Both hashes are foldhash's, each with its own random seed, so that a sender cannot
/// aim collisions at the window. The second hashes the id's halves swapped, so the two
/// never fold the same words with the same seed: ids that one hash maps alike, the
/// other does not. (SipHash for the second cost 50 ns an id, a tenth of the window's
/// time.)
type RingHasher = foldhash::quality::RandomState;
type TagHasher = foldhash::quality::RandomState;

pub const DEFAULT_WINDOW: usize = 10_000_000;

/// The largest window: its ring positions and its table's home bits must share a
/// slot's 64 bits (and a billion ids would be ≈ 20 GB anyway).
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

/// An id's two keyed 64-bit hashes: `x` is kept in the ring and names the home slot;
/// the top bits of `z` that a slot has room for are kept in the table.
#[derive(Debug, Clone, Copy)]
struct Key {
    x: u64,
    z: u64,
}

/// The most recent `capacity` event ids, oldest forgotten first.
///
/// A 64-bit keyed hash of each id sits once, in arrival order, in a ring (8 bytes
/// each); the hash table holds 8-byte slots pointing into the ring. A slot is the
/// id's ring position and, in the bits the position leaves, the low bits of the ring
/// hash (its home slot, so the table shifts without reading the ring) topped with bits
/// of a second keyed hash: 16 of them with a full default window, making the
/// fingerprint 80 bits. A full window of 10 M ids is 80 MB of ring and 134 MB of table
/// (2²⁴ slots, at most 5/8 full); ids of 16 bytes in the ring took 295 MB, and a table
/// of ids with a queue of ids beside it 536 MB. The flag "seen in this run" is a bit
/// per ring position.
pub struct RecentIds {
    table: IdTable,
    /// The ids' ring hashes in arrival order; once `capacity` long, a circle whose
    /// oldest is at `head`.
    ring: Vec<u64>,
    /// One bit per ring position: the id there was seen in this run.
    this_run: Vec<u64>,
    head: usize,
    capacity: usize,
    ring_hasher: RingHasher,
    tag_hasher: TagHasher,
}

impl RecentIds {
    /// A window of `capacity` ids, at least 1 and at most [`MAX_WINDOW`].
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_WINDOW);
        RecentIds {
            table: IdTable::new(capacity),
            ring: Vec::new(),
            this_run: Vec::new(),
            head: 0,
            capacity,
            ring_hasher: RingHasher::default(),
            tag_hasher: TagHasher::default(),
        }
    }

    fn key(&self, id: u128) -> Key {
        Key {
            x: self.ring_hasher.hash_one(id),
            z: self.tag_hasher.hash_one(id.rotate_left(64)),
        }
    }

    /// Remembers an id seen in this run, and says what was known of it.
    pub fn insert(&mut self, id: u128) -> Seen {
        let key = self.key(id);
        match self.find(key) {
            Some(at) => {
                let was = self.flag(at);
                self.set_flag(at, true);
                if was { Seen::ThisRun } else { Seen::InLake }
            }
            None => {
                self.remember(key, true);
                Seen::New
            }
        }
    }

    /// [`seed`](Self::seed)s a slice of the lake's ids, as
    /// [`crate::lake::Lake::recent_ids`] hands them over, making room first for those
    /// and the `more` still to come (one growth of the table rather than a doubling at
    /// a time, each holding two tables).
    pub fn seed_all(&mut self, ids: &[u128], more: usize) {
        self.reserve(ids.len() + more);
        for &id in ids {
            self.seed(id);
        }
    }

    /// Remembers an id the lake holds (from before this run).
    pub fn seed(&mut self, id: u128) {
        let key = self.key(id);
        if self.find(key).is_none() {
            self.remember(key, false);
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
        self.table.prefetch(self.ring_hasher.hash_one(id));
        if self.ring.len() == self.capacity {
            self.table
                .prefetch(self.ring[(self.head + Self::AHEAD) % self.capacity]);
        }
    }

    /// Makes room for `additional` more ids (within the window) at once: growing the
    /// table step by step costs a rehash and fresh pages each time.
    pub fn reserve(&mut self, additional: usize) {
        let want = (self.ring.len() + additional).min(self.capacity);
        self.table.reserve(want, &self.ring);
        self.ring.reserve_exact(want - self.ring.len());
        self.this_run
            .resize(want.div_ceil(64).max(self.this_run.len()), 0);
    }

    /// Forgets an id: its event was read but not stored (a dropped buffer), and must
    /// not count as seen when it is read again. Its ring position stays taken until
    /// the window moves past it.
    pub fn forget(&mut self, id: u128) {
        let key = self.key(id);
        let tag = self.table.tag(key);
        let pos_bits = self.table.pos_bits;
        let ring = &self.ring;
        self.table.remove(key.x, |s| {
            s >> pos_bits == tag && ring[position_bits(s, pos_bits)] == key.x
        });
    }

    pub fn contains(&self, id: u128) -> bool {
        self.find(self.key(id)).is_some()
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
        self.table.slots.capacity() * 8 + self.ring.capacity() * 8 + self.this_run.capacity() * 8
    }

    /// How many bits of two ids' keyed hashes must agree for the window to take one
    /// for the other, at its present size: the ring's 64 and the second hash's bits
    /// that the table's slots keep (fewer as the table grows).
    pub fn fingerprint_bits(&self) -> u32 {
        64 + self.table.extra_bits()
    }

    /// The ring position of an id, if the window holds it.
    fn find(&self, key: Key) -> Option<usize> {
        let tag = self.table.tag(key);
        let ring = &self.ring;
        let found = self.table.probe(key.x, |s| {
            self.table.tag_of(s) == tag && ring[self.table.position(s)] == key.x
        });
        match found {
            Probe::Found(_, at) => Some(at),
            Probe::Vacant(_) => None,
        }
    }

    /// Puts a new id in the ring (evicting the oldest when full) and in the table.
    fn remember(&mut self, key: Key, this_run: bool) {
        let at = if self.ring.len() < self.capacity {
            if self.ring.len() == self.ring.capacity() {
                // The whole window at once, up to 16 M ids (128 MB of address space, but
                // pages only count once written, and the ring is written in order):
                // growing by doubling copied the ring each time, and at its last step a
                // full window held both copies at once. Larger windows double, never
                // past the window.
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
            self.ring.push(key.x);
            let at = self.ring.len() - 1;
            if at / 64 >= self.this_run.len() {
                self.this_run
                    .resize((at / 64 + 1).max(self.this_run.len() * 2), 0);
            }
            at
        } else {
            let at = self.head;
            // Only the slot that points here: the old id may have been forgotten, or
            // forgotten and remembered again at a newer position.
            let pos_bits = self.table.pos_bits;
            self.table
                .remove(self.ring[at], |s| position_bits(s, pos_bits) == at);
            self.ring[at] = key.x;
            self.head = (at + 1) % self.capacity;
            at
        };
        self.set_flag(at, this_run);
        self.table.insert(key, at, &self.ring);
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

/// Ring positions, found by their id's ring hash: linear probing over a power of two
/// of 8-byte slots, at most 5/8 full, deletion by backward shift (no tombstones, so a
/// window that turns over forever never degrades).
///
/// A slot is `tag << POS | position + 1`, 0 an empty slot, where `POS` is the fewest
/// bits that hold the window's positions (24 for 10 M) and the tag fills the rest: its
/// low `log2(slots)` bits are the ring hash's (the home slot, so moving a slot never
/// needs its id) and the bits above are the top bits of the second hash. When the
/// table doubles, each tag takes one more bit of the ring hash (read from the ring)
/// in place of its lowest bit of the second hash.
struct IdTable {
    slots: Vec<u64>,
    len: usize,
    /// Bits of a slot that hold `position + 1`.
    pos_bits: u32,
}

enum Probe {
    /// The slot index and the ring position it names.
    Found(usize, usize),
    Vacant(usize),
}

impl IdTable {
    const INITIAL_SLOTS: usize = 1 << 12;

    fn new(capacity: usize) -> Self {
        IdTable {
            slots: zeroed(Self::INITIAL_SLOTS),
            len: 0,
            pos_bits: usize::BITS - capacity.leading_zeros(),
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Bits of the home slot: log2 of the table's size.
    fn home_bits(&self) -> u32 {
        self.slots.len().trailing_zeros()
    }

    /// Bits of the second hash a tag keeps.
    fn extra_bits(&self) -> u32 {
        64 - self.pos_bits - self.home_bits()
    }

    /// The tag of a key at the table's present size.
    fn tag(&self, key: Key) -> u64 {
        tag(
            key.x,
            key.z >> self.home_bits() >> self.pos_bits,
            self.home_bits(),
        )
    }

    fn tag_of(&self, slot: u64) -> u64 {
        slot >> self.pos_bits
    }

    fn slot(&self, tag: u64, at: usize) -> u64 {
        tag << self.pos_bits | (at as u64 + 1)
    }

    /// Looks for the slot that `is` the one sought, from the home slot of ring hash `x`.
    fn probe(&self, x: u64, is: impl Fn(u64) -> bool) -> Probe {
        let mask = self.mask();
        let mut i = x as usize & mask;
        loop {
            match self.slots[i] {
                0 => return Probe::Vacant(i),
                s if is(s) => return Probe::Found(i, self.position(s)),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn position(&self, slot: u64) -> usize {
        position_bits(slot, self.pos_bits)
    }

    /// Asks the CPU to bring the home slot of ring hash `x` into the cache.
    fn prefetch(&self, x: u64) {
        prefetch(&self.slots[x as usize & self.mask()]);
    }

    /// Grows once to hold `len` ids within the load limit.
    fn reserve(&mut self, len: usize, ring: &[u64]) {
        let mut n = self.slots.len();
        while len * 8 > n * 5 {
            n *= 2;
        }
        if n > self.slots.len() {
            self.rehash(n, ring);
        }
    }

    /// Adds a position known to be absent; `ring[at]` is already `key.x`.
    fn insert(&mut self, key: Key, at: usize, ring: &[u64]) {
        if (self.len + 1) * 8 > self.slots.len() * 5 {
            self.rehash(self.slots.len() * 2, ring);
        }
        let Probe::Vacant(i) = self.probe(key.x, |_| false) else {
            unreachable!("a probe that matches nothing ends at a vacant slot");
        };
        self.slots[i] = self.slot(self.tag(key), at);
        self.len += 1;
    }

    /// Removes the slot that `is` the one sought, from the home slot of ring hash `x`.
    fn remove(&mut self, x: u64, is: impl Fn(u64) -> bool) {
        let Probe::Found(mut hole, _) = self.probe(x, is) else {
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
            let home = self.tag_of(s) as usize & mask;
            // Distance from home to j, and from home to the hole, going forward.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = 0;
        self.len -= 1;
    }

    /// Moves every slot to a table of `n` slots. Each tag gives up low bits of the
    /// second hash for the ring hash's bits the larger home needs.
    fn rehash(&mut self, n: usize, ring: &[u64]) {
        let old_home_bits = self.home_bits();
        let slots = std::mem::replace(&mut self.slots, zeroed(n));
        let home_bits = self.home_bits();
        // MAX_WINDOW keeps this so (tested): a full table needs at most 2 × 8/5 slots
        // an id, positions one bit more than the window.
        assert!(
            home_bits + self.pos_bits <= 64,
            "a table of {n} slots does not fit {} position bits",
            self.pos_bits
        );
        let mask = self.mask();
        for s in slots.into_iter().filter(|s| *s != 0) {
            let at = self.position(s);
            let extra = self.tag_of(s) >> old_home_bits >> (home_bits - old_home_bits);
            let s = self.slot(tag(ring[at], extra, home_bits), at);
            let mut i = ring[at] as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }
}

/// A tag: `extra` (bits of the second hash, already shifted down to fit) above the
/// `home_bits` low bits of ring hash `x`.
fn tag(x: u64, extra: u64, home_bits: u32) -> u64 {
    extra << home_bits | (x & ((1 << home_bits) - 1))
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

/// The ring position a slot names, its low `pos_bits` holding the position + 1.
fn position_bits(slot: u64, pos_bits: u32) -> usize {
    ((slot & ((1 << pos_bits) - 1)) - 1) as usize
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

    /// The memory figures the docs give: the default window of 10 M ids costs under 22
    /// bytes an id; any window at most 8 + 8 × 8/5 × 2 ≈ 34 (a table just doubled).
    #[test]
    fn a_window_costs_under_22_bytes_an_id_at_the_default_and_at_most_34() {
        let mut ids = RecentIds::new(DEFAULT_WINDOW);
        ids.reserve(DEFAULT_WINDOW); // as import does, from the file's size
        let per_id = ids.heap_bytes() as f64 / DEFAULT_WINDOW as f64;
        assert!((20.0..22.0).contains(&per_id), "{per_id} bytes an id");

        // Grown step by step to a window just past a table size, and turned over.
        let window = (1 << 21) * 5 / 8 + 1;
        let mut ids = RecentIds::new(window);
        for id in 1..=(window as u128 * 3 / 2) {
            ids.insert(id);
        }
        assert_eq!(ids.len(), window);
        let per_id = ids.heap_bytes() as f64 / window as f64;
        assert!(per_id <= 34.0, "{per_id} bytes an id");
        assert!(ids.contains(window as u128 * 3 / 2) && !ids.contains(1));
    }

    /// The odds the docs give: a full default window takes two ids for one only if 80
    /// bits of their keyed hashes agree; and for every window up to the largest, the
    /// largest table it can grow to leaves room in a slot for the home bits.
    #[test]
    fn a_full_default_window_keeps_80_bits_an_id_and_every_window_fits_its_slots() {
        let mut ids = RecentIds::new(DEFAULT_WINDOW);
        assert!(ids.fingerprint_bits() > 80, "more while the table is small");
        ids.reserve(DEFAULT_WINDOW);
        assert_eq!(ids.fingerprint_bits(), 80);

        for capacity in [1, 2, 3, 1000, 4096, DEFAULT_WINDOW, 1 << 24, MAX_WINDOW] {
            let table = IdTable::new(capacity);
            let mut slots = IdTable::INITIAL_SLOTS;
            while capacity * 8 > slots * 5 {
                slots *= 2;
            }
            let home_bits = slots.trailing_zeros();
            assert!(
                table.pos_bits + home_bits <= 64,
                "window {capacity}: {} + {home_bits} bits",
                table.pos_bits
            );
            assert!(
                64 + 64 - table.pos_bits - home_bits >= 64 + 2,
                "window {capacity}: some bits of the second hash stay"
            );
            assert!(capacity < 1 << table.pos_bits, "position + 1 fits");
        }
    }

    /// Two ids whose ring hashes agree are still told apart by the second hash (the
    /// table's extra bits). Finding such a pair would take ~2³² tries: the ring hash
    /// of the second is forced instead.
    #[test]
    fn ids_with_the_same_ring_hash_are_told_apart() {
        let mut ids = RecentIds::new(100);
        let (a, b) = (1u128, 2u128);
        let ka = ids.key(a);
        let mut kb = ids.key(b);
        kb.x = ka.x;
        ids.remember(ka, true);
        assert!(ids.find(ka).is_some());
        assert_eq!(ids.find(kb), None, "same ring hash, different second hash");
        ids.remember(kb, true);
        assert!(ids.find(ka).is_some() && ids.find(kb).is_some());
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
