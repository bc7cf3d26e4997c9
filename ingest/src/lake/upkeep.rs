//! Looking after the lake: what `wenming lake info` shows, compaction (`optimize`) and
//! `vacuum`.

use super::*;

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
            if !self.root.has_commits(table_name).await? {
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
            let app_ids = self.app_ids(*family).await?;
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
    async fn app_ids(&self, family: Family) -> Result<Vec<String>, LakeError> {
        let log = format!("{}/_delta_log", family.table_name());
        let mut ids = std::collections::BTreeSet::new();
        for (_, bytes) in self.root.read_all(&log, ".json").await? {
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                    && let Some(id) = v["txn"]["appId"].as_str()
                {
                    ids.insert(id.to_owned());
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
