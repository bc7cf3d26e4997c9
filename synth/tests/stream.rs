//! The generated stream: valid, deterministic, disordered as stations are, and
//! realistic in its rates.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use serde_json::Value;
use wenming_schemas::{EventData, decode};
use wenming_synth::{Options, Scale, Summary, generate};

fn run(options: &Options) -> (Vec<u8>, Summary) {
    let mut out = Vec::new();
    let summary = generate(options, &mut out, |_| {}).unwrap();
    (out, summary)
}

fn tiny(seed: u64) -> Options {
    Options::new(Scale::Tiny, seed)
}

#[test]
fn tiny_stream_is_valid_and_reconciles_with_its_summary() {
    let (out, summary) = run(&tiny(7));
    let mut ids = HashSet::new();
    let mut lines_by_id: HashMap<u128, &[u8]> = HashMap::new();
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    let mut duplicates = 0;
    let mut n = 0u64;
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        n += 1;
        let e = decode(line).unwrap_or_else(|r| panic!("{r}: {}", String::from_utf8_lossy(line)));
        let id = e.event_id.as_u128();
        if ids.insert(id) {
            *by_type.entry(e.event_type().name()).or_default() += 1;
            lines_by_id.insert(id, line);
        } else {
            duplicates += 1;
            assert_eq!(lines_by_id[&id], line, "a re-send is the same bytes");
        }
    }
    let s = &summary.stats;
    assert_eq!(n, s.lines());
    assert_eq!(ids.len() as u64, s.events);
    assert_eq!(duplicates, s.duplicates);
    assert!(s.invalid.is_empty());
    let expected: BTreeMap<&str, u64> = summary
        .by_type()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(by_type, expected);
    // "A few 10 k events", every type present, about 0.5 % re-sent.
    assert!((10_000..100_000).contains(&s.events), "{}", s.events);
    assert_eq!(by_type.len(), 25, "{by_type:?}");
    let dup_rate = s.duplicates as f64 / s.events as f64;
    assert!((0.002..0.01).contains(&dup_rate), "{dup_rate}");
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let (a, _) = run(&tiny(11));
    let (b, _) = run(&tiny(11));
    assert!(a == b, "same seed, same stream");
    let (c, _) = run(&tiny(12));
    assert!(a != c, "another seed, another stream");
}

#[test]
fn invalid_lines_are_rejected_with_the_codes_the_summary_counts() {
    let mut options = tiny(3);
    options.invalid_rate = 0.05;
    let (out, summary) = run(&options);
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    let mut valid = 0;
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match decode(line) {
            Ok(_) => valid += 1,
            Err(r) => *rejected.entry(r.reason()).or_default() += 1,
        }
    }
    let s = &summary.stats;
    assert_eq!(rejected, s.invalid);
    assert_eq!(valid, s.events + s.duplicates);
    let kinds: HashSet<&str> = rejected
        .keys()
        .map(|k| k.split(':').next().unwrap())
        .collect();
    for kind in [
        "not_json",
        "not_object",
        "missing_field",
        "bad_type",
        "bad_value",
        "unknown_type",
        "unsupported_schema_version",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {rejected:?}");
    }
    let share = s.invalid.values().sum::<u64>() as f64 / s.lines() as f64;
    assert!((0.03..0.06).contains(&share), "{share}");
}

#[test]
fn lines_come_in_arrival_order_not_occurrence_order() {
    let (out, _) = run(&tiny(5));
    let mut late = 0;
    let mut latest_seen = i64::MIN;
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let e = decode(line).unwrap();
        let t = e.occurred_at.micros();
        if t < latest_seen.saturating_sub(86_400_000_000) {
            late += 1; // more than a day older than something already seen
        }
        latest_seen = latest_seen.max(t);
    }
    assert!(
        late > 100,
        "stations sync late: {late} lines arrived a day or more late"
    );
}

#[test]
fn rates_look_like_a_real_network() {
    let mut options = tiny(9);
    options.from = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    options.to = NaiveDate::from_ymd_opt(2024, 12, 31).unwrap();
    options.duplicate_rate = 0.0;
    let (out, _) = run(&options);
    let mut stations = 0;
    let mut starts_by_day: HashMap<NaiveDate, u64> = HashMap::new();
    let mut check_ins = 0u64;
    let mut published = HashSet::new();
    let (mut records, mut minutes) = (0u64, 0i64);
    let mut residents = 0i64;
    let mut volunteers = 0u64;
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let e = decode(line).unwrap();
        match &e.data {
            EventData::UnitRegistered(u) if u.level == wenming_schemas::field::Level::Station => {
                stations += 1;
                residents += u.residents.unwrap().get();
            }
            EventData::VolunteerRegistered(_) => volunteers += 1,
            // The first publication of each activity (re-publications move a few).
            EventData::ActivityPublished(a)
                if a.order_id.is_none() && published.insert(a.activity_id.clone()) =>
            {
                let local = a
                    .starts_at
                    .0
                    .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
                *starts_by_day.entry(local.date_naive()).or_default() += 1;
            }
            EventData::AttendanceCheckedIn(_) => check_ins += 1,
            EventData::ServiceRecorded(r) => {
                records += 1;
                minutes += r.minutes.get();
            }
            _ => {}
        }
    }
    assert_eq!(stations, 8);
    // ≈ 5 activities per station per month (plus points and the center's): 480+ a year.
    let activities: u64 = starts_by_day.values().sum();
    assert!((500..1000).contains(&activities), "{activities}");
    // ≈ 34 check-ins per activity.
    let per_activity = check_ins as f64 / published.len() as f64;
    assert!((28.0..42.0).contains(&per_activity), "{per_activity}");
    // Service records ≈ 3 h on average.
    let hours = minutes as f64 / records as f64 / 60.0;
    assert!((2.3..3.7).contains(&hours), "{hours}");
    // Volunteers: 10–20 % of residents (plus growth and other levels' volunteers).
    let share = volunteers as f64 / residents as f64;
    assert!((0.10..0.25).contains(&share), "{share}");
    // The 5th of each month and 3/5 stand out.
    let fifth: u64 = starts_by_day
        .iter()
        .filter(|(d, _)| d.day() == 5)
        .map(|(_, n)| n)
        .sum();
    let mean_day = activities as f64 / 366.0;
    assert!(
        fifth as f64 / 12.0 > 2.0 * mean_day,
        "5th: {fifth}, mean day {mean_day}"
    );
    let leifeng = starts_by_day
        .get(&NaiveDate::from_ymd_opt(2024, 3, 5).unwrap())
        .copied()
        .unwrap_or(0);
    assert!(leifeng as f64 > 3.0 * mean_day, "3/5: {leifeng}");
}

#[test]
fn events_stay_inside_the_range() {
    let (out, _) = run(&tiny(2));
    let end = NaiveDate::from_ymd_opt(2024, 3, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        let e = decode(line).unwrap();
        let local = e
            .occurred_at
            .0
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
        assert!(local.naive_local() < end, "{v}");
    }
}
