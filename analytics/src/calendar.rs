//! Calendar periods in the configured time zone: how a query's `from`..`to` is cut into
//! days, ISO weeks, months, quarters, years or one total period, where each period ends
//! as an instant, and which period an instant falls in.
//!
//! Periods are computed here, in Rust with chrono-tz, rather than with SQL time-zone
//! functions: the boundaries are exact local midnights (also across daylight-saving
//! changes in zones that have them) and DataFusion only ever compares UTC instants.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Duration, Months, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// How a range is cut into periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Day,
    Week,
    Month,
    Quarter,
    Year,
    Total,
}

impl Granularity {
    pub const ALL: [Granularity; 6] = [
        Granularity::Day,
        Granularity::Week,
        Granularity::Month,
        Granularity::Quarter,
        Granularity::Year,
        Granularity::Total,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
            Granularity::Quarter => "quarter",
            Granularity::Year => "year",
            Granularity::Total => "total",
        }
    }

    /// The first day of the calendar period containing `d` (`Total` has none: `d`).
    pub fn period_start(self, d: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Day | Granularity::Total => d,
            Granularity::Week => d - Duration::days(d.weekday().num_days_from_monday() as i64),
            Granularity::Month => d.with_day(1).expect("day 1 exists"),
            Granularity::Quarter => {
                let month = (d.month0() / 3) * 3 + 1;
                NaiveDate::from_ymd_opt(d.year(), month, 1).expect("a quarter's first day")
            }
            Granularity::Year => NaiveDate::from_ymd_opt(d.year(), 1, 1).expect("1 January"),
        }
    }

    /// The first day of the calendar period after the one starting at `start`.
    fn next_start(self, start: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Day | Granularity::Total => start + Duration::days(1),
            Granularity::Week => start + Duration::days(7),
            Granularity::Month => start + Months::new(1),
            Granularity::Quarter => start + Months::new(3),
            Granularity::Year => start + Months::new(12),
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Granularity::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown granularity {s:?}: expected day, week, month, quarter, year or total"
                )
            })
    }
}

/// A trend comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// The previous period of the same granularity.
    Mom,
    /// The same period one year earlier.
    Yoy,
}

impl Compare {
    pub fn name(self) -> &'static str {
        match self {
            Compare::Mom => "mom",
            Compare::Yoy => "yoy",
        }
    }
}

impl FromStr for Compare {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mom" => Ok(Compare::Mom),
            "yoy" => Ok(Compare::Yoy),
            _ => Err(format!("unknown comparison {s:?}: expected mom or yoy")),
        }
    }
}

/// One period of a query: labelled by the first day of its calendar period, clipped to
/// the query's range, with its bounds as UTC instants (microseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub label: NaiveDate,
    /// First day inside the range.
    pub first: NaiveDate,
    /// Last day inside the range.
    pub last: NaiveDate,
    /// Local 00:00 of `first`.
    pub start_us: i64,
    /// Local 00:00 of the day after `last`: the period's end. An event counts "by the
    /// period's end" when it occurred strictly before this instant.
    pub end_us: i64,
}

/// The periods of a range, in order, contiguous: each one's end is the next one's start.
#[derive(Debug, Clone)]
pub struct Periods {
    pub periods: Vec<Period>,
}

impl Periods {
    /// Cut `from..=to` into periods of `g` in zone `tz`.
    pub fn new(from: NaiveDate, to: NaiveDate, g: Granularity, tz: Tz) -> Result<Periods, String> {
        if to < from {
            return Err(format!("`to` ({to}) is before `from` ({from})"));
        }
        let mut periods = Vec::new();
        if g == Granularity::Total {
            periods.push(period(from, from, to, tz));
        } else {
            let mut label = g.period_start(from);
            while label <= to {
                let next = g.next_start(label);
                let first = label.max(from);
                let last = (next - Duration::days(1)).min(to);
                periods.push(period(label, first, last, tz));
                label = next;
            }
        }
        Ok(Periods { periods })
    }

    pub fn len(&self) -> usize {
        self.periods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.periods.is_empty()
    }

    /// Where an instant falls: `-1` before the first period, `len()` at or after the last
    /// one's end, else the index of its period. Cumulative questions ("by the end of
    /// period i") are `bucket <= i`.
    pub fn bucket(&self, us: i64) -> i32 {
        bucket_of(&self.boundaries(), us)
    }

    /// The `len() + 1` instants that cut the range: every start, then the last end.
    pub fn boundaries(&self) -> Vec<i64> {
        let mut b: Vec<i64> = self.periods.iter().map(|p| p.start_us).collect();
        if let Some(last) = self.periods.last() {
            b.push(last.end_us);
        }
        b
    }
}

/// The bucket of `us` given sorted `boundaries` (see [`Periods::bucket`]).
pub fn bucket_of(boundaries: &[i64], us: i64) -> i32 {
    // partition_point: how many boundaries are <= us.
    let n = boundaries.partition_point(|b| *b <= us);
    n as i32 - 1
}

fn period(label: NaiveDate, first: NaiveDate, last: NaiveDate, tz: Tz) -> Period {
    Period {
        label,
        first,
        last,
        start_us: local_midnight_us(first, tz),
        end_us: local_midnight_us(last + Duration::days(1), tz),
    }
}

/// The instant of local 00:00 on `d` (the first instant of the day where a DST change
/// skips midnight).
pub fn local_midnight_us(d: NaiveDate, tz: Tz) -> i64 {
    let naive = d.and_hms_opt(0, 0, 0).expect("midnight exists");
    let instant = match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => t,
        chrono::LocalResult::Ambiguous(a, _) => a,
        chrono::LocalResult::None => {
            // Midnight skipped by a DST change: the day starts at the first valid minute.
            (1..=180)
                .find_map(|m| {
                    tz.from_local_datetime(&(naive + Duration::minutes(m)))
                        .earliest()
                })
                .expect("a DST gap is shorter than three hours")
        }
    };
    instant.timestamp_micros()
}

/// The local calendar day of an instant.
pub fn local_date(us: i64, tz: Tz) -> NaiveDate {
    chrono::DateTime::from_timestamp_micros(us)
        .expect("timestamps in the lake are in range")
        .with_timezone(&tz)
        .date_naive()
}

/// The range a comparison reads: `from..=to` moved back one period (`mom`) or one year
/// (`yoy`), and how a period label moves with it.
///
/// Months, quarters and years move by calendar months, keeping a range that ends on a
/// month's last day ending on the last day of the earlier month; days move by one day
/// and weeks by seven (`mom`); `yoy` moves days by a calendar year and weeks by 52 weeks
/// (the same ISO week number, on the same weekday); `total` moves by its own length
/// (`mom`) or a year (`yoy`).
pub fn shift(d: NaiveDate, g: Granularity, c: Compare, range_days: i64) -> NaiveDate {
    match (c, g) {
        (Compare::Mom, Granularity::Day) => d - Duration::days(1),
        (Compare::Mom, Granularity::Week) => d - Duration::days(7),
        (Compare::Mom, Granularity::Month) => back_months(d, 1),
        (Compare::Mom, Granularity::Quarter) => back_months(d, 3),
        (Compare::Mom, Granularity::Year) => back_months(d, 12),
        (Compare::Mom, Granularity::Total) => d - Duration::days(range_days),
        (Compare::Yoy, Granularity::Week) => d - Duration::days(364),
        (Compare::Yoy, _) => back_months(d, 12),
    }
}

/// `d` moved back `n` months; the last day of a month stays the last day.
fn back_months(d: NaiveDate, n: u32) -> NaiveDate {
    let moved = d - Months::new(n);
    let is_month_end = (d + Duration::days(1)).day() == 1;
    if is_month_end {
        let next_month = moved.with_day(1).expect("day 1") + Months::new(1);
        next_month - Duration::days(1)
    } else {
        moved
    }
}

/// Parse a time zone name (`Asia/Shanghai`, `UTC`, ...).
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name:?}: use an IANA name such as Asia/Shanghai"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn months_are_labelled_by_their_first_day_and_clipped_to_the_range() {
        let p = Periods::new(
            d("2024-01-15"),
            d("2024-03-10"),
            Granularity::Month,
            Tz::Asia__Shanghai,
        )
        .unwrap();
        let labels: Vec<_> = p
            .periods
            .iter()
            .map(|p| (p.label, p.first, p.last))
            .collect();
        assert_eq!(
            labels,
            vec![
                (d("2024-01-01"), d("2024-01-15"), d("2024-01-31")),
                (d("2024-02-01"), d("2024-02-01"), d("2024-02-29")),
                (d("2024-03-01"), d("2024-03-01"), d("2024-03-10")),
            ]
        );
        // 2024-01-15 00:00 in Shanghai is 2024-01-14 16:00 UTC.
        assert_eq!(p.periods[0].start_us, 1_705_248_000_000_000);
        assert_eq!(p.periods[0].end_us, p.periods[1].start_us);
    }

    #[test]
    fn iso_week_one_spans_the_year_end() {
        // 2025-01-01 is a Wednesday: ISO week 1 of 2025 starts on Monday 2024-12-30.
        let p = Periods::new(d("2024-12-28"), d("2025-01-06"), Granularity::Week, Tz::UTC).unwrap();
        let labels: Vec<_> = p.periods.iter().map(|p| p.label.to_string()).collect();
        assert_eq!(labels, ["2024-12-23", "2024-12-30", "2025-01-06"]);
        assert_eq!(p.periods[1].first, d("2024-12-30"));
        assert_eq!(p.periods[1].last, d("2025-01-05"));
    }

    #[test]
    fn quarters_years_and_total() {
        let q = Periods::new(
            d("2024-02-10"),
            d("2024-08-01"),
            Granularity::Quarter,
            Tz::UTC,
        )
        .unwrap();
        let labels: Vec<_> = q.periods.iter().map(|p| p.label.to_string()).collect();
        assert_eq!(labels, ["2024-01-01", "2024-04-01", "2024-07-01"]);
        let t = Periods::new(
            d("2024-02-10"),
            d("2024-08-01"),
            Granularity::Total,
            Tz::UTC,
        )
        .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.periods[0].label, d("2024-02-10"));
        assert!(Periods::new(d("2024-02-10"), d("2024-02-09"), Granularity::Day, Tz::UTC).is_err());
    }

    #[test]
    fn buckets_are_half_open_at_local_midnight() {
        let tz = Tz::Asia__Shanghai;
        let p = Periods::new(d("2024-03-01"), d("2024-03-02"), Granularity::Day, tz).unwrap();
        let midnight = local_midnight_us(d("2024-03-02"), tz);
        assert_eq!(p.bucket(midnight - 1), 0);
        assert_eq!(p.bucket(midnight), 1);
        assert_eq!(p.bucket(p.periods[0].start_us - 1), -1);
        assert_eq!(p.bucket(p.periods[1].end_us), 2);
        assert_eq!(p.bucket(p.periods[1].end_us - 1), 1);
    }

    #[test]
    fn dst_days_start_at_their_first_instant() {
        // New York springs forward at 02:00 on 2024-03-10: the day is 23 hours long.
        let tz: Tz = "America/New_York".parse().unwrap();
        let p = Periods::new(d("2024-03-10"), d("2024-03-10"), Granularity::Day, tz).unwrap();
        assert_eq!(
            p.periods[0].end_us - p.periods[0].start_us,
            23 * 3_600_000_000
        );
    }

    #[test]
    fn comparisons_move_by_calendar_units() {
        use Compare::*;
        use Granularity::*;
        assert_eq!(shift(d("2024-03-31"), Month, Mom, 0), d("2024-02-29"));
        assert_eq!(shift(d("2024-03-15"), Month, Mom, 0), d("2024-02-15"));
        assert_eq!(shift(d("2024-02-29"), Day, Yoy, 0), d("2023-02-28"));
        assert_eq!(shift(d("2024-06-30"), Quarter, Mom, 0), d("2024-03-31"));
        assert_eq!(shift(d("2025-01-06"), Week, Yoy, 0), d("2024-01-08"));
        assert_eq!(shift(d("2024-03-01"), Total, Mom, 31), d("2024-01-30"));
    }
}
