//! KPIs: a question (`KpiRequest`) is answered in the contract's shape (`KpiResponse`).
//!
//! `frame` cuts the range into periods and lists the rows the answer must have;
//! the facts per (period, area) are counted from the rollups (`crate::rollup`), or, for
//! the reference computation, by `measure` with DataFusion over the views; `answer` lays
//! the cells out as rows (zeros shown, ratios with their parts) and adds comparisons.

pub mod catalog;
pub mod frame;
pub mod measure;

use std::collections::HashMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

pub use catalog::{Kpi, KpiInfo, Shape};
use frame::Frame;
use measure::{Cells, median};

use crate::calendar::{Compare, Granularity, Periods, shift};
use crate::error::AnalyticsError;
use crate::reference::Reference;
use crate::rollup::Rollup;
use crate::scope::{Level, Scope};

/// One KPI question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KpiRequest {
    pub kpi: Kpi,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub granularity: Granularity,
    pub level: Level,
    /// A district or street code or a unit id: restricts numerators and denominators.
    pub area: Option<String>,
    pub compare: Option<Compare>,
    /// `volunteer_ranking` only: how many (default 10).
    pub top: Option<usize>,
}

/// The longest range a question may span, so that a typo (`--from 0001-01-01`) is an
/// error rather than millions of day rows.
pub const MAX_RANGE_DAYS: i64 = 366 * 20;

impl KpiRequest {
    pub fn validate(&self) -> Result<(), AnalyticsError> {
        if self.to < self.from {
            return Err(AnalyticsError::BadRequest(format!(
                "`to` ({}) is before `from` ({})",
                self.to, self.from
            )));
        }
        if (self.to - self.from).num_days() > MAX_RANGE_DAYS {
            return Err(AnalyticsError::BadRequest(format!(
                "the range {}..{} is longer than 20 years",
                self.from, self.to
            )));
        }
        if self.top == Some(0) {
            return Err(AnalyticsError::BadRequest(
                "`top` must be at least 1".into(),
            ));
        }
        if self.top.is_some() && self.kpi != Kpi::VolunteerRanking {
            return Err(AnalyticsError::BadRequest(format!(
                "`top` applies to volunteer_ranking only, not {}",
                self.kpi.name()
            )));
        }
        Ok(())
    }
}

/// A number as JSON shows it: counts as integers, everything else as decimals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Num {
    Int(i64),
    Real(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Real(f) => f,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub period: NaiveDate,
    pub area: String,
    /// The area as an office names it (`Reference::area_name`): 海曙区, 光秋街道, a
    /// station's name; absent when no unit names it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub area_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub star: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rank: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub volunteer_id: Option<String>,
    pub value: Option<Num>,
    pub numerator: Option<Num>,
    pub denominator: Option<Num>,
    /// Present (possibly `null`) only when a comparison was asked.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous: Option<Option<Num>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub change: Option<Option<f64>>,
    /// With a comparison: whether the previous value is too small a base for its change
    /// to mean much (under `SMALL_BASE` of this value: 30 visits → 32,000 is not
    /// "+106,567 %" but "base too small").
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub small_base: Option<bool>,
}

/// A previous value under this share of the current one is a near-empty base.
pub const SMALL_BASE: f64 = 0.05;

/// The answer, in the contract's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiResponse {
    pub kpi: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub granularity: Granularity,
    pub level: Level,
    pub area: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub compare: Option<Compare>,
    /// The span of events the lake held when this was answered: a period after
    /// `data_through` has no data yet (its zeros mean "not yet", not "none").
    #[serde(default)]
    pub data_from: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub data_through: Option<chrono::DateTime<chrono::Utc>>,
    pub rows: Vec<Row>,
    /// The snapshot the answer was computed from (see `crate::lineage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<crate::lineage::Lineage>,
}

/// Where a question's facts are counted from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// The rollups (`crate::rollup`): what questions are answered from.
    Rollup(&'a Rollup),
    /// The SQL measures over the views, in this session: the reference computation.
    Exact(&'a SessionContext),
}

/// Answer `req` from `source`, for a caller limited to `scope`.
pub async fn answer(
    source: Source<'_>,
    refd: &Reference,
    req: &KpiRequest,
    scope: &Scope,
    tz: Tz,
) -> Result<KpiResponse, AnalyticsError> {
    req.validate()?;
    let scopes = scopes_of(refd, req, scope)?;
    let mut rows = rows_for(source, refd, req, req.from, req.to, &scopes, tz).await?;
    if let Some(c) = req.compare {
        let days = (req.to - req.from).num_days() + 1;
        let g = req.granularity;
        let (pf, pt) = (shift(req.from, g, c, days), shift(req.to, g, c, days));
        let mut earlier = req.clone();
        earlier.top = None; // a ranked volunteer's previous hours, wherever they ranked then
        let prev = rows_for(source, refd, &earlier, pf, pt, &scopes, tz).await?;
        let index: HashMap<_, _> = prev
            .iter()
            .map(|r| {
                (
                    (r.period, r.area.as_str(), r.star, r.volunteer_id.as_deref()),
                    r.value,
                )
            })
            .collect();
        for r in &mut rows {
            let key = (
                shift(r.period, g, c, days),
                r.area.as_str(),
                r.star,
                r.volunteer_id.as_deref(),
            );
            let previous = index.get(&key).copied().flatten();
            let change = match (r.value, previous) {
                (Some(v), Some(p)) if p.as_f64() != 0.0 => {
                    Some((v.as_f64() - p.as_f64()) / p.as_f64())
                }
                _ => None,
            };
            r.previous = Some(previous);
            r.change = Some(change);
            r.small_base = Some(match (r.value, previous) {
                (Some(v), Some(p)) => {
                    v.as_f64() != 0.0 && p.as_f64().abs() < SMALL_BASE * v.as_f64().abs()
                }
                _ => false,
            });
        }
    }
    for r in &mut rows {
        r.area_name = refd.area_name(&r.area);
    }
    Ok(KpiResponse {
        kpi: req.kpi.name().to_string(),
        from: req.from,
        to: req.to,
        granularity: req.granularity,
        level: req.level,
        area: req.area.clone(),
        compare: req.compare,
        data_from: None,
        data_through: None,
        rows,
        lineage: None,
    })
}

/// The caller's scope, narrowed to the question's `area` when it names one. An area with
/// no unit inside the caller's scope is "not found", whether it exists outside the scope
/// or not at all: the answer (status, words, time) must not tell the two apart.
fn scopes_of(
    refd: &Reference,
    req: &KpiRequest,
    scope: &Scope,
) -> Result<Vec<Scope>, AnalyticsError> {
    let mut scopes = vec![scope.clone()];
    if let Some(area) = &req.area {
        let area_scope = Scope::from_area(area);
        if !refd
            .units
            .iter()
            .any(|u| scope.contains(u) && area_scope.contains(u))
        {
            return Err(AnalyticsError::NotFound(no_such_area(area)));
        }
        scopes.push(area_scope);
    }
    Ok(scopes)
}

/// What a caller is told of an area (or unit id) outside its scope or nowhere at all.
pub fn no_such_area(area: &str) -> String {
    format!(
        "no such area in your scope: {area:?} (a district is 6 digits, a street 9, anything else a unit id; GET /v1/units lists yours)"
    )
}

/// The most rows an answer to `req` can have (periods × areas × rows per cell, twice
/// with a comparison), counted before anything is computed.
pub fn answer_size(
    refd: &Reference,
    req: &KpiRequest,
    scope: &Scope,
    tz: Tz,
) -> Result<usize, AnalyticsError> {
    req.validate()?;
    let periods = Periods::new(req.from, req.to, req.granularity, tz)
        .map_err(AnalyticsError::BadRequest)?
        .len();
    let scopes = scopes_of(refd, req, scope)?;
    let areas: std::collections::HashSet<String> = refd
        .units
        .iter()
        .filter(|u| scopes.iter().all(|s| s.contains(u)))
        .map(|u| req.level.area_of(u))
        .collect();
    let per_cell = match req.kpi.info().shape {
        Shape::Stars => 5,
        Shape::Ranking => req.top.unwrap_or(10),
        _ => 1,
    };
    let comparisons = if req.compare.is_some() { 2 } else { 1 };
    Ok(periods
        .saturating_mul(areas.len())
        .saturating_mul(per_cell)
        .saturating_mul(comparisons))
}

async fn rows_for(
    source: Source<'_>,
    refd: &Reference,
    req: &KpiRequest,
    from: NaiveDate,
    to: NaiveDate,
    scopes: &[Scope],
    tz: Tz,
) -> Result<Vec<Row>, AnalyticsError> {
    let periods =
        Periods::new(from, to, req.granularity, tz).map_err(AnalyticsError::BadRequest)?;
    let frame = Frame::new(refd, periods, req.level, scopes);
    let cells = match source {
        Source::Rollup(rollup) => rollup.measure(req.kpi, &frame)?,
        Source::Exact(ctx) => {
            // Each measurement registers its own frame (a comparison's periods differ),
            // in the query's own session.
            frame.register(ctx)?;
            measure::measure(req.kpi, ctx, &frame).await?
        }
    };
    Ok(lay_out(req.kpi, &frame, cells, req.top.unwrap_or(10)))
}

/// The answer's rows: one per period and area of the grid (per star level, or up to
/// `top` ranked volunteers), zeros and `null`s where nothing happened.
fn lay_out(kpi: Kpi, frame: &Frame<'_>, cells: Cells, top: usize) -> Vec<Row> {
    let shape = kpi.info().shape;
    let mut rows = Vec::new();
    for (p, areas) in frame.grid.iter().enumerate() {
        let period = frame.periods.periods[p].label;
        for area in areas {
            let key = (p, area.clone());
            let row = |value, numerator, denominator| Row {
                period,
                area: area.clone(),
                area_name: None,
                star: None,
                rank: None,
                volunteer_id: None,
                value,
                numerator,
                denominator,
                previous: None,
                change: None,
                small_base: None,
            };
            match &cells {
                Cells::Plain(c) => {
                    let (num, den) = c.get(&key).copied().unwrap_or((0.0, 0.0));
                    rows.push(match shape {
                        Shape::Count => row(Some(Num::Int(num.round() as i64)), None, None),
                        Shape::Sum => row(Some(Num::Real(num)), None, None),
                        _ => row(
                            (den != 0.0).then(|| Num::Real(num / den)),
                            Some(whole(num)),
                            Some(whole(den)),
                        ),
                    });
                }
                Cells::Median(c) => {
                    let mut values = c.get(&key).cloned().unwrap_or_default();
                    rows.push(row(median(&mut values).map(Num::Real), None, None));
                }
                Cells::Stars(c) => {
                    let counts = c.get(&key).copied().unwrap_or_default();
                    for (i, count) in counts.iter().enumerate() {
                        let mut r = row(Some(Num::Int(*count)), None, None);
                        r.star = Some(i as u8 + 1);
                        rows.push(r);
                    }
                }
                Cells::Ranking(c) => {
                    let mut ranked = c.get(&key).cloned().unwrap_or_default();
                    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    for (i, (volunteer, minutes)) in ranked.into_iter().take(top).enumerate() {
                        let mut r = row(Some(Num::Real(minutes as f64 / 60.0)), None, None);
                        r.rank = Some(i as u32 + 1);
                        r.volunteer_id = Some(volunteer);
                        rows.push(r);
                    }
                }
            }
        }
    }
    rows
}

/// Counts stay integers in numerators and denominators; hours do not.
fn whole(x: f64) -> Num {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Num::Int(x as i64)
    } else {
        Num::Real(x)
    }
}
