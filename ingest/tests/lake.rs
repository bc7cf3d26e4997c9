//! Commits carry their source positions, in real Delta tables in a temp directory; a
//! stale writer cannot commit twice.

use deltalake::datafusion::prelude::SessionContext;
use wenming_ingest::batch::{FamilyBatch, Provenance};
use wenming_ingest::lake::{Lake, LakeError, Position};
use wenming_schemas::{Family, decode};

const EXAMPLES: &str = include_str!("../../schemas/tests/fixtures/examples.ndjson");

fn wish_batch() -> arrow::array::RecordBatch {
    let mut batch = FamilyBatch::new(Family::Wish);
    for line in EXAMPLES.lines() {
        let e = decode(line.as_bytes()).unwrap();
        if e.event_type().family() == Family::Wish {
            batch.push(
                &e,
                Provenance {
                    partition: Some(0),
                    offset: Some(1),
                    ingested_at_us: 1,
                },
                line.len(),
            );
        }
    }
    batch.finish().unwrap()
}

fn at(app_id: &str, version: i64, expected: Option<i64>) -> Vec<Position> {
    vec![Position {
        app_id: app_id.into(),
        version,
        expected,
    }]
}

async fn rows(lake: &Lake, family: Family) -> usize {
    let table = lake.open(family).await.unwrap().unwrap();
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let batches = ctx
        .sql("SELECT * FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test]
async fn positions_are_committed_with_the_data_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    assert!(lake.open(Family::Wish).await.unwrap().is_none());
    assert_eq!(
        lake.position(Family::Wish, "kafka:wenming.events:0")
            .await
            .unwrap(),
        None
    );

    let v = lake
        .commit(
            Family::Wish,
            vec![wish_batch()],
            &at("kafka:wenming.events:0", 10, None),
        )
        .await
        .unwrap();
    assert_eq!(v, 0);
    let v = lake
        .commit(
            Family::Wish,
            vec![wish_batch()],
            &at("kafka:wenming.events:0", 25, Some(10)),
        )
        .await
        .unwrap();
    assert_eq!(v, 1);

    // A new handle (a restarted process) reads the positions from the lake.
    let again = Lake::new(dir.path());
    assert_eq!(
        again
            .position(Family::Wish, "kafka:wenming.events:0")
            .await
            .unwrap(),
        Some(25)
    );
    assert_eq!(
        again
            .position(Family::Wish, "kafka:wenming.events:1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(rows(&again, Family::Wish).await, 4);
    // Other families are untouched.
    assert!(again.open(Family::Service).await.unwrap().is_none());

    // `lake info`: every table listed, the written one with its positions.
    let info = again.info().await.unwrap();
    assert_eq!(info.len(), Family::ALL.len());
    let wish = info.iter().find(|t| t.table == "wish_events").unwrap();
    assert_eq!(wish.version, Some(1));
    assert_eq!(wish.files, 2);
    assert_eq!(wish.rows, 4);
    assert_eq!(
        wish.positions,
        vec![("kafka:wenming.events:0".to_owned(), 25)]
    );
    let service = info.iter().find(|t| t.table == "service_events").unwrap();
    assert_eq!((service.version, service.rows, service.files), (None, 0, 0));
}

#[tokio::test]
async fn a_stale_writer_cannot_commit_the_same_positions_again() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    lake.commit(Family::Wish, vec![wish_batch()], &at("p0", 10, None))
        .await
        .unwrap();
    lake.commit(Family::Wish, vec![wish_batch()], &at("p0", 20, Some(10)))
        .await
        .unwrap();

    // A zombie that still believes p0 is at 10 is refused and writes nothing.
    let err = lake
        .commit(Family::Wish, vec![wish_batch()], &at("p0", 20, Some(10)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            LakeError::PositionMoved {
                found: Some(20),
                expected: Some(10),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("another writer has committed it"),
        "{err}"
    );
    assert_eq!(rows(&lake, Family::Wish).await, 4);
}

/// A writer keeps its tables between commits and learns what other writers committed
/// since from their commits' `txn` actions: a partition another writer moved on (data,
/// a positions-only advance, a compaction in between) is refused at the stale
/// position and accepted at the new one.
#[tokio::test]
async fn a_kept_table_learns_the_positions_other_writers_committed() {
    let dir = tempfile::tempdir().unwrap();
    let a = Lake::new(dir.path());
    a.commit(Family::Wish, vec![wish_batch()], &at("p0", 10, None))
        .await
        .unwrap();
    a.commit(Family::Wish, vec![wish_batch()], &at("p1", 5, None))
        .await
        .unwrap();

    // Another process takes p0 over and moves it twice, then compacts.
    let b = Lake::new(dir.path());
    b.commit(Family::Wish, vec![wish_batch()], &at("p0", 20, Some(10)))
        .await
        .unwrap();
    b.advance(Family::Wish, &at("p0", 30, Some(20)))
        .await
        .unwrap();
    b.optimize(1 << 20).await.unwrap();

    let stale = a
        .commit(Family::Wish, vec![wish_batch()], &at("p0", 40, Some(10)))
        .await;
    assert!(
        matches!(
            stale,
            Err(LakeError::PositionMoved {
                found: Some(30),
                expected: Some(10),
                ..
            })
        ),
        "{stale:?}"
    );
    // p1, untouched by the other writer, is still where `a` left it.
    a.commit(Family::Wish, vec![wish_batch()], &at("p1", 6, Some(5)))
        .await
        .unwrap();
    a.commit(Family::Wish, vec![wish_batch()], &at("p0", 40, Some(30)))
        .await
        .unwrap();
    assert_eq!(a.position(Family::Wish, "p0").await.unwrap(), Some(40));
    assert_eq!(a.position(Family::Wish, "p1").await.unwrap(), Some(6));
    // Five data commits of two rows; the refused one wrote nothing.
    assert_eq!(rows(&a, Family::Wish).await, 10);
    // And `b`, which kept its table too, is refused at its stale position of p0.
    let stale = b.advance(Family::Wish, &at("p0", 35, Some(30))).await;
    assert!(
        matches!(
            stale,
            Err(LakeError::PositionMoved {
                found: Some(40),
                ..
            })
        ),
        "{stale:?}"
    );
}

/// Every Parquet file wenming writes has row groups of at most 256 Ki rows (a writer
/// holds a whole row group in memory; Parquet's default is 1 Mi rows).
#[tokio::test]
async fn files_have_row_groups_of_at_most_256_ki_rows_and_no_dictionary_of_unique_columns() {
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let one = wish_batch();
    let rows: usize = 256 * 1024 + 1000;
    let copies = vec![one.clone(); rows.div_ceil(one.num_rows())];
    let big = arrow::compute::concat_batches(&one.schema(), &copies).unwrap();
    lake.commit(Family::Wish, vec![big.clone()], &at("p0", 1, None))
        .await
        .unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path().join(Family::Wish.table_name()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let reader = SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let groups: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(
        groups,
        [256 * 1024, big.num_rows() as i64 - 256 * 1024],
        "row groups of the file"
    );
    // Nearly unique columns are written plain: a dictionary of them would overflow on
    // every page. Columns of few values keep theirs.
    let group = reader.metadata().row_group(0);
    let dictionary = |name: &str| {
        group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap_or_else(|| panic!("no column {name}"))
            .dictionary_page_offset()
            .is_some()
    };
    for unique in ["event_id", "kafka_offset", "occurred_at"] {
        assert!(!dictionary(unique), "{unique} has a dictionary");
    }
    for few in ["type", "unit_id"] {
        assert!(dictionary(few), "{few} has no dictionary");
    }
}

/// Underneath our check, Delta's own conflict checker refuses a commit from a stale
/// handle that carries a `txn` for an app id another commit wrote in between.
#[tokio::test]
async fn delta_refuses_a_racing_commit_on_the_same_app_id() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    lake.commit(Family::Wish, vec![wish_batch()], &at("p0", 10, None))
        .await
        .unwrap();
    let stale = lake.open(Family::Wish).await.unwrap().unwrap();
    lake.commit(Family::Wish, vec![wish_batch()], &at("p0", 20, Some(10)))
        .await
        .unwrap();

    use deltalake::kernel::Transaction;
    use deltalake::kernel::transaction::CommitProperties;
    let result = stale
        .write(vec![wish_batch()])
        .with_commit_properties(
            CommitProperties::default()
                .with_max_retries(3)
                .with_application_transaction(Transaction::new("p0", 20)),
        )
        .await;
    assert!(
        result.is_err(),
        "a racing commit with the same txn app id must fail"
    );
    assert_eq!(rows(&lake, Family::Wish).await, 4);
}

/// A table a stretch of the stream had no events for is moved forward by a commit of
/// positions only: no file, no row, and the same refusal of a stale writer.
#[tokio::test]
async fn positions_advance_without_data_and_stale_advances_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    lake.ensure_tables().await.unwrap();
    for family in Family::ALL {
        assert!(
            lake.open(*family).await.unwrap().is_some(),
            "{family:?} created"
        );
        assert_eq!(rows(&lake, *family).await, 0);
    }
    let files_before = lake.info().await.unwrap();
    lake.advance(Family::Wish, &at("kafka:t:0", 41, None))
        .await
        .unwrap();
    assert_eq!(
        lake.position(Family::Wish, "kafka:t:0").await.unwrap(),
        Some(41)
    );
    let all = lake.positions("kafka:t:0").await.unwrap();
    assert_eq!(all[&Family::Wish], Some(41));
    assert_eq!(all[&Family::Service], None);
    let files_after = lake.info().await.unwrap();
    let files =
        |info: &[wenming_ingest::lake::TableInfo]| info.iter().map(|t| t.files).sum::<usize>();
    assert_eq!(
        files(&files_after),
        files(&files_before),
        "an advance adds no file"
    );

    let stale = lake.advance(Family::Wish, &at("kafka:t:0", 50, None)).await;
    assert!(
        matches!(
            stale,
            Err(LakeError::PositionMoved {
                found: Some(41),
                ..
            })
        ),
        "{stale:?}"
    );
    // Ensuring again changes nothing.
    lake.ensure_tables().await.unwrap();
    assert_eq!(
        lake.position(Family::Wish, "kafka:t:0").await.unwrap(),
        Some(41)
    );
}

/// The ids that seed a writer's dedup window: newest last, and `since` keeps only
/// what was ingested from then on.
#[tokio::test]
async fn recent_ids_come_from_every_table_newest_last() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut expected = Vec::new();
    for (i, line) in EXAMPLES.lines().enumerate() {
        expected.push(commit_line_at(&lake, line, 1_000_000 * (i as i64 + 1)).await);
    }
    let ids = recent_ids(&lake, 1_000, None).await;
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, sorted_expected, "every id, once");
    assert_eq!(ids.last(), expected.last(), "the newest comes last");

    let limited = recent_ids(&lake, 3, None).await;
    assert_eq!(limited, expected[expected.len() - 3..].to_vec());

    let since = recent_ids(&lake, 1_000, Some(1_000_000 * (expected.len() as i64 - 1))).await;
    assert_eq!(since, expected[expected.len() - 2..].to_vec());
}

/// Commits one example line as if imported at `ingested_at_us`; returns its event id.
async fn commit_line_at(lake: &Lake, line: &str, ingested_at_us: i64) -> u128 {
    let e = decode(line.as_bytes()).unwrap();
    let family = e.event_type().family();
    let mut batch = FamilyBatch::new(family);
    let provenance = Provenance {
        partition: None,
        offset: None,
        ingested_at_us,
    };
    batch.push(&e, provenance, line.len());
    lake.commit(family, vec![batch.finish().unwrap()], &[])
        .await
        .unwrap();
    e.event_id.as_u128()
}

async fn recent_ids(lake: &Lake, limit: usize, since: Option<i64>) -> Vec<u128> {
    recent_ids_in_chunks(lake, limit, since, 500_000).await
}

/// Collects what `recent_ids_in_chunks` hands over, checking that each slice says
/// truly how many ids follow it.
async fn recent_ids_in_chunks(
    lake: &Lake,
    limit: usize,
    since: Option<i64>,
    chunk_rows: u64,
) -> Vec<u128> {
    let mut ids = Vec::new();
    let mut promised = Vec::new();
    let sent = lake
        .recent_ids_in_chunks(limit, since, chunk_rows, |chunk, more| {
            ids.extend_from_slice(chunk);
            promised.push((ids.len(), more));
        })
        .await
        .unwrap();
    assert_eq!(sent, ids.len());
    for (so_far, more) in promised {
        assert_eq!(
            so_far + more,
            ids.len(),
            "slices promised {more} more after {so_far}"
        );
    }
    ids
}

/// Rows share ingest times (a run of messages, a whole import): the seed reads the
/// newest ingest times in ranges of about `chunk_rows` rows, so its memory stays
/// bounded, and hands the ids over oldest time first whatever the ranges; of the
/// oldest time taken, only as many as the limit leaves room for.
#[tokio::test]
async fn recent_ids_come_in_ingest_time_order_whatever_the_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut time_of = std::collections::HashMap::new();
    // Three events an ingest time, over several tables; committed newest time first,
    // so that file order is not time order.
    let lines: Vec<&str> = EXAMPLES.lines().collect();
    for (i, line) in lines.iter().enumerate().rev() {
        let at = 1_000_000 * (i as i64 / 3 + 1);
        time_of.insert(commit_line_at(&lake, line, at).await, at);
    }
    let times = |ids: &[u128]| ids.iter().map(|id| time_of[id]).collect::<Vec<_>>();
    let newest = *time_of.values().max().unwrap();
    let in_newest = time_of.values().filter(|t| **t == newest).count();
    assert!(lines.len() >= 7 && in_newest >= 1);
    for chunk_rows in [1, 2, 4, 7, 500_000] {
        let all = recent_ids_in_chunks(&lake, 1_000, None, chunk_rows).await;
        assert_eq!(all.len(), lines.len(), "chunks of {chunk_rows}: every id");
        let t = times(&all);
        assert!(
            t.is_sorted(),
            "chunks of {chunk_rows}: oldest time first: {t:?}"
        );

        // The newest time whole, and one id of the time before it.
        let some = recent_ids_in_chunks(&lake, in_newest + 1, None, chunk_rows).await;
        let t = times(&some);
        assert_eq!(some.len(), in_newest + 1);
        assert_eq!(t[0], newest - 1_000_000, "chunks of {chunk_rows}: {t:?}");
        assert!(t[1..].iter().all(|x| *x == newest), "{t:?}");
    }
}

/// Versions from the log's file names: what ingest compares to skip re-reading the
/// lake's ids when nothing was committed since it last did.
#[tokio::test]
async fn versions_follow_the_commits() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    assert!(lake.versions().await.values().all(Option::is_none));
    lake.ensure_tables().await.unwrap();
    let created = lake.versions().await;
    assert_eq!(created.len(), Family::ALL.len());
    assert!(created.values().all(|v| *v == Some(0)), "{created:?}");
    let v = lake
        .commit(Family::Wish, vec![wish_batch()], &[])
        .await
        .unwrap();
    let after = lake.versions().await;
    assert_eq!(after[&Family::Wish], Some(v));
    assert!(v > 0);
    assert_eq!(after.iter().filter(|(_, v)| **v != Some(0)).count(), 1);
}
