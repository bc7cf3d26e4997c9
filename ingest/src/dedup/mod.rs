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

mod table;
#[cfg(test)]
mod tests;

use table::IdTable;

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
