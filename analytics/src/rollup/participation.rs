//! The participation rollup: per local day (of the activity's start) and unit, held
//! activities and their anonymous headcounts, and per person their check-ins there.
//! Answers activities_held, participant_visits, resident_visits, unique_participants,
//! participation_rate and active_station_rate.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, UInt32Array};
use chrono_tz::Tz;
use roaring::RoaringBitmap;

use super::days::LocalDays;
use super::grid::{Grid, OUTSIDE};
use super::saved::{Files, Loaded, SavedError, ids_file};
use super::{Interner, PerDay, bool_column, int_column, str_column};
use crate::error::AnalyticsError;
use crate::kpi::Kpi;

/// A check-in without a person: a visit of no one in particular.
const NO_PERSON: u32 = u32::MAX;

#[derive(Default, Clone)]
pub struct Day {
    /// (unit, held activities, anonymous headcount), sorted by unit, one per unit.
    held: Vec<(u32, i64, i64)>,
    /// Check-ins per (unit, person), sorted, one per pair: all of them, and those as a
    /// resident.
    visits: Vec<Visits>,
}

#[derive(Debug, Clone, Copy)]
struct Visits {
    unit: u32,
    person: u32,
    all: i64,
    resident: i64,
}

/// Dense ids of units and people, shared by every version and only appended to.
#[derive(Default)]
struct Ids {
    units: Interner,
    persons: Interner,
}

pub struct Participation {
    ids: Arc<RwLock<Ids>>,
    /// Per day; shared with the previous version until an update touches it.
    days: PerDay<Arc<Day>>,
    /// The versions of `activity_events` and `attendance_events` these facts reflect.
    pub versions: (Option<u64>, Option<u64>),
}

/// The query the rollup reads held activities and their check-ins with: one row per
/// held activity (person NULL, kind 0) and one per check-in (kind 1).
pub const SQL: &str = "\
    SELECT 0 AS kind, unit_id, CAST(starts_at AS BIGINT) AS s, \
           coalesce(anonymous_headcount, 0) AS hc, CAST(NULL AS VARCHAR) AS person_id, \
           FALSE AS as_resident \
    FROM activities WHERE held AND starts_at IS NOT NULL \
    UNION ALL \
    SELECT 1, a.unit_id, CAST(a.starts_at AS BIGINT), 0, t.person_id, \
           coalesce(t.as_resident, FALSE) \
    FROM attendance t JOIN activities a ON a.activity_id = t.activity_id \
    WHERE a.held AND a.starts_at IS NOT NULL";

/// What one row of `SQL` adds to a day.
enum Fact {
    Held(u32, i64),
    Visit(Visits),
}

fn for_each_row(
    batches: &[RecordBatch],
    ids: &mut Ids,
    local: &mut LocalDays,
    mut f: impl FnMut(i32, Fact) -> Result<(), AnalyticsError>,
) -> Result<(), AnalyticsError> {
    for batch in batches {
        let kind = int_column(batch, 0)?;
        let unit = str_column(batch, 1)?;
        let starts = int_column(batch, 2)?;
        let headcount = int_column(batch, 3)?;
        let person = str_column(batch, 4)?;
        let resident = bool_column(batch, 5)?;
        for i in 0..batch.num_rows() {
            let Some(starts) = starts.get(i) else {
                continue;
            };
            let u = ids.units.intern(unit.value_or_empty(i));
            let fact = if kind.get(i) == Some(0) {
                Fact::Held(u, headcount.get(i).unwrap_or(0))
            } else {
                Fact::Visit(Visits {
                    unit: u,
                    person: person.get(i).map_or(NO_PERSON, |p| ids.persons.intern(p)),
                    all: 1,
                    resident: resident.is_true(i) as i64,
                })
            };
            f(local.day(starts), fact)?;
        }
    }
    Ok(())
}

impl Day {
    /// Add (`sign` 1) or take out (−1) one fact; `false` when taking out one not held.
    fn apply(&mut self, sign: i64, fact: &Fact) -> bool {
        match fact {
            Fact::Held(unit, headcount) => match self.held.binary_search_by_key(unit, |h| h.0) {
                Ok(i) => {
                    self.held[i].1 += sign;
                    self.held[i].2 += sign * headcount;
                    if self.held[i].1 == 0 {
                        self.held.remove(i);
                    }
                }
                Err(i) if sign > 0 => self.held.insert(i, (*unit, 1, *headcount)),
                Err(_) => return false,
            },
            Fact::Visit(v) => {
                let key = (v.unit, v.person);
                match self
                    .visits
                    .binary_search_by_key(&key, |x| (x.unit, x.person))
                {
                    Ok(i) => {
                        self.visits[i].all += sign * v.all;
                        self.visits[i].resident += sign * v.resident;
                        if self.visits[i].all == 0 {
                            self.visits.remove(i);
                        }
                    }
                    Err(i) if sign > 0 => self.visits.insert(i, *v),
                    Err(_) => return false,
                }
            }
        }
        true
    }
}

impl Participation {
    pub fn from_batches(
        batches: &[RecordBatch],
        tz: Tz,
        versions: (Option<u64>, Option<u64>),
    ) -> Result<Participation, AnalyticsError> {
        let mut ids = Ids::default();
        let mut by_day: HashMap<i32, Day> = HashMap::new();
        for_each_row(batches, &mut ids, &mut LocalDays::new(tz), |day, fact| {
            let day = by_day.entry(day).or_default();
            match fact {
                Fact::Held(u, hc) => day.held.push((u, 1, hc)),
                Fact::Visit(v) => day.visits.push(v),
            }
            Ok(())
        })?;
        let days = PerDay::from_map(by_day, |mut day| {
            day.held.sort_unstable_by_key(|h| h.0);
            day.held.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    kept.1 += later.1;
                    kept.2 += later.2;
                }
                same
            });
            day.visits.sort_unstable_by_key(|v| (v.unit, v.person));
            day.visits.dedup_by(|later, kept| {
                let same = later.unit == kept.unit && later.person == kept.person;
                if same {
                    kept.all += later.all;
                    kept.resident += later.resident;
                }
                same
            });
            Arc::new(day)
        });
        Ok(Participation {
            ids: Arc::new(RwLock::new(ids)),
            days,
            versions,
        })
    }

    /// This rollup with the `SQL` rows of the activities whose facts changed taken out
    /// as they were (`before`) and put in as they are (`after`). Only the days they fall
    /// on are copied.
    pub fn updated(
        &self,
        before: &[RecordBatch],
        after: &[RecordBatch],
        tz: Tz,
        versions: (Option<u64>, Option<u64>),
    ) -> Result<Participation, AnalyticsError> {
        let mut days = self.days.clone();
        let mut local = LocalDays::new(tz);
        let mut ids = self.ids.write().expect("not poisoned");
        for (sign, batches) in [(-1, before), (1, after)] {
            for_each_row(batches, &mut ids, &mut local, |day, fact| {
                if Arc::make_mut(days.get_mut(day)).apply(sign, &fact) {
                    Ok(())
                } else {
                    Err(AnalyticsError::Query(
                        datafusion::error::DataFusionError::Internal(
                            "a change took out a check-in the rollup does not hold".into(),
                        ),
                    ))
                }
            })?;
        }
        Ok(Participation {
            ids: self.ids.clone(),
            days,
            versions,
        })
    }

    /// The rollup as files to save (`saved`): held activities and check-ins per day,
    /// and the dense ids.
    pub(super) fn to_files(&self) -> Result<Files, AnalyticsError> {
        let (mut held, mut visits) = (
            (vec![], vec![], vec![], vec![]),
            (vec![], vec![], vec![], vec![], vec![]),
        );
        for (day, facts) in self.days.iter() {
            for &(unit, count, headcount) in &facts.held {
                held.0.push(day);
                held.1.push(unit);
                held.2.push(count);
                held.3.push(headcount);
            }
            for v in &facts.visits {
                visits.0.push(day);
                visits.1.push(v.unit);
                visits.2.push(v.person);
                visits.3.push(v.all);
                visits.4.push(v.resident);
            }
        }
        let held = RecordBatch::try_from_iter([
            ("day", Arc::new(Int32Array::from(held.0)) as ArrayRef),
            ("unit", Arc::new(UInt32Array::from(held.1))),
            ("held", Arc::new(Int64Array::from(held.2))),
            ("headcount", Arc::new(Int64Array::from(held.3))),
        ])?;
        let visits = RecordBatch::try_from_iter([
            ("day", Arc::new(Int32Array::from(visits.0)) as ArrayRef),
            ("unit", Arc::new(UInt32Array::from(visits.1))),
            ("person", Arc::new(UInt32Array::from(visits.2))),
            ("all", Arc::new(Int64Array::from(visits.3))),
            ("resident", Arc::new(Int64Array::from(visits.4))),
        ])?;
        let ids = self.ids.read().expect("not poisoned");
        Ok(vec![
            ("held", held),
            ("visits", visits),
            ("units", ids_file(ids.units.ids())?),
            ("persons", ids_file(ids.persons.ids())?),
        ])
    }

    /// The rollup saved by `to_files`, at `versions`.
    pub(super) fn from_files(
        mut files: Loaded,
        versions: (Option<u64>, Option<u64>),
    ) -> Result<Participation, SavedError> {
        let ids = Ids {
            units: files.ids("units")?,
            persons: files.ids("persons")?,
        };
        let (units, persons) = (ids.units.len() as i64, ids.persons.len() as i64);
        let mut days: PerDay<Arc<Day>> = PerDay::default();
        for batch in files.take("held")? {
            let column = |i| int_column(&batch, i).map_err(|e| files.invalid(e.to_string()));
            let (day, unit, held, headcount) = (column(0)?, column(1)?, column(2)?, column(3)?);
            for i in 0..batch.num_rows() {
                let (Some(d), Some(u), Some(n), Some(hc)) =
                    (day.get(i), unit.get(i), held.get(i), headcount.get(i))
                else {
                    return Err(files.invalid("a null in held"));
                };
                let d = i32::try_from(d).map_err(|_| files.invalid("a day out of range"))?;
                if !(0..units).contains(&u) || n < 1 {
                    return Err(files.invalid(format!("held activities of no known unit: {u}")));
                }
                let facts = Arc::make_mut(days.get_mut(d));
                if facts.held.last().is_some_and(|l| l.0 >= u as u32) {
                    return Err(files.invalid("held activities out of order"));
                }
                facts.held.push((u as u32, n, hc));
            }
        }
        for batch in files.take("visits")? {
            let column = |i| int_column(&batch, i).map_err(|e| files.invalid(e.to_string()));
            let (day, unit, person) = (column(0)?, column(1)?, column(2)?);
            let (all, resident) = (column(3)?, column(4)?);
            for i in 0..batch.num_rows() {
                let (Some(d), Some(u), Some(p), Some(a), Some(r)) = (
                    day.get(i),
                    unit.get(i),
                    person.get(i),
                    all.get(i),
                    resident.get(i),
                ) else {
                    return Err(files.invalid("a null in visits"));
                };
                let d = i32::try_from(d).map_err(|_| files.invalid("a day out of range"))?;
                let known_person = p < persons || p == NO_PERSON as i64;
                if !(0..units).contains(&u) || !known_person || a < 1 {
                    return Err(
                        files.invalid(format!("check-ins of no known unit or person: {u}, {p}"))
                    );
                }
                let v = Visits {
                    unit: u as u32,
                    person: p as u32,
                    all: a,
                    resident: r,
                };
                let facts = Arc::make_mut(days.get_mut(d));
                if facts
                    .visits
                    .last()
                    .is_some_and(|l| (l.unit, l.person) >= (v.unit, v.person))
                {
                    return Err(files.invalid("check-ins out of order"));
                }
                facts.visits.push(v);
            }
        }
        Ok(Participation {
            ids: Arc::new(RwLock::new(ids)),
            days,
            versions,
        })
    }

    fn units(&self) -> Vec<Arc<str>> {
        self.ids.read().expect("not poisoned").units.ids().to_vec()
    }

    fn in_range<'a>(&'a self, grid: &'a Grid<'_>) -> impl Iterator<Item = (usize, &'a Day)> {
        let (first, end) = grid.days();
        self.days
            .range(first, end)
            .map(move |(day, facts)| (grid.bucket(day) as usize, &**facts))
    }

    /// activities_held, participant_visits or resident_visits per cell.
    pub fn counts(&self, kpi: Kpi, grid: &Grid<'_>) -> Vec<i64> {
        let area = grid.areas_of(&self.units());
        let mut out = vec![0i64; grid.cells()];
        for (b, day) in self.in_range(grid) {
            for &(u, held, headcount) in &day.held {
                let a = area[u as usize];
                if a != OUTSIDE {
                    out[grid.cell(b, a)] += if kpi == Kpi::ActivitiesHeld {
                        held
                    } else {
                        headcount
                    };
                }
            }
            if kpi == Kpi::ActivitiesHeld {
                continue;
            }
            for v in &day.visits {
                let a = area[v.unit as usize];
                if a != OUTSIDE {
                    out[grid.cell(b, a)] += if kpi == Kpi::ResidentVisits {
                        v.resident
                    } else {
                        v.all
                    };
                }
            }
        }
        out
    }

    /// Distinct people checked in per cell (as residents only, when asked).
    pub fn persons(&self, grid: &Grid<'_>, residents_only: bool) -> Vec<f64> {
        let area = grid.areas_of(&self.units());
        let mut sets = vec![RoaringBitmap::new(); grid.cells()];
        for (b, day) in self.in_range(grid) {
            for v in &day.visits {
                let a = area[v.unit as usize];
                if a != OUTSIDE && v.person != NO_PERSON && (!residents_only || v.resident > 0) {
                    sets[grid.cell(b, a)].insert(v.person);
                }
            }
        }
        sets.iter().map(|s| s.len() as f64).collect()
    }

    /// Stations open at the period's end with a held activity in it, per cell.
    pub fn active_stations(&self, grid: &Grid<'_>) -> Vec<f64> {
        let area = grid.areas_of(&self.units());
        let refs = grid.reference_units(&self.units());
        let refd = grid.frame.refd;
        let ends: Vec<i64> = grid
            .frame
            .periods
            .periods
            .iter()
            .map(|p| p.end_us)
            .collect();
        let mut seen: std::collections::HashSet<(usize, u32)> = Default::default();
        let mut out = vec![0.0; grid.cells()];
        for (b, day) in self.in_range(grid) {
            for &(u, _, _) in &day.held {
                let (a, Some(r)) = (area[u as usize], refs[u as usize]) else {
                    continue;
                };
                let unit = &refd.units[r];
                if a == OUTSIDE || !unit.is_station() || !unit.open_at(ends[b]) {
                    continue;
                }
                if seen.insert((b, u)) {
                    out[grid.cell(b, a)] += 1.0;
                }
            }
        }
        out
    }
}
