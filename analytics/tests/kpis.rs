//! Every KPI of kpis.md v1 against a hand-written event stream, with the expected rows
//! computed by hand in the comments. Time zone: Asia/Shanghai (+08:00); the stream
//! writes local times so the comments read like a clerk's ledger.
//!
//! The network (all registered 2023-12-01 09:00 unless said):
//!   district 330203: C1 (center), I1 (street 330203001), I2 (street 330203002),
//!     S1 station in I1, residents 1000, updated to 1200 on 2024-02-15
//!     S2 station in I1, residents 500, opened 2024-01-20
//!     S3 station in I2, residents 2000, closed 2024-02-10 (updated to 2500 in March)
//!     P1 point under S1, residents 300 (points carry no residents for KPIs)
//!   district 330205: C2 (center), S4 station without residents (zero denominators)

mod common;

use common::fixture::{fixture, stream};
use common::*;
use serde_json::json;
use wenming_analytics::{AnalyticsError, Compare, Granularity::*, Level, Scope};

const F: &str = "2024-01-01";
const T: &str = "2024-02-29";
const J: &str = "2024-01-01";
const B: &str = "2024-02-01";
const D3: &str = "330203";
const D5: &str = "330205";

fn v(x: f64) -> Option<f64> {
    Some(x)
}

#[tokio::test]
async fn participation() {
    let (_dir, a) = fixture().await;
    let q = |k| req(k, F, T, Month, Level::District);
    // Held: January A3, A5, A7 (A1 moved to February, A2 cancelled); February A1, A4, A6.
    assert_rows(
        &ask(&a, &q("activities_held")).await,
        &[
            (J, D3, v(3.0), None, None),
            (J, D5, v(0.0), None, None),
            (B, D3, v(2.0), None, None),
            (B, D5, v(1.0), None, None),
        ],
    );
    // January: A3 {R1, R3} + A5 {R4, R1} + A7 {V1} = 5.
    // February: A1 {R1 (twice: one visit), R2, V1} + headcount 7 + A4 {R3, V2} = 12; A6 {R5}.
    assert_rows(
        &ask(&a, &q("participant_visits")).await,
        &[
            (J, D3, v(5.0), None, None),
            (J, D5, v(0.0), None, None),
            (B, D3, v(12.0), None, None),
            (B, D5, v(1.0), None, None),
        ],
    );
    // Residents only: January 4; February A1 {R1, R2} + 7 + A4 {R3} = 10.
    assert_rows(
        &ask(&a, &q("resident_visits")).await,
        &[
            (J, D3, v(4.0), None, None),
            (J, D5, v(0.0), None, None),
            (B, D3, v(10.0), None, None),
            (B, D5, v(1.0), None, None),
        ],
    );
    // January {R1, R3, R4, V1}; February {R1, R2, V1, R3, V2}.
    assert_rows(
        &ask(&a, &q("unique_participants")).await,
        &[
            (J, D3, v(4.0), None, None),
            (J, D5, v(0.0), None, None),
            (B, D3, v(5.0), None, None),
            (B, D5, v(1.0), None, None),
        ],
    );
    // Residents at January's end: S1 1000 + S2 500 + S3 2000 = 3500 (P1 is a point).
    // At February's end: S1 1200 (updated 15 Feb) + S2 500 (S3 closed) = 1700.
    // 330205: S4 has no residents → denominator 0 → null, numerator still shown.
    assert_rows(
        &ask(&a, &q("participation_rate")).await,
        &[
            (J, D3, v(3.0 / 3500.0), v(3.0), v(3500.0)),
            (J, D5, None, v(0.0), v(0.0)),
            (B, D3, v(3.0 / 1700.0), v(3.0), v(1700.0)),
            (B, D5, None, v(1.0), v(0.0)),
        ],
    );
}

#[tokio::test]
async fn coverage() {
    let (_dir, a) = fixture().await;
    let q = |k| req(k, F, T, Month, Level::District);
    // January: open stations S1, S2, S3; active S3 (A3) and S2 (A5) → 2/3.
    // February: open S1, S2 (S3 closed 10 Feb, its A4 does not count); active S1 → 1/2.
    assert_rows(
        &ask(&a, &q("active_station_rate")).await,
        &[
            (J, D3, v(2.0 / 3.0), v(2.0), v(3.0)),
            (J, D5, v(0.0), v(0.0), v(1.0)),
            (B, D3, v(0.5), v(1.0), v(2.0)),
            (B, D5, v(1.0), v(1.0), v(1.0)),
        ],
    );
    // Registered at January's end, home in 330203: V1, V2, V7, V8, V9, V10 = 6.
    // At February's end: V3 deregistered, V5 registered a minute before the end, V6 at
    // the end itself (not before it) → V1, V2, V5, V7, V8, V9, V10 = 7.
    assert_rows(
        &ask(&a, &q("volunteer_registration_rate")).await,
        &[
            (J, D3, v(6.0 / 3500.0), v(6.0), v(3500.0)),
            (J, D5, None, v(1.0), v(0.0)),
            (B, D3, v(7.0 / 1700.0), v(7.0), v(1700.0)),
            (B, D5, None, v(1.0), v(0.0)),
        ],
    );
    // Serving in January: V1 (SR1), V8 (SR6), V4 (in 330203, home 330205); V2's SR2 is
    // revoked. In February: V2, V1, V7, V10 (330203 homes) and V4.
    assert_rows(
        &ask(&a, &q("volunteer_activity_rate")).await,
        &[
            (J, D3, v(2.0 / 6.0), v(2.0), v(6.0)),
            (J, D5, v(1.0), v(1.0), v(1.0)),
            (B, D3, v(4.0 / 7.0), v(4.0), v(7.0)),
            (B, D5, v(1.0), v(1.0), v(1.0)),
        ],
    );
}

#[tokio::test]
async fn service_hours_and_stars() {
    let (_dir, a) = fixture().await;
    let q = |k| req(k, F, T, Month, Level::District);
    // January 330203: SR1 60 (after the tie-broken amendment) + SR6 300 + SR9 30 = 390 min.
    // February 330203: SR3 120 + SR5 240 + SR7 1440 + SR8 240 = 2040 min; 330205 SR4 180.
    assert_rows(
        &ask(&a, &q("service_hours")).await,
        &[
            (J, D3, v(6.5), None, None),
            (J, D5, v(0.0), None, None),
            (B, D3, v(34.0), None, None),
            (B, D5, v(3.0), None, None),
        ],
    );
    assert_rows(
        &ask(&a, &q("serving_volunteers")).await,
        &[
            (J, D3, v(3.0), None, None),
            (J, D5, v(0.0), None, None),
            (B, D3, v(4.0), None, None),
            (B, D5, v(1.0), None, None),
        ],
    );
    assert_rows(
        &ask(&a, &q("hours_per_volunteer")).await,
        &[
            (J, D3, v(6.5 / 6.0), v(6.5), v(6.0)),
            (J, D5, v(0.0), v(0.0), v(1.0)),
            (B, D3, v(34.0 / 7.0), v(34.0), v(7.0)),
            (B, D5, v(3.0), v(3.0), v(1.0)),
        ],
    );
    assert_rows(
        &ask(&a, &q("hours_per_resident")).await,
        &[
            (J, D3, v(6.5 / 3500.0), v(6.5), v(3500.0)),
            (J, D5, None, v(0.0), v(0.0)),
            (B, D3, v(0.02), v(34.0), v(1700.0)),
            (B, D5, None, v(3.0), v(0.0)),
        ],
    );
    // Cumulative by January's end: V7 120 h ★1, V8 96 + 5 = 101 h ★1, V9 312 h ★2 (once,
    // at its highest level), V10 96 h none. By February's end V10 reaches exactly 100 h.
    let stars = ask(&a, &q("star_volunteers")).await;
    let got: Vec<(String, String, u8, i64)> = stars
        .rows
        .iter()
        .map(|r| {
            (
                r.period.to_string(),
                r.area.clone(),
                r.star.unwrap(),
                r.value.unwrap().as_f64() as i64,
            )
        })
        .collect();
    let mut expected = Vec::new();
    for (p, counts) in [(J, [2, 1, 0, 0, 0]), (B, [3, 1, 0, 0, 0])] {
        for (i, c) in counts.iter().enumerate() {
            expected.push((p.to_string(), D3.to_string(), i as u8 + 1, *c));
        }
        for i in 0..5 {
            expected.push((p.to_string(), D5.to_string(), i + 1, 0));
        }
    }
    expected.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, expected);
    assert!(
        stars
            .rows
            .iter()
            .all(|r| r.numerator.is_none() && r.denominator.is_none())
    );
}

#[tokio::test]
async fn orders_and_ranking() {
    let (_dir, a) = fixture().await;
    let q = |k| req(k, F, T, Month, Level::District);
    assert_rows(
        &ask(&a, &q("orders_placed")).await,
        &[
            (J, D3, v(4.0), None, None),
            (J, D5, v(0.0), None, None),
            (B, D3, v(1.0), None, None),
            (B, D5, v(1.0), None, None),
        ],
    );
    assert_rows(
        &ask(&a, &q("order_completion_rate")).await,
        &[
            (J, D3, v(0.5), v(2.0), v(4.0)),
            (J, D5, None, v(0.0), v(0.0)),
            (B, D3, v(0.0), v(0.0), v(1.0)),
            (B, D5, v(0.0), v(0.0), v(1.0)),
        ],
    );
    // January: 30 (O1's earliest acceptance), 90, 60, 10 → (30 + 60) / 2 = 45.
    assert_rows(
        &ask(&a, &q("order_response_minutes_p50")).await,
        &[
            (J, D3, v(45.0), None, None),
            (J, D5, None, None, None),
            (B, D3, None, None, None),
            (B, D5, None, None, None),
        ],
    );
    // O1 latest score 5, O2 tie broken by event id → 4: (5 + 4) / 2.
    assert_rows(
        &ask(&a, &q("order_satisfaction")).await,
        &[
            (J, D3, v(4.5), v(9.0), v(2.0)),
            (J, D5, None, v(0.0), v(0.0)),
            (B, D3, None, v(0.0), v(0.0)),
            (B, D5, None, v(0.0), v(0.0)),
        ],
    );
    let mut r = q("volunteer_ranking");
    r.top = Some(2);
    let ranking = ask(&a, &r).await;
    let got: Vec<(String, String, u32, String, f64)> = ranking
        .rows
        .iter()
        .map(|r| {
            (
                r.period.to_string(),
                r.area.clone(),
                r.rank.unwrap(),
                r.volunteer_id.clone().unwrap(),
                r.value.unwrap().as_f64(),
            )
        })
        .collect();
    // February 330203: V7 24 h, then V1 and V10 tied at 4 h: V1 first by id.
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        vec![
            (s(J), s(D3), 1, s("V8"), 5.0),
            (s(J), s(D3), 2, s("V1"), 1.0),
            (s(B), s(D3), 1, s("V7"), 24.0),
            (s(B), s(D3), 2, s("V1"), 4.0),
            (s(B), s(D5), 1, s("V4"), 3.0),
        ]
    );
}

#[tokio::test]
async fn periods_levels_and_areas() {
    let (_dir, a) = fixture().await;
    // Local midnight, not UTC midnight: A3 on 31 January, A4 on 1 February.
    let r = in_area(
        req(
            "activities_held",
            "2024-01-31",
            "2024-02-01",
            Day,
            Level::Unit,
        ),
        "S3",
    );
    assert_rows(
        &ask(&a, &r).await,
        &[
            ("2024-01-31", "S3", v(1.0), None, None),
            ("2024-02-01", "S3", v(1.0), None, None),
        ],
    );
    // ISO week 1 of 2025 starts on Monday 30 December 2024.
    let r = req(
        "activities_held",
        "2024-12-28",
        "2025-01-05",
        Week,
        Level::City,
    );
    assert_rows(
        &ask(&a, &r).await,
        &[
            ("2024-12-23", "city", v(1.0), None, None),
            ("2024-12-30", "city", v(2.0), None, None),
        ],
    );
    // Unit level inside street 330203001: I1, P1, S1, S2 (S2 opened 20 January has a
    // January row); P1's A7 counts at the point itself.
    let r = in_area(
        req("activities_held", F, T, Month, Level::Unit),
        "330203001",
    );
    assert_rows(
        &ask(&a, &r).await,
        &[
            (J, "I1", v(0.0), None, None),
            (J, "P1", v(1.0), None, None),
            (J, "S1", v(0.0), None, None),
            (J, "S2", v(1.0), None, None),
            (B, "I1", v(0.0), None, None),
            (B, "P1", v(0.0), None, None),
            (B, "S1", v(1.0), None, None),
            (B, "S2", v(0.0), None, None),
        ],
    );
    // S3 closed on 10 February: a February row, none in March.
    let r = in_area(
        req("activities_held", B, "2024-03-31", Month, Level::Unit),
        "330203002",
    );
    assert_rows(
        &ask(&a, &r).await,
        &[
            (B, "I2", v(0.0), None, None),
            (B, "S3", v(1.0), None, None),
            ("2024-03-01", "I2", v(0.0), None, None),
        ],
    );
    // Total over the range, city level: 390 + 2040 + 180 minutes.
    let r = req("service_hours", F, T, Total, Level::City);
    assert_rows(&ask(&a, &r).await, &[(F, "city", v(43.5), None, None)]);
    // An area restricts numerators and denominators alike.
    let r = in_area(req("hours_per_volunteer", F, T, Total, Level::City), D5);
    assert_rows(&ask(&a, &r).await, &[(F, "city", v(3.0), v(3.0), v(1.0))]);
    // Street level, and a period clipped to the range: 15 January to 10 February.
    let r = req(
        "service_hours",
        "2024-01-15",
        "2024-02-10",
        Month,
        Level::Street,
    );
    // Jan 15..31: SR6 300 (S1) + SR9 30 (S1) → street 330203001; SR1 was on 10 January.
    // Feb 1..10: SR3 120 (S3, street 330203002), SR7 1440 + SR8 240 (S1); SR4 180 (S4).
    assert_rows(
        &ask(&a, &r).await,
        &[
            (J, "330203000", v(0.0), None, None),
            (J, "330203001", v(5.5), None, None),
            (J, "330203002", v(0.0), None, None),
            (J, "330205000", v(0.0), None, None),
            (J, "330205001", v(0.0), None, None),
            (B, "330203000", v(0.0), None, None),
            (B, "330203001", v(28.0), None, None),
            (B, "330203002", v(2.0), None, None),
            (B, "330205000", v(0.0), None, None),
            (B, "330205001", v(3.0), None, None),
        ],
    );
}

#[tokio::test]
async fn comparisons() {
    let (_dir, a) = fixture().await;
    // mom: January compares with December 2023 (0 held), February with January.
    let r = with_compare(
        req("activities_held", F, T, Month, Level::District),
        Compare::Mom,
    );
    let resp = ask(&a, &r).await;
    let got: Vec<_> = resp
        .rows
        .iter()
        .map(|r| {
            (
                r.period.to_string(),
                r.area.clone(),
                r.value.map(|v| v.as_f64()),
                r.previous.unwrap().map(|v| v.as_f64()),
                r.change.unwrap(),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        vec![
            (s(J), s(D3), Some(3.0), Some(0.0), None),
            (s(J), s(D5), Some(0.0), Some(0.0), None),
            (s(B), s(D3), Some(2.0), Some(3.0), Some(-1.0 / 3.0)),
            (s(B), s(D5), Some(1.0), Some(0.0), None),
        ]
    );
    // yoy: nothing was open in early 2023, so there is no earlier row: null.
    let r = with_compare(
        req("activities_held", F, T, Month, Level::District),
        Compare::Yoy,
    );
    let resp = ask(&a, &r).await;
    assert!(
        resp.rows
            .iter()
            .all(|r| r.previous == Some(None) && r.change == Some(None))
    );
    // The JSON shape carries previous and change only with a comparison.
    let json = serde_json::to_value(&resp).unwrap();
    assert!(
        json["rows"][0]
            .as_object()
            .unwrap()
            .contains_key("previous")
    );
    let plain =
        serde_json::to_value(ask(&a, &req("activities_held", F, T, Month, Level::District)).await)
            .unwrap();
    assert!(
        !plain["rows"][0]
            .as_object()
            .unwrap()
            .contains_key("previous")
    );
    assert_eq!(plain["rows"][0]["value"], json!(3));
    assert_eq!(plain["rows"][0]["numerator"], json!(null));
}

#[tokio::test]
async fn scopes_restrict_inside_the_query() {
    let (_dir, a) = fixture().await;
    let r = req("service_hours", F, T, Month, Level::District);
    let scoped = a.kpi(&r, &Scope::District(D5.into())).await.unwrap();
    assert!(
        scoped.rows.iter().all(|r| r.area == D5),
        "{:?}",
        scoped.rows
    );
    assert_eq!(scoped.rows.len(), 2);
    // An area outside a caller's scope is not found, in the words of an area that does
    // not exist anywhere.
    let r = in_area(req("service_hours", F, T, Total, Level::City), D3);
    let crossed = a.kpi(&r, &Scope::District(D5.into())).await.unwrap_err();
    let nowhere = a
        .kpi(
            &in_area(req("service_hours", F, T, Total, Level::City), "999999"),
            &Scope::District(D5.into()),
        )
        .await
        .unwrap_err();
    assert!(matches!(crossed, AnalyticsError::NotFound(_)), "{crossed}");
    assert_eq!(
        crossed.to_string().replace(D3, "?"),
        nowhere.to_string().replace("999999", "?")
    );
    // Unknown areas and bad ranges are the caller's errors, with a sentence.
    let bad = a
        .kpi(
            &in_area(req("service_hours", F, T, Month, Level::City), "999999"),
            &Scope::City,
        )
        .await;
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("no such area in your scope")
    );
    let bad = a
        .kpi(
            &req("service_hours", T, F, Month, Level::City),
            &Scope::City,
        )
        .await;
    assert!(bad.unwrap_err().to_string().contains("before"));
}

#[tokio::test]
async fn quality_report_finds_what_kpis_leave_out() {
    // The stream once more with a re-sent event and two lines the contract refuses.
    let mut s = stream();
    let resent = s.lines[20].clone();
    s.lines.push(resent);
    s.lines.push("not json".into());
    s.lines
        .push(s.lines[21].replace("\"schema_version\":1", "\"schema_version\":2"));
    let (_dir, a) = lake_with(&s, 2).await;
    let report = a.quality(&Scope::City).await.unwrap();
    let count = |name: &str| report.checks.iter().find(|c| c.name == name).unwrap().count;
    assert_eq!(count("orphan_check_ins"), 1);
    assert_eq!(count("amendments_without_records"), 1);
    assert_eq!(count("events_for_unknown_units"), 1);
    assert_eq!(count("duplicate_events_in_lake"), 0);
    // One import: one batch, whose watermark is its newest event. Late are the events
    // that occurred more than 72 h before it (not every event of a history imported today),
    // counted here from the stored events themselves.
    let mut occurred: std::collections::BTreeMap<String, chrono::DateTime<chrono::FixedOffset>> =
        Default::default();
    for line in &s.lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["schema_version"] != 1 {
            continue;
        }
        let at = chrono::DateTime::parse_from_rfc3339(v["occurred_at"].as_str().unwrap()).unwrap();
        occurred.insert(v["event_id"].as_str().unwrap().to_string(), at);
    }
    assert_eq!(occurred.len() as i64, report.events.values().sum::<i64>());
    let watermark = *occurred.values().max().unwrap();
    let late = occurred
        .values()
        .filter(|t| watermark.signed_duration_since(**t) > chrono::Duration::hours(72))
        .count() as i64;
    assert!(late > 0 && late < occurred.len() as i64, "{late}");
    assert_eq!(count("late_arrivals"), late);
    let orphan = report
        .checks
        .iter()
        .find(|c| c.name == "orphan_check_ins")
        .unwrap();
    assert_eq!(orphan.examples.len(), 1);
}
