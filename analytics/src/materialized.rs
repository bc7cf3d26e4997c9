//! A current-state view computed once into memory, on first use, and kept for as long
//! as the raw table it reads keeps its version.
//!
//! Every KPI reads the views, and deriving them means aggregating the whole history of
//! a table (millions of service events at city scale). Computing each view once per
//! version of its table, instead of once per question, turns the second and later
//! questions on a snapshot into scans of a few in-memory batches. A view whose table did
//! not change is carried into the next snapshot as it is, so an ingest commit to
//! `service_events` recomputes `service_records` and nothing else.

use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// A view's plan, and for an update the whole computation to fall back on.
type Plans = (LogicalPlan, Option<LogicalPlan>);

type Computing = Shared<BoxFuture<'static, Result<Arc<MemTable>, Arc<DataFusionError>>>>;

pub struct Materialized {
    name: &'static str,
    /// The view's plan over its raw table (the table's provider is inside the plan),
    /// and for an update the plan deriving it from all events, computed if the update
    /// fails. Let go of once the rows are computed: an update's plan holds the previous
    /// version's rows, which would otherwise stay in memory beside the new ones.
    plans: Arc<Mutex<Option<Plans>>>,
    schema: SchemaRef,
    /// The lake's runtime: the view is computed outside any caller's memory limit or
    /// timeout, since every later caller shares the result.
    runtime: Arc<RuntimeEnv>,
    /// The computation, once started: a task of its own, so that a caller who gives up
    /// (timeout, disconnect) does not throw away work the next caller needs.
    computing: Mutex<Option<Computing>>,
    /// Whether the plan updates the previous version's rows (`Lakehouse::incremental`)
    /// rather than deriving the view from all events.
    updates_previous: bool,
}

impl std::fmt::Debug for Materialized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Materialized")
            .field("name", &self.name)
            .field("computed", &self.is_computed())
            .finish()
    }
}

impl Materialized {
    pub fn new(name: &'static str, plan: LogicalPlan, runtime: Arc<RuntimeEnv>) -> Self {
        let schema = Arc::new(plan.schema().as_arrow().clone());
        Materialized {
            name,
            plans: Arc::new(Mutex::new(Some((plan, None)))),
            schema,
            runtime,
            computing: Mutex::new(None),
            updates_previous: false,
        }
    }

    /// A view whose `update` plan updates the previous version's rows, and `whole`
    /// derives it from all events (computed instead if the update fails).
    pub fn updating(
        name: &'static str,
        update: LogicalPlan,
        whole: LogicalPlan,
        runtime: Arc<RuntimeEnv>,
    ) -> Self {
        let view = Materialized {
            updates_previous: true,
            ..Materialized::new(name, update, runtime)
        };
        if let Some((_, fallback)) = view.plans.lock().expect("not poisoned").as_mut() {
            *fallback = Some(whole);
        }
        view
    }

    /// Whether the rows are the previous version's, updated by the new events.
    pub fn updates_previous(&self) -> bool {
        self.updates_previous
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the view has been computed.
    pub fn is_computed(&self) -> bool {
        self.computing
            .lock()
            .expect("not poisoned")
            .as_ref()
            .and_then(|c| c.peek())
            .is_some_and(|r| r.is_ok())
    }

    /// The rows, if they have been computed (and nothing else).
    pub fn computed_rows(&self) -> Option<Arc<MemTable>> {
        self.computing
            .lock()
            .expect("not poisoned")
            .as_ref()
            .and_then(|c| c.peek())
            .and_then(|r| r.as_ref().ok().cloned())
    }

    /// The computed rows: computed now for the first caller, awaited by the others. A
    /// failed computation is forgotten, so the next caller tries again.
    pub async fn rows(&self) -> Result<Arc<MemTable>> {
        let computing = self
            .computing
            .lock()
            .expect("not poisoned")
            .get_or_insert_with(|| self.start())
            .clone();
        match computing.clone().await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                let mut slot = self.computing.lock().expect("not poisoned");
                if slot.as_ref().is_some_and(|c| c.ptr_eq(&computing)) {
                    *slot = None;
                }
                Err(DataFusionError::Shared(e))
            }
        }
    }

    fn start(&self) -> Computing {
        let (name, schema) = (self.name, self.schema.clone());
        let plans = self.plans.clone();
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), self.runtime.clone());
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let Some((plan, whole)) = plans.lock().expect("not poisoned").clone() else {
                return Err(DataFusionError::Internal(format!(
                    "the view {name} was computed already"
                )));
            };
            let computed = match ctx.execute_logical_plan(plan).await {
                Ok(df) => df.collect_partitioned().await,
                Err(e) => Err(e),
            };
            let computed = match (computed, whole) {
                (Err(e), Some(whole)) => {
                    tracing::warn!(
                        view = name,
                        "updating the view failed, computing it whole: {e}"
                    );
                    ctx.execute_logical_plan(whole)
                        .await?
                        .collect_partitioned()
                        .await
                }
                (computed, _) => computed,
            };
            let partitions = computed?
                .into_iter()
                .map(|batches| batches.iter().map(compact).collect::<Result<Vec<_>>>())
                .collect::<Result<Vec<_>>>()?;
            let rows: usize = partitions.iter().flatten().map(|b| b.num_rows()).sum();
            let bytes: usize = partitions
                .iter()
                .flatten()
                .map(|b| b.get_array_memory_size())
                .sum();
            tracing::debug!(view = name, rows, bytes, took = ?started.elapsed(), "view computed");
            let table = Arc::new(MemTable::try_new(schema, partitions)?);
            plans.lock().expect("not poisoned").take();
            Ok(table)
        });
        async move {
            match task.await {
                Ok(result) => result.map_err(Arc::new),
                Err(e) => Err(Arc::new(DataFusionError::Execution(format!(
                    "computing the view {name} stopped: {e}"
                )))),
            }
        }
        .boxed()
        .shared()
    }
}

/// The batch with its string columns holding only their own bytes. DataFusion's string
/// views point into the buffers the Parquet decoder filled, so a view's few surviving
/// rows would otherwise keep every decoded page of their table alive: 166 k activities
/// held 2.5 GB that way on the city lake.
fn compact(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.as_string_view_opt() {
            Some(strings) => Arc::new(strings.gc()) as ArrayRef,
            None => c.clone(),
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[async_trait]
impl TableProvider for Materialized {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // The memory table filters nothing itself; DataFusion filters above the scan.
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.rows()
            .await?
            .scan(state, projection, filters, limit)
            .await
    }
}
