//! What ingest and import counted (duplicates skipped, events rejected and why), read
//! from the run records they keep beside the lake (`wenming_schemas::runs`). These
//! counts are not in the tables (a rejected event never reaches them), so the quality
//! report takes them from here.

use wenming_schemas::runs::{RUNS_DIR, RunRecord};

use crate::lakehouse::Snapshot;
use crate::quality::IngestCounts;

/// The sum over every run recorded for the lake. Unreadable records are skipped with a
/// warning: they are a report's footnote, not a reason to fail it.
pub fn ingest_counts(snapshot: &Snapshot) -> IngestCounts {
    let mut counts = IngestCounts::default();
    let Ok(dir) = std::fs::read_dir(snapshot.root().join(RUNS_DIR)) else {
        return counts;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let record: RunRecord = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable run record");
                continue;
            }
        };
        counts.stored += record.stored as i64;
        counts.duplicates += record.duplicates as i64;
        counts.rejected += record.rejected as i64;
        for (reason, n) in record.rejected_by_reason {
            *counts.rejected_by_reason.entry(reason).or_default() += n as i64;
        }
    }
    counts
}
