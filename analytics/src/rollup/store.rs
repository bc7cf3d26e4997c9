//! How the rollups hold their facts: ids made dense, and facts per local day.

use std::collections::HashMap;
use std::sync::Arc;

/// Ids made dense: the n-th distinct id seen is n.
#[derive(Default)]
pub(crate) struct Interner {
    ids: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
}

impl Interner {
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(i) = self.index.get(id) {
            return *i;
        }
        let id: Arc<str> = id.into();
        let i = self.ids.len() as u32;
        self.ids.push(id.clone());
        self.index.insert(id, i);
        i
    }

    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn id(&self, i: u32) -> &str {
        &self.ids[i as usize]
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn into_ids(self) -> Vec<Arc<str>> {
        self.ids
    }

    pub fn ids(&self) -> &[Arc<str>] {
        &self.ids
    }
}

/// Facts per local day, from the first day with any to the last.
#[derive(Clone)]
pub struct PerDay<T> {
    first: i32,
    days: Vec<T>,
}

impl<T> Default for PerDay<T> {
    fn default() -> Self {
        PerDay {
            first: 0,
            days: Vec::new(),
        }
    }
}

impl<T: Default> PerDay<T> {
    pub fn from_map<U>(map: HashMap<i32, U>, mut finish: impl FnMut(U) -> T) -> Self {
        let (Some(first), Some(last)) = (map.keys().min().copied(), map.keys().max().copied())
        else {
            return PerDay {
                first: 0,
                days: Vec::new(),
            };
        };
        let mut days: Vec<T> = (first..=last).map(|_| T::default()).collect();
        for (d, facts) in map {
            days[(d - first) as usize] = finish(facts);
        }
        PerDay { first, days }
    }

    /// The facts of a day, made room for if the range does not reach it yet.
    pub fn get_mut(&mut self, day: i32) -> &mut T {
        if self.days.is_empty() {
            self.first = day;
        }
        if day < self.first {
            let extra = (self.first - day) as usize;
            self.days.splice(0..0, (0..extra).map(|_| T::default()));
            self.first = day;
        }
        let i = (day - self.first) as usize;
        if i >= self.days.len() {
            self.days.resize_with(i + 1, T::default);
        }
        &mut self.days[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = (i32, &T)> {
        self.range(i32::MIN, i32::MAX)
    }

    /// The days in `[from, to)` that have facts, with their day.
    pub fn range(&self, from: i32, to: i32) -> impl Iterator<Item = (i32, &T)> {
        let len = self.days.len() as i64;
        let lo = (from as i64 - self.first as i64).clamp(0, len) as usize;
        let hi = ((to as i64 - self.first as i64).clamp(0, len) as usize).max(lo);
        self.days[lo..hi]
            .iter()
            .enumerate()
            .map(move |(i, t)| (self.first + (lo + i) as i32, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_ranged_and_grown_on_either_side() {
        let mut days: PerDay<Vec<i32>> =
            PerDay::from_map(HashMap::from([(10, vec![1]), (12, vec![2])]), |v| v);
        let seen = |d: &PerDay<Vec<i32>>, from, to| -> Vec<(i32, Vec<i32>)> {
            d.range(from, to).map(|(day, v)| (day, v.clone())).collect()
        };
        assert_eq!(
            seen(&days, 0, 100),
            vec![(10, vec![1]), (11, vec![]), (12, vec![2])]
        );
        assert_eq!(seen(&days, 11, 12), vec![(11, vec![])]);
        assert!(seen(&days, 13, 20).is_empty());
        assert!(seen(&days, 0, 10).is_empty());
        assert!(seen(&days, 12, 11).is_empty());
        days.get_mut(8).push(3);
        days.get_mut(14).push(4);
        assert_eq!(seen(&days, i32::MIN, i32::MAX).first(), Some(&(8, vec![3])));
        assert_eq!(seen(&days, 14, 15), vec![(14, vec![4])]);
        assert_eq!(days.iter().count(), 7);
        let mut empty: PerDay<Vec<i32>> = PerDay::from_map(HashMap::new(), |v| v);
        assert!(seen(&empty, i32::MIN, i32::MAX).is_empty());
        empty.get_mut(-5).push(1);
        assert_eq!(seen(&empty, -10, 0), vec![(-5, vec![1])]);
    }

    #[test]
    fn an_id_keeps_its_number() {
        let mut ids = Interner::default();
        assert_eq!(
            (ids.intern("a"), ids.intern("b"), ids.intern("a")),
            (0, 1, 0)
        );
        assert_eq!(
            (ids.get("b"), ids.get("c"), ids.id(1), ids.len()),
            (Some(1), None, "b", 2)
        );
    }
}
