//! Re-sent events (same `event_id`) are stored once. Ids are remembered in a window of
//! the most recent ones: 10 M ids by default, about 360 MB at most, far more than a
//! week of a city's events arrive in.

use std::collections::{HashSet, VecDeque};

pub const DEFAULT_WINDOW: usize = 10_000_000;

/// The most recent `capacity` event ids, oldest forgotten first.
pub struct RecentIds {
    set: HashSet<u128>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        RecentIds {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers an id; `false` when it was already among the recent ones.
    pub fn insert(&mut self, id: u128) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    /// Forgets an id: its event was read but not stored (a dropped buffer), and must
    /// not count as seen when it is read again.
    pub fn forget(&mut self, id: u128) {
        self.set.remove(&id);
    }

    pub fn contains(&self, id: u128) -> bool {
        self.set.contains(&id)
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
        assert!(ids.insert(1));
        assert!(!ids.insert(1));
        assert!(ids.insert(2));
        assert!(ids.insert(3));
        assert!(ids.insert(4)); // 1 falls out of the window
        assert_eq!(ids.len(), 3);
        assert!(!ids.insert(4));
        assert!(ids.insert(1), "forgotten after the window");
    }

    #[test]
    fn a_forgotten_id_is_new_again() {
        let mut ids = RecentIds::new(10);
        assert!(ids.insert(7));
        ids.forget(7);
        assert!(!ids.contains(7));
        assert!(ids.insert(7));
    }
}
