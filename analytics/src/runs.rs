//! What ingest and import counted (duplicates skipped, events rejected and why), read
//! from the run records they keep beside the lake (`wenming_schemas::runs`). These
//! counts are not in the tables (a rejected event never reaches them), so the quality
//! report takes them from here.

use wenming_schemas::runs::{RUNS_DIR, RunRecord};

use crate::lakehouse::Snapshot;
use crate::quality::IngestCounts;

/// The sum over every run recorded for the lake. Unreadable records are skipped with a
/// warning: they are a report's footnote, not a reason to fail it.
pub async fn ingest_counts(snapshot: &Snapshot) -> IngestCounts {
    let mut counts = IngestCounts::default();
    let files = match snapshot.root().read_all(RUNS_DIR, ".json").await {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the run records");
            return counts;
        }
    };
    for (path, bytes) in files {
        let record: RunRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%path, error = %e, "skipping an unreadable run record");
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
