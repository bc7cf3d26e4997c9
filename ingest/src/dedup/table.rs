//! The open-addressing table of id fingerprints behind `RecentIds`.

use super::*;

/// Ids' hashes and metadata in two arrays of the same length: Robin Hood linear
/// probing, at most [`LOAD_NUM`]/[`LOAD_DEN`] full, deletion by backward shift (no
/// tombstones, so a window that turns over forever never degrades).
///
/// An id's home slot is its hash scaled to the table (`x × n / 2⁶⁴`), so the table can
/// have any size, not only a power of two, and the home of every slot is known from
/// the hash it holds. Ids of a run of full slots sit in the order of their homes: a
/// probe stops at an id that sits nearer its home than the sought one would.
pub(super) struct IdTable {
    /// 0 marks an empty slot.
    pub(super) hashes: Vec<u64>,
    pub(super) meta: Vec<u16>,
    pub(super) len: usize,
    /// The slots the table grows to for the most ids it must hold.
    pub(super) most_slots: usize,
}

impl IdTable {
    const INITIAL_SLOTS: usize = 1 << 12;

    /// A table for at most `most` ids.
    pub(super) fn new(most: usize) -> Self {
        let most_slots = slots_for(most);
        let n = Self::INITIAL_SLOTS.min(most_slots);
        IdTable {
            hashes: zeroed(n),
            meta: zeroed(n),
            len: 0,
            most_slots,
        }
    }

    pub(super) fn home(&self, x: u64) -> usize {
        ((u128::from(x) * self.hashes.len() as u128) >> 64) as usize
    }

    /// How far slot `at`, holding hash `x`, is past `x`'s home.
    pub(super) fn distance(&self, at: usize, x: u64) -> usize {
        let home = self.home(x);
        if at >= home {
            at - home
        } else {
            at + self.hashes.len() - home
        }
    }

    pub(super) fn next(&self, at: usize) -> usize {
        if at + 1 == self.hashes.len() {
            0
        } else {
            at + 1
        }
    }

    /// The slot holding `key`, if any.
    pub(super) fn find(&self, key: Key) -> Option<usize> {
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
    pub(super) fn prefetch(&self, x: u64) {
        let home = self.home(x);
        prefetch(&self.hashes[home]);
        prefetch(&self.meta[home]);
    }

    /// Grows once to hold `len` ids within the load limit (never past the most the
    /// table must hold).
    pub(super) fn reserve(&mut self, len: usize) {
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
    pub(super) fn grown(&self, n: usize) -> usize {
        if n * 2 * 8 > self.most_slots {
            self.most_slots
        } else {
            n * 2
        }
    }

    /// Adds an id known to be absent.
    pub(super) fn insert(&mut self, x: u64, meta: u16) {
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
    pub(super) fn place(&mut self, mut x: u64, mut meta: u16) {
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
    pub(super) fn remove(&mut self, mut at: usize) {
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
    pub(super) fn retain(&mut self, keep: impl Fn(u16) -> bool) {
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
    pub(super) fn rehash(&mut self, n: usize) {
        let hashes = std::mem::replace(&mut self.hashes, zeroed(n));
        let meta = std::mem::replace(&mut self.meta, zeroed(n));
        for (x, m) in hashes.into_iter().zip(meta).filter(|(x, _)| *x != 0) {
            self.place(x, m);
        }
    }
}

/// Slots for `ids` within the load limit, and one empty slot at least.
pub(super) fn slots_for(ids: usize) -> usize {
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
pub(super) fn zeroed<T: Copy + Default>(n: usize) -> Vec<T> {
    let mut slots = Vec::with_capacity(n);
    slots.resize(n, T::default());
    slots
}
