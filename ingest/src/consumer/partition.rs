//! Where this consumer stands in each partition, and which table versions are its own:
//! the positions read from the lake, and what tells a rebalance there is nothing new to
//! learn from it.

use super::*;

/// How one partition stands for this consumer.
#[derive(Debug, Default)]
pub(super) struct Partition {
    /// Per table, the last offset whose events the table holds.
    pub(super) committed: BTreeMap<Family, Option<i64>>,
    /// The first offset this consumer wants (anything earlier is a stale prefetch).
    pub(super) start: i64,
    /// The last offset read into the buffer.
    pub(super) upto: Option<i64>,
    /// Reached the end of the partition and nothing newer arrived since.
    pub(super) at_end: bool,
}

impl Partition {
    /// Where to read from: the smallest position over all tables, plus one.
    pub(super) fn resume_offset(&self) -> Option<i64> {
        let mut min = None::<i64>;
        for position in self.committed.values() {
            let next = position.map_or(0, |p| p + 1);
            min = Some(min.map_or(next, |m| m.min(next)));
        }
        min
    }

    /// The last offset whose rejected messages the dead-letter topic already holds: a
    /// flush acknowledges the dead letters before its first commit, so any table's
    /// position is past them.
    pub(super) fn dead_letters_upto(&self) -> Option<i64> {
        self.committed.values().flatten().copied().max()
    }
}

/// The tables' versions as this writer knows them: as they were when its dedup window
/// last learned the lake's ids, then moved on by its own commits. A table whose
/// versions since were all this writer's holds no id the window has not seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OwnVersions(pub(super) BTreeMap<Family, Option<i64>>);

impl OwnVersions {
    pub(super) fn new(versions: BTreeMap<Family, Option<i64>>) -> Self {
        OwnVersions(versions)
    }

    /// This writer committed `version` of a table. Unless it directly follows the
    /// version known, another commit came between (another writer's, or a compaction):
    /// the table is no longer known to hold only what the window saw.
    pub(super) fn committed(&mut self, family: Family, version: i64) {
        let follows = match self.0.get(&family) {
            Some(Some(before)) => version == before + 1,
            Some(None) => version == 0,
            None => false,
        };
        if follows {
            self.0.insert(family, Some(version));
        } else {
            self.0.remove(&family);
        }
    }

    /// Whether the lake's `versions` are all accounted for by this writer's commits.
    pub(super) fn only_ours(&self, versions: &BTreeMap<Family, Option<i64>>) -> bool {
        versions.iter().all(|(f, v)| self.0.get(f) == Some(v))
    }
}
