//! Where a number comes from: the table versions an answer was computed from, each with
//! its commit time, named at once by one opaque string (the snapshot id), plus the KPI
//! catalog and time zone that turned them into numbers. The snapshot id of an answer
//! asks the same question again of the same versions (`At::Snapshot`), which gives the
//! identical answer: events are immutable and a Delta version never changes.
//!
//! Versions and commit times are metadata of the lake, not rows: the same for every
//! scope, so lineage reveals nothing of another district.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wenming_schemas::Family;

/// The KPI definitions answers are computed by (`kpis.md`, version 1).
pub const KPI_CATALOG: &str = "v1";

/// Format tag of a snapshot id: a later encoding gets another.
const TAG: &str = "s1";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LineageError {
    #[error(
        "`snapshot` must be a snapshot id from an answer's lineage (like {example}), not {given:?}"
    )]
    BadSnapshot { given: String, example: String },
    #[error(
        "`as_of` must be an instant with its offset (like 2024-04-01T09:00:00+08:00), not {0:?}"
    )]
    BadInstant(String),
}

/// The version of every raw table, in `Family::ALL` order; `None` for a table nothing
/// was written to yet at that time (read as empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotId(Vec<Option<u64>>);

impl SnapshotId {
    pub fn of(versions: &BTreeMap<&'static str, Option<u64>>) -> SnapshotId {
        SnapshotId(
            Family::ALL
                .iter()
                .map(|f| versions.get(f.table_name()).copied().flatten())
                .collect(),
        )
    }

    /// The version of each raw table this id names.
    pub fn versions(&self) -> BTreeMap<&'static str, Option<u64>> {
        Family::ALL
            .iter()
            .zip(&self.0)
            .map(|(f, v)| (f.table_name(), *v))
            .collect()
    }

    pub fn parse(s: &str) -> Result<SnapshotId, LineageError> {
        let bad = || LineageError::BadSnapshot {
            given: s.chars().take(200).collect(),
            example: SnapshotId(vec![Some(12); Family::ALL.len()]).to_string(),
        };
        let mut parts = s.trim().split('.');
        if parts.next() != Some(TAG) {
            return Err(bad());
        }
        let versions = parts
            .map(|p| match p {
                "_" => Ok(None),
                p if !p.is_empty() && p.len() <= 19 && p.bytes().all(|b| b.is_ascii_digit()) => {
                    p.parse::<u64>().map(Some).map_err(|_| bad())
                }
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if versions.len() != Family::ALL.len() {
            return Err(bad());
        }
        Ok(SnapshotId(versions))
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TAG)?;
        for v in &self.0 {
            match v {
                Some(v) => write!(f, ".{v}")?,
                None => f.write_str("._")?,
            }
        }
        Ok(())
    }
}

/// What the answer is computed from: the newest versions, the versions a snapshot id
/// names, or those current at an instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum At {
    #[default]
    Latest,
    Snapshot(SnapshotId),
    Instant(DateTime<Utc>),
}

impl At {
    /// From the `snapshot` and `as_of` parameters of a question (at most one).
    pub fn from_params(snapshot: Option<&str>, as_of: Option<&str>) -> Result<At, String> {
        let (snapshot, as_of) = (
            snapshot.filter(|s| !s.is_empty()),
            as_of.filter(|s| !s.is_empty()),
        );
        match (snapshot, as_of) {
            (Some(_), Some(_)) => Err("give `snapshot` or `as_of`, not both".into()),
            (Some(s), None) => Ok(At::Snapshot(
                SnapshotId::parse(s).map_err(|e| e.to_string())?,
            )),
            (None, Some(t)) => Ok(At::Instant(parse_instant(t).map_err(|e| e.to_string())?)),
            (None, None) => Ok(At::Latest),
        }
    }
}

/// An RFC 3339 instant with its offset.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, LineageError> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| LineageError::BadInstant(s.chars().take(200).collect()))
}

/// One table's version in an answer's lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableVersion {
    pub version: u64,
    pub committed_at: DateTime<Utc>,
}

/// Where an answer comes from. Tables nothing was written to yet are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    pub snapshot: String,
    pub tables: BTreeMap<String, TableVersion>,
    pub kpi_catalog: String,
    pub tz: String,
}

impl Lineage {
    pub fn new(commits: &BTreeMap<&'static str, TableVersion>, id: &SnapshotId, tz: &str) -> Self {
        Lineage {
            snapshot: id.to_string(),
            tables: commits
                .iter()
                .map(|(t, v)| (t.to_string(), v.clone()))
                .collect(),
            kpi_catalog: KPI_CATALOG.into(),
            tz: tz.into(),
        }
    }
}

/// The commit time a Delta commit entry records (`commitInfo.timestamp`, or the
/// in-commit timestamp), in milliseconds since the epoch: written by the committer, so
/// it is the same wherever and whenever the log is read (a file's modification time is
/// not: a copy of the lake would change it).
pub fn commit_millis(entry: &[u8]) -> Option<i64> {
    for line in entry.split(|b| *b == b'\n') {
        let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(info) = action.get("commitInfo") {
            let t = info
                .get("inCommitTimestamp")
                .or_else(|| info.get("timestamp"))
                .and_then(|t| t.as_i64());
            if t.is_some() {
                return t;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_id_reads_back_as_the_versions_it_names() {
        let mut versions = BTreeMap::new();
        for (i, f) in Family::ALL.iter().enumerate() {
            versions.insert(f.table_name(), (i % 3 != 0).then_some(i as u64 * 7));
        }
        let id = SnapshotId::of(&versions);
        let text = id.to_string();
        assert!(text.starts_with("s1."), "{text}");
        assert_eq!(SnapshotId::parse(&text).unwrap(), id);
        assert_eq!(SnapshotId::parse(&text).unwrap().versions(), versions);
    }

    #[test]
    fn a_bad_snapshot_id_is_refused_naming_what_one_looks_like() {
        let n = Family::ALL.len();
        let fine = format!("s1{}", ".3".repeat(n));
        assert!(SnapshotId::parse(&fine).is_ok());
        for bad in [
            "",
            "s1",
            "s2.1.2",
            &format!("s1{}", ".3".repeat(n - 1)),
            &format!("s1{}", ".3".repeat(n + 1)),
            &format!("s1{}.-1", ".3".repeat(n - 1)),
            &format!("s1{}.99999999999999999999", ".3".repeat(n - 1)),
            &format!("s1{}.", ".3".repeat(n - 1)),
        ] {
            let e = SnapshotId::parse(bad).unwrap_err().to_string();
            assert!(e.contains("`snapshot` must be"), "{bad:?}: {e}");
        }
        assert!(At::from_params(Some(&fine), Some("2024-01-01T00:00:00Z")).is_err());
        assert!(matches!(
            At::from_params(None, Some("2024-04-01T09:00:00+08:00")),
            Ok(At::Instant(t)) if t.to_rfc3339() == "2024-04-01T01:00:00+00:00"
        ));
        let e = At::from_params(None, Some("2024-04-01")).unwrap_err();
        assert!(e.contains("`as_of`"), "{e}");
    }

    #[test]
    fn the_commit_time_is_the_one_the_committer_wrote() {
        let entry = br#"{"commitInfo":{"timestamp":1796582437926,"operation":"WRITE"}}
{"add":{"path":"a.parquet","modificationTime":1}}"#;
        assert_eq!(commit_millis(entry), Some(1796582437926));
        let ict = br#"{"commitInfo":{"timestamp":5,"inCommitTimestamp":7}}"#;
        assert_eq!(commit_millis(ict), Some(7));
        assert_eq!(commit_millis(b"{\"add\":{}}\nnot json"), None);
    }
}
