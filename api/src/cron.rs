//! Export schedules: cron expressions read by `croner` (POSIX/Vixie fields `min hour
//! day-of-month month day-of-week`, or six with seconds first; as in Vixie cron, when both
//! day fields are restricted a day matches either), evaluated in the export's time zone.

use chrono::DateTime;
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "a schedule has 5 fields (min hour day month weekday) or 6 with seconds first, not {expr:?}"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| format!("the schedule {expr:?} is not a cron expression: {e}"))?;
        Ok(Schedule { cron })
    }

    /// The latest fire time at or before `now`.
    pub fn latest_at_or_before(&self, now: DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_previous_occurrence(&now, true).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
