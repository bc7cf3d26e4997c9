//! The service rollup: effective service records summed per local day × unit ×
//! volunteer, and per volunteer the days their cumulative hours first reach each star
//! level. Answers service_hours, serving_volunteers, hours_per_*, volunteer_activity_rate,
//! star_volunteers and volunteer_ranking.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, UInt32Array};
use chrono_tz::Tz;
use roaring::RoaringBitmap;

use super::days::LocalDays;
use super::grid::{Grid, OUTSIDE};
use super::saved::{Files, Loaded, SavedError, ids_file};
use super::{Interner, PerDay, int_column, str_column};
use crate::error::AnalyticsError;
use crate::kpi::measure::{Key, STAR_MINUTES};
use crate::reference::Reference;

/// A record without a volunteer (not in the contract, but kept exact): its minutes count,
/// it is no one's.
pub const NO_VOLUNTEER: u32 = u32::MAX;
/// A star level never reached.
const NEVER: i32 = i32::MAX;

/// Minutes of one volunteer at one unit on one day, and of how many records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    unit: u32,
    volunteer: u32,
    minutes: i64,
    records: i64,
}

/// Dense ids of units and volunteers: shared by every version of the rollup and only
/// ever appended to, so an update reuses them without copying.
#[derive(Default)]
struct Ids {
    units: Interner,
    volunteers: Interner,
}

pub struct Service {
    ids: Arc<RwLock<Ids>>,
    /// Per day, entries sorted by (unit, volunteer), one per pair. A day is shared with
    /// the previous version until an update touches it.
    days: PerDay<Arc<Vec<Entry>>>,
    /// Per volunteer, the first day their cumulative minutes reach each star level.
    crossings: Vec<[i32; 5]>,
    /// The version of `service_events` these facts reflect.
    pub version: Option<u64>,
}

/// The query the rollup reads `service_records` (or a change of its rows) with.
pub const SQL: &str = "SELECT unit_id, volunteer_id, CAST(started_at AS BIGINT), minutes \
     FROM service_records WHERE effective AND started_at IS NOT NULL";

/// Each row of `SQL`'s answer as (local day, entry of one record).
fn for_each_row(
    batches: &[RecordBatch],
    ids: &mut Ids,
    local: &mut LocalDays,
    mut f: impl FnMut(i32, Entry) -> Result<(), AnalyticsError>,
) -> Result<(), AnalyticsError> {
    for batch in batches {
        let unit = str_column(batch, 0)?;
        let volunteer = str_column(batch, 1)?;
        let started = int_column(batch, 2)?;
        let minutes = int_column(batch, 3)?;
        for i in 0..batch.num_rows() {
            let Some(started) = started.get(i) else {
                continue;
            };
            let entry = Entry {
                unit: ids.units.intern(unit.value_or_empty(i)),
                volunteer: match volunteer.get(i) {
                    Some(v) => ids.volunteers.intern(v),
                    None => NO_VOLUNTEER,
                },
                minutes: minutes.get(i).unwrap_or(0),
                records: 1,
            };
            f(local.day(started), entry)?;
        }
    }
    Ok(())
}

/// Per volunteer, the first day their cumulative minutes reach each star level.
fn crossings(days: &PerDay<Arc<Vec<Entry>>>, volunteers: usize) -> Vec<[i32; 5]> {
    let mut crossings = vec![[NEVER; 5]; volunteers];
    let mut total = vec![0i64; volunteers];
    for (day, entries) in days.iter() {
        for e in entries.iter().filter(|e| e.volunteer != NO_VOLUNTEER) {
            let v = e.volunteer as usize;
            total[v] += e.minutes;
            for (level, threshold) in STAR_MINUTES.iter().enumerate() {
                if total[v] >= *threshold && crossings[v][level] == NEVER {
                    crossings[v][level] = day;
                }
            }
        }
    }
    crossings
}

impl Service {
    pub fn from_batches(
        batches: &[RecordBatch],
        tz: Tz,
        version: Option<u64>,
    ) -> Result<Service, AnalyticsError> {
        let mut ids = Ids::default();
        let mut by_day: HashMap<i32, Vec<Entry>> = HashMap::new();
        for_each_row(batches, &mut ids, &mut LocalDays::new(tz), |day, entry| {
            by_day.entry(day).or_default().push(entry);
            Ok(())
        })?;
        let days = PerDay::from_map(by_day, |mut entries| {
            entries.sort_unstable_by_key(|e| (e.unit, e.volunteer));
            entries.dedup_by(|later, kept| {
                let same = later.unit == kept.unit && later.volunteer == kept.volunteer;
                if same {
                    kept.minutes += later.minutes;
                    kept.records += later.records;
                }
                same
            });
            Arc::new(entries)
        });
        Ok(Service {
            crossings: crossings(&days, ids.volunteers.len()),
            ids: Arc::new(RwLock::new(ids)),
            days,
            version,
        })
    }

    /// This rollup changed as the view's rows did: for each change (oldest first), the
    /// `SQL` rows it took out and those it put in. Only the days they fall on are copied.
    pub fn updated(
        &self,
        changes: &[(Vec<RecordBatch>, Vec<RecordBatch>)],
        tz: Tz,
        version: Option<u64>,
    ) -> Result<Service, AnalyticsError> {
        let mut days = self.days.clone();
        let mut local = LocalDays::new(tz);
        let mut ids = self.ids.write().expect("not poisoned");
        for (replaced, added) in changes {
            for (sign, batches) in [(-1, replaced), (1, added)] {
                for_each_row(batches, &mut ids, &mut local, |day, e| {
                    let entries = Arc::make_mut(days.get_mut(day));
                    match entries
                        .binary_search_by_key(&(e.unit, e.volunteer), |x| (x.unit, x.volunteer))
                    {
                        Ok(i) => {
                            entries[i].minutes += sign * e.minutes;
                            entries[i].records += sign;
                            if entries[i].records == 0 {
                                entries.remove(i);
                            }
                        }
                        Err(i) if sign > 0 => entries.insert(i, e),
                        Err(_) => {
                            return Err(AnalyticsError::Query(
                                datafusion::error::DataFusionError::Internal(
                                    "a change took out a service record the rollup does not hold"
                                        .into(),
                                ),
                            ));
                        }
                    }
                    Ok(())
                })?;
            }
        }
        Ok(Service {
            crossings: crossings(&days, ids.volunteers.len()),
            ids: self.ids.clone(),
            days,
            version,
        })
    }

    /// The rollup as files to save (`saved`): entries per day, and the dense ids.
    pub(super) fn to_files(&self) -> Result<Files, AnalyticsError> {
        let mut columns = (vec![], vec![], vec![], vec![], vec![]);
        for (day, entries) in self.days.iter() {
            for e in entries.iter() {
                columns.0.push(day);
                columns.1.push(e.unit);
                columns.2.push(e.volunteer);
                columns.3.push(e.minutes);
                columns.4.push(e.records);
            }
        }
        let entries = RecordBatch::try_from_iter([
            ("day", Arc::new(Int32Array::from(columns.0)) as ArrayRef),
            ("unit", Arc::new(UInt32Array::from(columns.1))),
            ("volunteer", Arc::new(UInt32Array::from(columns.2))),
            ("minutes", Arc::new(Int64Array::from(columns.3))),
            ("records", Arc::new(Int64Array::from(columns.4))),
        ])?;
        let ids = self.ids.read().expect("not poisoned");
        Ok(vec![
            ("entries", entries),
            ("units", ids_file(ids.units.ids())?),
            ("volunteers", ids_file(ids.volunteers.ids())?),
        ])
    }

    /// The rollup saved by `to_files`, at `version`.
    pub(super) fn from_files(
        mut files: Loaded,
        version: Option<u64>,
    ) -> Result<Service, SavedError> {
        let ids = Ids {
            units: files.ids("units")?,
            volunteers: files.ids("volunteers")?,
        };
        let (units, volunteers) = (ids.units.len() as i64, ids.volunteers.len() as i64);
        let mut days = PerDay::default();
        for batch in files.take("entries")? {
            let column = |i| int_column(&batch, i).map_err(|e| files.invalid(e.to_string()));
            let (day, unit, volunteer) = (column(0)?, column(1)?, column(2)?);
            let (minutes, records) = (column(3)?, column(4)?);
            for i in 0..batch.num_rows() {
                let (Some(d), Some(u), Some(v), Some(m), Some(r)) = (
                    day.get(i),
                    unit.get(i),
                    volunteer.get(i),
                    minutes.get(i),
                    records.get(i),
                ) else {
                    return Err(files.invalid("a null in entries"));
                };
                let known_volunteer = v < volunteers || v == NO_VOLUNTEER as i64;
                if !(0..units).contains(&u) || !known_volunteer || r < 1 {
                    return Err(
                        files.invalid(format!("an entry of no known unit or volunteer: {u}, {v}"))
                    );
                }
                let entry = Entry {
                    unit: u as u32,
                    volunteer: v as u32,
                    minutes: m,
                    records: r,
                };
                let d = i32::try_from(d).map_err(|_| files.invalid("a day out of range"))?;
                let entries: &mut Arc<Vec<Entry>> = days.get_mut(d);
                let entries = Arc::make_mut(entries);
                if entries
                    .last()
                    .is_some_and(|l| (l.unit, l.volunteer) >= (entry.unit, entry.volunteer))
                {
                    return Err(files.invalid("entries out of order"));
                }
                entries.push(entry);
            }
        }
        Ok(Service {
            crossings: crossings(&days, ids.volunteers.len()),
            ids: Arc::new(RwLock::new(ids)),
            days,
            version,
        })
    }

    /// The units' ids, by dense id.
    fn units(&self) -> Vec<Arc<str>> {
        self.ids.read().expect("not poisoned").units.ids().to_vec()
    }

    fn volunteers(&self) -> usize {
        self.ids.read().expect("not poisoned").volunteers.len()
    }

    /// The entries of the question's periods, with their period.
    fn in_range<'a>(&'a self, grid: &'a Grid<'_>) -> impl Iterator<Item = (usize, &'a Entry)> {
        let (first, end) = grid.days();
        self.days.range(first, end).flat_map(move |(day, entries)| {
            let b = grid.bucket(day) as usize;
            entries.iter().map(move |e| (b, e))
        })
    }

    /// Minutes per cell, by the unit of each record.
    pub fn minutes(&self, grid: &Grid<'_>) -> Vec<i64> {
        let area = grid.areas_of(&self.units());
        let mut out = vec![0i64; grid.cells()];
        for (b, e) in self.in_range(grid) {
            let a = area[e.unit as usize];
            if a != OUTSIDE {
                out[grid.cell(b, a)] += e.minutes;
            }
        }
        out
    }

    /// Distinct volunteers with a record per cell.
    pub fn serving(&self, grid: &Grid<'_>) -> Vec<f64> {
        let area = grid.areas_of(&self.units());
        let mut sets = vec![RoaringBitmap::new(); grid.cells()];
        for (b, e) in self.in_range(grid) {
            let a = area[e.unit as usize];
            if a != OUTSIDE && e.volunteer != NO_VOLUNTEER {
                sets[grid.cell(b, a)].insert(e.volunteer);
            }
        }
        sets.iter().map(|s| s.len() as f64).collect()
    }

    /// Per cell, every volunteer with minutes there and their minutes.
    pub fn ranking(&self, grid: &Grid<'_>) -> HashMap<Key, Vec<(String, i64)>> {
        let area = grid.areas_of(&self.units());
        let mut cells: HashMap<usize, Vec<(u32, i64)>> = HashMap::new();
        for (b, e) in self.in_range(grid) {
            let a = area[e.unit as usize];
            if a != OUTSIDE && e.volunteer != NO_VOLUNTEER {
                cells
                    .entry(grid.cell(b, a))
                    .or_default()
                    .push((e.volunteer, e.minutes));
            }
        }
        cells
            .into_iter()
            .map(|(cell, mut hours)| {
                hours.sort_unstable_by_key(|(v, _)| *v);
                hours.dedup_by(|later, kept| {
                    let same = later.0 == kept.0;
                    if same {
                        kept.1 += later.1;
                    }
                    same
                });
                let ids = self.ids.read().expect("not poisoned");
                let named = hours
                    .into_iter()
                    .map(|(v, m)| (ids.volunteers.id(v).to_string(), m))
                    .collect();
                (grid.key(cell), named)
            })
            .collect()
    }

    /// Per volunteer of this rollup, their index among the reference's volunteers.
    pub fn link(&self, refd: &Reference) -> Vec<u32> {
        let ids = self.ids.read().expect("not poisoned");
        let mut out = vec![u32::MAX; ids.volunteers.len()];
        for (i, v) in refd.volunteers.iter().enumerate() {
            if let Some(s) = ids.volunteers.get(&v.id) {
                out[s as usize] = i as u32;
            }
        }
        out
    }

    /// volunteer_activity_rate's numerator per cell: registered volunteers (home unit in
    /// scope) with a record anywhere in the period.
    pub fn active(&self, grid: &Grid<'_>, link: &[u32]) -> Vec<f64> {
        let refd = grid.frame.refd;
        let mut out = vec![0.0; grid.cells()];
        let mut counted = vec![-1i32; self.volunteers()];
        for (b, e) in self.in_range(grid) {
            if e.volunteer == NO_VOLUNTEER || counted[e.volunteer as usize] == b as i32 {
                continue;
            }
            counted[e.volunteer as usize] = b as i32;
            let r = link[e.volunteer as usize];
            if r == u32::MAX {
                continue;
            }
            if let Some((a, first, last)) = grid.registered(&refd.volunteers[r as usize])
                && first <= b
                && b <= last
            {
                out[grid.cell(b, a)] += 1.0;
            }
        }
        out
    }

    /// Registered volunteers (home unit in scope) by star level at each period's end.
    pub fn stars(&self, grid: &Grid<'_>, link: &[u32]) -> HashMap<Key, [i64; 5]> {
        let refd = grid.frame.refd;
        let (n, cells) = (grid.n() as i64, grid.cells());
        let stride = cells / grid.n().max(1);
        let mut diff = vec![[0i64; 5]; cells + stride];
        for (s, crossed) in self.crossings.iter().enumerate() {
            let r = link[s];
            if crossed[0] == NEVER || r == u32::MAX {
                continue;
            }
            let Some((a, first, last)) = grid.registered(&refd.volunteers[r as usize]) else {
                continue;
            };
            // The period from which each level is reached (n: not within the range).
            let from: Vec<i64> = crossed
                .iter()
                .map(|d| {
                    if *d == NEVER {
                        n
                    } else {
                        (grid.bucket(*d) as i64).max(0)
                    }
                })
                .collect();
            for level in 0..5 {
                let lo = from[level].max(first as i64);
                let hi = from
                    .get(level + 1)
                    .copied()
                    .unwrap_or(n)
                    .min(last as i64 + 1);
                if lo < hi {
                    diff[grid.cell(lo as usize, a)][level] += 1;
                    diff[grid.cell(hi as usize, a)][level] -= 1;
                }
            }
        }
        for i in stride..diff.len() {
            let before = diff[i - stride];
            for (x, b) in diff[i].iter_mut().zip(before) {
                *x += b;
            }
        }
        diff.truncate(cells);
        diff.into_iter()
            .enumerate()
            .filter(|(_, counts)| counts.iter().any(|x| *x != 0))
            .map(|(c, counts)| (grid.key(c), counts))
            .collect()
    }
}
