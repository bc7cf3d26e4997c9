//! The lake as it was: a snapshot at the versions a snapshot id names, or at those
//! current at an instant (Delta time travel). A past snapshot is built like the current
//! one, from its own versions of the tables; its views are computed whole when first
//! used (there is no earlier version to update from).
//!
//! A version can be answered only while its files exist: `wenming lake vacuum` deletes
//! files removed longer ago than its retention, and Delta drops old log entries. Then the
//! answer is refused, naming the oldest instant that can still be asked about.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use object_store::ObjectStoreExt;
use wenming_schemas::Family;

use crate::lakehouse::{Lakehouse, LakehouseError, Snapshot};
use crate::lineage::SnapshotId;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The snapshot names a version the lake never had (another lake's id, or a typo).
    #[error(
        "the snapshot names version {version} of {table}, which this lake does not have \
         (its newest is {newest}): use a snapshot from an answer of this server"
    )]
    NoSuchVersion {
        table: &'static str,
        version: u64,
        newest: String,
    },
    #[error("`as_of` {0} is in the future: the data current then is not known yet")]
    Future(DateTime<Utc>),
    /// The data of those versions is no longer in the lake.
    #[error(
        "{what} can no longer be answered: {table}'s files of that time were vacuumed or its \
         log entries expired; {oldest}"
    )]
    Gone {
        what: String,
        table: &'static str,
        oldest: String,
    },
    #[error(transparent)]
    Lake(#[from] LakehouseError),
}

impl Lakehouse {
    /// The snapshot at the versions `id` names.
    pub async fn at(&self, id: &SnapshotId) -> Result<Snapshot, HistoryError> {
        let current = self.snapshot();
        let mut deltas = BTreeMap::new();
        for (table, version) in id.versions() {
            let Some(version) = version else {
                continue;
            };
            let newest = current.versions.get(table).copied().flatten();
            if newest.is_none_or(|n| version > n) {
                return Err(HistoryError::NoSuchVersion {
                    table,
                    version,
                    newest: newest
                        .map_or("none: nothing was written to it".into(), |n| n.to_string()),
                });
            }
            let loaded = match self.table_at(table, version).await {
                Some(loaded) => loaded,
                None => {
                    return Err(self
                        .gone(format!("snapshot {id}"), table)
                        .await
                        .unwrap_or_else(HistoryError::Lake));
                }
            };
            deltas.insert(table, loaded);
        }
        Ok(self.build_snapshot(&deltas, None).await?)
    }

    /// The snapshot id of the versions current at `t`: for each table, the newest
    /// version committed at or before `t` (none if it was first written after `t`).
    pub async fn id_at(&self, t: DateTime<Utc>) -> Result<SnapshotId, HistoryError> {
        if t > Utc::now() {
            return Err(HistoryError::Future(t));
        }
        let current = self.snapshot();
        let mut versions = BTreeMap::new();
        for family in Family::ALL {
            let table = family.table_name();
            let version = match (current.deltas.get(table), current.versions.get(table)) {
                (Some(delta), Some(Some(newest))) => {
                    self.version_at(table, delta, *newest, t).await?
                }
                _ => None,
            };
            versions.insert(table, version);
        }
        Ok(SnapshotId::of(&versions))
    }

    /// The newest version of `table` committed at or before `t` (commit times grow
    /// with versions, as Delta's own time travel assumes).
    async fn version_at(
        &self,
        table: &'static str,
        delta: &DeltaTable,
        newest: u64,
        t: DateTime<Utc>,
    ) -> Result<Option<u64>, HistoryError> {
        let earliest = self.earliest_logged(delta, newest).await;
        let time = |v| self.commit_time(table, delta, v);
        if time(earliest).await? > t {
            if earliest == 0 {
                return Ok(None);
            }
            return Err(self
                .gone(format!("as_of {}", t.to_rfc3339()), table)
                .await
                .unwrap_or_else(HistoryError::Lake));
        }
        let (mut lo, mut hi) = (earliest, newest);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if time(mid).await? <= t {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(Some(lo))
    }

    /// The oldest version of `table` whose commit entry is still in the log.
    async fn earliest_logged(&self, delta: &DeltaTable, newest: u64) -> u64 {
        let store = delta.log_store();
        let exists = |v: u64| {
            let store = store.clone();
            async move { matches!(store.read_commit_entry(v).await, Ok(Some(_))) }
        };
        if exists(0).await {
            return 0;
        }
        // Entries are removed from the oldest on: find the first one left.
        let (mut lo, mut hi) = (0, newest);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if exists(mid).await {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// Whether every file of `snapshot` still exists (a past snapshot kept in memory is
    /// not answered from once vacuum deleted its files: a question about that time gets
    /// the same refusal from every server, whatever it happens to hold).
    pub async fn intact(&self, snapshot: &Snapshot) -> bool {
        for table in snapshot.deltas.values() {
            if !files_exist(table).await {
                return false;
            }
        }
        true
    }

    /// `table` loaded at `version`, if its log entry and every file of it still exist.
    async fn table_at(&self, table: &'static str, version: u64) -> Option<DeltaTable> {
        let loaded = self
            .root()
            .table_builder(table)
            .ok()?
            .with_version(version as _)
            .load()
            .await
            .ok()?;
        files_exist(&loaded).await.then_some(loaded)
    }

    /// The refusal for a question about data no longer in the lake: names the oldest
    /// instant every table can still be answered at (each table's oldest version whose
    /// files all exist; which versions are gone only grows from the oldest on).
    async fn gone(
        &self,
        what: String,
        table: &'static str,
    ) -> Result<HistoryError, LakehouseError> {
        let current = self.snapshot();
        let mut oldest: Option<DateTime<Utc>> = None;
        for (name, delta) in &current.deltas {
            let Some(Some(newest)) = current.versions.get(name).copied() else {
                continue;
            };
            let earliest = self.earliest_logged(delta, newest).await;
            let (mut lo, mut hi) = (earliest, newest);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.table_at(name, mid).await.is_some() {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let t = self.commit_time(name, delta, lo).await?;
            oldest = Some(oldest.map_or(t, |o| o.max(t)));
        }
        Ok(HistoryError::Gone {
            what,
            table,
            oldest: match oldest {
                Some(t) => format!(
                    "the oldest instant still answerable is {}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ),
                None => "nothing older than the newest version can be answered".into(),
            },
        })
    }
}

/// Whether every file of the loaded version of `table` is in its store.
async fn files_exist(table: &DeltaTable) -> bool {
    let Ok(state) = table.snapshot() else {
        return false;
    };
    let store = table.object_store();
    let files: Vec<_> = state
        .log_data()
        .into_iter()
        .map(|add| add.object_store_path())
        .collect();
    for path in files {
        if store.head(&path).await.is_err() {
            return false;
        }
    }
    true
}
