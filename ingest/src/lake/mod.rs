//! The Delta Lake side: one table per event family under the lake root, and commits
//! that carry the source positions they cover.
//!
//! Every write is one Delta commit whose `txn` actions record, per source (a Kafka
//! partition, an imported file), the last position the commit covers. A restarted
//! writer asks the lake, not Kafka, where to resume ([`Lake::position`]). A writer whose
//! idea of those positions is stale (a zombie after a rebalance) is refused: before
//! committing it compares the positions it started from with the table's, and Delta's
//! conflict checker refuses a concurrent commit carrying the same `txn` app id.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::DeltaOperation;
use deltalake::protocol::SaveMode;
use wenming_schemas::Family;

use crate::location::{Location, LocationError};

mod recent;
mod upkeep;

pub use upkeep::{Compaction, MIN_VACUUM_RETENTION, TableInfo, Vacuumed};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake at {0} is not usable: {1}")]
    Path(String, String),
    #[error(transparent)]
    Location(Box<LocationError>),
    #[error("table {table}: {source}")]
    Delta {
        table: &'static str,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error(
        "table {table}: source {app_id} is at position {found:?} in the lake, not {expected:?}; \
         another writer has committed it (this writer is stale and must re-read its positions)"
    )]
    PositionMoved {
        table: &'static str,
        app_id: String,
        expected: Option<i64>,
        found: Option<i64>,
    },
}

/// How far one source has been committed: the `txn` action of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Names the source, e.g. `kafka:wenming.events:3` or `file:blake3:<hash>`.
    pub app_id: String,
    /// The last position committed (a Kafka offset, a line number).
    pub version: i64,
    /// The position this writer believed the lake had before this commit.
    pub expected: Option<i64>,
}

/// The lake: Delta tables, one per family, in a directory or an object store.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Location,
    /// What this writer knows of each table between its commits (clones share it).
    known: Arc<HashMap<Family, tokio::sync::Mutex<Option<Known>>>>,
}

/// A table as this writer last saw it, kept between commits: loading a table afresh
/// reads its log from the last checkpoint (up to 100 commits), and the kernel asks
/// for a source's position by replaying that log again, each time opening every commit
/// file at once with a JSON decoder of ≈ 0.8 MB. Done for every commit, that was a
/// third of ingest's peak memory on a long backlog (two tables committing: ≈ 210 MB
/// of decoders) and much of its CPU. Kept, the table is brought up to date with the
/// commits since (usually none but our own), and positions with their `txn` actions.
struct Known {
    table: DeltaTable,
    /// Positions of the sources asked about so far, as of `version`.
    positions: HashMap<String, Option<i64>>,
    /// The table version `positions` hold for; `None` before the table's first commit.
    version: Option<i64>,
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Known")
            .field("version", &self.version)
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

impl Lake {
    pub fn new(root: impl Into<Location>) -> Self {
        Lake {
            root: root.into(),
            known: Arc::new(
                Family::ALL
                    .iter()
                    .map(|f| (*f, tokio::sync::Mutex::new(None)))
                    .collect(),
            ),
        }
    }

    pub fn root(&self) -> &Location {
        &self.root
    }

    /// The family's table at its latest version, `None` if nothing was written yet.
    pub async fn open(&self, family: Family) -> Result<Option<DeltaTable>, LakeError> {
        let table = self.handle(family).await?;
        Ok(table.version().is_some().then_some(table))
    }

    /// A handle on the table location, loaded if the table exists.
    async fn handle(&self, family: Family) -> Result<DeltaTable, LakeError> {
        let name = family.table_name();
        if let Some(dir) = self.root.as_local() {
            let path = dir.join(name);
            std::fs::create_dir_all(&path)
                .map_err(|e| LakeError::Path(path.display().to_string(), e.to_string()))?;
        }
        let delta = |source| LakeError::Delta {
            table: family.table_name(),
            source,
        };
        let builder = self.root.table_builder(name).map_err(delta)?;
        if !self.root.has_commits(name).await? {
            // Not created yet (or a first commit died before its log entry): an unloaded
            // handle, which the first write creates. Loading an empty log would only make
            // the kernel log an error.
            return builder.build().map_err(delta);
        }
        builder.load().await.map_err(delta)
    }

    /// The last position committed for a source into a family's table.
    pub async fn position(&self, family: Family, app_id: &str) -> Result<Option<i64>, LakeError> {
        let Some(table) = self.open(family).await? else {
            return Ok(None);
        };
        positions_of(&table, family, vec![app_id.to_owned()])
            .await
            .map(|mut m| m.remove(app_id).flatten())
    }

    /// Appends batches to a family's table in one commit that records `positions`.
    /// Returns the new table version.
    pub async fn commit(
        &self,
        family: Family,
        batches: Vec<RecordBatch>,
        positions: &[Position],
    ) -> Result<i64, LakeError> {
        let mut slot = self.known[&family].lock().await;
        self.check_positions(&mut slot, family, positions).await?;
        // Taken out: if the write fails, the next commit loads the table afresh.
        let known = slot.take().expect("checked just now");
        let props = writer_properties(FLUSH_ZSTD_LEVEL);
        let table = known
            .table
            .write(batches)
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(props)
            .with_commit_properties(commit_properties(positions))
            .await
            .map_err(|source| LakeError::Delta {
                table: family.table_name(),
                source,
            })?;
        let version = table.version().unwrap_or(0) as i64;
        *slot = Some(Known { table, ..known });
        Ok(version)
    }

    /// Moves positions forward without data: a commit of `txn` actions only. Kafka
    /// ingest uses it for tables a stretch of the stream had no events for, so that a
    /// restart does not re-read from their last data commit. The table must exist.
    pub async fn advance(&self, family: Family, positions: &[Position]) -> Result<i64, LakeError> {
        let delta = |source| LakeError::Delta {
            table: family.table_name(),
            source,
        };
        let mut slot = self.known[&family].lock().await;
        self.check_positions(&mut slot, family, positions).await?;
        let known = slot.take().expect("checked just now");
        if known.table.version().is_none() {
            return Err(LakeError::Path(
                self.root.join(family.table_name()).to_string(),
                "cannot advance positions of a table that does not exist".into(),
            ));
        }
        let snapshot = known.table.snapshot().map_err(delta)?;
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: None,
        };
        let done = CommitBuilder::from(commit_properties(positions))
            .with_actions(Vec::new())
            .build(Some(snapshot), known.table.log_store(), operation)
            .await
            .map_err(delta)?;
        // The kept table catches up with this commit at the next one (a small read).
        *slot = Some(known);
        Ok(done.version() as i64)
    }

    /// Brings the kept table (loaded now if there is none) up to the latest version,
    /// with the positions of the sources it knows, and refuses a commit when the lake's
    /// positions are not what the writer started from: another writer (the new owner of
    /// a partition after a rebalance) got there first. On an error nothing is kept.
    async fn check_positions(
        &self,
        slot: &mut Option<Known>,
        family: Family,
        positions: &[Position],
    ) -> Result<(), LakeError> {
        let delta = |source| LakeError::Delta {
            table: family.table_name(),
            source,
        };
        let mut known = match slot.take() {
            Some(mut known) if known.table.version().is_some() => {
                known.table.update_incremental(None).await.map_err(delta)?;
                known
            }
            // Not loaded, or not created when it was: the log may have begun since.
            _ => Known {
                table: self.handle(family).await?,
                positions: HashMap::new(),
                version: None,
            },
        };
        let latest = known.table.version().map(|v| v as i64);
        if latest != known.version {
            let folded = match (known.version, latest) {
                (Some(from), Some(to)) if !known.positions.is_empty() => {
                    match self.root.as_local() {
                        Some(dir) => fold_positions(
                            &dir.join(family.table_name()),
                            from + 1..=to,
                            &mut known.positions,
                        ),
                        // On a store, positions are read through the snapshot below.
                        None => Err(()),
                    }
                }
                _ => Err(()),
            };
            if folded.is_err() {
                // Nothing to fold, or commits gone from the log (cleaned up after a
                // checkpoint): positions are asked for anew.
                known.positions.clear();
            }
            known.version = latest;
        }
        if latest.is_some() {
            for p in positions {
                if !known.positions.contains_key(&p.app_id) {
                    let found = positions_of(&known.table, family, vec![p.app_id.clone()]).await?;
                    known.positions.extend(found);
                }
                let now = known.positions[&p.app_id];
                if now != p.expected {
                    return Err(LakeError::PositionMoved {
                        table: family.table_name(),
                        app_id: p.app_id.clone(),
                        expected: p.expected,
                        found: now,
                    });
                }
            }
        }
        *slot = Some(known);
        Ok(())
    }

    /// Creates every family's table that does not exist yet, empty, so that each has a
    /// log to hold positions from the first flush on. Safe to race: a table another
    /// writer created meanwhile is fine.
    ///
    /// The tables are created together: one after another, a new lake's ten first
    /// commits were 0.1 s of every fresh `ingest` start.
    pub async fn ensure_tables(&self) -> Result<(), LakeError> {
        let mut missing = Vec::new();
        for family in Family::ALL {
            if !self.root.has_commits(family.table_name()).await? {
                missing.push(*family);
            }
        }
        let missing = missing.into_iter().map(|family| async move {
            let schema = wenming_schemas::lake::table_schema(family);
            let empty = RecordBatch::new_empty(schema);
            let created = self.commit(family, vec![empty], &[]).await;
            match created {
                Err(e) if !self.root.has_commits(family.table_name()).await? => Err(e),
                _ => Ok(()),
            }
        });
        futures::future::try_join_all(missing).await?;
        Ok(())
    }

    /// The committed position of one source in every table.
    pub async fn positions(
        &self,
        app_id: &str,
    ) -> Result<std::collections::BTreeMap<Family, Option<i64>>, LakeError> {
        let mut all = self.positions_of_sources(&[app_id.to_owned()]).await?;
        Ok(all.remove(app_id).unwrap_or_default())
    }

    /// The committed positions of several sources in every table, each table loaded
    /// once (a consumer taking over many partitions asks for all of them at once).
    pub async fn positions_of_sources(
        &self,
        app_ids: &[String],
    ) -> Result<SourcePositions, LakeError> {
        let mut out: SourcePositions = app_ids
            .iter()
            .map(|a| (a.clone(), Default::default()))
            .collect();
        for family in Family::ALL {
            let found = match self.open(*family).await? {
                Some(table) => positions_of(&table, *family, app_ids.to_vec()).await?,
                None => HashMap::new(),
            };
            for (app_id, by_table) in out.iter_mut() {
                by_table.insert(*family, found.get(app_id).copied().flatten());
            }
        }
        Ok(out)
    }
}

/// Source → table → last committed position.
pub type SourcePositions =
    std::collections::BTreeMap<String, std::collections::BTreeMap<Family, Option<i64>>>;

/// Applies the `txn` actions of the commits `versions` (read from their JSON files)
/// to `positions`, the sources already known; the last one wins, as in a log replay.
/// `Err` if a commit's file is gone or unreadable.
fn fold_positions(
    table: &Path,
    versions: std::ops::RangeInclusive<i64>,
    positions: &mut HashMap<String, Option<i64>>,
) -> Result<(), ()> {
    #[derive(serde::Deserialize)]
    struct Action {
        txn: Option<Txn>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Txn {
        app_id: String,
        version: i64,
    }
    for v in versions {
        let path = table.join("_delta_log").join(format!("{v:020}.json"));
        let text = std::fs::read_to_string(path).map_err(|_| ())?;
        // Only `txn` lines are parsed; add actions carry the bulk of a commit.
        for line in text.lines().filter(|l| l.contains("\"txn\"")) {
            let action: Action = serde_json::from_str(line).map_err(|_| ())?;
            if let Some(txn) = action.txn
                && let Some(known) = positions.get_mut(&txn.app_id)
            {
                *known = Some(txn.version);
            }
        }
    }
    Ok(())
}

/// The `txn` actions that record `positions`. The snapshot the check above read is
/// the one the commit is built on, so a writer that commits the same app id in between
/// makes Delta's conflict checker refuse this commit.
fn commit_properties(positions: &[Position]) -> CommitProperties {
    let txns = positions
        .iter()
        .map(|p| Transaction::new(&p.app_id, p.version))
        .collect();
    CommitProperties::default().with_application_transactions(txns)
}

/// ZSTD level of the files a flush writes: level 1 compresses about twice as fast as 3
/// for files a few percent larger, and a flush is on the ingest's critical path.
const FLUSH_ZSTD_LEVEL: i32 = 1;
/// ZSTD level of compacted files, written in the background and read for years.
const COMPACT_ZSTD_LEVEL: i32 = 3;

/// Rows in a Parquet row group: the writer holds a whole row group's encoded pages
/// until it is complete, so the default of 1 Mi rows made a compaction into 128 MiB
/// files hold ≈ 1 M rows at a time. 256 Ki rows are still many pages per column for
/// a scan, and each row group is a unit readers can split work on or skip.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Parquet settings of every file wenming writes.
fn writer_properties(zstd_level: i32) -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).expect("a valid ZSTD level"),
        ))
        // Every event id is unique, and so is nearly every record id (one recording,
        // one points award), Kafka offset and event time (to the microsecond): a
        // dictionary of them is built, overflows and is thrown away on every page. Plain
        // offsets and times also compress better: the first 2 M events of the city
        // backlog took 64 MB instead of 73 (docs/benchmarks.md, session 17).
        .set_column_dictionary_enabled(ColumnPath::from("event_id"), false)
        .set_column_dictionary_enabled(ColumnPath::from("record_id"), false)
        .set_column_dictionary_enabled(ColumnPath::from("kafka_offset"), false)
        .set_column_dictionary_enabled(ColumnPath::from("occurred_at"), false)
        .build()
}

impl Lake {
    /// Each table's latest version, read from the names of its log files (no log is
    /// parsed): cheap enough to ask whether anything was committed since a moment.
    /// `None` for a table without commits, or whose log cannot be listed.
    pub async fn versions(&self) -> std::collections::BTreeMap<Family, Option<i64>> {
        let mut out = std::collections::BTreeMap::new();
        for family in Family::ALL {
            let latest = self
                .root
                .commit_versions(family.table_name())
                .await
                .ok()
                .and_then(|v| v.into_iter().max());
            out.insert(*family, latest);
        }
        out
    }
}

async fn positions_of(
    table: &DeltaTable,
    family: Family,
    app_ids: Vec<String>,
) -> Result<HashMap<String, Option<i64>>, LakeError> {
    let state = table.snapshot().map_err(|source| LakeError::Delta {
        table: family.table_name(),
        source,
    })?;
    let mut out = HashMap::new();
    for app_id in app_ids {
        let v = state
            .transaction_version(table.log_store().as_ref(), &app_id)
            .await
            .map_err(|source| LakeError::Delta {
                table: family.table_name(),
                source,
            })?;
        out.insert(app_id, v);
    }
    Ok(out)
}

impl From<LocationError> for LakeError {
    fn from(e: LocationError) -> LakeError {
        LakeError::Location(Box::new(e))
    }
}
