//! The current-state views are computed once per version of the raw table each reads:
//! a question after an ingest commit sees the new events, and views whose table did
//! not change are carried into the new snapshot without being computed again.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use wenming_analytics::Granularity::Total;
use wenming_analytics::{Analytics, Level, Settings};

const AT: &str = "2024-03-01T09:00:00+08:00";

/// A station of 100 residents, registered at the start of 2024.
fn station(s: &mut Stream, id: &str, area: &str) {
    s.unit(
        id,
        "station",
        None,
        area,
        Some(100),
        "2024-01-01T00:00:00+08:00",
    );
}

#[tokio::test]
async fn a_view_is_computed_again_only_when_its_table_changes() {
    let mut s = Stream::default();
    station(&mut s, "S1", "330203001001");
    s.volunteer("V1", "S1", "2024-01-02T00:00:00+08:00");
    s.record("R1", "V1", "S1", AT, 90);
    let (dir, a) = lake_of(&s).await;
    let hours = req(
        "service_hours",
        "2024-03-01",
        "2024-03-31",
        Total,
        Level::City,
    );
    assert_rows(
        &ask(&a, &hours).await,
        &[("2024-03-01", "city", Some(1.5), None, None)],
    );

    let first = a.snapshot().await.unwrap();
    let records = first.view("service_records").unwrap().clone();
    assert!(
        records.is_computed(),
        "the question computed service_records"
    );
    assert!(
        !first.view("orders").unwrap().is_computed(),
        "no question read orders, so it is not computed"
    );

    // New unit events only: units is planned again, service_records carried over.
    let mut more = Stream::after(1000);
    more.ev(
        "unit.updated",
        "2024-03-02T00:00:00+08:00",
        "S1",
        json!({"residents": 200}),
    );
    import_more(&dir, &more).await;
    assert!(a.refresh().await.unwrap(), "a new unit_events version");
    let second = a.snapshot().await.unwrap();
    assert!(Arc::ptr_eq(
        &records,
        second.view("service_records").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        first.view("units").unwrap(),
        second.view("units").unwrap()
    ));

    // A new service record: service_records is computed again, and the answer shows it.
    let mut more = Stream::after(2000);
    more.record("R2", "V1", "S1", "2024-03-05T09:00:00+08:00", 30);
    import_more(&dir, &more).await;
    assert!(a.refresh().await.unwrap());
    let third = a.snapshot().await.unwrap();
    assert!(!Arc::ptr_eq(
        &records,
        third.view("service_records").unwrap()
    ));
    assert_rows(
        &ask(&a, &hours).await,
        &[("2024-03-01", "city", Some(2.0), None, None)],
    );
}

/// Latest wins in `service_records` along each path the view takes: a record recorded
/// once, recorded again (later, or at the same instant with a greater event id), and
/// amendments that tie with the recording or precede a re-recording.
#[tokio::test]
async fn service_records_take_the_latest_recording_and_amendment() {
    let mut s = Stream::default();
    station(&mut s, "S1", "330203001001");
    station(&mut s, "S2", "330203001002");
    let recorded =
        |s: &mut Stream, id: Option<&str>, record: &str, unit: &str, at: &str, minutes: i64| {
            let data = json!({"record_id": record, "volunteer_id": "V1",
            "started_at": "2024-03-01T08:00:00+08:00", "ended_at": "2024-03-02T08:00:00+08:00",
            "minutes": minutes});
            match id {
                Some(id) => s.ev_id(id, "service.recorded", at, unit, data),
                None => {
                    s.ev("service.recorded", at, unit, data);
                }
            }
        };
    let amended = |s: &mut Stream, id: &str, record: &str, at: &str, minutes: i64| {
        s.ev_id(
            id,
            "service.amended",
            at,
            "S1",
            json!({"record_id": record, "minutes": minutes}),
        );
    };
    // R1: recorded once.
    recorded(&mut s, None, "R1", "S1", AT, 90);
    // R2: recorded again a day later at another unit: the second recording wins whole.
    recorded(&mut s, None, "R2", "S1", AT, 90);
    recorded(&mut s, None, "R2", "S2", "2024-03-02T09:00:00+08:00", 60);
    // R3: two recordings at one instant: the greater event id wins (it comes first here).
    recorded(
        &mut s,
        Some("00000000-0000-7000-8000-0000000000f2"),
        "R3",
        "S2",
        AT,
        45,
    );
    recorded(
        &mut s,
        Some("00000000-0000-7000-8000-0000000000f1"),
        "R3",
        "S1",
        AT,
        30,
    );
    // R4: an amendment at the recording's instant with a greater event id wins ...
    recorded(
        &mut s,
        Some("00000000-0000-7000-8000-0000000000e1"),
        "R4",
        "S1",
        AT,
        100,
    );
    amended(&mut s, "00000000-0000-7000-8000-0000000000e2", "R4", AT, 40);
    // R5: ... one with a smaller event id does not, though it is counted.
    recorded(
        &mut s,
        Some("00000000-0000-7000-8000-0000000000d2"),
        "R5",
        "S1",
        AT,
        100,
    );
    amended(&mut s, "00000000-0000-7000-8000-0000000000d1", "R5", AT, 40);
    // R6: amended, then recorded again later: the recording is the latest.
    recorded(&mut s, None, "R6", "S1", AT, 100);
    amended(
        &mut s,
        "00000000-0000-7000-8000-0000000000c1",
        "R6",
        "2024-03-02T09:00:00+08:00",
        20,
    );
    recorded(&mut s, None, "R6", "S1", "2024-03-03T09:00:00+08:00", 70);
    let (_dir, a) = lake_of(&s).await;

    let result = a
        .sql(
            "SELECT record_id, unit_id, recorded_minutes, minutes, amendments \
             FROM service_records ORDER BY record_id",
            &wenming_analytics::Scope::City,
            &wenming_analytics::sql::SqlLimits::default(),
        )
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&result.batches)
        .unwrap()
        .to_string();
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|l| l.starts_with("| R"))
        .map(|l| {
            l.split('|')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    let expected = [
        ["R1", "S1", "90", "90", "0"],
        ["R2", "S2", "60", "60", "0"],
        ["R3", "S2", "45", "45", "0"],
        ["R4", "S1", "100", "40", "1"],
        ["R5", "S1", "100", "100", "1"],
        ["R6", "S1", "70", "70", "1"],
    ];
    assert_eq!(
        rows,
        expected.map(|r| r.map(String::from).to_vec()).to_vec(),
        "{text}"
    );
}

/// `service_records` updated from each commit's new events equals `service_records`
/// derived from all events, commit after commit, with late recordings, re-recordings at
/// another unit, amendments that arrive out of order, revocations, and events sent
/// twice (the same event id in a later commit).
#[tokio::test]
async fn service_records_updated_from_new_events_equal_the_full_computation() {
    let mut s = Stream::default();
    for (id, area) in [
        ("S1", "330203001001"),
        ("S2", "330203001002"),
        ("S3", "330212001001"),
    ] {
        station(&mut s, id, area);
    }
    s.volunteer("V1", "S1", "2024-01-02T00:00:00+08:00");
    s.record("R-first", "V1", "S1", AT, 30);
    let (dir, a) = lake_of(&s).await;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut sent: Vec<(String, String, String, String, serde_json::Value)> = Vec::new();
    let mut records = 0u64;
    let mut updated = 0;
    for commit in 0..6u64 {
        let mut more = Stream::after(10_000 * (commit + 1));
        for _ in 0..40 {
            let unit = ["S1", "S2", "S3"][next(3) as usize];
            // Instants anywhere in March: later commits bring earlier ("late") events.
            let at = format!(
                "2024-03-{:02}T{:02}:{:02}:00+08:00",
                1 + next(28),
                next(24),
                next(60)
            );
            let old = (records > 0).then(|| format!("R{}", next(records)));
            let (ty, data) = match (next(6), old) {
                (0, Some(r)) => (
                    "service.amended",
                    json!({"record_id": r, "minutes": 10 + next(110)}),
                ),
                (1, Some(r)) => ("service.revoked", json!({"record_id": r})),
                (2, Some(r)) => (
                    "service.recorded",
                    json!({"record_id": r, "volunteer_id": "V1",
                    "started_at": "2024-03-01T08:00:00+08:00", "ended_at": "2024-03-01T10:00:00+08:00",
                    "minutes": 10 + next(110)}),
                ),
                (3, _) if !sent.is_empty() => {
                    // An event sent again, as a producer retrying would.
                    let (id, ty, at, unit, data) = sent[next(sent.len() as u64) as usize].clone();
                    more.ev_id(&id, &ty, &at, &unit, data);
                    continue;
                }
                _ => {
                    records += 1;
                    (
                        "service.recorded",
                        json!({"record_id": format!("R{}", records - 1),
                        "volunteer_id": "V1", "started_at": "2024-03-01T08:00:00+08:00",
                        "ended_at": "2024-03-01T10:00:00+08:00", "minutes": 10 + next(110)}),
                    )
                }
            };
            let id = more.ev(ty, &at, unit, data.clone());
            sent.push((id, ty.to_string(), at, unit.to_string(), data));
        }
        // The current rows are computed, so the next version can update them.
        let previous = a
            .snapshot()
            .await
            .unwrap()
            .view("service_records")
            .unwrap()
            .rows()
            .await
            .unwrap();
        import_more(&dir, &more).await;
        assert!(a.refresh().await.unwrap());
        let view = a
            .snapshot()
            .await
            .unwrap()
            .view("service_records")
            .unwrap()
            .clone();
        if view.updates_previous() {
            updated += 1;
        }
        view.rows().await.unwrap();
        assert_eq!(
            Arc::strong_count(&previous),
            1,
            "commit {commit}: the previous rows are let go of once the update is computed"
        );
        let full = Analytics::open(dir.path().join("lake"), Settings::default())
            .await
            .unwrap();
        let whole = full
            .snapshot()
            .await
            .unwrap()
            .view("service_records")
            .unwrap()
            .clone();
        assert!(!whole.updates_previous());
        // One row per record recorded so far (the first one and R0 …), counted from
        // the events this test sent.
        assert_eq!(
            sorted_by(&whole, "record_id").await.len(),
            4 + 1 + records as usize,
            "commit {commit}: a row per recorded record"
        );
        assert_eq!(
            sorted_by(&view, "record_id").await,
            sorted_by(&whole, "record_id").await,
            "commit {commit}: updated rows differ from the full computation"
        );
    }
    assert_eq!(updated, 6, "every commit updated the previous rows");
}

/// Every view updated from each commit's new events equals the view derived from all
/// events: a generated stream (every entity kind, duplicates re-sent) imported in five
/// commits.
#[tokio::test]
async fn every_view_updated_from_new_events_equals_the_full_computation() {
    let mut options = wenming_synth::Options::new(wenming_synth::Scale::Tiny, 5);
    options.duplicate_rate = 0.02;
    let mut bytes = Vec::new();
    wenming_synth::generate(&options, &mut bytes, |_| {}).unwrap();
    let lines: Vec<String> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let chunks: Vec<&[String]> = lines.chunks(lines.len().div_ceil(5)).collect();
    let mut first = Stream::default();
    first.lines = chunks[0].to_vec();
    let (dir, a) = lake_of(&first).await;
    let mut updated = std::collections::BTreeSet::new();
    for (n, chunk) in chunks.iter().enumerate().skip(1) {
        let before = a.snapshot().await.unwrap();
        for view in wenming_analytics::views::VIEWS {
            before.view(view.name).unwrap().rows().await.unwrap();
        }
        let mut more = Stream::default();
        more.lines = chunk.to_vec();
        import_more(&dir, &more).await;
        assert!(a.refresh().await.unwrap());
        let after = a.snapshot().await.unwrap();
        let full = Analytics::open(dir.path().join("lake"), Settings::default())
            .await
            .unwrap();
        let whole = full.snapshot().await.unwrap();
        for view in wenming_analytics::views::VIEWS {
            let mine = after.view(view.name).unwrap();
            if mine.updates_previous() {
                updated.insert(view.name);
            }
            assert_eq!(
                sorted_by(mine, view.key.unwrap()).await,
                sorted_by(whole.view(view.name).unwrap(), view.key.unwrap()).await,
                "commit {n}: {} updated differs from the full computation",
                view.name
            );
        }
    }
    for view in [
        "units",
        "volunteers",
        "activities",
        "attendance",
        "service_records",
    ] {
        assert!(
            updated.contains(view),
            "{view} was never updated: {updated:?}"
        );
    }
}

/// The rows in a fixed order: by every column, as text.
async fn sorted_by(view: &wenming_analytics::materialized::Materialized, key: &str) -> Vec<String> {
    let table = view.rows().await.unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_table("v", table).unwrap();
    let batches = ctx
        .sql(&format!("SELECT * FROM v ORDER BY \"{key}\""))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}
