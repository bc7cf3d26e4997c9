//! What one ingest or import run counted, as it records it beside the lake
//! (`<lake>/_wenming/runs/<run>.json`, rewritten after every commit) for the
//! data-quality report. Only the shape lives here; `ingest` writes and `analytics`
//! reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Directory of run records under the lake root.
pub const RUNS_DIR: &str = "_wenming/runs";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// A unique id of the run (a UUID v7: sorts by start).
    pub run: String,
    /// `ingest` or `import`.
    pub kind: String,
    /// The topic, or the file's source id.
    pub source: String,
    pub started_at: String,
    pub updated_at: String,
    pub read: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Rejections by reason code (`not_json`, `bad_value:minutes`, ...).
    pub rejected_by_reason: BTreeMap<String, u64>,
}
