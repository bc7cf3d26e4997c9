//! The civic calendar that shapes activity: the monthly service day (5th), 学雷锋日 (3/5),
//! 志愿者日 (12/5), and the lunar festivals (Spring Festival, 清明, 端午, 中秋), whose dates
//! move each year and are tabled here for 2020..=2030.

use chrono::{Datelike, NaiveDate, Weekday};

/// (Spring Festival, 清明, 端午, 中秋) by year.
const FESTIVALS: &[(i32, [(u32, u32); 4])] = &[
    (2020, [(1, 25), (4, 4), (6, 25), (10, 1)]),
    (2021, [(2, 12), (4, 4), (6, 14), (9, 21)]),
    (2022, [(2, 1), (4, 5), (6, 3), (9, 10)]),
    (2023, [(1, 22), (4, 5), (6, 22), (9, 29)]),
    (2024, [(2, 10), (4, 4), (6, 10), (9, 17)]),
    (2025, [(1, 29), (4, 4), (5, 31), (10, 6)]),
    (2026, [(2, 17), (4, 5), (6, 19), (9, 25)]),
    (2027, [(2, 6), (4, 5), (6, 9), (9, 15)]),
    (2028, [(1, 26), (4, 4), (5, 28), (10, 3)]),
    (2029, [(2, 13), (4, 4), (6, 16), (9, 22)]),
    (2030, [(2, 3), (4, 5), (6, 5), (9, 12)]),
];

/// What kind of day it is for the practice network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    Ordinary,
    /// The 5th of each month: the monthly volunteer service day.
    ServiceDay,
    /// 3/5 学雷锋日 or 12/5 国际志愿者日.
    VolunteerDay,
    /// Around a traditional festival: activities turn to `festival`.
    Festival,
}

fn festival_dates(year: i32) -> Option<[NaiveDate; 4]> {
    FESTIVALS.iter().find(|(y, _)| *y == year).map(|(_, d)| {
        d.map(|(m, day)| NaiveDate::from_ymd_opt(year, m, day).expect("tabled dates are real"))
    })
}

pub fn day_kind(d: NaiveDate) -> DayKind {
    if (d.month(), d.day()) == (3, 5) || (d.month(), d.day()) == (12, 5) {
        return DayKind::VolunteerDay;
    }
    if let Some(fests) = festival_dates(d.year()) {
        // Spring Festival: a week either side; the others: the three days before.
        let (spring, rest) = fests.split_first().expect("four festivals");
        let to_spring = (d - *spring).num_days();
        if (-7..=7).contains(&to_spring) {
            return DayKind::Festival;
        }
        if rest.iter().any(|f| (-3..=0).contains(&(d - *f).num_days())) {
            return DayKind::Festival;
        }
    }
    if d.day() == 5 {
        return DayKind::ServiceDay;
    }
    DayKind::Ordinary
}

/// Relative activity intensity of a day (before normalisation).
pub fn raw_weight(d: NaiveDate) -> f64 {
    let base = match day_kind(d) {
        DayKind::Ordinary => 1.0,
        DayKind::ServiceDay => 3.0,
        DayKind::VolunteerDay => 6.0,
        DayKind::Festival => 2.0,
    };
    let weekend = matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
    base * if weekend { 1.4 } else { 1.0 }
}

/// Day weights over `from..=to`, scaled so they average 1: a rate "per day" times a
/// weight keeps the range's total while moving activity to the peaks.
pub fn weights(from: NaiveDate, to: NaiveDate) -> Vec<f64> {
    let raw: Vec<f64> = from
        .iter_days()
        .take_while(|d| *d <= to)
        .map(raw_weight)
        .collect();
    let mean = raw.iter().sum::<f64>() / raw.len().max(1) as f64;
    raw.into_iter().map(|w| w / mean).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn peaks_fall_on_the_days_offices_expect() {
        assert_eq!(day_kind(d(2024, 3, 5)), DayKind::VolunteerDay);
        assert_eq!(day_kind(d(2024, 12, 5)), DayKind::VolunteerDay);
        assert_eq!(day_kind(d(2024, 7, 5)), DayKind::ServiceDay);
        assert_eq!(day_kind(d(2024, 2, 10)), DayKind::Festival);
        assert_eq!(day_kind(d(2024, 9, 15)), DayKind::Festival);
        assert_eq!(day_kind(d(2024, 7, 9)), DayKind::Ordinary);
        let w = weights(d(2024, 1, 1), d(2024, 12, 31));
        let mean = w.iter().sum::<f64>() / w.len() as f64;
        assert!((mean - 1.0).abs() < 1e-9);
        assert!(w[64] > 3.0 * w[70], "3/5 is a peak");
    }
}
