//! One part of the rollups: built once per set of table versions by whoever asks first,
//! awaited by the others, with the newest kept to update the next version from.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;

use datafusion::error::DataFusionError;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::error::AnalyticsError;

type Building<T> = Shared<BoxFuture<'static, Result<Arc<T>, Arc<AnalyticsError>>>>;

/// One part: built once per key by whoever asks first, awaited by the others.
pub(crate) struct Slot<T> {
    current: Mutex<Option<(String, Building<T>)>>,
    /// The part built last and its key: the next version may be updated from it, and
    /// questions may be answered from it while the next is built.
    latest: Mutex<Option<(String, Arc<T>)>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            current: Mutex::new(None),
            latest: Mutex::new(None),
        }
    }
}

impl<T: Send + Sync + 'static> Slot<T> {
    pub fn latest(&self) -> Option<Arc<T>> {
        self.latest
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map(|(_, part)| part.clone())
    }

    /// The part at `key`, if it is built (nothing is started).
    pub fn built(&self, key: &str) -> Option<Arc<T>> {
        if let Some((k, b)) = &*self.current.lock().expect("not poisoned")
            && k == key
            && let Some(Ok(part)) = b.peek()
        {
            return Some(part.clone());
        }
        match &*self.latest.lock().expect("not poisoned") {
            Some((k, part)) if k == key => Some(part.clone()),
            _ => None,
        }
    }

    /// Whether the part at `key` is being built now.
    pub fn building(&self, key: &str) -> bool {
        self.current
            .lock()
            .expect("not poisoned")
            .as_ref()
            .is_some_and(|(k, b)| k == key && b.peek().is_none())
    }

    /// Built once, and not being built now.
    pub fn idle_and_built(&self) -> bool {
        let building = self
            .current
            .lock()
            .expect("not poisoned")
            .as_ref()
            .is_some_and(|(_, b)| b.peek().is_none());
        !building && self.latest().is_some()
    }

    pub async fn get<F, Fut>(&self, key: String, build: F) -> Result<Arc<T>, AnalyticsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, AnalyticsError>> + Send + 'static,
    {
        let key_of_built = key.clone();
        let building = {
            let mut current = self.current.lock().expect("not poisoned");
            match &*current {
                Some((k, b)) if *k == key => b.clone(),
                _ => {
                    let b: Building<T> = build()
                        .map(|r| r.map(Arc::new).map_err(Arc::new))
                        .boxed()
                        .shared();
                    *current = Some((key, b.clone()));
                    b
                }
            }
        };
        match building.clone().await {
            Ok(part) => {
                *self.latest.lock().expect("not poisoned") = Some((key_of_built, part.clone()));
                Ok(part)
            }
            Err(e) => {
                // Forget a failure, so that the next question tries again.
                let mut current = self.current.lock().expect("not poisoned");
                if current.as_ref().is_some_and(|(_, b)| b.ptr_eq(&building)) {
                    *current = None;
                }
                Err(AnalyticsError::Query(DataFusionError::Execution(
                    e.to_string(),
                )))
            }
        }
    }
}
