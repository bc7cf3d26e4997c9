//! The version set holds together at the type level, not only at build time: a table in
//! the lake schema of `schemas` is written by deltalake into a real directory and read
//! back through DataFusion SQL.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use wenming_schemas::Family;
use wenming_schemas::lake::table_schema;

fn wish_batch() -> RecordBatch {
    let schema = table_schema(Family::Wish);
    let utc =
        |v: Vec<i64>| Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) as ArrayRef;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "event_id" => Arc::new(StringArray::from(vec![
                    "0190f5e2-7c4a-7b3e-9a51-2f0c8d1e4b6a",
                    "0190f5e2-7c4a-7b3e-9a51-2f0c8d1e4b6b",
                ])),
                "type" => Arc::new(StringArray::from(vec!["wish.posted", "wish.fulfilled"])),
                "schema_version" => Arc::new(Int32Array::from(vec![1, 1])),
                // 2024-03-04T16:30:00Z is 00:30 on 3/5 in Shanghai.
                "occurred_at" => utc(vec![1_709_569_800_000_000, 1_709_656_200_000_000]),
                "unit_id" => Arc::new(StringArray::from(vec!["S330203001001", "S330203001001"])),
                "source" => Arc::new(StringArray::from(vec![Some("app"), None])),
                "wish_id" => Arc::new(StringArray::from(vec!["W1", "W1"])),
                "kafka_partition" => Arc::new(Int32Array::from(vec![Some(3), Some(3)])),
                "kafka_offset" => Arc::new(Int64Array::from(vec![Some(10), Some(11)])),
                "ingested_at" => utc(vec![1_709_569_900_000_000, 1_709_656_300_000_000]),
                other => panic!("unexpected column {other}"),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).expect("the batch fits the lake schema")
}

#[tokio::test]
async fn a_lake_table_round_trips_through_deltalake_and_datafusion() {
    let dir = tempfile::tempdir().unwrap();
    let url = deltalake::ensure_table_uri(dir.path().to_str().unwrap()).unwrap();
    let table = DeltaTable::try_from_url(url).await.unwrap();
    let table = table.write(vec![wish_batch()]).await.expect("delta write");
    assert_eq!(table.version(), Some(0));

    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    let provider = table.table_provider().await.unwrap();
    ctx.register_table("wish_events", provider).unwrap();
    let batches = ctx
        .sql(
            "SELECT count(*) AS n, count(DISTINCT wish_id) AS wishes, \
             CAST(min(occurred_at) AT TIME ZONE 'Asia/Shanghai' AS VARCHAR) AS first_local \
             FROM wish_events",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(text.contains("| 2 "), "{text}");
    assert!(text.contains("2024-03-05T00:30:00"), "{text}");

    // The schema deltalake reports is the lake schema, timestamps still UTC micros.
    let schema = ctx
        .table("wish_events")
        .await
        .unwrap()
        .schema()
        .as_arrow()
        .clone();
    assert_eq!(
        schema.field_with_name("occurred_at").unwrap().data_type(),
        table_schema(Family::Wish)
            .field_with_name("occurred_at")
            .unwrap()
            .data_type()
    );
}
