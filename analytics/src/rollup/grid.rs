//! One question's grid over the rollups: which period each local day falls in, which
//! area (at the question's level, inside its scope) each unit counts toward, and the
//! cells (period × area) the facts are summed into. Built from the question's `Frame`,
//! so the rollups and the reference computation cut periods and areas alike.

use std::collections::HashMap;
use std::sync::Arc;

use crate::kpi::frame::Frame;
use crate::kpi::measure::Key;
use crate::reference::Volunteer;

use super::days::day_number;

/// No area: the unit is outside the question's scope (or not a known unit).
pub const OUTSIDE: u32 = u32::MAX;

pub struct Grid<'f> {
    pub frame: &'f Frame<'f>,
    /// The question's areas, interned.
    areas: Vec<String>,
    /// Per unit of the reference: its area's index, or `OUTSIDE`.
    area_of_unit: Vec<u32>,
    /// First local day of each period, and the day after the last one.
    first_days: Vec<i32>,
    end_day: i32,
    /// The end (exclusive instant) of each period.
    ends: Vec<i64>,
}

impl<'f> Grid<'f> {
    pub fn new(frame: &'f Frame<'f>) -> Self {
        let mut index: HashMap<&str, u32> = HashMap::new();
        let mut areas = Vec::new();
        let area_of_unit = frame
            .area
            .iter()
            .map(|a| match a {
                Some(a) => *index.entry(a.as_str()).or_insert_with(|| {
                    areas.push(a.clone());
                    areas.len() as u32 - 1
                }),
                None => OUTSIDE,
            })
            .collect();
        let periods = &frame.periods.periods;
        Grid {
            frame,
            areas,
            area_of_unit,
            first_days: periods.iter().map(|p| day_number(p.first)).collect(),
            end_day: periods.last().map_or(0, |p| day_number(p.last) + 1),
            ends: periods.iter().map(|p| p.end_us).collect(),
        }
    }

    /// Number of periods.
    pub fn n(&self) -> usize {
        self.first_days.len()
    }

    /// Number of cells (periods × areas).
    pub fn cells(&self) -> usize {
        self.n() * self.areas.len()
    }

    /// The days the question spans: `[first, end)`.
    pub fn days(&self) -> (i32, i32) {
        (self.first_days.first().copied().unwrap_or(0), self.end_day)
    }

    /// The period holding a local day: −1 before the range, `n` after (as `wm_bucket`).
    pub fn bucket(&self, day: i32) -> i32 {
        if day >= self.end_day {
            return self.n() as i32;
        }
        self.first_days.partition_point(|f| *f <= day) as i32 - 1
    }

    /// For each of a rollup's units (by id), its area's index or `OUTSIDE`.
    pub fn areas_of(&self, units: &[Arc<str>]) -> Vec<u32> {
        units
            .iter()
            .map(|id| {
                self.frame
                    .refd
                    .unit_index
                    .get(&**id)
                    .map_or(OUTSIDE, |i| self.area_of_unit[*i])
            })
            .collect()
    }

    /// For each of a rollup's units (by id), its index in the reference, if known.
    pub fn reference_units(&self, units: &[Arc<str>]) -> Vec<Option<usize>> {
        units
            .iter()
            .map(|id| self.frame.refd.unit_index.get(&**id).copied())
            .collect()
    }

    pub fn cell(&self, period: usize, area: u32) -> usize {
        period * self.areas.len() + area as usize
    }

    pub fn key(&self, cell: usize) -> Key {
        let a = self.areas.len();
        (cell / a, self.areas[cell % a].clone())
    }

    /// The periods at whose end a volunteer is registered (`first..=last`), and the area
    /// of their home unit, when it is in scope.
    pub fn registered(&self, v: &Volunteer) -> Option<(u32, usize, usize)> {
        let area = v.home_index.map_or(OUTSIDE, |u| self.area_of_unit[u]);
        if area == OUTSIDE {
            return None;
        }
        // Registered at the end e: registered_at < e, and not deregistered before e.
        let first = self.ends.partition_point(|e| *e <= v.registered_at);
        let last = match v.deregistered_at {
            Some(d) => self.ends.partition_point(|e| *e <= d).checked_sub(1)?,
            None => self.n().checked_sub(1)?,
        };
        (first <= last).then_some((area, first, last))
    }

    /// Registered volunteers per cell (home unit in scope, at each period's end).
    pub fn registered_counts(&self) -> Vec<i64> {
        let a = self.areas.len();
        if a == 0 {
            return Vec::new();
        }
        let mut diff = vec![0i64; (self.n() + 1) * a];
        for v in &self.frame.refd.volunteers {
            if let Some((area, first, last)) = self.registered(v) {
                diff[first * a + area as usize] += 1;
                diff[(last + 1) * a + area as usize] -= 1;
            }
        }
        running_sums(&mut diff, a);
        diff.truncate(self.cells());
        diff
    }

    /// Cells as the answer's layout takes them: those with a numerator or denominator.
    pub fn plain(&self, num: &[f64], den: Option<&[f64]>) -> HashMap<Key, (f64, f64)> {
        (0..self.cells())
            .filter_map(|c| {
                let d = den.map_or(0.0, |d| d[c]);
                (num[c] != 0.0 || d != 0.0).then(|| (self.key(c), (num[c], d)))
            })
            .collect()
    }
}

/// Turn per-period differences (row-major, `stride` areas per period) into values.
fn running_sums(diff: &mut [i64], stride: usize) {
    for i in stride..diff.len() {
        diff[i] += diff[i - stride];
    }
}
