//! Caps on computations running at once: in all, and per token, so that one token
//! asking many wide questions cannot take every slot from the others. A question waits
//! for a slot at most `wait` (zero: refused at once when none is free), then gets 429.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

pub struct Slots {
    /// What is computed ("KPI questions", "analyst queries"), for the refusal.
    what: &'static str,
    all: Arc<Semaphore>,
    total: usize,
    per_token: usize,
    /// One semaphore per token name, made on first use (tokens are configured, so this
    /// holds at most one entry per configured token).
    tokens: Mutex<HashMap<String, Arc<Semaphore>>>,
    wait: Duration,
}

/// Held while a computation runs; dropping it frees both slots.
pub struct Slot {
    _token: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

impl Slots {
    pub fn new(what: &'static str, total: usize, per_token: usize, wait: Duration) -> Slots {
        let total = total.max(1);
        Slots {
            what,
            all: Arc::new(Semaphore::new(total)),
            total,
            per_token: per_token.clamp(1, total),
            tokens: Mutex::new(HashMap::new()),
            wait,
        }
    }

    /// Free slots in all (for /metrics).
    pub fn free(&self) -> usize {
        self.all.available_permits()
    }

    /// A slot for `token`: first the token's own, then one of all (in that order, so a
    /// token waiting for its own holds none of the shared ones).
    pub async fn acquire(&self, token: &str) -> Result<Slot, ApiError> {
        let mine = self
            .tokens
            .lock()
            .expect("not poisoned")
            .entry(token.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_token)))
            .clone();
        let both = async {
            let token = mine.acquire_owned().await.expect("never closed");
            let all = self
                .all
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            Slot {
                _token: token,
                _all: all,
            }
        };
        tokio::time::timeout(self.wait, both).await.map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many {} are being computed ({} at once in all, {} per token); try again when one has finished",
                    self.what, self.total, self.per_token
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_holds_at_most_its_share_and_others_still_get_theirs() {
        let slots = Slots::new("questions", 3, 2, Duration::ZERO);
        let a1 = slots.acquire("a").await.unwrap();
        let _a2 = slots.acquire("a").await.unwrap();
        let refused = slots
            .acquire("a")
            .await
            .err()
            .expect("a third for a is refused");
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.detail.contains("2 per token"), "{}", refused.detail);
        let _b = slots.acquire("b").await.unwrap();
        assert_eq!(slots.free(), 0);
        assert!(slots.acquire("c").await.is_err(), "all three are taken");
        drop(a1);
        assert!(slots.acquire("c").await.is_ok(), "a freed one is taken");
    }
}
