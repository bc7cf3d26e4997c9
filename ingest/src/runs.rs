//! The run log: each ingest or import run keeps its counts in
//! `<lake>/_wenming/runs/<run>.json` (shape: `wenming_schemas::runs::RunRecord`),
//! rewritten after every commit, so that the data-quality report can say how many
//! duplicates were skipped and what was rejected, which the tables cannot (a rejected
//! event never reaches them). Written atomically (temp file + rename on disk, one PUT
//! on an object store); a failure to write it is logged, never a reason to stop
//! ingesting.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use wenming_schemas::runs::{RUNS_DIR, RunRecord};

use crate::location::Location;

pub struct RunLog {
    target: Target,
    pub record: RunRecord,
    warned: bool,
}

enum Target {
    Dir(PathBuf),
    /// On an object store the record is PUT by a task on the runtime the log was
    /// started in, each write after the one before, so the last counts land last.
    Store {
        store: Arc<dyn ObjectStore>,
        path: StorePath,
        runtime: tokio::runtime::Handle,
        last: Option<tokio::task::JoinHandle<()>>,
    },
    /// Nowhere to write (the store could not be set up; said once).
    None,
}

/// The counts a run reports.
#[derive(Debug, Clone, Default)]
pub struct RunCounts {
    pub read: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
}

impl RunLog {
    /// A new run's log. On an object store, call it within a Tokio runtime (whose
    /// tasks will write it).
    pub fn start(lake: &Location, kind: &str, source: &str) -> RunLog {
        let run = uuid::Uuid::now_v7().to_string();
        let now = chrono::Utc::now().to_rfc3339();
        let file = format!("{run}.json");
        let target = match (lake.as_local(), tokio::runtime::Handle::try_current()) {
            (Some(dir), _) => Target::Dir(dir.join(RUNS_DIR).join(file)),
            (None, Ok(runtime)) => match lake.store() {
                Ok(store) => Target::Store {
                    store,
                    path: StorePath::from(format!("{RUNS_DIR}/{file}")),
                    runtime,
                    last: None,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the run log (counts for the quality report)");
                    Target::None
                }
            },
            (None, Err(_)) => Target::None,
        };
        RunLog {
            target,
            record: RunRecord {
                run,
                kind: kind.into(),
                source: source.into(),
                started_at: now.clone(),
                updated_at: now,
                ..RunRecord::default()
            },
            warned: false,
        }
    }

    pub fn update(&mut self, counts: &RunCounts) {
        let r = &mut self.record;
        r.updated_at = chrono::Utc::now().to_rfc3339();
        r.read = counts.read;
        r.stored = counts.stored;
        r.duplicates = counts.duplicates;
        r.rejected = counts.rejected;
        r.rejected_by_reason = counts.rejected_by_reason.clone();
        let bytes = match serde_json::to_vec_pretty(&self.record) {
            Ok(b) => b,
            Err(e) => return tracing::warn!(error = %e, "cannot encode the run log"),
        };
        match &mut self.target {
            Target::Dir(path) => {
                if let Err(e) = write_file(path, &bytes) {
                    if !self.warned {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the run log (counts for the quality report)");
                    }
                    self.warned = true;
                }
            }
            Target::Store {
                store,
                path,
                runtime,
                last,
            } => {
                let (store, path, before) = (store.clone(), path.clone(), last.take());
                *last = Some(runtime.spawn(async move {
                    if let Some(before) = before {
                        let _ = before.await;
                    }
                    if let Err(e) = store.put_opts(&path, bytes.into(), Default::default()).await {
                        tracing::warn!(%path, error = %e, "cannot write the run log (counts for the quality report)");
                    }
                }));
            }
            Target::None => {}
        }
    }

    /// Waits for the record's last write (a run's end on an object store).
    pub async fn written(&mut self) {
        if let Target::Store { last, .. } = &mut self.target
            && let Some(last) = last.take()
        {
            let _ = last.await;
        }
    }
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
