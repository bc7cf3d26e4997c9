//! What each KPI measures: the SQL that counts its facts per (period, area) over the
//! current-state views, and the reference questions (residents, open stations,
//! registered volunteers) answered by the frame. Every fact query joins `q_area`, so
//! facts of units outside the scope (or never registered) are not read into the answer.

use std::collections::HashMap;

use datafusion::prelude::SessionContext;

use super::catalog::Kpi;
use super::frame::Frame;
use crate::error::AnalyticsError;
use crate::reference::{collect, floats, ints, strings};

pub type Key = (usize, String);

/// The measured cells of a KPI before they are laid out as rows.
pub enum Cells {
    /// (numerator, denominator) per cell; counts and sums use the numerator alone.
    Plain(HashMap<Key, (f64, f64)>),
    /// The values to take the median of.
    Median(HashMap<Key, Vec<f64>>),
    /// Volunteers per star level 1..5.
    Stars(HashMap<Key, [i64; 5]>),
    /// (volunteer_id, minutes) of every volunteer with hours in the cell.
    Ranking(HashMap<Key, Vec<(String, i64)>>),
}

/// Star thresholds in minutes: ★1 100 h, ★2 300 h, ★3 600 h, ★4 1000 h, ★5 1500 h.
pub const STAR_MINUTES: [i64; 5] = [100 * 60, 300 * 60, 600 * 60, 1000 * 60, 1500 * 60];

fn held(n: i32) -> String {
    format!(
        "WITH h AS (SELECT * FROM (SELECT a.activity_id, a.unit_id, m.area, \
           wm_bucket(a.starts_at) AS b, coalesce(a.anonymous_headcount, 0) AS hc \
           FROM activities a JOIN q_area m ON m.unit_id = a.unit_id WHERE a.held) x \
         WHERE b >= 0 AND b < {n}) "
    )
}

fn records(n: i32) -> String {
    format!(
        "WITH r AS (SELECT * FROM (SELECT s.record_id, s.volunteer_id, s.minutes, m.area, \
           wm_bucket(s.started_at) AS b \
           FROM service_records s JOIN q_area m ON m.unit_id = s.unit_id WHERE s.effective) x \
         WHERE b >= 0 AND b < {n}) "
    )
}

fn orders(n: i32) -> String {
    format!(
        "WITH o AS (SELECT * FROM (SELECT d.order_id, d.completed, d.accepted_at, \
           d.response_minutes, d.score, m.area, wm_bucket(d.placed_at) AS b \
           FROM orders d JOIN q_area m ON m.unit_id = d.unit_id) x \
         WHERE b >= 0 AND b < {n}) "
    )
}

/// Rows of (b, area, x[, y]) summed per cell.
async fn grouped(
    ctx: &SessionContext,
    sql: &str,
) -> Result<HashMap<Key, (f64, f64)>, AnalyticsError> {
    let mut out: HashMap<Key, (f64, f64)> = HashMap::new();
    for batch in collect(ctx, sql).await? {
        let b = ints(&batch, 0)?;
        let area = strings(&batch, 1)?;
        let x = floats(&batch, 2)?;
        let y = if batch.num_columns() > 3 {
            floats(&batch, 3)?
        } else {
            vec![None; batch.num_rows()]
        };
        for i in 0..batch.num_rows() {
            let (Some(b), Some(area)) = (b[i], area[i].clone()) else {
                continue;
            };
            let cell = out.entry((b as usize, area)).or_default();
            cell.0 += x[i].unwrap_or(0.0);
            cell.1 += y[i].unwrap_or(0.0);
        }
    }
    Ok(out)
}

/// (b, id) pairs, for KPIs that need per-unit or per-volunteer facts.
async fn pairs(ctx: &SessionContext, sql: &str) -> Result<Vec<(usize, String)>, AnalyticsError> {
    let mut out = Vec::new();
    for batch in collect(ctx, sql).await? {
        let b = ints(&batch, 0)?;
        let id = strings(&batch, 1)?;
        for i in 0..batch.num_rows() {
            if let (Some(b), Some(id)) = (b[i], id[i].clone()) {
                out.push((b as usize, id));
            }
        }
    }
    Ok(out)
}

/// Replace each cell's denominator by a per-period reference count.
pub fn with_denominator(
    frame: &Frame<'_>,
    mut cells: HashMap<Key, (f64, f64)>,
    denominator: impl Fn(usize) -> HashMap<String, i64>,
) -> HashMap<Key, (f64, f64)> {
    for p in 0..frame.periods.len() {
        let den = denominator(p);
        for area in &frame.grid[p] {
            let cell = cells.entry((p, area.clone())).or_default();
            cell.1 = den.get(area).copied().unwrap_or(0) as f64;
        }
    }
    cells
}

pub async fn measure(
    kpi: Kpi,
    ctx: &SessionContext,
    frame: &Frame<'_>,
) -> Result<Cells, AnalyticsError> {
    let n = frame.n();
    let hours = |mut cells: HashMap<Key, (f64, f64)>| {
        for c in cells.values_mut() {
            c.0 /= 60.0;
        }
        cells
    };
    Ok(match kpi {
        Kpi::ActivitiesHeld => Cells::Plain(
            grouped(
                ctx,
                &format!(
                    "{}SELECT b, area, count(*) FROM h GROUP BY b, area",
                    held(n)
                ),
            )
            .await?,
        ),
        Kpi::ParticipantVisits | Kpi::ResidentVisits => {
            let only_residents = if kpi == Kpi::ResidentVisits {
                "WHERE t.as_resident"
            } else {
                ""
            };
            Cells::Plain(
                grouped(
                    ctx,
                    &format!(
                        "{}SELECT h.b, h.area, count(*) FROM h \
                         JOIN attendance t ON t.activity_id = h.activity_id {only_residents} \
                         GROUP BY h.b, h.area \
                         UNION ALL SELECT b, area, sum(hc) FROM h GROUP BY b, area",
                        held(n)
                    ),
                )
                .await?,
            )
        }
        Kpi::UniqueParticipants => Cells::Plain(
            grouped(
                ctx,
                &format!(
                    "{}SELECT h.b, h.area, count(DISTINCT t.person_id) FROM h \
                     JOIN attendance t ON t.activity_id = h.activity_id GROUP BY h.b, h.area",
                    held(n)
                ),
            )
            .await?,
        ),
        Kpi::ParticipationRate => {
            let cells = grouped(
                ctx,
                &format!(
                    "{}SELECT h.b, h.area, count(DISTINCT t.person_id) FROM h \
                     JOIN attendance t ON t.activity_id = h.activity_id \
                     WHERE t.as_resident GROUP BY h.b, h.area",
                    held(n)
                ),
            )
            .await?;
            Cells::Plain(with_denominator(frame, cells, |p| frame.residents(p)))
        }
        Kpi::ActiveStationRate => {
            let active = pairs(
                ctx,
                &format!("{}SELECT DISTINCT b, unit_id FROM h", held(n)),
            )
            .await?;
            let mut cells: HashMap<Key, (f64, f64)> = HashMap::new();
            for (p, unit_id) in active {
                let end = frame.periods.periods[p].end_us;
                let Some(u) = frame.refd.unit(&unit_id) else {
                    continue;
                };
                if !u.is_station() || !u.open_at(end) {
                    continue;
                }
                if let Some(area) = frame.area_of_unit(&unit_id) {
                    cells.entry((p, area.to_string())).or_default().0 += 1.0;
                }
            }
            Cells::Plain(with_denominator(frame, cells, |p| frame.open_stations(p)))
        }
        Kpi::VolunteerRegistrationRate => {
            let mut cells: HashMap<Key, (f64, f64)> = HashMap::new();
            for p in 0..frame.periods.len() {
                for (area, count) in frame.volunteer_counts(p) {
                    cells.entry((p, area)).or_default().0 = count as f64;
                }
            }
            Cells::Plain(with_denominator(frame, cells, |p| frame.residents(p)))
        }
        Kpi::VolunteerActivityRate => {
            // Records anywhere: no join to the scope here, the scope applies to the
            // volunteers' home units.
            let serving = pairs(
                ctx,
                &format!(
                    "SELECT DISTINCT b, volunteer_id FROM (SELECT wm_bucket(started_at) AS b, \
                       volunteer_id FROM service_records WHERE effective) x \
                     WHERE b >= 0 AND b < {n}"
                ),
            )
            .await?;
            let mut by_period: Vec<std::collections::HashSet<String>> =
                vec![Default::default(); frame.periods.len()];
            for (p, v) in serving {
                by_period[p].insert(v);
            }
            let mut cells: HashMap<Key, (f64, f64)> = HashMap::new();
            for (p, serving) in by_period.iter().enumerate() {
                for (v, area) in frame.registered_volunteers(p) {
                    let cell = cells.entry((p, area.to_string())).or_default();
                    cell.1 += 1.0;
                    if serving.contains(&v.id) {
                        cell.0 += 1.0;
                    }
                }
            }
            Cells::Plain(cells)
        }
        Kpi::ServiceHours => Cells::Plain(hours(
            grouped(
                ctx,
                &format!(
                    "{}SELECT b, area, sum(minutes) FROM r GROUP BY b, area",
                    records(n)
                ),
            )
            .await?,
        )),
        Kpi::ServingVolunteers => Cells::Plain(
            grouped(
                ctx,
                &format!(
                    "{}SELECT b, area, count(DISTINCT volunteer_id) FROM r GROUP BY b, area",
                    records(n)
                ),
            )
            .await?,
        ),
        Kpi::HoursPerVolunteer | Kpi::HoursPerResident => {
            let cells = hours(
                grouped(
                    ctx,
                    &format!(
                        "{}SELECT b, area, sum(minutes) FROM r GROUP BY b, area",
                        records(n)
                    ),
                )
                .await?,
            );
            Cells::Plain(if kpi == Kpi::HoursPerVolunteer {
                with_denominator(frame, cells, |p| frame.volunteer_counts(p))
            } else {
                with_denominator(frame, cells, |p| frame.residents(p))
            })
        }
        Kpi::StarVolunteers => {
            // Cumulative minutes per volunteer by the end of each period: every
            // effective record started before the range's end, wherever it was.
            let mut minutes: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
            for batch in collect(
                ctx,
                &format!(
                    "SELECT volunteer_id, b, sum(minutes) FROM (SELECT volunteer_id, minutes, \
                       wm_bucket(started_at) AS b FROM service_records WHERE effective) x \
                     WHERE b < {n} GROUP BY volunteer_id, b"
                ),
            )
            .await?
            {
                let v = strings(&batch, 0)?;
                let b = ints(&batch, 1)?;
                let m = ints(&batch, 2)?;
                for i in 0..batch.num_rows() {
                    if let (Some(v), Some(b), Some(m)) = (v[i].clone(), b[i], m[i]) {
                        minutes.entry(v).or_default().push((b as i32, m));
                    }
                }
            }
            let mut cells: HashMap<Key, [i64; 5]> = HashMap::new();
            for p in 0..frame.periods.len() {
                for (v, area) in frame.registered_volunteers(p) {
                    let total: i64 = minutes
                        .get(&v.id)
                        .map(|bs| {
                            bs.iter()
                                .filter(|(b, _)| *b <= p as i32)
                                .map(|(_, m)| m)
                                .sum()
                        })
                        .unwrap_or(0);
                    let stars = STAR_MINUTES.iter().filter(|t| total >= **t).count();
                    if stars > 0 {
                        cells.entry((p, area.to_string())).or_default()[stars - 1] += 1;
                    }
                }
            }
            Cells::Stars(cells)
        }
        Kpi::OrdersPlaced => Cells::Plain(
            grouped(
                ctx,
                &format!(
                    "{}SELECT b, area, count(*) FROM o GROUP BY b, area",
                    orders(n)
                ),
            )
            .await?,
        ),
        Kpi::OrderCompletionRate => Cells::Plain(
            grouped(
                ctx,
                &format!(
                    "{}SELECT b, area, sum(CASE WHEN completed THEN 1 ELSE 0 END), count(*) \
                     FROM o GROUP BY b, area",
                    orders(n)
                ),
            )
            .await?,
        ),
        Kpi::OrderResponseMinutesP50 => {
            let mut cells: HashMap<Key, Vec<f64>> = HashMap::new();
            for batch in collect(
                ctx,
                &format!(
                    "{}SELECT b, area, response_minutes FROM o WHERE accepted_at IS NOT NULL",
                    orders(n)
                ),
            )
            .await?
            {
                let b = ints(&batch, 0)?;
                let area = strings(&batch, 1)?;
                let m = floats(&batch, 2)?;
                for i in 0..batch.num_rows() {
                    if let (Some(b), Some(area), Some(m)) = (b[i], area[i].clone(), m[i]) {
                        cells.entry((b as usize, area)).or_default().push(m);
                    }
                }
            }
            Cells::Median(cells)
        }
        Kpi::OrderSatisfaction => Cells::Plain(
            grouped(
                ctx,
                &format!(
                    "{}SELECT b, area, sum(score), count(score) FROM o WHERE score IS NOT NULL \
                     GROUP BY b, area",
                    orders(n)
                ),
            )
            .await?,
        ),
        Kpi::VolunteerRanking => {
            let mut cells: HashMap<Key, Vec<(String, i64)>> = HashMap::new();
            for batch in collect(
                ctx,
                &format!(
                    "{}SELECT b, area, volunteer_id, sum(minutes) FROM r GROUP BY b, area, volunteer_id",
                    records(n)
                ),
            )
            .await?
            {
                let b = ints(&batch, 0)?;
                let area = strings(&batch, 1)?;
                let v = strings(&batch, 2)?;
                let m = ints(&batch, 3)?;
                for i in 0..batch.num_rows() {
                    if let (Some(b), Some(area), Some(v), Some(m)) = (b[i], area[i].clone(), v[i].clone(), m[i]) {
                        cells.entry((b as usize, area)).or_default().push((v, m));
                    }
                }
            }
            Cells::Ranking(cells)
        }
    })
}

/// The median; the mean of the two middle values when their number is even.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}
