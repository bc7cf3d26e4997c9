//! A small cron: `min hour day-of-month month day-of-week`, or six fields with seconds
//! first (the seconds field must be a single number; schedules are evaluated by the
//! minute). Each field: `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n`, `a-b/n`.
//! Day of week: 0 or 7 = Sunday. As in Vixie cron, when both day fields are restricted
//! a day matches either.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Timelike};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    days_restricted: bool,
    weekdays_restricted: bool,
}

fn field(text: &str, lo: u32, hi: u32, name: &str) -> Result<Vec<bool>, String> {
    let mut set = vec![false; hi as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| format!("{name}: bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err(format!("{name}: a step of 0 in {part:?}"));
        }
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a
                .parse::<u32>()
                .map_err(|_| format!("{name}: bad number in {part:?}"))?;
            let b = b
                .parse::<u32>()
                .map_err(|_| format!("{name}: bad number in {part:?}"))?;
            (a, b)
        } else {
            let a = range
                .parse::<u32>()
                .map_err(|_| format!("{name}: bad number in {part:?}"))?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{name}: {part:?} is outside {lo}..{hi}"));
        }
        let mut v = a;
        while v <= b {
            set[v as usize] = true;
            v += step;
        }
    }
    Ok(set)
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let mut parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() == 6 {
            let sec = parts.remove(0);
            if sec.parse::<u32>().map_or(true, |s| s > 59) {
                return Err(format!(
                    "the seconds field must be one number 0..59, not {sec:?}"
                ));
            }
        }
        if parts.len() != 5 {
            return Err(format!(
                "a schedule has 5 fields (min hour day month weekday) or 6 with seconds first, not {:?}",
                expr
            ));
        }
        let mut weekdays = field(parts[4], 0, 7, "day of week")?;
        if weekdays[7] {
            weekdays[0] = true;
        }
        Ok(Schedule {
            minutes: field(parts[0], 0, 59, "minute")?,
            hours: field(parts[1], 0, 23, "hour")?,
            days: field(parts[2], 1, 31, "day of month")?,
            months: field(parts[3], 1, 12, "month")?,
            weekdays,
            days_restricted: parts[2] != "*",
            weekdays_restricted: parts[4] != "*",
        })
    }

    fn matches(&self, t: &NaiveDateTime) -> bool {
        let day = self.days[t.day() as usize];
        let wd = self.weekdays[t.weekday().num_days_from_sunday() as usize];
        let day_ok = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || wd,
            (true, false) => day,
            (false, true) => wd,
            (false, false) => true,
        };
        self.minutes[t.minute() as usize]
            && self.hours[t.hour() as usize]
            && self.months[t.month() as usize]
            && day_ok
    }

    /// The latest fire time at or before `now`, looking back at most ~13 months.
    pub fn latest_at_or_before(&self, now: DateTime<Tz>) -> Option<DateTime<Tz>> {
        let tz = now.timezone();
        let mut t = now.naive_local().with_second(0)?.with_nanosecond(0)?;
        for _ in 0..(60 * 24 * 400) {
            if self.matches(&t)
                && let Some(at) = tz.from_local_datetime(&t).earliest()
                && at <= now
            {
                return Some(at);
            }
            t -= Duration::minutes(1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monthly_at_six_on_the_first() {
        let s = Schedule::parse("0 0 6 1 * *").unwrap();
        let tz = Tz::Asia__Shanghai;
        let now = tz.with_ymd_and_hms(2024, 3, 15, 12, 0, 0).unwrap();
        let fired = s.latest_at_or_before(now).unwrap();
        assert_eq!(fired, tz.with_ymd_and_hms(2024, 3, 1, 6, 0, 0).unwrap());
        let early = tz.with_ymd_and_hms(2024, 3, 1, 5, 59, 0).unwrap();
        assert_eq!(
            s.latest_at_or_before(early).unwrap(),
            tz.with_ymd_and_hms(2024, 2, 1, 6, 0, 0).unwrap()
        );
    }

    #[test]
    fn fields_lists_ranges_steps() {
        let s = Schedule::parse("*/15 8-10 * * 1-5").unwrap();
        let tz = Tz::UTC;
        // Saturday 2024-03-16: the last match is Friday 10:45.
        let now = tz.with_ymd_and_hms(2024, 3, 16, 9, 0, 0).unwrap();
        assert_eq!(
            s.latest_at_or_before(now).unwrap(),
            tz.with_ymd_and_hms(2024, 3, 15, 10, 45, 0).unwrap()
        );
        for bad in [
            "* * *",
            "61 * * * *",
            "* * * 13 *",
            "*/0 * * * *",
            "x * * * *",
            "1.5 0 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
