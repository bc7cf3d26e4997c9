//! The hand-written event stream of the KPI tests (see `kpis.rs` for the network and
//! the expected rows), shared with the DuckDB cross-check.

use serde_json::json;

use super::*;

const REG: &str = "2023-12-01T09:00:00+08:00";

fn network(s: &mut Stream) {
    s.unit("C1", "center", None, "330203000000", None, REG);
    s.unit("I1", "institute", Some("C1"), "330203001000", None, REG);
    s.unit("I2", "institute", Some("C1"), "330203002000", None, REG);
    s.unit("S1", "station", Some("I1"), "330203001001", Some(1000), REG);
    s.unit(
        "S2",
        "station",
        Some("I1"),
        "330203001002",
        Some(500),
        "2024-01-20T10:00:00+08:00",
    );
    s.unit("S3", "station", Some("I2"), "330203002001", Some(2000), REG);
    s.unit("P1", "point", Some("S1"), "330203001001", Some(300), REG);
    s.unit("C2", "center", None, "330205000000", None, REG);
    s.unit("S4", "station", Some("C2"), "330205001001", None, REG);
    s.ev(
        "unit.updated",
        "2024-02-15T08:00:00+08:00",
        "S1",
        json!({"residents": 1200}),
    );
    s.ev("unit.closed", "2024-02-10T12:00:00+08:00", "S3", json!({}));
    s.ev(
        "unit.updated",
        "2024-03-05T08:00:00+08:00",
        "S3",
        json!({"residents": 2500}),
    );
}

fn activities(s: &mut Stream) {
    // A1 at S1: first published for 28 January, re-published later for 3 February.
    s.activity(
        "A1",
        "S1",
        "2024-01-28T09:00:00+08:00",
        "2024-01-05T10:00:00+08:00",
    );
    s.activity(
        "A1",
        "S1",
        "2024-02-03T09:00:00+08:00",
        "2024-01-20T10:00:00+08:00",
    );
    // Headcount corrected: 10, then 7 (later) → 7.
    s.ev(
        "activity.completed",
        "2024-02-03T12:00:00+08:00",
        "S1",
        json!({"activity_id": "A1", "anonymous_headcount": 10}),
    );
    s.ev(
        "activity.completed",
        "2024-02-03T18:00:00+08:00",
        "S1",
        json!({"activity_id": "A1", "anonymous_headcount": 7}),
    );
    // A2 at S1: cancelled; its check-in and headcount count nowhere.
    s.activity(
        "A2",
        "S1",
        "2024-01-10T09:00:00+08:00",
        "2024-01-02T10:00:00+08:00",
    );
    s.ev(
        "activity.cancelled",
        "2024-01-09T10:00:00+08:00",
        "S1",
        json!({"activity_id": "A2"}),
    );
    s.ev(
        "activity.completed",
        "2024-01-10T12:00:00+08:00",
        "S1",
        json!({"activity_id": "A2", "anonymous_headcount": 5}),
    );
    // A3 at S3 at 23:30 local on 31 January (15:30 UTC): January.
    s.activity(
        "A3",
        "S3",
        "2024-01-31T23:30:00+08:00",
        "2024-01-20T10:00:00+08:00",
    );
    // A4 at S3 at 00:10 local on 1 February, which is still 31 January in UTC: February.
    s.activity(
        "A4",
        "S3",
        "2024-02-01T00:10:00+08:00",
        "2024-01-20T10:00:00+08:00",
    );
    // A5 at S2 (opened 20 January), A6 at S4 (district 330205), A7 at the point P1.
    s.activity(
        "A5",
        "S2",
        "2024-01-25T10:00:00+08:00",
        "2024-01-21T10:00:00+08:00",
    );
    s.activity(
        "A6",
        "S4",
        "2024-02-20T10:00:00+08:00",
        "2024-02-01T10:00:00+08:00",
    );
    s.activity(
        "A7",
        "P1",
        "2024-01-15T10:00:00+08:00",
        "2024-01-02T10:00:00+08:00",
    );
    // Around the year end, for ISO weeks: Sunday 29 Dec 2024 (week of 23 Dec), Tuesday
    // 31 Dec 2024 and Thursday 2 Jan 2025 (both ISO week 1 of 2025, from 30 Dec).
    s.activity(
        "A8",
        "S1",
        "2024-12-29T10:00:00+08:00",
        "2024-12-01T10:00:00+08:00",
    );
    s.activity(
        "A9",
        "S1",
        "2024-12-31T10:00:00+08:00",
        "2024-12-01T10:00:00+08:00",
    );
    s.activity(
        "A10",
        "S1",
        "2025-01-02T10:00:00+08:00",
        "2024-12-01T10:00:00+08:00",
    );

    let t = "2024-02-03T09:05:00+08:00";
    s.check_in("A1", "S1", "R1", "resident", t);
    s.check_in("A1", "S1", "R1", "resident", "2024-02-03T09:07:00+08:00"); // same visit
    s.check_in("A1", "S1", "R2", "resident", t);
    s.check_in("A1", "S1", "V1", "volunteer", t);
    s.check_in("A2", "S1", "R1", "resident", "2024-01-10T09:05:00+08:00");
    s.check_in("A3", "S3", "R1", "resident", "2024-01-31T23:35:00+08:00");
    s.check_in("A3", "S3", "R3", "resident", "2024-01-31T23:35:00+08:00");
    s.check_in("A4", "S3", "R3", "resident", "2024-02-01T00:15:00+08:00");
    s.check_in("A4", "S3", "V2", "volunteer", "2024-02-01T00:15:00+08:00");
    s.check_in("A5", "S2", "R4", "resident", "2024-01-25T10:05:00+08:00");
    s.check_in("A5", "S2", "R1", "resident", "2024-01-25T10:05:00+08:00");
    s.check_in("A6", "S4", "R5", "resident", "2024-02-20T10:05:00+08:00");
    s.check_in("A7", "P1", "V1", "volunteer", "2024-01-15T10:05:00+08:00");
    // A check-in for an activity never published: an orphan, left out.
    s.check_in("AX", "S1", "R9", "resident", "2024-01-15T10:05:00+08:00");
}

fn volunteers_and_service(s: &mut Stream) {
    s.volunteer("V1", "S1", "2023-12-05T10:00:00+08:00");
    s.volunteer("V2", "S3", "2024-01-10T10:00:00+08:00");
    s.volunteer("V3", "S1", "2024-02-05T10:00:00+08:00");
    s.ev(
        "volunteer.deregistered",
        "2024-02-20T10:00:00+08:00",
        "S1",
        json!({"volunteer_id": "V3"}),
    );
    s.volunteer("V4", "S4", "2024-01-15T10:00:00+08:00");
    // A minute before the end of February: registered at February's end.
    s.volunteer("V5", "S2", "2024-02-29T23:59:00+08:00");
    // At 00:00 of 1 March: not registered "by" February's end (strictly earlier).
    s.volunteer("V6", "S2", "2024-03-01T00:00:00+08:00");
    for v in ["V7", "V8", "V9", "V10"] {
        s.volunteer(v, "S1", "2023-06-01T10:00:00+08:00");
    }
    // December 2023, before the range: full days of service toward star levels.
    let day = |d: u32| format!("2023-12-{d:02}T00:00:00+08:00");
    for d in 1..=5 {
        s.record(&format!("V7-{d}"), "V7", "S1", &day(d), 1440); // 120 h
    }
    for d in 1..=4 {
        s.record(&format!("V8-{d}"), "V8", "S1", &day(d), 1440); // 96 h
        s.record(&format!("V10-{d}"), "V10", "S1", &day(d), 1440); // 96 h
    }
    for d in 1..=13 {
        s.record(&format!("V9-{d}"), "V9", "S1", &day(d), 1440); // 312 h
    }
    // SR1: 120 minutes, then two amendments with the same occurred_at: the greater
    // event id (60 minutes) wins, though it comes first in the stream.
    s.record("SR1", "V1", "S1", "2024-01-10T09:00:00+08:00", 120);
    let amended_at = "2024-01-11T10:00:00+08:00";
    s.ev_id(
        "00000000-0000-7000-8000-0000000000ff",
        "service.amended",
        amended_at,
        "S1",
        json!({"record_id": "SR1", "minutes": 60}),
    );
    s.ev_id(
        "00000000-0000-7000-8000-0000000000fe",
        "service.amended",
        amended_at,
        "S1",
        json!({"record_id": "SR1", "minutes": 90}),
    );
    // SR2: revoked, then amended: still revoked, counts nowhere.
    s.record("SR2", "V2", "S3", "2024-01-20T09:00:00+08:00", 60);
    s.ev(
        "service.revoked",
        "2024-01-21T10:00:00+08:00",
        "S3",
        json!({"record_id": "SR2"}),
    );
    s.ev(
        "service.amended",
        "2024-01-22T10:00:00+08:00",
        "S3",
        json!({"record_id": "SR2", "minutes": 30}),
    );
    // SR3: starts 00:30 local on 1 February (31 January in UTC): February.
    s.record("SR3", "V2", "S3", "2024-02-01T00:30:00+08:00", 120);
    s.record("SR4", "V4", "S4", "2024-02-10T09:00:00+08:00", 180);
    s.record("SR5", "V1", "S2", "2024-02-12T09:00:00+08:00", 240);
    s.record("SR6", "V8", "S1", "2024-01-15T09:00:00+08:00", 300);
    s.record("SR7", "V7", "S1", "2024-02-05T00:00:00+08:00", 1440);
    // V10 at exactly 00:00 of 1 February: February, 240 min → 6000 min = 100 h (★1).
    s.record("SR8", "V10", "S1", "2024-02-01T00:00:00+08:00", 240);
    // V4 (home in 330205) serves in 330203.
    s.record("SR9", "V4", "S1", "2024-01-25T09:00:00+08:00", 30);
    // An amendment for a record that never arrived.
    s.ev(
        "service.amended",
        "2024-01-22T10:00:00+08:00",
        "S1",
        json!({"record_id": "SRX", "minutes": 30}),
    );
}

fn orders(s: &mut Stream) {
    let o = |s: &mut Stream, ty: &str, at: &str, unit: &str, extra: serde_json::Value| {
        let mut data = extra;
        data["order_id"] = json!(data["order_id"].as_str().unwrap());
        s.ev(ty, at, unit, data)
    };
    let placed = |id: &str| json!({"order_id": id, "category": "health", "channel": "app"});
    // O1: accepted twice (earliest: 30 min), completed, rated 3 then 5 → 5.
    o(
        s,
        "order.placed",
        "2024-01-05T10:00:00+08:00",
        "S1",
        placed("O1"),
    );
    o(
        s,
        "order.dispatched",
        "2024-01-05T10:05:00+08:00",
        "S1",
        json!({"order_id": "O1", "team_id": "T1"}),
    );
    o(
        s,
        "order.accepted",
        "2024-01-05T11:00:00+08:00",
        "S1",
        json!({"order_id": "O1", "team_id": "T2"}),
    );
    o(
        s,
        "order.accepted",
        "2024-01-05T10:30:00+08:00",
        "S1",
        json!({"order_id": "O1", "team_id": "T1"}),
    );
    o(
        s,
        "order.completed",
        "2024-01-06T10:00:00+08:00",
        "S1",
        json!({"order_id": "O1"}),
    );
    o(
        s,
        "order.rated",
        "2024-01-06T12:00:00+08:00",
        "S1",
        json!({"order_id": "O1", "score": 3}),
    );
    o(
        s,
        "order.rated",
        "2024-01-07T12:00:00+08:00",
        "S1",
        json!({"order_id": "O1", "score": 5}),
    );
    // O2: 90 min; two ratings at the same moment: the greater event id (4) wins.
    o(
        s,
        "order.placed",
        "2024-01-08T10:00:00+08:00",
        "S1",
        placed("O2"),
    );
    o(
        s,
        "order.accepted",
        "2024-01-08T11:30:00+08:00",
        "S1",
        json!({"order_id": "O2", "team_id": "T1"}),
    );
    s.ev_id(
        "00000000-0000-7000-8000-0000000001ff",
        "order.rated",
        "2024-01-09T12:00:00+08:00",
        "S1",
        json!({"order_id": "O2", "score": 4}),
    );
    s.ev_id(
        "00000000-0000-7000-8000-0000000001fe",
        "order.rated",
        "2024-01-09T12:00:00+08:00",
        "S1",
        json!({"order_id": "O2", "score": 2}),
    );
    // O3: placed 23:50 on 31 January (January), accepted an hour later, completed.
    o(
        s,
        "order.placed",
        "2024-01-31T23:50:00+08:00",
        "S3",
        placed("O3"),
    );
    o(
        s,
        "order.accepted",
        "2024-02-01T00:50:00+08:00",
        "S3",
        json!({"order_id": "O3", "team_id": "T1"}),
    );
    o(
        s,
        "order.completed",
        "2024-02-02T10:00:00+08:00",
        "S3",
        json!({"order_id": "O3"}),
    );
    // O4: 10 min, never rated.
    o(
        s,
        "order.placed",
        "2024-01-25T09:00:00+08:00",
        "S2",
        placed("O4"),
    );
    o(
        s,
        "order.accepted",
        "2024-01-25T09:10:00+08:00",
        "S2",
        json!({"order_id": "O4", "team_id": "T1"}),
    );
    // O5 (February, S1) and O6 (February, S4): placed only.
    o(
        s,
        "order.placed",
        "2024-02-02T09:00:00+08:00",
        "S1",
        placed("O5"),
    );
    o(
        s,
        "order.placed",
        "2024-02-03T09:00:00+08:00",
        "S4",
        placed("O6"),
    );
}

pub async fn fixture() -> (tempfile::TempDir, wenming_analytics::Analytics) {
    lake_with(&stream(), 0).await
}

pub fn stream() -> Stream {
    let mut s = Stream::default();
    network(&mut s);
    activities(&mut s);
    volunteers_and_service(&mut s);
    orders(&mut s);
    // An event of a unit nobody registered.
    s.ev(
        "wish.posted",
        "2024-01-05T10:00:00+08:00",
        "GHOST",
        json!({"wish_id": "W1"}),
    );
    s
}
