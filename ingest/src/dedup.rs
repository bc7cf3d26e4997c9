//! Re-sent events (same `event_id`) are stored once. Ids are remembered in a window of
//! at least the most recent 10 M by default — far more than a week of a city's events
//! (≈ 600 k) — and at most 1/16 more, in ≈ 12 bytes an id (≈ 121 MB for a full default
//! window; see [`RecentIds`]).
//!
//! The window keeps a keyed 74-bit fingerprint of each id rather than the id's 128
//! bits: two different ids are taken for one only if 74 bits of their keyed hashes
//! agree, ≈ 6 × 10⁻¹⁶ for a new id against a full window, ≈ 2 × 10⁻⁸ over a year of
//! a city's events (31 M) — far below the odds of the disk flipping a bit the checksums
//! miss. [`RecentIds::fingerprint_bits`] gives the figure.
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
type IdHasher = foldhash::quality::RandomState;
type TagHasher = foldhash::quality::RandomState;

pub const DEFAULT_WINDOW: usize = 10_000_000;

/// The largest window (a billion ids would be ≈ 12 GB anyway).
pub const MAX_WINDOW: usize = 1 << 30;

/// Generations a full window is cut into: the window forgets a generation at a time,
/// so it holds between `capacity` and `capacity × (1 + 1/16)` ids.
const GENERATIONS: usize = 16;

/// Bits of a slot's metadata: "seen in this run", the generation (counted modulo 32,
/// more than the 17 generations alive at once) and the top bits of the second hash.
const RUN_BIT: u16 = 1;
const GENERATION_BITS: u32 = 5;
const GENERATION_MASK: u16 = (1 << GENERATION_BITS) - 1;
const TAG_SHIFT: u32 = 1 + GENERATION_BITS;
const TAG_BITS: u32 = 16 - TAG_SHIFT;
const _: () = assert!(
    1 << GENERATION_BITS > GENERATIONS + 1,
    "the generations alive at once are told apart"
);

/// The table is at most 7/8 full: Robin Hood probing keeps lookups short there (a
/// probe stops at the first id that sits nearer its home than the sought one would).
const LOAD_NUM: usize = 7;
const LOAD_DEN: usize = 8;

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

/// An id's two keyed 64-bit hashes: `x` is kept whole in the table (never 0, the mark
/// of an empty slot) and names the home slot; the top [`TAG_BITS`] of `z` are kept
/// beside it.
#[derive(Debug, Clone, Copy)]
struct Key {
    x: u64,
    tag: u16,
}

/// At least the most recent `capacity` event ids, forgotten a generation at a time.
///
/// Each id is a 10-byte slot of one open-addressing table: its 64-bit keyed hash, and
/// 16 bits of metadata (see [`RUN_BIT`]). Arrivals are counted in generations of
/// `capacity / 16` ids; when one more generation begins, one pass over the table
/// drops the oldest, leaving at least `capacity` ids (16 whole generations). A full
/// window of 10 M ids is 10.6 M ids at most in 12.1 M slots: 121 MB. The window before
/// (a ring of the ids' hashes in arrival order, 8 bytes each, beside a table of ring
/// positions at most 5/8 full, 13.4 bytes an id) was 215 MB, and the pages of freed
/// memory of the rest of ingest then took it past 512 MiB on a 12 M-event backlog.
pub struct RecentIds {
    table: IdTable,
    /// Ids a generation holds, and the generations kept besides the current one.
    generation_size: usize,
    generations: usize,
    /// The current generation (counted modulo 2^GENERATION_BITS) and its arrivals.
    current: u16,
    in_current: usize,
    id_hasher: IdHasher,
    tag_hasher: TagHasher,
}

impl RecentIds {
    /// A window of `capacity` ids, at least 1 and at most [`MAX_WINDOW`].
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_WINDOW);
        let generations = GENERATIONS.min(capacity);
        let generation_size = capacity.div_ceil(generations);
        let most = generation_size * (generations + 1);
        RecentIds {
            table: IdTable::new(most),
            generation_size,
            generations,
            current: 0,
            in_current: 0,
            id_hasher: IdHasher::default(),
            tag_hasher: TagHasher::default(),
        }
    }

    fn key(&self, id: u128) -> Key {
        let z = self.tag_hasher.hash_one(id.rotate_left(64));
        Key {
            x: self.id_hasher.hash_one(id).max(1),
            tag: (z >> (64 - TAG_BITS)) as u16,
        }
    }

    /// Remembers an id seen in this run, and says what was known of it.
    pub fn insert(&mut self, id: u128) -> Seen {
        let key = self.key(id);
        match self.table.find(key) {
            Some(at) => {
                let meta = &mut self.table.meta[at];
                let was = *meta & RUN_BIT != 0;
                *meta |= RUN_BIT;
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
        if self.table.find(key).is_none() {
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
    /// from now will read: its home slot's hash and metadata. Only a hint: it changes
    /// nothing.
    pub fn prefetch(&self, id: u128) {
        self.table.prefetch(self.id_hasher.hash_one(id).max(1));
    }

    /// Makes room for `additional` more ids (within the window) at once: growing the
    /// table step by step costs a rehash and fresh pages each time.
    pub fn reserve(&mut self, additional: usize) {
        self.table.reserve(self.table.len + additional);
    }

    /// Forgets an id: its event was read but not stored (a dropped buffer), and must
    /// not count as seen when it is read again. Its arrival still counts towards its
    /// generation.
    pub fn forget(&mut self, id: u128) {
        if let Some(at) = self.table.find(self.key(id)) {
            self.table.remove(at);
        }
    }

    pub fn contains(&self, id: u128) -> bool {
        self.table.find(self.key(id)).is_some()
    }

    /// Ids in the window.
    pub fn len(&self) -> usize {
        self.table.len
    }

    pub fn is_empty(&self) -> bool {
        self.table.len == 0
    }

    /// Bytes the window holds on the heap, for the memory figures of the docs.
    pub fn heap_bytes(&self) -> usize {
        self.table.hashes.capacity() * 8 + self.table.meta.capacity() * 2
    }

    /// How many bits of two ids' keyed hashes must agree for the window to take one
    /// for the other: the first hash's 64 and the second's [`TAG_BITS`].
    pub fn fingerprint_bits(&self) -> u32 {
        64 + TAG_BITS
    }

    /// Puts a new id in the current generation, beginning a new one (and forgetting
    /// the oldest) when the current one is full.
    fn remember(&mut self, key: Key, this_run: bool) {
        if self.in_current == self.generation_size {
            self.current = (self.current + 1) & GENERATION_MASK;
            self.in_current = 0;
            // Alive: the current generation and the `generations` before it.
            let oldest = self.current.wrapping_sub(self.generations as u16 + 1) & GENERATION_MASK;
            self.table.retain(|meta| generation(meta) != oldest);
        }
        self.in_current += 1;
        let meta = key.tag << TAG_SHIFT | self.current << 1 | u16::from(this_run);
        self.table.insert(key.x, meta);
    }
}

fn generation(meta: u16) -> u16 {
    meta >> 1 & GENERATION_MASK
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

/// Ids' hashes and metadata in two arrays of the same length: Robin Hood linear
/// probing, at most [`LOAD_NUM`]/[`LOAD_DEN`] full, deletion by backward shift (no
/// tombstones, so a window that turns over forever never degrades).
///
/// An id's home slot is its hash scaled to the table (`x × n / 2⁶⁴`), so the table can
/// have any size, not only a power of two, and the home of every slot is known from
/// the hash it holds. Ids of a run of full slots sit in the order of their homes: a
/// probe stops at an id that sits nearer its home than the sought one would.
struct IdTable {
    /// 0 marks an empty slot.
    hashes: Vec<u64>,
    meta: Vec<u16>,
    len: usize,
    /// The slots the table grows to for the most ids it must hold.
    most_slots: usize,
}

impl IdTable {
    const INITIAL_SLOTS: usize = 1 << 12;

    /// A table for at most `most` ids.
    fn new(most: usize) -> Self {
        let most_slots = slots_for(most);
        let n = Self::INITIAL_SLOTS.min(most_slots);
        IdTable {
            hashes: zeroed(n),
            meta: zeroed(n),
            len: 0,
            most_slots,
        }
    }

    fn home(&self, x: u64) -> usize {
        ((u128::from(x) * self.hashes.len() as u128) >> 64) as usize
    }

    /// How far slot `at`, holding hash `x`, is past `x`'s home.
    fn distance(&self, at: usize, x: u64) -> usize {
        let home = self.home(x);
        if at >= home {
            at - home
        } else {
            at + self.hashes.len() - home
        }
    }

    fn next(&self, at: usize) -> usize {
        if at + 1 == self.hashes.len() {
            0
        } else {
            at + 1
        }
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: Key) -> Option<usize> {
        let mut at = self.home(key.x);
        let mut d = 0;
        loop {
            let x = self.hashes[at];
            if x == 0 {
                return None;
            }
            if x == key.x && self.meta[at] >> TAG_SHIFT == key.tag {
                return Some(at);
            }
            if self.distance(at, x) < d {
                return None;
            }
            at = self.next(at);
            d += 1;
        }
    }

    /// Asks the CPU to bring the home slot of hash `x` into the cache.
    fn prefetch(&self, x: u64) {
        let home = self.home(x);
        prefetch(&self.hashes[home]);
        prefetch(&self.meta[home]);
    }

    /// Grows once to hold `len` ids within the load limit (never past the most the
    /// table must hold).
    fn reserve(&mut self, len: usize) {
        let mut n = self.hashes.len();
        while n < self.most_slots && len * LOAD_DEN > n * LOAD_NUM {
            n = self.grown(n);
        }
        if n > self.hashes.len() {
            self.rehash(n);
        }
    }

    /// The size after `n`: doubling while small; once that would pass an eighth of
    /// the largest size, the largest at once, so that the last growth holds little
    /// besides the final table (doubling to it held 1.5 times its size).
    fn grown(&self, n: usize) -> usize {
        if n * 2 * 8 > self.most_slots {
            self.most_slots
        } else {
            n * 2
        }
    }

    /// Adds an id known to be absent.
    fn insert(&mut self, x: u64, meta: u16) {
        if (self.len + 1) * LOAD_DEN > self.hashes.len() * LOAD_NUM
            && self.hashes.len() < self.most_slots
        {
            self.rehash(self.grown(self.hashes.len()));
        }
        self.place(x, meta);
        self.len += 1;
    }

    /// Robin Hood: walking from the home slot, the id takes the place of the first one
    /// nearer its own home, which walks on in its stead, until an empty slot.
    fn place(&mut self, mut x: u64, mut meta: u16) {
        let mut at = self.home(x);
        let mut d = 0;
        loop {
            let here = self.hashes[at];
            if here == 0 {
                self.hashes[at] = x;
                self.meta[at] = meta;
                return;
            }
            let dh = self.distance(at, here);
            if dh < d {
                self.hashes[at] = x;
                x = here;
                meta = std::mem::replace(&mut self.meta[at], meta);
                d = dh;
            }
            at = self.next(at);
            d += 1;
        }
    }

    /// Empties slot `at`: later ids of its run move back one slot each, up to an
    /// empty slot or an id at its home.
    fn remove(&mut self, mut at: usize) {
        loop {
            let next = self.next(at);
            let x = self.hashes[next];
            if x == 0 || self.distance(next, x) == 0 {
                break;
            }
            self.hashes[at] = x;
            self.meta[at] = self.meta[next];
            at = next;
        }
        self.hashes[at] = 0;
        self.meta[at] = 0;
        self.len -= 1;
    }

    /// Keeps only the ids whose metadata `keep` accepts, in one pass: each kept id
    /// moves back to its home or to just after the last kept id, whichever is later.
    /// The pass starts at an empty slot, so no run wraps past its start.
    fn retain(&mut self, keep: impl Fn(u16) -> bool) {
        let n = self.hashes.len();
        let Some(start) = self.hashes.iter().position(|x| *x == 0) else {
            unreachable!("the load limit leaves empty slots");
        };
        // Positions counted from `start`; `free` is the first one a kept id may take.
        let mut free = 0;
        for r in 1..n {
            let at = (start + r) % n;
            let x = self.hashes[at];
            if x == 0 {
                continue;
            }
            let meta = self.meta[at];
            self.hashes[at] = 0;
            self.meta[at] = 0;
            if !keep(meta) {
                self.len -= 1;
                continue;
            }
            let home = (self.home(x) + n - start) % n;
            let to = (start + home.max(free)) % n;
            self.hashes[to] = x;
            self.meta[to] = meta;
            free = home.max(free) + 1;
        }
    }

    /// Moves every id to a table of `n` slots.
    fn rehash(&mut self, n: usize) {
        let hashes = std::mem::replace(&mut self.hashes, zeroed(n));
        let meta = std::mem::replace(&mut self.meta, zeroed(n));
        for (x, m) in hashes.into_iter().zip(meta).filter(|(x, _)| *x != 0) {
            self.place(x, m);
        }
    }
}

/// Slots for `ids` within the load limit, and one empty slot at least.
fn slots_for(ids: usize) -> usize {
    (ids * LOAD_DEN).div_ceil(LOAD_NUM) + 1
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
fn zeroed<T: Copy + Default>(n: usize) -> Vec<T> {
    let mut slots = Vec::with_capacity(n);
    slots.resize(n, T::default());
    slots
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
        assert_eq!(ids.insert(4), Seen::New); // 3 generations of one id, and the current
        assert_eq!(ids.insert(5), Seen::New); // 1 falls out of the window
        assert_eq!(ids.len(), 4);
        assert_eq!(ids.insert(4), Seen::ThisRun);
        assert_eq!(ids.insert(2), Seen::ThisRun, "still within the window");
        assert_eq!(ids.insert(1), Seen::New, "forgotten after the window");
    }

    /// The window's promise, for sizes below, at and past a generation count: after
    /// every arrival the `capacity` most recent ids are known, and nothing older than
    /// a sixteenth more (and a generation's rounding).
    #[test]
    fn holds_at_least_the_window_and_at_most_a_sixteenth_more() {
        for capacity in [1, 2, 3, 17, 1000, 4097] {
            let mut ids = RecentIds::new(capacity);
            let most = capacity + capacity / 16 + GENERATIONS + 1;
            let n = (capacity * 5) as u128;
            for i in 1..=n {
                assert_eq!(ids.insert(i), Seen::New, "window {capacity}, id {i}");
                let newest = (i.saturating_sub(capacity as u128) + 1)..=i;
                for j in [*newest.start(), (newest.start() + i) / 2, i] {
                    assert!(ids.contains(j), "window {capacity}: id {j} after {i}");
                }
                assert!(ids.len() >= (i as usize).min(capacity), "window {capacity}");
                assert!(ids.len() <= most, "window {capacity}: {} ids", ids.len());
                if i > most as u128 {
                    assert!(!ids.contains(i - most as u128), "window {capacity}");
                }
            }
        }
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

    /// The window against a `HashMap` model of its generations, through inserts,
    /// seeds, forgets and small windows that turn over many times (every generation
    /// dropped by a pass over the table, every forget a backward shift). An arrival
    /// (a new id, or a seed of an absent one) belongs to generation `arrival / size`;
    /// when a generation begins, the one `generations + 1` before it is forgotten. An
    /// id forgotten and seen again stays until the window moves past its *new* arrival.
    #[test]
    fn agrees_with_a_model_through_a_turning_window() {
        use std::collections::HashMap;
        for window in [1000, 37, 5] {
            let mut ids = RecentIds::new(window);
            let (size, kept) = (ids.generation_size as u64, ids.generations as u64);
            // id → (seen in this run, arrival).
            let mut model: HashMap<u128, (bool, u64)> = HashMap::new();
            let mut arrivals = 0u64;
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let space = window as u64 * 3;
            for step in 0..200_000 {
                // Ids from a small space, so re-sends, seeds of known ids and the nil
                // id occur.
                let id = (next() % space) as u128;
                let mut arrive = |model: &mut HashMap<u128, (bool, u64)>, this_run| {
                    let generation = arrivals / size;
                    if arrivals.is_multiple_of(size) && generation > kept {
                        let gone = generation - kept - 1;
                        model.retain(|_, (_, a)| *a / size != gone);
                    }
                    model.insert(id, (this_run, arrivals));
                    arrivals += 1;
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
                        assert_eq!(seen, expected, "window {window}, step {step}, id {id}");
                    }
                }
                assert_eq!(ids.len(), model.len(), "window {window}, step {step}");
                if step % 997 == 0 {
                    for probe in 0..space as u128 {
                        assert_eq!(
                            ids.contains(probe),
                            model.contains_key(&probe),
                            "window {window}, step {step}, id {probe}"
                        );
                    }
                }
            }
        }
    }

    /// The memory figures the docs give: a full window costs under 12.5 bytes an id
    /// (121 MB for the default 10 M), whether reserved at once or grown id by id.
    #[test]
    fn a_window_costs_under_12_and_a_half_bytes_an_id() {
        let mut ids = RecentIds::new(DEFAULT_WINDOW);
        ids.reserve(DEFAULT_WINDOW); // as import does, from the file's size
        let per_id = ids.heap_bytes() as f64 / DEFAULT_WINDOW as f64;
        assert!((12.0..12.5).contains(&per_id), "{per_id} bytes an id");
        ids.reserve(DEFAULT_WINDOW * 2);
        assert_eq!(
            ids.heap_bytes() as f64 / DEFAULT_WINDOW as f64,
            per_id,
            "never past the most the window holds"
        );

        let window = 300_000;
        let mut ids = RecentIds::new(window);
        for id in 1..=(window as u128 * 3) {
            ids.insert(id);
        }
        let per_id = ids.heap_bytes() as f64 / window as f64;
        assert!(per_id < 12.5, "{per_id} bytes an id");
        assert!(ids.contains(window as u128 * 3) && !ids.contains(1));
    }

    /// The odds the docs give: two ids are taken for one only if 74 bits of their
    /// keyed hashes agree.
    #[test]
    fn a_window_keeps_74_bits_an_id() {
        assert_eq!(RecentIds::new(DEFAULT_WINDOW).fingerprint_bits(), 74);
    }

    /// Two ids whose first hashes agree are still told apart by the second hash (the
    /// tag kept beside it). Finding such a pair would take ~2³² tries: the first hash
    /// of the second is forced instead.
    #[test]
    fn ids_with_the_same_hash_are_told_apart() {
        let mut ids = RecentIds::new(100);
        let (a, b) = (1u128, 2u128);
        let ka = ids.key(a);
        let mut kb = ids.key(b);
        kb.x = ka.x;
        if kb.tag == ka.tag {
            kb.tag ^= 1;
        }
        ids.remember(ka, true);
        assert!(ids.table.find(ka).is_some());
        assert_eq!(ids.table.find(kb), None, "same hash, different tag");
        ids.remember(kb, true);
        assert!(ids.table.find(ka).is_some() && ids.table.find(kb).is_some());
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

    /// Hashes crowded into a few homes at the table's end: runs wrap past slot 0,
    /// and a generation's pass and backward shifts keep every id findable.
    #[test]
    fn runs_that_wrap_past_the_end_stay_findable() {
        let mut ids = RecentIds::new(64);
        let n = ids.table.hashes.len() as u64;
        // Hashes whose homes are the last two slots.
        let key = |i: u64| Key {
            x: u64::MAX - i * (u64::MAX / n / 64),
            tag: (i % 1000) as u16,
        };
        for i in 0..40 {
            ids.remember(key(i), true);
        }
        for i in 0..40 {
            assert!(ids.table.find(key(i)).is_some(), "{i}");
        }
        let at = ids.table.find(key(3)).unwrap();
        ids.table.remove(at);
        ids.table.retain(|m| m >> TAG_SHIFT != 7);
        for i in 0..40 {
            assert_eq!(ids.table.find(key(i)).is_some(), i != 3 && i != 7, "{i}");
        }
        assert_eq!(ids.len(), 38);
    }
}
