//! The run log: each ingest or import run keeps its counts in
//! `<lake>/_wenming/runs/<run>.json` (shape: `wenming_schemas::runs::RunRecord`),
//! rewritten after every commit, so that the data-quality report can say how many
//! duplicates were skipped and what was rejected, which the tables cannot (a rejected
//! event never reaches them). Written atomically (temp file + rename); a failure to
//! write it is logged, never a reason to stop ingesting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wenming_schemas::runs::{RUNS_DIR, RunRecord};

pub struct RunLog {
    path: PathBuf,
    pub record: RunRecord,
    warned: bool,
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
    pub fn start(lake_root: &Path, kind: &str, source: &str) -> RunLog {
        let run = uuid::Uuid::now_v7().to_string();
        let now = chrono::Utc::now().to_rfc3339();
        RunLog {
            path: lake_root.join(RUNS_DIR).join(format!("{run}.json")),
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
        if let Err(e) = self.write() {
            if !self.warned {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write the run log (counts for the quality report)");
            }
            self.warned = true;
        }
    }

    fn write(&self) -> std::io::Result<()> {
        let dir = self.path.parent().expect("has a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.record)?)?;
        std::fs::rename(&tmp, &self.path)
    }
}
