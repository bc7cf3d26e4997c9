//! Local calendar days as small integers: the grain every rollup is kept at. Calendar
//! periods (day … year) start at local midnights, so a period is a run of whole local
//! days and any question can be answered from per-day facts.

use std::collections::HashMap;

use chrono::{NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;

const SLOT_US: i64 = 15 * 60 * 1_000_000;
const DAY_S: i64 = 86_400;

/// Days since 1970-01-01 of a date.
pub fn day_number(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date")).num_days() as i32
}

/// The local day of instants, with the zone's offset remembered per 15-minute slot:
/// turning millions of instants into days asks the time-zone rules once per slot.
pub struct LocalDays {
    tz: Tz,
    offsets: HashMap<i64, Option<i64>>,
}

impl LocalDays {
    pub fn new(tz: Tz) -> Self {
        LocalDays {
            tz,
            offsets: HashMap::new(),
        }
    }

    /// The local day (days since 1970-01-01) of an instant in microseconds since the epoch.
    pub fn day(&mut self, us: i64) -> i32 {
        let slot = us.div_euclid(SLOT_US);
        let tz = self.tz;
        // A slot the offset changes within (offsets of old local mean times, in
        // seconds) has no single offset: its instants are asked one by one.
        let offset = *self.offsets.entry(slot).or_insert_with(|| {
            let (start, end) = (
                offset_at(tz, slot * SLOT_US),
                offset_at(tz, (slot + 1) * SLOT_US - 1),
            );
            (start == end).then_some(start)
        });
        let offset = offset.unwrap_or_else(|| offset_at(tz, us));
        (us.div_euclid(1_000_000) + offset).div_euclid(DAY_S) as i32
    }
}

/// The zone's offset from UTC, in seconds, at an instant.
fn offset_at(tz: Tz, us: i64) -> i64 {
    let utc = chrono::DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .naive_utc();
    tz.offset_from_utc_datetime(&utc).fix().local_minus_utc() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{local_date, local_midnight_us};

    #[test]
    fn a_day_is_the_local_date_of_the_instant() {
        for tz in [
            Tz::Asia__Shanghai,
            Tz::Europe__Berlin,
            Tz::America__Sao_Paulo,
            Tz::Asia__Kathmandu,
        ] {
            let mut days = LocalDays::new(tz);
            // Every 7 minutes and 13 seconds over two years, across DST changes.
            let start = local_midnight_us(NaiveDate::from_ymd_opt(2023, 1, 1).unwrap(), tz);
            let mut us = start;
            while us < start + 2 * 366 * DAY_S * 1_000_000 {
                assert_eq!(days.day(us), day_number(local_date(us, tz)), "{tz} at {us}");
                us += 433_000_000;
            }
            // Midnights themselves, and the instant before.
            let d = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
            let m = local_midnight_us(d, tz);
            assert_eq!(days.day(m), day_number(d));
            assert_eq!(days.day(m - 1), day_number(d) - 1);
        }
    }

    #[test]
    fn an_evening_in_utc_is_the_next_day_in_shanghai() {
        let mut days = LocalDays::new(Tz::Asia__Shanghai);
        let us = chrono::DateTime::parse_from_rfc3339("2024-03-31T20:00:00Z")
            .unwrap()
            .timestamp_micros();
        assert_eq!(
            days.day(us),
            day_number(NaiveDate::from_ymd_opt(2024, 4, 1).unwrap())
        );
    }

    #[test]
    fn old_local_mean_time_offsets_are_exact() {
        // Shanghai kept +08:05:43 until 1901: the change falls inside a 15-minute slot.
        let tz = Tz::Asia__Shanghai;
        let mut days = LocalDays::new(tz);
        let mut us = -2_177_481_943_000_000 - 3_600_000_000;
        for _ in 0..200 {
            assert_eq!(days.day(us), day_number(local_date(us, tz)));
            us += 37_000_000;
        }
    }
}
