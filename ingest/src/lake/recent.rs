//! The ids the lake stored most recently, read to seed a dedup window, so that an event
//! is stored once whichever source carried it and however often the writer restarted.

use super::*;

/// Rows of several ingest times collected and sorted at a time while seeding: 500 k
/// rows are ≈ 16 MB of (time, id) pairs, where collecting the whole window's 10 M at
/// once took over a gigabyte on a restart (DataFusion's sort of the strings, then the
/// pairs).
const SEED_CHUNK_ROWS: u64 = 500_000;

impl Lake {
    /// The ids of the `limit` most recently ingested events across all tables, oldest
    /// first, handed to `each` a slice at a time: what a restarted writer seeds its
    /// dedup window with, so that a re-send of an event stored before the restart (by
    /// Kafka ingest or by an import) is still recognised. With each slice comes how many ids
    /// will follow it, so that the window can make room at once.
    /// With `since` (microseconds since the epoch), only events ingested from then on.
    ///
    /// Memory stays bounded whatever the lake holds: the ingest times are counted first
    /// (rows share them: a run of messages, a whole import), then the newest `limit`
    /// rows are read in ranges of ingest time of about [`SEED_CHUNK_ROWS`], each sorted
    /// on its own. Rows of one ingest time are equally recent and come in any order;
    /// of the oldest time taken, only as many as `limit` leaves room for.
    pub async fn recent_ids(
        &self,
        limit: usize,
        since: Option<i64>,
        each: impl FnMut(&[u128], usize),
    ) -> Result<usize, LakeError> {
        self.recent_ids_in_chunks(limit, since, SEED_CHUNK_ROWS, each)
            .await
    }

    /// [`Self::recent_ids`] with ranges of about `chunk_rows` rows (tests use tiny ones).
    pub async fn recent_ids_in_chunks(
        &self,
        limit: usize,
        since: Option<i64>,
        chunk_rows: u64,
        mut each: impl FnMut(&[u128], usize),
    ) -> Result<usize, LakeError> {
        use deltalake::arrow::array::{Array, AsArray};
        use deltalake::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
        use deltalake::datafusion::prelude::SessionContext;
        use futures::StreamExt;

        let ctx = SessionContext::new();
        let mut tables = Vec::new();
        for family in Family::ALL {
            let table_name = family.table_name();
            let Some(table) = self.open(*family).await? else {
                continue;
            };
            table
                .update_datafusion_session(&ctx.state())
                .map_err(|source| LakeError::Delta {
                    table: table_name,
                    source,
                })?;
            let provider = table
                .table_provider()
                .await
                .map_err(|e| seed_error(table_name, e))?;
            ctx.register_table(table_name, provider)
                .map_err(|e| seed_error(table_name, e))?;
            tables.push(table_name);
        }
        let filter = since.map_or(String::new(), |us| {
            format!("WHERE ingested_at >= to_timestamp_micros({us})")
        });

        // How many rows each ingest time holds, over every table.
        let mut counts: std::collections::BTreeMap<i64, u64> = Default::default();
        for &table in &tables {
            let sql =
                format!("SELECT ingested_at, count(*) FROM {table} {filter} GROUP BY ingested_at");
            let batches = ctx
                .sql(&sql)
                .await
                .map_err(|e| seed_error(table, e))?
                .collect()
                .await
                .map_err(|e| seed_error(table, e))?;
            for batch in batches {
                let at = batch.column(0).as_primitive::<TimestampMicrosecondType>();
                let n = batch.column(1).as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    if !at.is_null(i) {
                        *counts.entry(at.value(i)).or_default() += n.value(i) as u64;
                    }
                }
            }
        }

        // The newest ingest times that make up `limit` rows, oldest first, with how
        // many of each to take (all but, perhaps, of the oldest).
        let mut taken: Vec<(i64, u64)> = Vec::new();
        let mut room = limit as u64;
        for (&at, &n) in counts.iter().rev() {
            if room == 0 {
                break;
            }
            taken.push((at, n.min(room)));
            room -= n.min(room);
        }
        taken.reverse();
        let total = taken.iter().map(|(_, n)| n).sum::<u64>() as usize;
        let mut sent = 0usize;
        let mut hand = |ids: &mut Vec<u128>| {
            sent += ids.len();
            each(ids, total.saturating_sub(sent));
            ids.clear();
        };

        // Ranges of ingest time: one time alone when it is partly taken or holds more
        // than a chunk (streamed as read: its rows are equally recent), else as many
        // whole times as make a chunk (collected and sorted).
        let mut ranges: Vec<(i64, i64, u64, bool)> = Vec::new(); // from, to, rows, sort
        for &(at, n) in &taken {
            let whole = counts[&at] == n;
            match ranges.last_mut() {
                Some((_, to, rows, true)) if whole && *rows + n <= chunk_rows => {
                    *to = at;
                    *rows += n;
                }
                _ if !whole || n > chunk_rows => ranges.push((at, at, n, false)),
                _ => ranges.push((at, at, n, true)),
            }
        }

        let mut pairs: Vec<(i64, u128)> = Vec::new();
        let mut ids: Vec<u128> = Vec::new();
        for (from, to, rows, sort) in ranges {
            let mut left = rows;
            for &table in &tables {
                if left == 0 {
                    break;
                }
                let sql = format!(
                    "SELECT ingested_at, event_id FROM {table} WHERE ingested_at >= \
                     to_timestamp_micros({from}) AND ingested_at <= to_timestamp_micros({to})"
                );
                let mut stream = ctx
                    .sql(&sql)
                    .await
                    .map_err(|e| seed_error(table, e))?
                    .execute_stream()
                    .await
                    .map_err(|e| seed_error(table, e))?;
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| seed_error(table, e))?;
                    let at = batch.column(0).as_primitive::<TimestampMicrosecondType>();
                    // DataFusion may hand strings back as views; one cast covers both.
                    let column = deltalake::arrow::compute::cast(
                        batch.column(1),
                        &deltalake::arrow::datatypes::DataType::Utf8,
                    )
                    .map_err(|e| seed_error(table, e.into()))?;
                    let column = column.as_string::<i32>();
                    for i in 0..batch.num_rows() {
                        if left == 0 {
                            break;
                        }
                        if column.is_null(i) {
                            continue;
                        }
                        if let Ok(id) = uuid::Uuid::parse_str(column.value(i)) {
                            left -= 1;
                            if sort {
                                pairs.push((at.value(i), id.as_u128()));
                            } else {
                                ids.push(id.as_u128());
                            }
                        }
                    }
                    if !ids.is_empty() {
                        hand(&mut ids);
                    }
                    if left == 0 {
                        break;
                    }
                }
            }
            if !pairs.is_empty() {
                pairs.sort_by_key(|p| p.0);
                ids.extend(pairs.drain(..).map(|p| p.1));
                hand(&mut ids);
            }
        }
        Ok(sent)
    }
}

fn seed_error(table: &'static str, e: deltalake::datafusion::error::DataFusionError) -> LakeError {
    LakeError::Delta {
        table,
        source: deltalake::DeltaTableError::Generic(e.to_string()),
    }
}
