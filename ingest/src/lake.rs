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
use std::path::{Path, PathBuf};
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

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake path {0} is not usable: {1}")]
    Path(PathBuf, String),
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

/// The lake: a directory of Delta tables, one per family.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
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
    pub fn new(root: impl AsRef<Path>) -> Self {
        Lake {
            root: root.as_ref().to_path_buf(),
            known: Arc::new(
                Family::ALL
                    .iter()
                    .map(|f| (*f, tokio::sync::Mutex::new(None)))
                    .collect(),
            ),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn table_path(&self, family: Family) -> PathBuf {
        self.root.join(family.table_name())
    }

    /// The family's table at its latest version, `None` if nothing was written yet.
    pub async fn open(&self, family: Family) -> Result<Option<DeltaTable>, LakeError> {
        let table = self.handle(family).await?;
        Ok(table.version().is_some().then_some(table))
    }

    /// A handle on the table location, loaded if the table exists.
    async fn handle(&self, family: Family) -> Result<DeltaTable, LakeError> {
        let path = self.table_path(family);
        std::fs::create_dir_all(&path).map_err(|e| LakeError::Path(path.clone(), e.to_string()))?;
        let delta = |source| LakeError::Delta {
            table: family.table_name(),
            source,
        };
        let url = deltalake::ensure_table_uri(path.to_string_lossy()).map_err(delta)?;
        if !has_commits(&path) {
            // Not created yet (or a first commit died before its log entry): an unloaded
            // handle, which the first write creates. Loading an empty log would only make
            // the kernel log an error.
            return deltalake::DeltaTableBuilder::from_url(url)
                .and_then(|b| b.build())
                .map_err(delta);
        }
        DeltaTable::try_from_url(url).await.map_err(delta)
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
                self.table_path(family),
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
                (Some(from), Some(to)) if !known.positions.is_empty() => fold_positions(
                    &self.table_path(family),
                    from + 1..=to,
                    &mut known.positions,
                ),
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
        let missing = Family::ALL
            .iter()
            .filter(|family| !has_commits(&self.table_path(**family)))
            .map(|family| async move {
                let schema = wenming_schemas::lake::table_schema(*family);
                let empty = RecordBatch::new_empty(schema);
                let created = self.commit(*family, vec![empty], &[]).await;
                match created {
                    Err(e) if !has_commits(&self.table_path(*family)) => Err(e),
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

/// What `wenming lake info` shows of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub table: &'static str,
    /// `None`: nothing written yet.
    pub version: Option<i64>,
    pub files: usize,
    pub bytes: i64,
    /// From the files' statistics (written by every commit of wenming).
    pub rows: u64,
    /// Committed position of every source, by app id.
    pub positions: Vec<(String, i64)>,
}

impl Lake {
    /// Tables, versions, files, rows and committed positions, one entry per family.
    pub async fn info(&self) -> Result<Vec<TableInfo>, LakeError> {
        let mut out = Vec::new();
        for family in Family::ALL {
            let table_name = family.table_name();
            let mut info = TableInfo {
                table: table_name,
                version: None,
                files: 0,
                bytes: 0,
                rows: 0,
                positions: Vec::new(),
            };
            if !has_commits(&self.table_path(*family)) {
                out.push(info);
                continue;
            }
            let Some(table) = self.open(*family).await? else {
                out.push(info);
                continue;
            };
            let state = table.snapshot().map_err(|source| LakeError::Delta {
                table: table_name,
                source,
            })?;
            info.version = table.version().map(|v| v as i64);
            for file in state.log_data().iter() {
                info.files += 1;
                info.bytes += file.size();
                info.rows += file.num_records().unwrap_or(0) as u64;
            }
            let app_ids = self.app_ids(*family)?;
            let found = positions_of(&table, *family, app_ids.clone()).await?;
            info.positions = app_ids
                .iter()
                .filter_map(|id| {
                    found
                        .get(id.as_str())
                        .copied()
                        .flatten()
                        .map(|v| (id.clone(), v))
                })
                .collect();
            out.push(info);
        }
        Ok(out)
    }

    /// The source ids named by `txn` actions in the table's JSON commits. Delta keeps
    /// commits for 30 days by default; positions themselves are read through the
    /// snapshot, so checkpoints do not hide them.
    fn app_ids(&self, family: Family) -> Result<Vec<String>, LakeError> {
        let log = self.table_path(family).join("_delta_log");
        let err = |e: std::io::Error| LakeError::Path(log.clone(), e.to_string());
        let mut ids = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&log).map_err(err)? {
            let path = entry.map_err(err)?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).map_err(err)?;
                for line in text.lines() {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                        && let Some(id) = v["txn"]["appId"].as_str()
                    {
                        ids.insert(id.to_owned());
                    }
                }
            }
        }
        Ok(ids.into_iter().collect())
    }
}

/// Below this, vacuum may delete files that a reader or a time-travel query still uses;
/// Delta's own default (`delta.deletedFileRetentionDuration`) is the same 7 days.
pub const MIN_VACUUM_RETENTION: chrono::Duration = chrono::Duration::days(7);

/// What compaction did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub table: &'static str,
    pub files_removed: u64,
    pub files_added: u64,
}

/// What vacuum did (or, on a dry run, would do) to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacuumed {
    pub table: &'static str,
    pub files: Vec<String>,
}

impl Lake {
    /// Rewrites each table's small files into files of about `target_bytes` (OPTIMIZE).
    /// The removed files stay on disk until vacuum; positions (`txn`) are untouched.
    pub async fn optimize(&self, target_bytes: u64) -> Result<Vec<Compaction>, LakeError> {
        let mut out = Vec::new();
        for family in Family::ALL {
            if let Some(done) = self.optimize_table(*family, target_bytes).await? {
                out.push(done);
            }
        }
        Ok(out)
    }

    /// [`Lake::optimize`] for one table; `None` if the table does not exist.
    pub async fn optimize_table(
        &self,
        family: Family,
        target_bytes: u64,
    ) -> Result<Option<Compaction>, LakeError> {
        let target = std::num::NonZeroU64::new(target_bytes.max(1)).expect("at least 1");
        let Some(table) = self.open(family).await? else {
            return Ok(None);
        };
        // One bin at a time: compaction runs beside ingest, and each bin of up to
        // `target_bytes` of files is read and rewritten in memory.
        let (_, metrics) = table
            .optimize()
            .with_target_size(target)
            .with_max_concurrent_tasks(1)
            .with_writer_properties(writer_properties(COMPACT_ZSTD_LEVEL))
            .await
            .map_err(|source| LakeError::Delta {
                table: family.table_name(),
                source,
            })?;
        Ok(Some(Compaction {
            table: family.table_name(),
            files_removed: metrics.num_files_removed,
            files_added: metrics.num_files_added,
        }))
    }

    /// Deletes files no longer in any table version younger than `retention`.
    /// A retention under [`MIN_VACUUM_RETENTION`] is refused unless `force`.
    pub async fn vacuum(
        &self,
        retention: chrono::Duration,
        dry_run: bool,
        force: bool,
    ) -> Result<Vec<Vacuumed>, LakeError> {
        let mut out = Vec::new();
        for family in Family::ALL {
            let Some(table) = self.open(*family).await? else {
                continue;
            };
            let (_, metrics) = table
                .vacuum()
                .with_retention_period(retention)
                .with_enforce_retention_duration(!force)
                .with_dry_run(dry_run)
                .await
                .map_err(|source| LakeError::Delta {
                    table: family.table_name(),
                    source,
                })?;
            out.push(Vacuumed {
                table: family.table_name(),
                files: metrics.files_deleted,
            });
        }
        Ok(out)
    }
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
    pub fn versions(&self) -> std::collections::BTreeMap<Family, Option<i64>> {
        Family::ALL
            .iter()
            .map(|family| {
                let log = self.table_path(*family).join("_delta_log");
                let latest = std::fs::read_dir(log).ok().and_then(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| {
                            let name = e.file_name();
                            let name = name.to_str()?;
                            name.strip_suffix(".json")?.parse::<i64>().ok()
                        })
                        .max()
                });
                (*family, latest)
            })
            .collect()
    }
}

/// Whether a table directory has a Delta log with at least one commit or checkpoint.
fn has_commits(table: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(table.join("_delta_log")) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.ends_with(".json") || name.ends_with(".checkpoint.parquet")
    })
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
