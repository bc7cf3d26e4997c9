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
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

/// How a view is computed: from all events, or by updating the previous version's rows
/// (with the computation from all events to fall back on).
#[derive(Clone)]
enum Plans {
    Whole(LogicalPlan),
    Update {
        update: Box<Update>,
        whole: LogicalPlan,
    },
}

/// The plans that update a view's previous rows (see `Lakehouse::incremental`).
#[derive(Clone)]
pub struct Update {
    /// The rows of entities the new events do not name, kept as they were.
    pub kept: LogicalPlan,
    /// The rows of the named entities, derived again from all their events (`None`: the
    /// commit added no rows).
    pub again: Option<LogicalPlan>,
    /// The previous rows that `again` replaces.
    pub replaced: Option<LogicalPlan>,
    /// The raw table's versions: previous, new.
    pub versions: (Option<u64>, Option<u64>),
    /// The previous version's change, to chain to this one.
    pub earlier: Option<Arc<Delta>>,
}

/// How a view's rows changed from one version of its raw table to the next: the rows
/// taken out and the rows put in. What the KPI rollups update themselves from
/// (`crate::rollup`), instead of reading every row again.
pub struct Delta {
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub replaced: Vec<RecordBatch>,
    pub added: Vec<RecordBatch>,
    earlier: Option<Arc<Delta>>,
    /// Changes chained through `earlier`, and their rows: past `MAX_CHAIN` links or
    /// `MAX_CHAIN_ROWS` rows a change starts a new chain (a reader further behind
    /// starts over from all rows).
    depth: usize,
    rows: usize,
}

const MAX_CHAIN: usize = 64;
const MAX_CHAIN_ROWS: usize = 2_000_000;

impl Delta {
    fn new(
        (from, to): (Option<u64>, Option<u64>),
        replaced: Vec<RecordBatch>,
        added: Vec<RecordBatch>,
        earlier: Option<Arc<Delta>>,
    ) -> Delta {
        let rows = replaced
            .iter()
            .chain(&added)
            .map(|b| b.num_rows())
            .sum::<usize>();
        let earlier = earlier.filter(|e| e.depth < MAX_CHAIN && e.rows + rows <= MAX_CHAIN_ROWS);
        Delta {
            from,
            to,
            replaced,
            added,
            depth: earlier.as_ref().map_or(1, |e| e.depth + 1),
            rows: rows + earlier.as_ref().map_or(0, |e| e.rows),
            earlier,
        }
    }

    /// The changes from version `from` up to this one, oldest first; `None` when the
    /// chain does not reach back that far.
    pub fn since(self: &Arc<Self>, from: Option<u64>) -> Option<Vec<Arc<Delta>>> {
        let mut chain = vec![self.clone()];
        while chain.last().expect("not empty").from != from {
            let earlier = chain.last().expect("not empty").earlier.clone()?;
            chain.push(earlier);
        }
        chain.reverse();
        Some(chain)
    }
}

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
    /// Once computed by an update: how the rows changed.
    delta: Arc<Mutex<Option<Arc<Delta>>>>,
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
            plans: Arc::new(Mutex::new(Some(Plans::Whole(plan)))),
            schema,
            runtime,
            computing: Mutex::new(None),
            updates_previous: false,
            delta: Arc::new(Mutex::new(None)),
        }
    }

    /// A view computed by `update` from the previous version's rows, or if that fails
    /// by `whole` from all events.
    pub fn updating(
        name: &'static str,
        update: Update,
        whole: LogicalPlan,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<Self> {
        // The rows' schema: kept and new rows may differ in which columns can be null.
        let schema = match &update.again {
            Some(again) => LogicalPlanBuilder::from(update.kept.clone())
                .union(again.clone())?
                .build()?
                .schema()
                .as_arrow()
                .clone(),
            None => update.kept.schema().as_arrow().clone(),
        };
        Ok(Materialized {
            updates_previous: true,
            plans: Arc::new(Mutex::new(Some(Plans::Update {
                update: Box::new(update),
                whole,
            }))),
            schema: Arc::new(schema),
            ..Materialized::new(name, LogicalPlan::default(), runtime)
        })
    }

    /// How the rows changed from the previous version, once computed by an update.
    pub fn delta(&self) -> Option<Arc<Delta>> {
        self.delta.lock().expect("not poisoned").clone()
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

    /// Wait for a computation under way to end (whatever its result); return at once
    /// when none was started.
    pub async fn settled(&self) {
        let computing = self.computing.lock().expect("not poisoned").clone();
        if let Some(computing) = computing {
            let _ = computing.await;
        }
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
        let (plans, delta_slot) = (self.plans.clone(), self.delta.clone());
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), self.runtime.clone());
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let Some(plan) = plans.lock().expect("not poisoned").clone() else {
                return Err(DataFusionError::Internal(format!(
                    "the view {name} was computed already"
                )));
            };
            let (computed, delta) = match plan {
                Plans::Whole(plan) => (collect_partitioned(&ctx, plan).await?, None),
                Plans::Update { update, whole } => match updated(&ctx, *update).await {
                    Ok((rows, delta)) => (rows, Some(delta)),
                    Err(e) => {
                        tracing::warn!(
                            view = name,
                            "updating the view failed, computing it whole: {e}"
                        );
                        (collect_partitioned(&ctx, whole).await?, None)
                    }
                },
            };
            let partitions = computed
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
            *delta_slot.lock().expect("not poisoned") = delta.map(Arc::new);
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

async fn collect_partitioned(
    ctx: &SessionContext,
    plan: LogicalPlan,
) -> Result<Vec<Vec<RecordBatch>>> {
    ctx.execute_logical_plan(plan)
        .await?
        .collect_partitioned()
        .await
}

async fn collect(ctx: &SessionContext, plan: Option<LogicalPlan>) -> Result<Vec<RecordBatch>> {
    let Some(plan) = plan else {
        return Ok(Vec::new());
    };
    ctx.execute_logical_plan(plan)
        .await?
        .collect()
        .await?
        .iter()
        .map(compact)
        .collect()
}

/// The rows of an update (kept rows, then the named entities' new rows) and its change.
async fn updated(ctx: &SessionContext, u: Update) -> Result<(Vec<Vec<RecordBatch>>, Delta)> {
    let added = collect(ctx, u.again).await?;
    let replaced = collect(ctx, u.replaced).await?;
    let mut rows = collect_partitioned(ctx, u.kept).await?;
    rows.push(added.clone());
    Ok((rows, Delta::new(u.versions, replaced, added, u.earlier)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_chain_back_to_a_version_and_the_chain_is_cut_when_long() {
        let mut last: Option<Arc<Delta>> = None;
        for v in 1..=MAX_CHAIN as u64 + 10 {
            last = Some(Arc::new(Delta::new(
                (Some(v - 1), Some(v)),
                vec![],
                vec![],
                last,
            )));
        }
        let last = last.unwrap();
        let top = MAX_CHAIN as u64 + 10;
        let chain = last.since(Some(top - 3)).expect("three versions back");
        let steps: Vec<_> = chain.iter().map(|d| (d.from, d.to)).collect();
        assert_eq!(
            steps,
            vec![
                (Some(top - 3), Some(top - 2)),
                (Some(top - 2), Some(top - 1)),
                (Some(top - 1), Some(top))
            ]
        );
        assert_eq!(
            last.since(Some(top)).map(|c| c.len()),
            None,
            "no change leads from the version itself"
        );
        // The link after MAX_CHAIN links starts a new chain: it leads from its own
        // previous version, not further back.
        assert!(last.since(Some(1)).is_none(), "cut after {MAX_CHAIN} links");
        assert_eq!(last.since(Some(top - 10)).map(|c| c.len()), Some(10));
        assert!(last.since(Some(top - 11)).is_none());
    }
}
