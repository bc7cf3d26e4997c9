//! Snapshots of the past that questions were asked about (`At::Snapshot`, `At::Instant`),
//! each with rollups and reference data of its own, built whole from its versions by the
//! same code that answers the current versions: an answer re-asked of its snapshot is
//! the identical answer. The few asked about last are kept; the current snapshot's
//! rollups never see them (their chain of updates follows the newest versions only).

use std::sync::{Arc, Mutex};

use chrono_tz::Tz;

use crate::lakehouse::Snapshot;
use crate::lineage::SnapshotId;
use crate::reference::Reference;
use crate::rollup::{Rollups, Slot};

/// How many past snapshots are kept (a restatement compares two).
const KEPT: usize = 2;

pub(crate) struct Past {
    pub snapshot: Arc<Snapshot>,
    pub rollups: Arc<Rollups>,
    pub references: Slot<Reference>,
}

impl Past {
    pub fn new(snapshot: Arc<Snapshot>, tz: Tz) -> Past {
        Past {
            snapshot,
            rollups: Arc::new(Rollups::new(tz, None)),
            references: Slot::default(),
        }
    }
}

/// The past snapshots asked about last, newest use first.
#[derive(Default)]
pub(crate) struct Pasts {
    kept: Mutex<Vec<Arc<Past>>>,
}

impl Pasts {
    pub fn get(&self, id: &SnapshotId) -> Option<Arc<Past>> {
        let mut kept = self.kept.lock().expect("not poisoned");
        let i = kept.iter().position(|p| &p.snapshot.id == id)?;
        let past = kept.remove(i);
        kept.insert(0, past.clone());
        Some(past)
    }

    pub fn forget(&self, id: &SnapshotId) {
        self.kept
            .lock()
            .expect("not poisoned")
            .retain(|p| &p.snapshot.id != id);
    }

    pub fn keep(&self, past: Arc<Past>) {
        let mut kept = self.kept.lock().expect("not poisoned");
        kept.retain(|p| p.snapshot.id != past.snapshot.id);
        kept.insert(0, past);
        kept.truncate(KEPT);
    }
}
