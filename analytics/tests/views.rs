//! The current-state views are computed once per version of the raw table each reads:
//! a question after an ingest commit sees the new events, and views whose table did
//! not change are carried into the new snapshot without being computed again.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use wenming_analytics::Granularity::Total;
use wenming_analytics::Level;

const AT: &str = "2024-03-01T09:00:00+08:00";

#[tokio::test]
async fn a_view_is_computed_again_only_when_its_table_changes() {
    let mut s = Stream::default();
    s.unit(
        "S1",
        "station",
        None,
        "330203001001",
        Some(100),
        "2024-01-01T00:00:00+08:00",
    );
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
