//! The overview (总览): a month's headline KPIs for one area, each with its month-on-month
//! and year-on-year change, in one answer. Each card is an ordinary KPI question (month
//! granularity, city level, the area as `area`), asked through `Analytics::kpi`, so it
//! is scoped, limited and cached like any other, and equal to what `/v1/kpis` answers.

use chrono::{Datelike, Months, NaiveDate};
use serde::Serialize;

use crate::calendar::{Compare, Granularity};
use crate::engine::Analytics;
use crate::error::AnalyticsError;
use crate::kpi::{Kpi, KpiRequest, Num};
use crate::scope::{Level, Scope};

/// The headline KPIs, in the order the cards are shown.
pub const HEADLINE: [Kpi; 8] = [
    Kpi::ActivitiesHeld,
    Kpi::ParticipantVisits,
    Kpi::ServiceHours,
    Kpi::VolunteerRegistrationRate,
    Kpi::ParticipationRate,
    Kpi::ActiveStationRate,
    Kpi::OrdersPlaced,
    Kpi::OrderCompletionRate,
];

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// `YYYY-MM`.
    pub period: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub area: Option<String>,
    pub area_name: Option<String>,
    pub data_from: Option<chrono::DateTime<chrono::Utc>>,
    pub data_through: Option<chrono::DateTime<chrono::Utc>>,
    pub cards: Vec<Card>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Card {
    pub kpi: &'static str,
    pub value: Option<Num>,
    pub numerator: Option<Num>,
    pub denominator: Option<Num>,
    /// The catalog's target line, where it has one.
    pub target: Option<f64>,
    pub mom: Change,
    pub yoy: Change,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Change {
    pub previous: Option<Num>,
    pub change: Option<f64>,
    pub small_base: bool,
}

/// `YYYY-MM` → its first and last day.
pub fn month(period: &str) -> Result<(NaiveDate, NaiveDate), AnalyticsError> {
    let bad = || {
        AnalyticsError::BadRequest(format!(
            "`period` must be a month YYYY-MM (year 1000-9999), not {period:?}"
        ))
    };
    let (y, m) = period.split_once('-').ok_or_else(bad)?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(y, 4) || !digits(m, 2) || y.starts_with('0') {
        return Err(bad());
    }
    let from = NaiveDate::from_ymd_opt(
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        1,
    )
    .ok_or_else(bad)?;
    let to = from
        .checked_add_months(Months::new(1))
        .and_then(|d| d.pred_opt())
        .ok_or_else(bad)?;
    Ok((from, to))
}

impl Analytics {
    /// The overview of `period` (`YYYY-MM`) for `area` (the caller's whole scope when
    /// `None`), as `scope` may see it.
    pub async fn overview(
        &self,
        period: &str,
        area: Option<String>,
        scope: &Scope,
    ) -> Result<Overview, AnalyticsError> {
        let (from, to) = month(period)?;
        let ask = |kpi: Kpi, compare: Compare| KpiRequest {
            kpi,
            from,
            to,
            granularity: Granularity::Month,
            level: Level::City,
            area: area.clone(),
            compare: Some(compare),
            top: None,
        };
        let catalog = self.catalog();
        let mut cards = Vec::with_capacity(HEADLINE.len());
        let mut span = (None, None);
        for kpi in HEADLINE {
            let (m, y) = (ask(kpi, Compare::Mom), ask(kpi, Compare::Yoy));
            let (mom, yoy) = futures::try_join!(self.kpi(&m, scope), self.kpi(&y, scope))?;
            span = (mom.data_from, mom.data_through);
            let change = |a: &crate::kpi::KpiResponse| {
                a.rows.first().map_or_else(Change::default, |r| Change {
                    previous: r.previous.flatten(),
                    change: r.change.flatten(),
                    small_base: r.small_base.unwrap_or(false),
                })
            };
            let row = mom.rows.first();
            cards.push(Card {
                kpi: kpi.name(),
                value: row.and_then(|r| r.value),
                numerator: row.and_then(|r| r.numerator),
                denominator: row.and_then(|r| r.denominator),
                target: catalog
                    .iter()
                    .find(|i| i.name == kpi.name())
                    .and_then(|i| i.target),
                mom: change(&mom),
                yoy: change(&yoy),
            });
        }
        let area_name = match &area {
            Some(a) => self.area_name(a).await?,
            None => None,
        };
        Ok(Overview {
            period: format!("{:04}-{:02}", from.year(), from.month()),
            from,
            to,
            area,
            area_name,
            data_from: span.0,
            data_through: span.1,
            cards,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_whole_or_refused() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            month("2024-02").unwrap(),
            (d("2024-02-01"), d("2024-02-29"))
        );
        for bad in ["2024-13", "2024-1", "0999-01", "262142-01", "2024", ""] {
            assert!(
                month(bad).unwrap_err().to_string().contains("YYYY-MM"),
                "{bad}"
            );
        }
    }
}
