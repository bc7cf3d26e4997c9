//! Which replica runs a scheduled export: the first to claim the fire time in the lake's
//! store. Several `serve` replicas on one lake each keep the schedule; each fire is
//! claimed by creating `_wenming/exports/<name>/<fire time>.json` with a conditional
//! create (S3's `If-None-Match: *`, a no-replace link on local disk), which exactly one
//! of them wins. The others record the fire as done and go on: a period is never
//! written twice by the schedule.
//!
//! A replica that dies mid-run keeps its claim: the fire is not taken over by another
//! (that could write the period twice); `wenming export NAME --period P` or
//! `POST /v1/exports/{name}/run` runs it again by hand, and the next fire is claimed
//! afresh.

use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use wenming_ingest::location::{Location, LocationError};

/// Where the claims are kept in the lake, beside the run records.
pub const CLAIMS_DIR: &str = "_wenming/exports";

pub struct Claims {
    store: Arc<dyn ObjectStore>,
    /// This process, as its claims name it.
    holder: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claim {
    holder: String,
    host: String,
    claimed_at: String,
}

impl Claims {
    pub fn new(lake: &Location) -> Result<Claims, LocationError> {
        Ok(Claims {
            store: lake.store()?,
            holder: uuid::Uuid::now_v7().to_string(),
        })
    }

    /// Whether this process runs `export`'s fire at `fire` (seconds since the epoch):
    /// it created the claim now, or did earlier (a run it retries after a failure).
    pub async fn claim(&self, export: &str, fire: i64) -> Result<bool, object_store::Error> {
        let path = StorePath::from(format!("{CLAIMS_DIR}/{export}/{fire}.json"));
        let claim = Claim {
            holder: self.holder.clone(),
            host: std::env::var("HOSTNAME").unwrap_or_default(),
            claimed_at: chrono::Utc::now().to_rfc3339(),
        };
        let body = serde_json::to_vec(&claim).expect("a claim serializes");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.store.put_opts(&path, body.into(), create).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {
                let held = self.store.get(&path).await?.bytes().await?;
                let held: Option<Claim> = serde_json::from_slice(&held).ok();
                Ok(held.is_some_and(|c| c.holder == self.holder))
            }
            Err(e) => Err(e),
        }
    }
}
