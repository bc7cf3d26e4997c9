//! `Analytics`: the long-lived query layer the CLI and the API share. It owns the
//! lakehouse (refreshed when tables get new versions), the reference data of the
//! current snapshot, and a cache of KPI answers keyed by (question, scope, table
//! versions): a repeated question costs a hash lookup until new data lands.

use std::collections::HashMap;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono_tz::Tz;

use crate::error::AnalyticsError;
use crate::kpi::{self, Kpi, KpiInfo, KpiRequest, KpiResponse, Source};
use crate::lakehouse::{Lakehouse, Snapshot};
use crate::lineage::{At, Lineage, SnapshotId};
use crate::past::{Past, Pasts};
use crate::quality::{self, QualityReport};
use crate::reference::Reference;
use crate::restatement::{self, Restatement};
use crate::rollup::{Rollups, Saved, Slot};
use crate::scope::{Level, Scope};
use crate::sql::{self, SqlLimits, SqlResult};
use crate::wall::ScopeUnits;

mod kpis;
mod sessions;

use kpis::Answers;

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
    /// Rows of answers kept in the cache (answers of the current versions only).
    pub cache_rows: usize,
    /// The limits of one KPI question (see `KpiLimits`).
    pub kpi_limits: KpiLimits,
    /// Save the KPI rollups beside the lake (`<lake>/_rollups`) at most this often, and
    /// when asked (`save_rollups`); `None`: never written. Saved rollups matching the
    /// lake's versions are resumed from either way.
    pub save_rollups_every: Option<Duration>,
    /// Where KPI and SQL plans run: here, or on a Ballista cluster (`distributed`).
    pub engine: crate::distributed::Engine,
}

/// What one KPI question may cost, like an analyst's query: answers larger than
/// `max_cells` rows are refused before anything is computed; a computation holds at most
/// `memory_bytes` (then spills or fails) and is stopped after `timeout`.
#[derive(Debug, Clone)]
pub struct KpiLimits {
    pub max_cells: usize,
    pub memory_bytes: usize,
    pub timeout: Duration,
}

impl Default for KpiLimits {
    fn default() -> Self {
        KpiLimits {
            max_cells: 200_000,
            memory_bytes: 4 << 30,
            timeout: Duration::from_secs(60),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tz: Tz::Asia__Shanghai,
            registration_target: 0.13,
            refresh_every: Duration::from_secs(1),
            late_after_hours: 72,
            cache_rows: 500_000,
            kpi_limits: KpiLimits::default(),
            save_rollups_every: None,
            engine: crate::distributed::Engine::Embedded,
        }
    }
}

struct Current {
    snapshot: Arc<Snapshot>,
    checked: Instant,
    /// Why the last look for new versions failed (None: it did not).
    refresh_error: Option<String>,
}

pub struct Analytics {
    settings: Settings,
    /// Held while refreshing, so that one caller loads new versions and the others
    /// keep answering from the snapshot they have.
    house: tokio::sync::Mutex<Lakehouse>,
    current: RwLock<Current>,
    /// Answers of one set of versions (see `Answers`).
    cache: Mutex<Answers>,
    /// The facts KPIs are counted from, per table version.
    rollups: Arc<Rollups>,
    /// The reference data, by the versions of the tables it is read from (a commit to
    /// other tables keeps it).
    references: Arc<Slot<Reference>>,
    /// The newest snapshot KPI questions were answered from: while the views, rollups
    /// and reference of a newer one are being brought up to date, questions are answered
    /// from this one rather than wait (each answer says how far its data reaches).
    ready: Mutex<Option<Arc<Snapshot>>>,
    /// Snapshots of the past asked about (`At`), with rollups of their own.
    pasts: Pasts,
}

impl Analytics {
    pub async fn open(
        lake: impl Into<wenming_ingest::location::Location>,
        settings: Settings,
    ) -> Result<Analytics, AnalyticsError> {
        let house = Lakehouse::open(lake).await?;
        let snapshot = house.snapshot();
        // Saved beside a lake on local disk. On an object store every replica counts
        // its own at start: they are a cache, and replicas would race to write them.
        let saved = house
            .root()
            .as_local()
            .map(|dir| Saved::new(dir.join("_rollups"), settings.save_rollups_every));
        Ok(Analytics {
            rollups: Arc::new(Rollups::new(settings.tz, saved)),
            settings,
            house: tokio::sync::Mutex::new(house),
            current: RwLock::new(Current {
                snapshot,
                checked: Instant::now(),
                refresh_error: None,
            }),
            cache: Mutex::new(Answers::default()),
            references: Arc::new(Slot::default()),
            ready: Mutex::new(None),
            pasts: Pasts::default(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn catalog(&self) -> Vec<KpiInfo> {
        kpi::catalog::catalog(self.settings.registration_target)
    }

    /// Look for new table versions now; returns once the views, rollups and reference
    /// data in use are up to date with them.
    pub async fn refresh(&self) -> Result<bool, AnalyticsError> {
        let mut house = self.house.lock().await;
        let (changed, warming) = self.refresh_with(&mut house).await?;
        for warm in warming {
            let _ = warm.await;
        }
        Ok(changed)
    }

    /// Load new versions and publish the new snapshot; the rollups and reference data
    /// in use are brought up to date in the background (the tasks returned).
    async fn refresh_with(
        &self,
        house: &mut Lakehouse,
    ) -> Result<(bool, Vec<tokio::task::JoinHandle<()>>), AnalyticsError> {
        let changed = match house.refresh().await {
            Ok(changed) => changed,
            Err(e) => {
                self.current.write().expect("not poisoned").refresh_error = Some(e.to_string());
                return Err(e.into());
            }
        };
        let mut cur = self.current.write().expect("not poisoned");
        cur.refresh_error = None;
        cur.checked = Instant::now();
        if !changed {
            return Ok((false, Vec::new()));
        }
        cur.snapshot = house.snapshot();
        let mut warming = self.rollups.warm(&cur.snapshot);
        if self.references.latest().is_some() {
            let (references, snapshot) = (self.references.clone(), cur.snapshot.clone());
            warming.extend(crate::rollup::started(async move {
                if let Err(e) = load_reference(&references, &snapshot).await {
                    tracing::warn!("loading the reference data: {e}");
                }
            }));
        }
        Ok((true, warming))
    }

    /// Build the reference data and every KPI rollup part at the current versions (a
    /// server starting, in the background): the first questions then do not wait for a
    /// part to be counted from the whole year. Questions asked meanwhile share the
    /// builds under way. Returns the time it took.
    pub async fn prepare(&self) -> Result<std::time::Duration, AnalyticsError> {
        let started = Instant::now();
        let snapshot = self.snapshot().await?;
        self.reference(&snapshot).await?;
        self.rollups.prepare(&snapshot).await?;
        Ok(started.elapsed())
    }

    /// Whether a question on `kpi` would find what it needs at the current versions
    /// built (no I/O).
    pub fn prepared(&self, kpi: Kpi) -> bool {
        let snapshot = self.current.read().expect("not poisoned").snapshot.clone();
        self.references.built(&reference_key(&snapshot)).is_some()
            && self.rollups.built(kpi, &snapshot)
    }

    /// Load the lake's newest versions, bring the KPI rollups built so far up to them
    /// and save them beside the lake (a server stopping: the next start resumes from
    /// them). Returns how many parts were saved.
    pub async fn save_rollups(&self) -> Result<usize, AnalyticsError> {
        self.refresh().await?;
        let snapshot = self.current.read().expect("not poisoned").snapshot.clone();
        self.rollups.save(&snapshot).await
    }

    /// How many rollup parts were resumed from saved files rather than counted.
    pub fn rollups_resumed(&self) -> u64 {
        self.rollups.resumed()
    }

    /// Whether the lake could be read at the last look (no I/O: for readiness probes).
    pub fn health(&self) -> Result<(), String> {
        match &self.current.read().expect("not poisoned").refresh_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
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

    /// Reference data of `snapshot` (loaded once per version of its tables).
    async fn reference(&self, snapshot: &Arc<Snapshot>) -> Result<Arc<Reference>, AnalyticsError> {
        load_reference(&self.references, snapshot).await
    }

    /// The snapshot to answer `kpi` from: the current one, or while what it needs of
    /// the current one is being brought up to date, the newest one answered from.
    fn answering(&self, kpi: Kpi, current: Arc<Snapshot>) -> Arc<Snapshot> {
        let ready = self.ready.lock().expect("not poisoned").clone();
        let Some(ready) = ready.filter(|r| !Arc::ptr_eq(r, &current)) else {
            return current;
        };
        let reference = |s: &Snapshot| reference_key(s);
        let ready_at = |s: &Snapshot| {
            self.references.built(&reference(s)).is_some() && self.rollups.built(kpi, s)
        };
        if ready_at(&current) {
            return current;
        }
        let coming =
            self.references.building(&reference(&current)) || self.rollups.building(kpi, &current);
        if coming && ready_at(&ready) {
            ready
        } else {
            current
        }
    }

    /// The data-quality report for a caller limited to `scope`.
    pub async fn quality(&self, scope: &Scope) -> Result<QualityReport, AnalyticsError> {
        let snapshot = self.snapshot().await?;
        let refd = self.reference(&snapshot).await?;
        let ctx = snapshot.context();
        let in_scope = self.register_scope_units(&ctx, &refd, scope)?;
        // Run records count the whole city's events: only a city scope sees them.
        let counts = match scope {
            Scope::City => Some(crate::runs::ingest_counts(&snapshot).await),
            _ => None,
        };
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
                name: u.name.clone(),
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

    /// The name of an area or unit (`Reference::area_name`).
    pub async fn area_name(&self, area: &str) -> Result<Option<String>, AnalyticsError> {
        let snapshot = self.snapshot().await?;
        Ok(self.reference(&snapshot).await?.area_name(area))
    }

    /// The districts and streets of `scope` (those with a unit in it), by code, with their
    /// names: the page's area pickers and labels.
    pub async fn areas(
        &self,
        scope: &Scope,
    ) -> Result<std::collections::BTreeMap<String, String>, AnalyticsError> {
        let snapshot = self.snapshot().await?;
        let refd = self.reference(&snapshot).await?;
        let mut out = std::collections::BTreeMap::new();
        for u in refd.units.iter().filter(|u| scope.contains(u)) {
            for code in [&u.district, &u.street] {
                if !out.contains_key(code.as_str()) {
                    let name = refd.area_name(code).unwrap_or_else(|| code.clone());
                    out.insert(code.clone(), name);
                }
            }
        }
        Ok(out)
    }

    /// How fresh the lake is: the span of its events, its last commit, and an opaque id
    /// of the snapshot (it changes when any table gets a new version). Metadata only: the
    /// same for every scope.
    pub async fn freshness(&self) -> Result<Freshness, AnalyticsError> {
        let snapshot = self.snapshot().await?;
        Ok(Freshness {
            span: snapshot.span.clone(),
            snapshot: snapshot_id(&snapshot),
        })
    }

    /// The snapshot's table versions (for manifests).
    pub async fn versions(
        &self,
    ) -> Result<std::collections::BTreeMap<&'static str, Option<u64>>, AnalyticsError> {
        Ok(self.snapshot().await?.versions.clone())
    }
}

/// See `Analytics::freshness`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Freshness {
    #[serde(flatten)]
    pub span: crate::lakehouse::Span,
    pub snapshot: String,
}

fn snapshot_id(snapshot: &Snapshot) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    snapshot.version_key().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Which versions reference data is read from.
fn reference_key(snapshot: &Snapshot) -> String {
    format!(
        "{:?}/{:?}",
        snapshot.versions.get("unit_events"),
        snapshot.versions.get("volunteer_events")
    )
}

/// The reference data of `snapshot`: as loaded already, or loaded now (once for all
/// who ask).
async fn load_reference(
    references: &Slot<Reference>,
    snapshot: &Arc<Snapshot>,
) -> Result<Arc<Reference>, AnalyticsError> {
    let key = reference_key(snapshot);
    if let Some(built) = references.built(&key) {
        return Ok(built);
    }
    let snapshot = snapshot.clone();
    references
        .get(key, move || async move {
            Reference::load(&snapshot.context()).await
        })
        .await
}

/// A unit of the tree, as of a date.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnitView {
    pub unit_id: String,
    pub name: String,
    pub level: String,
    pub parent_id: Option<String>,
    pub area_code: String,
    pub district_code: String,
    pub street_code: String,
    pub open: bool,
    pub residents: i64,
}
