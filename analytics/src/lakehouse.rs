//! The lake as DataFusion sees it: the ten raw event tables (Delta) and the current-state
//! views over them, loaded once and refreshed when a table gets a new version.
//!
//! A `Snapshot` is immutable: every query runs against one snapshot, so a question
//! answered while ingest commits sees one consistent set of table versions, and those
//! versions are the cache key of its answer.

use std::collections::BTreeMap;

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

/// The memory the engine's own queries (views, KPIs) may hold before spilling to disk.
const ENGINE_MEMORY_BYTES: usize = 8 << 30;
use datafusion::common::{Column, JoinType};
use datafusion::logical_expr::{LogicalPlan, col};
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;
use wenming_ingest::location::Location;
use wenming_schemas::Family;
use wenming_schemas::lake::table_schema;

use chrono::{DateTime, Utc};

use crate::lineage::{SnapshotId, TableVersion, commit_millis};
use crate::materialized::{Materialized, Update};
use crate::views;
use crate::wall::{ScopeUnits, ScopedTable};

#[derive(Debug, thiserror::Error)]
pub enum LakehouseError {
    #[error("cannot read the lake at {path}: {message}")]
    Path { path: String, message: String },
    #[error(transparent)]
    Location(Box<wenming_ingest::location::LocationError>),
    #[error("cannot read table {table}: {source}")]
    Delta {
        table: &'static str,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error("cannot set up the view {view}: {source}")]
    View {
        view: &'static str,
        #[source]
        source: datafusion::error::DataFusionError,
    },
}

/// What a snapshot holds in time: the earliest and latest `occurred_at` of its events
/// (from the Parquet statistics in the Delta log: no data is read) and when its latest
/// commit was written. Versions and instants are metadata, not rows: the same for every
/// scope.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Span {
    pub data_from: Option<chrono::DateTime<chrono::Utc>>,
    pub data_through: Option<chrono::DateTime<chrono::Utc>>,
    pub last_commit_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Span {
    fn of(
        deltas: &BTreeMap<&'static str, DeltaTable>,
        commits: &BTreeMap<&'static str, TableVersion>,
    ) -> Span {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::TimestampMicrosecondType;
        let mut span = Span::default();
        let at = |us: i64| chrono::DateTime::from_timestamp_micros(us);
        for table in deltas.values() {
            let Ok(state) = table.snapshot() else {
                continue;
            };
            if let Ok(adds) = state.add_actions_table(true) {
                for (column, latest) in [("min.occurred_at", false), ("max.occurred_at", true)] {
                    let Some(values) = adds.column_by_name(column) else {
                        continue;
                    };
                    let Ok(values) = arrow::compute::cast(
                        values,
                        &arrow::datatypes::DataType::Timestamp(
                            arrow::datatypes::TimeUnit::Microsecond,
                            None,
                        ),
                    ) else {
                        continue;
                    };
                    let values = values.as_primitive::<TimestampMicrosecondType>();
                    for i in 0..values.len() {
                        if values.is_null(i) {
                            continue;
                        }
                        let t = at(values.value(i));
                        let slot = if latest {
                            &mut span.data_through
                        } else {
                            &mut span.data_from
                        };
                        if slot.is_none() || (latest && t > *slot) || (!latest && t < *slot) {
                            *slot = t;
                        }
                    }
                }
            }
        }
        span.last_commit_at = commits.values().map(|c| c.committed_at).max();
        span
    }
}

/// The lake's tables at one set of versions.
pub struct Snapshot {
    /// Version of each raw table; `None` for a table nothing was written to yet (it is
    /// published empty, so views and KPIs still work on a young lake).
    pub versions: BTreeMap<&'static str, Option<u64>>,
    /// Every published name: raw tables and views.
    pub tables: BTreeMap<&'static str, Arc<dyn TableProvider>>,
    /// Loaded Delta tables, for listing their files (benchmarks, cross-checks).
    pub deltas: BTreeMap<&'static str, DeltaTable>,
    /// The events' span in time and the latest commit's.
    pub span: Span,
    /// The snapshot's id (its versions), and each written table's version and commit
    /// time: an answer's lineage.
    pub id: SnapshotId,
    pub commits: BTreeMap<&'static str, TableVersion>,
    /// The current-state views, each with the version of the raw table it reads.
    views: BTreeMap<&'static str, (Option<u64>, Arc<Materialized>)>,
    runtime: Arc<RuntimeEnv>,
    root: Location,
}

/// The lake at `root`, and its latest snapshot.
pub struct Lakehouse {
    root: Location,
    runtime: Arc<RuntimeEnv>,
    deltas: BTreeMap<&'static str, DeltaTable>,
    current: Arc<Snapshot>,
    /// Commit times read from the log, by table and version (a version never changes).
    commit_times: std::sync::Mutex<std::collections::HashMap<(&'static str, u64), DateTime<Utc>>>,
}

impl Lakehouse {
    /// Open the lake (a directory that need not hold any table yet).
    pub async fn open(root: impl Into<Location>) -> Result<Lakehouse, LakehouseError> {
        let root: Location = root.into();
        if let Some(dir) = root.as_local()
            && !dir.is_dir()
        {
            return Err(LakehouseError::Path {
                path: dir.display().to_string(),
                message: "no such directory (ingest or import into it first)".into(),
            });
        }
        // Views and KPI questions share one memory pool: sorts and aggregates spill to
        // disk past it instead of growing until the kernel kills the process.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(ENGINE_MEMORY_BYTES)))
            .build_arc()
            .map_err(|e| LakehouseError::Path {
                path: root.to_string(),
                message: format!("cannot set up the query runtime: {e}"),
            })?;
        let mut house = Lakehouse {
            root: root.clone(),
            runtime: runtime.clone(),
            deltas: BTreeMap::new(),
            current: Arc::new(Snapshot {
                versions: BTreeMap::new(),
                tables: BTreeMap::new(),
                deltas: BTreeMap::new(),
                span: Span::default(),
                id: SnapshotId::of(&BTreeMap::new()),
                commits: BTreeMap::new(),
                views: BTreeMap::new(),
                runtime,
                root: root.clone(),
            }),
            commit_times: Default::default(),
        };
        house.refresh().await?;
        Ok(house)
    }

    pub fn root(&self) -> &Location {
        &self.root
    }

    /// The latest snapshot loaded.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.clone()
    }

    /// Load new table versions; returns whether anything changed. Cheap when nothing
    /// did: one listing of each table's log.
    pub async fn refresh(&mut self) -> Result<bool, LakehouseError> {
        let mut changed = self.current.tables.is_empty();
        for family in Family::ALL {
            let name = family.table_name();
            let delta = |source| LakehouseError::Delta {
                table: name,
                source,
            };
            if !self.deltas.contains_key(name) && !self.root.has_commits(name).await? {
                continue;
            }
            match self.deltas.get_mut(name) {
                Some(table) => {
                    let before = table.version();
                    table.update_incremental(None).await.map_err(delta)?;
                    changed |= table.version() != before;
                }
                None => {
                    match self.root.table_builder(name).map_err(delta)?.load().await {
                        Ok(table) => {
                            self.deltas.insert(name, table);
                            changed = true;
                        }
                        // A log without a first commit yet (a writer died before its
                        // first commit): still an empty table.
                        Err(deltalake::DeltaTableError::NotATable(_)) => {}
                        Err(e) => return Err(delta(e)),
                    }
                }
            }
        }
        if changed {
            // The views being computed for the current versions are let finish first:
            // the new versions are then updates of them (their changes are what the
            // rollups follow), and at most two versions of a view are ever held — the
            // one answered from and the one being computed — however fast commits come.
            for (_, view) in self.current.views.values() {
                view.settled().await;
            }
            let previous = self.current.clone();
            self.current = Arc::new(self.build_snapshot(&self.deltas, Some(&previous)).await?);
        }
        Ok(changed)
    }

    /// The snapshot of `deltas` (loaded at the versions wanted); each view an update of
    /// `previous`'s where that applies, else computed whole when first used.
    pub(crate) async fn build_snapshot(
        &self,
        deltas: &BTreeMap<&'static str, DeltaTable>,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, LakehouseError> {
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), self.runtime.clone());
        let mut versions = BTreeMap::new();
        let mut tables: BTreeMap<&'static str, Arc<dyn TableProvider>> = BTreeMap::new();
        for family in Family::ALL {
            let name = family.table_name();
            let delta = |source| LakehouseError::Delta {
                table: name,
                source,
            };
            let provider: Arc<dyn TableProvider> = match deltas.get(name) {
                Some(table) => {
                    table
                        .update_datafusion_session(&ctx.state())
                        .map_err(delta)?;
                    versions.insert(name, table.version());
                    table
                        .table_provider()
                        .await
                        .map_err(|e| delta(deltalake::DeltaTableError::Generic(e.to_string())))?
                }
                None => {
                    versions.insert(name, None);
                    let empty = MemTable::try_new(table_schema(*family), vec![vec![]])
                        .map_err(|e| delta(deltalake::DeltaTableError::Generic(e.to_string())))?;
                    Arc::new(empty)
                }
            };
            ctx.register_table(name, provider.clone())
                .map_err(|e| delta(deltalake::DeltaTableError::Generic(e.to_string())))?;
            tables.insert(name, provider);
        }
        // A view whose raw table kept its version is carried over as it is (computed
        // or not); the others are planned again over the new version.
        let mut materialized = BTreeMap::new();
        let previous_files = |table: &str| previous.map(|p| p.files(table)).unwrap_or_default();
        for view in views::VIEWS {
            let version = versions.get(view.reads).copied().flatten();
            let previous = previous.and_then(|p| p.views.get(view.name));
            let incremental = match previous {
                // An update that cannot be planned is no reason to fail the refresh:
                // the view is then computed whole.
                Some((Some(v), m)) if Some(*v) != version => self
                    .incremental(
                        view,
                        m,
                        &tables,
                        deltas,
                        previous_files(view.reads),
                        (Some(*v), version),
                    )
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(view = view.name, "computing the view whole: {e}");
                        None
                    }),
                _ => None,
            };
            let provider = match previous {
                Some((v, m)) if *v == version && version.is_some() => m.clone(),
                _ => {
                    let whole = ctx
                        .sql(view.sql)
                        .await
                        .and_then(|df| df.into_optimized_plan())
                        .map_err(|source| LakehouseError::View {
                            view: view.name,
                            source,
                        })?;
                    Arc::new(match incremental {
                        Some(update) => {
                            Materialized::updating(view.name, update, whole, self.runtime.clone())
                                .map_err(|source| LakehouseError::View {
                                view: view.name,
                                source,
                            })?
                        }
                        None => Materialized::new(view.name, whole, self.runtime.clone()),
                    })
                }
            };
            // A view in use stays computed: its new version is computed now, in the
            // background, so the next question finds it ready and the version after
            // this one can be an update of it (the chain of changes the KPI rollups
            // follow is not broken by a version nobody asked about).
            if let Some((_, m)) = previous
                && m.is_computed()
                && !Arc::ptr_eq(m, &provider)
            {
                let view = provider.clone();
                tokio::spawn(async move {
                    if let Err(e) = view.rows().await {
                        tracing::warn!(view = view.name(), "computing the view: {e}");
                    }
                });
            }
            tables.insert(view.name, provider.clone() as Arc<dyn TableProvider>);
            materialized.insert(view.name, (version, provider));
        }
        let mut commits = BTreeMap::new();
        for (name, table) in deltas {
            if let Some(version) = table.version() {
                let committed_at = self.commit_time(name, table, version).await?;
                commits.insert(
                    *name,
                    TableVersion {
                        version,
                        committed_at,
                    },
                );
            }
        }
        Ok(Snapshot {
            id: SnapshotId::of(&versions),
            versions,
            tables,
            span: Span::of(deltas, &commits),
            commits,
            deltas: deltas.clone(),
            views: materialized,
            runtime: self.runtime.clone(),
            root: self.root.clone(),
        })
    }
}

impl Lakehouse {
    /// When `version` of `table` was committed, as its commit entry says.
    pub(crate) async fn commit_time(
        &self,
        name: &'static str,
        table: &DeltaTable,
        version: u64,
    ) -> Result<DateTime<Utc>, LakehouseError> {
        if let Some(t) = self
            .commit_times
            .lock()
            .expect("not poisoned")
            .get(&(name, version))
        {
            return Ok(*t);
        }
        let delta = |source| LakehouseError::Delta {
            table: name,
            source,
        };
        let entry = table
            .log_store()
            .read_commit_entry(version)
            .await
            .map_err(delta)?;
        let t = entry
            .as_deref()
            .and_then(commit_millis)
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .ok_or_else(|| {
                delta(deltalake::DeltaTableError::Generic(format!(
                    "version {version} has no commit entry with a commit time in its log"
                )))
            })?;
        self.commit_times
            .lock()
            .expect("not poisoned")
            .insert((name, version), t);
        Ok(t)
    }

    /// The plan of `view` at the raw table's new version from its rows at the previous
    /// one: the rows of entities the new files do not name, kept, and the rows of those
    /// they name, derived again from all their events (old and new). `None` when that
    /// does not apply (a view without a key, rows not computed, files removed from the
    /// table, as compaction does): then the view is computed whole.
    async fn incremental(
        &self,
        view: &views::View,
        previous: &Materialized,
        tables: &BTreeMap<&'static str, Arc<dyn TableProvider>>,
        deltas: &BTreeMap<&'static str, DeltaTable>,
        previous_files: Vec<String>,
        versions: (Option<u64>, Option<u64>),
    ) -> datafusion::error::Result<Option<Update>> {
        let (Some(key), Some(old_rows)) = (view.key, previous.computed_rows()) else {
            return Ok(None);
        };
        let (Some(table), Some(events)) = (deltas.get(view.reads), tables.get(view.reads)) else {
            return Ok(None);
        };
        let before: std::collections::HashSet<String> = previous_files.into_iter().collect();
        let now: Vec<String> = match table.get_file_uris() {
            Ok(files) => files.collect(),
            Err(_) => return Ok(None),
        };
        let kept = now.iter().filter(|f| before.contains(*f)).count();
        if kept != before.len() {
            return Ok(None);
        }
        let added: Vec<String> = now.into_iter().filter(|f| !before.contains(f)).collect();
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), self.runtime.clone());
        ctx.register_table("wm_old_rows", old_rows)?;
        let update = |kept: LogicalPlan, again, replaced| Update {
            kept,
            again,
            replaced,
            versions,
            earlier: previous.delta(),
        };
        if added.is_empty() {
            // A commit that added no rows to this table: the rows are the same.
            let kept = ctx.table("wm_old_rows").await?.into_optimized_plan()?;
            return Ok(Some(update(kept, None, None)));
        }
        let schema = events.schema();
        let options = datafusion::prelude::ParquetReadOptions::default().schema(&schema);
        let new_rows = ctx.read_parquet(added, options).await?;
        ctx.register_table("wm_new_rows", new_rows.into_view())?;
        ctx.register_table("wm_all_events", events.clone())?;
        // Joins, not subqueries: DataFusion cannot plan every subquery it is given (an
        // `IN` under `OR` stayed a subquery for `units` and failed at execution).
        let key_col = || col(Column::new_unqualified(key));
        let named_keys = ctx
            .table("wm_new_rows")
            .await?
            .select(vec![key_col()])?
            .filter(key_col().is_not_null())?
            .distinct()?;
        // Every event of the named entities (and of events without one, which the view
        // groups together), under the raw table's name for the view's SQL.
        let all = ctx.table("wm_all_events").await?;
        let named = all
            .clone()
            .join(named_keys.clone(), JoinType::LeftSemi, &[key], &[key], None)?
            .union(all.filter(key_col().is_null())?)?;
        ctx.register_table(view.reads, named.into_view())?;
        let again = ctx.sql(view.sql).await?;
        let old = ctx.table("wm_old_rows").await?;
        let kept = old.clone().filter(key_col().is_not_null())?.join(
            named_keys.clone(),
            JoinType::LeftAnti,
            &[key],
            &[key],
            None,
        )?;
        // What `again` replaces: the old rows of the named entities, and those without
        // an entity (derived again with the events that have none).
        let replaced = old
            .clone()
            .filter(key_col().is_not_null())?
            .join(named_keys, JoinType::LeftSemi, &[key], &[key], None)?
            .union(old.filter(key_col().is_null())?)?;
        Ok(Some(update(
            kept.into_optimized_plan()?,
            Some(again.into_optimized_plan()?),
            Some(replaced.into_optimized_plan()?),
        )))
    }
}

impl Snapshot {
    /// Where the lake is.
    pub fn root(&self) -> &Location {
        &self.root
    }

    /// The runtime its tables are read with (the lake's object stores, the engine's pool).
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    /// A fresh session over this snapshot's tables. Each query gets its own, so that
    /// what a query registers (its periods, its scope) is seen by no other query.
    pub fn context(&self) -> SessionContext {
        self.context_on(self.runtime.clone())
    }

    /// `context` on a runtime of the caller's (one with a memory pool of its own).
    pub fn context_on(&self, runtime: Arc<RuntimeEnv>) -> SessionContext {
        let config = SessionConfig::new().with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for (name, provider) in &self.tables {
            ctx.register_table(*name, provider.clone())
                .expect("a fresh context takes every name once");
        }
        ctx
    }

    /// A runtime for one caller's queries: the lake's object stores, a memory pool of
    /// `memory_bytes` of its own.
    pub fn runtime_with_memory(
        &self,
        memory_bytes: usize,
    ) -> Result<Arc<RuntimeEnv>, LakehouseError> {
        RuntimeEnvBuilder::new()
            .with_object_store_registry(self.runtime.object_store_registry.clone())
            .with_memory_limit(memory_bytes, 1.0)
            .build_arc()
            .map_err(|source| LakehouseError::View {
                view: "session",
                source,
            })
    }

    /// Publish this snapshot's tables into an analyst's session `ctx`, seen through the
    /// scope wall when `scope` is given (`None`: the whole city). Each raw table is a
    /// `ScopedTable`, which filters its own scan, and the current-state views are planned
    /// over those, so every name the session knows is already inside the scope and no
    /// expression of the analyst's query meets a row outside it (see `wall`).
    pub async fn publish_into(
        &self,
        ctx: &SessionContext,
        scope: Option<Arc<ScopeUnits>>,
    ) -> Result<(), LakehouseError> {
        let view_err = |view: &'static str| move |source| LakehouseError::View { view, source };
        let Some(units) = scope else {
            for (name, provider) in &self.tables {
                ctx.register_table(*name, provider.clone())
                    .map_err(view_err("session"))?;
            }
            return Ok(());
        };
        for family in Family::ALL {
            let name = family.table_name();
            let raw = self.tables.get(name).expect("every raw table is published");
            let scoped =
                ScopedTable::new(name, raw.clone(), units.clone()).map_err(view_err(name))?;
            ctx.register_table(name, Arc::new(scoped))
                .map_err(view_err(name))?;
        }
        register_views(ctx).await
    }

    /// Publish this snapshot's tables into a session of the distributed engine
    /// (`crate::distributed`): each raw table as its version's Parquet files, which an
    /// executor reads by URL, behind the scope wall when `scope` is given; the views
    /// planned over those, as in `publish_into`.
    pub async fn publish_files(
        &self,
        ctx: &SessionContext,
        scope: Option<Arc<ScopeUnits>>,
    ) -> Result<(), LakehouseError> {
        let view_err = |view: &'static str| move |source| LakehouseError::View { view, source };
        for family in Family::ALL {
            let name = family.table_name();
            let files = self.files(name);
            let schema = table_schema(*family);
            let provider: Arc<dyn TableProvider> = if files.is_empty() {
                // Nothing written yet, or nothing left: no row to wall off.
                Arc::new(MemTable::try_new(schema, vec![vec![]]).map_err(view_err(name))?)
            } else {
                let raw = Arc::new(
                    crate::distributed::codec::files_table(&files, schema)
                        .map_err(view_err(name))?,
                );
                match &scope {
                    Some(units) => Arc::new(
                        ScopedTable::new(name, raw, units.clone()).map_err(view_err(name))?,
                    ),
                    None => raw,
                }
            };
            ctx.register_table(name, provider).map_err(view_err(name))?;
        }
        register_views(ctx).await
    }

    /// A current-state view of this snapshot.
    pub fn view(&self, name: &str) -> Option<&Arc<Materialized>> {
        self.views.get(name).map(|(_, m)| m)
    }

    /// Compute every view not yet computed (a server warming up after new data).
    pub async fn materialize(&self) -> datafusion::error::Result<()> {
        for (_, view) in self.views.values() {
            view.rows().await?;
        }
        Ok(())
    }

    /// The versions as one string, for cache keys and manifests.
    pub fn version_key(&self) -> String {
        self.versions
            .iter()
            .map(|(t, v)| format!("{t}@{}", v.map_or("-".into(), |v| v.to_string())))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The Parquet files of a raw table's current version (absolute URIs).
    pub fn files(&self, table: &str) -> Vec<String> {
        self.deltas
            .get(table)
            .and_then(|t| t.get_file_uris().ok().map(|it| it.collect()))
            .unwrap_or_default()
    }
}

/// The current-state views, planned over the raw tables `ctx` already has.
async fn register_views(ctx: &SessionContext) -> Result<(), LakehouseError> {
    let view_err = |view: &'static str| move |source| LakehouseError::View { view, source };
    for view in views::VIEWS {
        let plan = ctx
            .sql(view.sql)
            .await
            .map_err(view_err(view.name))?
            .into_unoptimized_plan();
        ctx.register_table(
            view.name,
            Arc::new(ViewTable::new(plan, Some(view.sql.to_string()))),
        )
        .map_err(view_err(view.name))?;
    }
    Ok(())
}

impl From<wenming_ingest::location::LocationError> for LakehouseError {
    fn from(e: wenming_ingest::location::LocationError) -> LakehouseError {
        LakehouseError::Location(Box::new(e))
    }
}
