//! `Analytics`: the long-lived query layer the CLI and the API share. It owns the
//! lakehouse (refreshed when tables get new versions), the reference data of the
//! current snapshot, and a cache of KPI answers keyed by (question, scope, table
//! versions): a repeated question costs a hash lookup until new data lands.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono_tz::Tz;

use crate::error::AnalyticsError;
use crate::kpi::{self, KpiInfo, KpiRequest, KpiResponse};
use crate::lakehouse::{Lakehouse, Snapshot};
use crate::quality::{self, QualityReport};
use crate::reference::Reference;
use crate::scope::{Level, Scope};
use crate::sql::{self, SqlLimits, SqlResult};

/// Settings of the query layer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time zone of calendar periods.
    pub tz: Tz,
    /// Target line of volunteer_registration_rate.
    pub registration_target: f64,
    /// How often to look for new table versions (at most once per this interval).
    pub refresh_every: Duration,
    /// Events ingested more than this many hours after they occurred count as late.
    pub late_after_hours: i64,
    /// Answers kept in the cache.
    pub cache_entries: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tz: Tz::Asia__Shanghai,
            registration_target: 0.13,
            refresh_every: Duration::from_secs(1),
            late_after_hours: 72,
            cache_entries: 4096,
        }
    }
}

struct Current {
    snapshot: Arc<Snapshot>,
    reference: Option<Arc<Reference>>,
    checked: Instant,
}

pub struct Analytics {
    settings: Settings,
    /// Held while refreshing, so that one caller loads new versions and the others
    /// keep answering from the snapshot they have.
    house: tokio::sync::Mutex<Lakehouse>,
    current: RwLock<Current>,
    /// (version key, question, scope) → answer. Cleared whole when full: answers are
    /// cheap to recompute and stale ones never match a new version key anyway.
    cache: Mutex<HashMap<String, Arc<KpiResponse>>>,
}

impl Analytics {
    pub async fn open(
        lake: impl AsRef<Path>,
        settings: Settings,
    ) -> Result<Analytics, AnalyticsError> {
        let house = Lakehouse::open(lake).await?;
        let snapshot = house.snapshot();
        Ok(Analytics {
            settings,
            house: tokio::sync::Mutex::new(house),
            current: RwLock::new(Current {
                snapshot,
                reference: None,
                checked: Instant::now(),
            }),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn catalog(&self) -> Vec<KpiInfo> {
        kpi::catalog::catalog(self.settings.registration_target)
    }

    /// Look for new table versions now.
    pub async fn refresh(&self) -> Result<bool, AnalyticsError> {
        let mut house = self.house.lock().await;
        self.refresh_with(&mut house).await
    }

    /// Load new versions and publish the new snapshot (its reference data is loaded
    /// again on first use).
    async fn refresh_with(&self, house: &mut Lakehouse) -> Result<bool, AnalyticsError> {
        let changed = house.refresh().await?;
        let mut cur = self.current.write().expect("not poisoned");
        if changed {
            cur.snapshot = house.snapshot();
            cur.reference = None;
        }
        cur.checked = Instant::now();
        Ok(changed)
    }

    /// The snapshot to answer from, refreshed if the last look is older than
    /// `refresh_every`.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, AnalyticsError> {
        let stale = self.current.read().expect("not poisoned").checked.elapsed()
            >= self.settings.refresh_every;
        if stale && let Ok(mut house) = self.house.try_lock() {
            // Only one refresher; the others answer from what is loaded.
            self.refresh_with(&mut house).await?;
        }
        Ok(self.current.read().expect("not poisoned").snapshot.clone())
    }

    /// Reference data of `snapshot` (loaded once per snapshot).
    async fn reference(&self, snapshot: &Arc<Snapshot>) -> Result<Arc<Reference>, AnalyticsError> {
        {
            let cur = self.current.read().expect("not poisoned");
            if Arc::ptr_eq(&cur.snapshot, snapshot)
                && let Some(r) = &cur.reference
            {
                return Ok(r.clone());
            }
        }
        let loaded = Reference::load(&snapshot.context()).await?;
        let mut cur = self.current.write().expect("not poisoned");
        if Arc::ptr_eq(&cur.snapshot, snapshot) {
            cur.reference = Some(loaded.clone());
        }
        Ok(loaded)
    }

    /// Answer a KPI question for a caller limited to `scope`.
    pub async fn kpi(
        &self,
        req: &KpiRequest,
        scope: &Scope,
    ) -> Result<Arc<KpiResponse>, AnalyticsError> {
        req.validate()?;
        let snapshot = self.snapshot().await?;
        let key = format!("{}|{req:?}|{scope}", snapshot.version_key());
        if let Some(hit) = self.cache.lock().expect("not poisoned").get(&key) {
            return Ok(hit.clone());
        }
        let refd = self.reference(&snapshot).await?;
        let ctx = snapshot.context();
        let answer = Arc::new(kpi::answer(&ctx, &refd, req, scope, self.settings.tz).await?);
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= self.settings.cache_entries {
            cache.clear();
        }
        cache.insert(key, answer.clone());
        Ok(answer)
    }

    /// The data-quality report for a caller limited to `scope`.
    pub async fn quality(&self, scope: &Scope) -> Result<QualityReport, AnalyticsError> {
        let snapshot = self.snapshot().await?;
        let refd = self.reference(&snapshot).await?;
        let ctx = snapshot.context();
        let in_scope = self.register_scope_units(&ctx, &refd, scope)?;
        let counts = crate::runs::ingest_counts(&snapshot);
        quality::report(&ctx, &in_scope, self.settings.late_after_hours, counts).await
    }

    /// Register `scope_units(unit_id)` (the units of `scope`) and return the SQL
    /// condition on alias `e` that keeps a row of a unit in scope.
    fn register_scope_units(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        refd: &Reference,
        scope: &Scope,
    ) -> Result<String, AnalyticsError> {
        if *scope == Scope::City {
            return Ok("TRUE".into());
        }
        let area = kpi::frame::unit_areas(refd, Level::Unit, std::slice::from_ref(scope));
        kpi::frame::register_areas(ctx, refd, &area)?;
        Ok("e.unit_id IN (SELECT unit_id FROM q_area)".into())
    }

    /// Run an analyst's read-only SQL over the published tables, restricted to `scope`
    /// (see `sql` and `Snapshot::scoped_context`).
    pub async fn sql(
        &self,
        query: &str,
        scope: &Scope,
        limits: &SqlLimits,
    ) -> Result<SqlResult, AnalyticsError> {
        sql::check_read_only(query)?;
        let snapshot = self.snapshot().await?;
        let units: Option<Vec<String>> = if *scope == Scope::City {
            None
        } else {
            let refd = self.reference(&snapshot).await?;
            Some(
                refd.units
                    .iter()
                    .filter(|u| scope.contains(u))
                    .map(|u| u.id.clone())
                    .collect(),
            )
        };
        let ctx = snapshot
            .scoped_context(units.as_deref(), limits.memory_bytes)
            .await?;
        sql::run(&ctx, query, limits).await
    }

    /// The units of `scope` as of `date`'s end (`None`: now), for the unit tree.
    pub async fn units(
        &self,
        scope: &Scope,
        date: Option<chrono::NaiveDate>,
    ) -> Result<Vec<UnitView>, AnalyticsError> {
        let snapshot = self.snapshot().await?;
        let refd = self.reference(&snapshot).await?;
        let at = date.map_or(i64::MAX, |d| {
            crate::calendar::local_midnight_us(d + chrono::Duration::days(1), self.settings.tz)
        });
        Ok(refd
            .units
            .iter()
            .filter(|u| scope.contains(u) && u.registered_at < at)
            .map(|u| UnitView {
                unit_id: u.id.clone(),
                level: u.level.clone(),
                parent_id: u.parent_id.clone(),
                area_code: u.area_code.clone(),
                district_code: u.district.clone(),
                street_code: u.street.clone(),
                open: u.open_at(at),
                residents: u.residents_at(at),
            })
            .collect())
    }

    /// The snapshot's table versions (for manifests).
    pub async fn versions(
        &self,
    ) -> Result<std::collections::BTreeMap<&'static str, Option<u64>>, AnalyticsError> {
        Ok(self.snapshot().await?.versions.clone())
    }
}

/// A unit of the tree, as of a date.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnitView {
    pub unit_id: String,
    pub level: String,
    pub parent_id: Option<String>,
    pub area_code: String,
    pub district_code: String,
    pub street_code: String,
    pub open: bool,
    pub residents: i64,
}
