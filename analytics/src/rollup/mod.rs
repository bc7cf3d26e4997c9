//! Rollups: the facts every KPI counts, kept per local day with dense ids, so that a
//! question of any period × level × area is one pass over the days it spans — no
//! scan of the views, no join, no sort — and exact (distinct counts are sets of ids, not
//! sketches).
//!
//! ```text
//!  views (per table version) ──► participation (activities + attendance)
//!                            ──► service (service_records)          ──► measure(kpi, grid) → Cells
//!                            ──► orders
//!  reference (units, volunteers) ─────────────────────────────────────┘
//! ```
//!
//! Each part reflects one version of the raw tables it reads and is shared by every
//! question on that version (`Rollups`). After each refresh the parts in use are brought
//! to the new versions in the background: the service and participation parts are
//! updated from their views' changes (`changes`: the rows a commit took out and put in),
//! copying only the days those touch; orders are small and built again. The SQL
//! measures (`kpi::measure`) stay as the reference: `wenming kpi --exact-recompute`
//! answers with them, and analytics/tests/rollups.rs holds the two to identical answers.

mod changes;
mod columns;
pub mod days;
mod grid;
mod orders;
mod participation;
mod saved;
mod service;
pub(crate) mod slot;
mod store;

use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;
use datafusion::error::DataFusionError;

use crate::error::AnalyticsError;
use crate::kpi::Kpi;
use crate::kpi::frame::Frame;
use crate::kpi::measure::{Cells, with_denominator};
use crate::lakehouse::Snapshot;
use crate::reference::{Reference, collect};
use columns::{bool_column, float_column, int_column, str_column};
use grid::Grid;
pub use orders::Orders;
pub use participation::Participation;
pub use saved::Saved;
use saved::SavedPart;
pub use service::Service;
pub(crate) use slot::Slot;
use store::{Interner, PerDay};

/// The parts one question reads, at its snapshot's versions.
pub struct Rollup {
    participation: Option<Arc<Participation>>,
    service: Option<(Arc<Service>, Arc<Vec<u32>>)>,
    orders: Option<Arc<Orders>>,
}

/// Which part a KPI is answered from (`None`: the reference data alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Participation,
    Service,
    Orders,
    None,
}

fn part(kpi: Kpi) -> Part {
    use Kpi::*;
    match kpi {
        ActivitiesHeld | ParticipantVisits | ResidentVisits | UniqueParticipants
        | ParticipationRate | ActiveStationRate => Part::Participation,
        VolunteerActivityRate
        | ServiceHours
        | ServingVolunteers
        | HoursPerVolunteer
        | HoursPerResident
        | StarVolunteers
        | VolunteerRanking => Part::Service,
        OrdersPlaced | OrderCompletionRate | OrderResponseMinutesP50 | OrderSatisfaction => {
            Part::Orders
        }
        VolunteerRegistrationRate => Part::None,
    }
}

/// The raw tables (besides the reference data's) a KPI's facts are counted from.
pub fn tables_of(kpi: Kpi) -> &'static [&'static str] {
    match part(kpi) {
        Part::Participation => &["activity_events", "attendance_events"],
        Part::Service => &["service_events"],
        Part::Orders => &["order_events"],
        Part::None => &[],
    }
}

impl Rollup {
    /// Count a KPI's facts per (period, area) of `frame`, as `kpi::measure` does.
    pub fn measure(&self, kpi: Kpi, frame: &Frame<'_>) -> Result<Cells, AnalyticsError> {
        let grid = Grid::new(frame);
        let missing = || {
            AnalyticsError::Query(DataFusionError::Internal(format!(
                "the rollup of {} was not loaded",
                kpi.name()
            )))
        };
        let hours = |minutes: Vec<i64>| -> Vec<f64> {
            minutes.into_iter().map(|m| m as f64 / 60.0).collect()
        };
        let as_f64 = |v: Vec<i64>| -> Vec<f64> { v.into_iter().map(|x| x as f64).collect() };
        use Kpi::*;
        Ok(match part(kpi) {
            Part::Participation => {
                let p = self.participation.as_deref().ok_or_else(missing)?;
                match kpi {
                    ParticipationRate => Cells::Plain(with_denominator(
                        frame,
                        grid.plain(&p.persons(&grid, true), None),
                        |b| frame.residents(b),
                    )),
                    ActiveStationRate => Cells::Plain(with_denominator(
                        frame,
                        grid.plain(&p.active_stations(&grid), None),
                        |b| frame.open_stations(b),
                    )),
                    UniqueParticipants => Cells::Plain(grid.plain(&p.persons(&grid, false), None)),
                    _ => Cells::Plain(grid.plain(&as_f64(p.counts(kpi, &grid)), None)),
                }
            }
            Part::Service => {
                let (s, link) = self.service.as_ref().ok_or_else(missing)?;
                match kpi {
                    ServiceHours => Cells::Plain(grid.plain(&hours(s.minutes(&grid)), None)),
                    ServingVolunteers => Cells::Plain(grid.plain(&s.serving(&grid), None)),
                    HoursPerVolunteer => Cells::Plain(grid.plain(
                        &hours(s.minutes(&grid)),
                        Some(&as_f64(grid.registered_counts())),
                    )),
                    HoursPerResident => Cells::Plain(with_denominator(
                        frame,
                        grid.plain(&hours(s.minutes(&grid)), None),
                        |b| frame.residents(b),
                    )),
                    VolunteerActivityRate => Cells::Plain(grid.plain(
                        &s.active(&grid, link),
                        Some(&as_f64(grid.registered_counts())),
                    )),
                    StarVolunteers => Cells::Stars(s.stars(&grid, link)),
                    _ => Cells::Ranking(s.ranking(&grid)),
                }
            }
            Part::Orders => self
                .orders
                .as_deref()
                .ok_or_else(missing)?
                .measure(kpi, &grid),
            Part::None => {
                let registered = as_f64(grid.registered_counts());
                Cells::Plain(with_denominator(
                    frame,
                    grid.plain(&registered, None),
                    |b| frame.residents(b),
                ))
            }
        })
    }
}

/// The parts built so far: each the latest asked for, by the versions it reflects.
pub struct Rollups {
    tz: Tz,
    participation: Slot<Participation>,
    service: Slot<Service>,
    orders: Slot<Orders>,
    /// The service rollup's volunteers linked to a reference's (one pair at a time).
    link: Mutex<Option<Link>>,
    /// How often the service rollup was updated from a view's changes.
    updates: Arc<std::sync::atomic::AtomicU64>,
    /// Where parts are saved and resumed from (`None`: not saved).
    saved: Option<Arc<Saved>>,
    /// How many parts were resumed from saved files.
    resumed: Arc<std::sync::atomic::AtomicU64>,
}

/// A reference, a service rollup, and per volunteer of the rollup their index in the
/// reference.
type Link = (Arc<Reference>, Arc<Service>, Arc<Vec<u32>>);

impl Rollups {
    /// Rollups counting days local to `tz`, saved to and resumed from `saved`.
    pub fn new(tz: Tz, saved: Option<Saved>) -> Self {
        Rollups {
            tz,
            participation: Slot::default(),
            service: Slot::default(),
            orders: Slot::default(),
            link: Mutex::new(None),
            updates: Default::default(),
            saved: saved.map(Arc::new),
            resumed: Default::default(),
        }
    }

    /// The parts `kpi` needs at `snapshot`'s versions, built now if they are not yet.
    pub async fn for_kpi(
        &self,
        kpi: Kpi,
        snapshot: &Arc<Snapshot>,
        refd: &Arc<Reference>,
    ) -> Result<Rollup, AnalyticsError> {
        let mut rollup = Rollup {
            participation: None,
            service: None,
            orders: None,
        };
        match part(kpi) {
            Part::Participation => rollup.participation = Some(self.participation(snapshot).await?),
            Part::Service => {
                let built = self.service(snapshot).await?;
                let link = self.link(refd, &built).await?;
                rollup.service = Some((built, link));
            }
            Part::Orders => rollup.orders = Some(self.orders(snapshot).await?),
            Part::None => {}
        }
        Ok(rollup)
    }

    /// Bring the parts built so far to `snapshot`'s versions now, in the background, so
    /// that the questions after a commit find them ready (and the service part's chain
    /// of changes is not broken by a version nobody asked about).
    pub fn warm(self: &Arc<Self>, snapshot: &Arc<Snapshot>) -> Vec<tokio::task::JoinHandle<()>> {
        // A part being built already is left to finish: the next refresh brings it up
        // to date (builds piling up behind a fast stream of commits would hold one
        // version of the views each).
        let parts = [
            (Part::Participation, self.participation.idle_and_built()),
            (Part::Service, self.service.idle_and_built()),
            (Part::Orders, self.orders.idle_and_built()),
        ];
        let mut warming = Vec::new();
        for (part, warm) in parts {
            if !warm {
                continue;
            }
            let (this, snapshot) = (self.clone(), snapshot.clone());
            warming.extend(started(async move {
                let warmed = match part {
                    Part::Participation => this.participation(&snapshot).await.map(drop),
                    Part::Service => this.service(&snapshot).await.map(drop),
                    _ => this.orders(&snapshot).await.map(drop),
                };
                if let Err(e) = warmed {
                    tracing::warn!("bringing the {part:?} rollup up to date: {e}");
                }
            }));
        }
        warming
    }

    /// Build every part at `snapshot`'s versions, one after another (a server starting:
    /// the first question on each part then finds it built or under way instead of
    /// counting the year while the office waits). One at a time, so that the start
    /// does not hold every part's views at once; a question on a part not reached yet
    /// builds it itself, and this then finds it built.
    pub async fn prepare(&self, snapshot: &Arc<Snapshot>) -> Result<(), AnalyticsError> {
        self.service(snapshot).await?;
        self.participation(snapshot).await?;
        self.orders(snapshot).await?;
        Ok(())
    }

    /// Whether the parts `kpi` needs are built at `snapshot`'s versions.
    pub fn built(&self, kpi: Kpi, snapshot: &Snapshot) -> bool {
        match part(kpi) {
            Part::Participation => self
                .participation
                .built(&participation_key(snapshot))
                .is_some(),
            Part::Service => self.service.built(&service_key(snapshot)).is_some(),
            Part::Orders => self.orders.built(&orders_key(snapshot)).is_some(),
            Part::None => true,
        }
    }

    /// Whether the parts `kpi` needs are being built at `snapshot`'s versions.
    pub fn building(&self, kpi: Kpi, snapshot: &Snapshot) -> bool {
        match part(kpi) {
            Part::Participation => self.participation.building(&participation_key(snapshot)),
            Part::Service => self.service.building(&service_key(snapshot)),
            Part::Orders => self.orders.building(&orders_key(snapshot)),
            Part::None => false,
        }
    }

    async fn participation(
        &self,
        snapshot: &Arc<Snapshot>,
    ) -> Result<Arc<Participation>, AnalyticsError> {
        let key = participation_key(snapshot);
        if let Some(built) = self.participation.built(&key) {
            return Ok(built);
        }
        let version = |t| snapshot.versions.get(t).copied().flatten();
        let versions = (version("activity_events"), version("attendance_events"));
        let (s, tz, k) = (snapshot.clone(), self.tz, key.clone());
        let (previous, updates) = (self.participation.latest(), self.updates.clone());
        let resume = self.resume(key.clone(), versions, previous.is_none(), snapshot);
        let built = self
            .participation
            .get(key.clone(), move || async move {
                match resume.await {
                    Some(resumed) => Ok(resumed),
                    None => participation_at(s, previous, tz, updates).await,
                }
            })
            .await?;
        self.save_if_due(&k, &built, false);
        Ok(built)
    }

    async fn service(&self, snapshot: &Arc<Snapshot>) -> Result<Arc<Service>, AnalyticsError> {
        let key = service_key(snapshot);
        if let Some(built) = self.service.built(&key) {
            return Ok(built);
        }
        let version = snapshot.versions.get("service_events").copied().flatten();
        let (s, tz) = (snapshot.clone(), self.tz);
        let (previous, updates) = (self.service.latest(), self.updates.clone());
        let resume = self.resume(key.clone(), version, previous.is_none(), snapshot);
        let built = self
            .service
            .get(key.clone(), move || async move {
                match resume.await {
                    Some(resumed) => Ok(resumed),
                    None => service_at(s, previous, tz, updates).await,
                }
            })
            .await?;
        self.save_if_due(&key, &built, false);
        Ok(built)
    }

    /// The part as saved at `key`'s versions, if it was and this is the process's first
    /// build of it (`first`); the views it follows are then computed in the background,
    /// so that the next versions update it from their changes.
    fn resume<T: SavedPart>(
        &self,
        key: String,
        versions: T::Versions,
        first: bool,
        snapshot: &Arc<Snapshot>,
    ) -> impl Future<Output = Option<T>> + Send + 'static {
        let saved = self.saved.clone().filter(|_| first);
        let (tz, snapshot, resumed) = (self.tz, snapshot.clone(), self.resumed.clone());
        async move {
            let saved = saved?;
            let started = std::time::Instant::now();
            let (s, k) = (saved.clone(), key.clone());
            let loaded = tokio::task::spawn_blocking(move || {
                let files = s.read(T::NAME, &k, tz.name())?;
                files.map(|f| T::from_files(f, versions)).transpose()
            })
            .await;
            match loaded {
                Ok(Ok(Some(part))) => {
                    saved.loaded(T::NAME, &key);
                    resumed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(part = T::NAME, %key, took = ?started.elapsed(), "rollup resumed from saved files");
                    for name in T::VIEWS {
                        if let Some(view) = snapshot.view(name).cloned() {
                            tokio::spawn(async move {
                                if let Err(e) = view.rows().await {
                                    tracing::warn!(view = view.name(), "computing the view: {e}");
                                }
                            });
                        }
                    }
                    Some(part)
                }
                Ok(Ok(None)) => None,
                Ok(Err(e)) => {
                    tracing::warn!(
                        "not resuming the {} rollup, counting it again: {e}",
                        T::NAME
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!(
                        "not resuming the {} rollup, counting it again: {e}",
                        T::NAME
                    );
                    None
                }
            }
        }
    }

    /// Save `built` (at `key`'s versions) in the background if it is due.
    fn save_if_due<T: SavedPart>(
        &self,
        key: &str,
        built: &Arc<T>,
        forced: bool,
    ) -> Option<tokio::task::JoinHandle<bool>> {
        let saved = self.saved.clone()?;
        if !saved.due(T::NAME, key, forced) {
            return None;
        }
        let (built, key, tz) = (built.clone(), key.to_string(), self.tz);
        Some(tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let written = built
                .to_files()
                .map_err(|e| e.to_string())
                .and_then(|files| {
                    saved
                        .write(T::NAME, &key, tz.name(), files)
                        .map_err(|e| e.to_string())
                });
            match written {
                Ok(()) => {
                    tracing::debug!(part = T::NAME, %key, took = ?started.elapsed(), "rollup saved");
                    saved.finished(T::NAME, Some(&key));
                    true
                }
                Err(e) => {
                    tracing::warn!("saving the {} rollup: {e}", T::NAME);
                    saved.finished(T::NAME, None);
                    false
                }
            }
        }))
    }

    /// Bring the parts built so far to `snapshot`'s versions and save them now (a server
    /// stopping); returns how many were saved.
    pub async fn save(&self, snapshot: &Arc<Snapshot>) -> Result<usize, AnalyticsError> {
        if self.saved.is_none() {
            return Ok(0);
        }
        let mut saving = Vec::new();
        if self.participation.latest().is_some() {
            let key = participation_key(snapshot);
            let built = self.participation(snapshot).await?;
            saving.push(self.save_now(&key, &built).await);
        }
        if self.service.latest().is_some() {
            let key = service_key(snapshot);
            let built = self.service(snapshot).await?;
            saving.push(self.save_now(&key, &built).await);
        }
        Ok(saving.into_iter().filter(|saved| *saved).count())
    }

    /// Save `built` once any save of its part under way has ended.
    async fn save_now<T: SavedPart>(&self, key: &str, built: &Arc<T>) -> bool {
        for _ in 0..1200 {
            if let Some(handle) = self.save_if_due(key, built, true) {
                return handle.await.unwrap_or(false);
            }
            if self
                .saved
                .as_ref()
                .is_some_and(|s| s.is_saved(T::NAME, key))
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    /// How many parts were resumed from saved files rather than counted.
    pub fn resumed(&self) -> u64 {
        self.resumed.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn orders(&self, snapshot: &Arc<Snapshot>) -> Result<Arc<Orders>, AnalyticsError> {
        let key = orders_key(snapshot);
        if let Some(built) = self.orders.built(&key) {
            return Ok(built);
        }
        let (s, tz) = (snapshot.clone(), self.tz);
        self.orders
            .get(key, move || async move {
                let rows = collect(&s.context(), orders::SQL).await?;
                Orders::from_batches(&rows, tz)
            })
            .await
    }

    /// How often the service rollup was updated from the view's changes rather than
    /// built from all its rows.
    pub fn updates(&self) -> u64 {
        self.updates.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn link(
        &self,
        refd: &Arc<Reference>,
        service: &Arc<Service>,
    ) -> Result<Arc<Vec<u32>>, AnalyticsError> {
        if let Some((r, s, link)) = &*self.link.lock().expect("not poisoned")
            && Arc::ptr_eq(r, refd)
            && Arc::ptr_eq(s, service)
        {
            return Ok(link.clone());
        }
        let (r, s) = (refd.clone(), service.clone());
        let link = Arc::new(blocking(move || Ok(s.link(&r))).await?);
        *self.link.lock().expect("not poisoned") =
            Some((refd.clone(), service.clone(), link.clone()));
        Ok(link)
    }
}

fn participation_key(snapshot: &Snapshot) -> String {
    versions_of(snapshot, &["activity_events", "attendance_events"])
}

fn service_key(snapshot: &Snapshot) -> String {
    versions_of(snapshot, &["service_events"])
}

fn orders_key(snapshot: &Snapshot) -> String {
    versions_of(snapshot, &["order_events"])
}

/// The versions of `tables` in `snapshot`, as a key.
fn versions_of(snapshot: &Snapshot, tables: &[&str]) -> String {
    tables
        .iter()
        .map(|t| match snapshot.versions.get(t).copied().flatten() {
            Some(v) => format!("{t}={v}"),
            None => format!("{t}=none"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The participation rollup at `snapshot`'s versions: `previous` updated by the
/// changes of `activities` and `attendance` since, or built from all their rows.
async fn participation_at(
    snapshot: Arc<Snapshot>,
    previous: Option<Arc<Participation>>,
    tz: Tz,
    updates: Arc<std::sync::atomic::AtomicU64>,
) -> Result<Participation, AnalyticsError> {
    let version = |t| snapshot.versions.get(t).copied().flatten();
    let versions = (version("activity_events"), version("attendance_events"));
    let started = std::time::Instant::now();
    if let Some(previous) = previous
        && let Some((before, after)) = changes::participation(&snapshot, previous.versions).await?
    {
        match blocking(move || previous.updated(&before, &after, tz, versions)).await {
            Ok(updated) => {
                updates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(?versions, took = ?started.elapsed(), "participation rollup updated");
                return Ok(updated);
            }
            Err(e) => tracing::warn!("building the participation rollup whole: {e}"),
        }
    }
    let rows = collect(&snapshot.context(), participation::SQL).await?;
    let built = blocking(move || Participation::from_batches(&rows, tz, versions)).await;
    tracing::debug!(?versions, took = ?started.elapsed(), "participation rollup built");
    built
}

/// The service rollup at `snapshot`'s version: `previous` updated by the view's changes
/// since, or when they do not reach back to it, built from all the view's rows.
async fn service_at(
    snapshot: Arc<Snapshot>,
    previous: Option<Arc<Service>>,
    tz: Tz,
    updates: Arc<std::sync::atomic::AtomicU64>,
) -> Result<Service, AnalyticsError> {
    let version = snapshot.versions.get("service_events").copied().flatten();
    let started = std::time::Instant::now();
    if let Some(previous) = previous
        && let Some(changes) =
            changes::since(&snapshot, "service_records", previous.version).await?
    {
        let viewed = started.elapsed();
        match blocking(move || previous.updated(&changes, tz, version)).await {
            Ok(service) => {
                updates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let took = started.elapsed();
                tracing::debug!(?version, ?viewed, ?took, "service rollup updated");
                return Ok(service);
            }
            Err(e) => tracing::warn!("building the service rollup whole: {e}"),
        }
    }
    let rows = collect(&snapshot.context(), service::SQL).await?;
    let viewed = started.elapsed();
    let built = blocking(move || Service::from_batches(&rows, tz, version)).await;
    tracing::debug!(?version, ?viewed, took = ?started.elapsed(), "service rollup built");
    built
}

/// `work` polled once here, so that what it starts is under way (seen as building by
/// questions asked next) before this returns, then run to its end as a task of its own;
/// `None` if it ended at once.
pub(crate) fn started(
    work: impl Future<Output = ()> + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut work = Box::pin(work);
    futures::FutureExt::now_or_never(&mut work)
        .is_none()
        .then(|| tokio::spawn(work))
}

/// CPU-bound work off the async workers, so that other requests keep being served.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AnalyticsError> + Send + 'static,
) -> Result<T, AnalyticsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AnalyticsError::Query(DataFusionError::External(Box::new(e))))?
}
