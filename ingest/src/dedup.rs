//! Re-sent events (same `event_id`) are stored once. Ids are remembered in a window of
//! the most recent ones: 10 M ids by default, about 50 bytes an id (≈ 500 MB at most),
//! far more than a week of a city's events (≈ 600 k).

use std::collections::{HashMap, VecDeque};

/// Ids are hashed with foldhash (seeded per process, so a sender cannot aim collisions
/// at it): SipHash was a third of the import loop's time in this map.
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
    /// Id → whether it was seen in this run (else only seeded from the lake).
    set: HashMap<u128, bool, Hasher>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        RecentIds {
            set: HashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers an id seen in this run, and says what was known of it.
    pub fn insert(&mut self, id: u128) -> Seen {
        match self.set.insert(id, true) {
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
        if let std::collections::hash_map::Entry::Vacant(e) = self.set.entry(id) {
            e.insert(false);
            self.remember(id);
        }
    }

    fn remember(&mut self, id: u128) {
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }

    /// Forgets an id: its event was read but not stored (a dropped buffer), and must
    /// not count as seen when it is read again.
    pub fn forget(&mut self, id: u128) {
        self.set.remove(&id);
    }

    pub fn contains(&self, id: u128) -> bool {
        self.set.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
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
}
