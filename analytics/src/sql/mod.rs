//! Analysts' SQL: read-only, over the published tables only, within limits.
//!
//! Four walls, each enough on its own for the attacks it names:
//! 1. `check`: the statement is parsed first, on a thread of its own, and must be one
//!    `SELECT`/`WITH` query (or an `EXPLAIN` of one) of bounded size and depth: DDL,
//!    DML, `COPY`, `CREATE EXTERNAL TABLE`, `SET` are refused before planning, by name,
//!    and a chain of 30,000 `OR`s is refused before it can overflow a stack.
//! 2. It is planned in a session (`session`) that holds nothing but the published tables,
//!    seen through the scope wall (`crate::wall`: rows outside the caller's scope are gone
//!    before any of the query's expressions runs), with `information_schema` off, no
//!    recursive CTEs, no URL tables and no file-reading table functions: a name outside
//!    the catalog is simply not found.
//! 3. `bounded`: functions that build values (`repeat`, `lpad`, `concat`, `||` …) draw on
//!    a budget per query and are refused before they would overdraw it.
//! 4. It runs with a memory pool of its own, a row cap, a byte cap and a timeout; dropping
//!    the future (a client hanging up) cancels it.

pub mod bounded;
mod catalog;
pub mod check;
mod local_dates;
pub use local_dates::add as add_local_dates;
pub mod pg_compat;
mod yielding;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;

pub use check::{check as check_read_only, check_postgres};

use crate::error::AnalyticsError;

/// The stack of a thread that plans and runs queries: expressions as deep as
/// `check::MAX_DEPTH` recurse in the planner and the executor, and a debug build's frames
/// are large.
pub const QUERY_STACK_BYTES: usize = 32 << 20;

/// Limits of one analyst query.
#[derive(Debug, Clone)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub max_rows: usize,
    /// The most bytes of Arrow data a result may hold (it is cut off there, as at
    /// `max_rows`).
    pub max_bytes: usize,
    pub memory_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            timeout: Duration::from_secs(30),
            max_rows: 100_000,
            max_bytes: 64 << 20,
            memory_bytes: 512 << 20,
        }
    }
}

impl SqlLimits {
    /// What the query's functions may build in all: four times its memory pool, so that
    /// `lpad` or `concat` over a few million rows pass (one call may build no more than
    /// the pool: a 1.5 GB `repeat` does not).
    pub fn value_budget(&self) -> u64 {
        (self.memory_bytes as u64).saturating_mul(4)
    }
}

/// Why a result holds fewer rows than the query gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncated {
    Rows(usize),
    Bytes(usize),
}

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Truncated::Rows(n) => write!(f, "rows capped at {n}"),
            Truncated::Bytes(n) => write!(f, "result capped at {n} bytes"),
        }
    }
}

/// A query's result: the rows up to the caps, and whether (and why) more were cut off.
#[derive(Debug)]
pub struct SqlResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub truncated: Option<Truncated>,
    /// The snapshot the query read (set by `Analytics::sql_at`).
    pub lineage: Option<crate::lineage::Lineage>,
}

impl SqlResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// The database analysts' clients see (Postgres' `current_database()`), and the catalog
/// the published tables live in (schema `public`).
pub const DATABASE: &str = "wenming";

/// An analyst's session on `runtime` (which carries the query's memory pool), with the
/// bounded functions, `information_schema` and a `pg_catalog` for Postgres clients; the
/// caller publishes the tables into it (`Snapshot::publish_into`). Both catalogs list
/// what the session holds, so they are as scoped as the tables.
pub fn session(
    runtime: Arc<RuntimeEnv>,
    limits: &SqlLimits,
) -> Result<SessionContext, AnalyticsError> {
    session_with(runtime, limits, |state| {
        Ok(SessionContext::new_with_state(state))
    })
}

/// `session`, its context made from the state by `context` (the distributed engine's
/// turns it into a session of the cluster) before the catalogs and the bounded
/// functions are installed in it.
pub fn session_with(
    runtime: Arc<RuntimeEnv>,
    limits: &SqlLimits,
    context: impl FnOnce(SessionState) -> Result<SessionContext, AnalyticsError>,
) -> Result<SessionContext, AnalyticsError> {
    // The functions, planners and rules are the template's; the catalog (and so the
    // tables) and the memory pool are the session's own.
    let state = SessionStateBuilder::new_from_existing(template()?)
        .with_config(config())
        .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
        .with_runtime_env(runtime)
        .build();
    let ctx = context(state)?;
    if let Some(own) = ctx.catalog(DATABASE) {
        ctx.register_catalog(DATABASE, Arc::new(catalog::SortedCatalog(own)));
    }
    pg_compat::install_catalog(&ctx)?;
    bounded::install(
        &ctx,
        bounded::Budget::new(limits.memory_bytes as u64, limits.value_budget()),
    )?;
    Ok(ctx)
}

fn config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema(DATABASE, "public");
    // A recursive CTE can run and grow without end; analysts have the unit tree's
    // district and street codes as columns instead.
    config.options_mut().execution.enable_recursive_ctes = false;
    config
}

/// What every analyst's session starts from, built once per process: DataFusion's
/// functions and rules, the yield points (`yielding`) and the catalog functions
/// clients call (`pg_compat`). Registering these per statement cost more than most
/// statements do.
fn template() -> Result<SessionState, AnalyticsError> {
    static TEMPLATE: OnceLock<Result<SessionState, String>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let state = SessionStateBuilder::new()
                .with_config(config())
                .with_default_features()
                .with_physical_optimizer_rule(Arc::new(yielding::YieldAboveJoins))
                .build();
            let ctx = SessionContext::new_with_state(state);
            pg_compat::install_functions(&ctx).map_err(|e| e.to_string())?;
            Ok(ctx.state())
        })
        .clone()
        .map_err(|e| AnalyticsError::Query(datafusion::error::DataFusionError::Internal(e)))
}

/// Plan a statement `check` let through, in `ctx` (a `session`): refused if it would
/// change anything. A table that is not there is named with the tables that are.
pub async fn plan(
    ctx: &SessionContext,
    statement: datafusion::sql::parser::Statement,
) -> Result<LogicalPlan, AnalyticsError> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(|e| plan_error(ctx, e))?;
    options.verify_plan(&plan).map_err(|e| plan_error(ctx, e))?;
    Ok(plan)
}

/// Start running `plan` in `ctx`: its batches as they come (nothing is held whole).
/// Dropping the stream stops the work.
pub async fn execute(
    ctx: &SessionContext,
    plan: LogicalPlan,
) -> Result<SendableRecordBatchStream, AnalyticsError> {
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| plan_error(ctx, e))?;
    df.execute_stream()
        .await
        .map_err(|e| limit_error(AnalyticsError::Query(e)))
}

/// Run one read-only query within `limits`, in `ctx` (a `session`).
pub async fn run(
    ctx: &SessionContext,
    sql: &str,
    limits: &SqlLimits,
) -> Result<SqlResult, AnalyticsError> {
    run_checked(ctx, check::check(sql)?, limits).await
}

/// Run a statement `check` let through, within `limits`, in `ctx` (a `session`).
pub async fn run_checked(
    ctx: &SessionContext,
    statement: datafusion::sql::parser::Statement,
    limits: &SqlLimits,
) -> Result<SqlResult, AnalyticsError> {
    let work = async {
        let plan = plan(ctx, statement).await?;
        let schema: SchemaRef = plan.schema().as_arrow().clone().into();
        let mut stream = execute(ctx, plan).await?;
        let mut batches = Vec::new();
        let (mut rows, mut bytes) = (0usize, 0usize);
        let mut truncated = None;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let size = batch.get_array_memory_size();
            if bytes + size > limits.max_bytes {
                // Keep the share of this batch that fits (rows of a batch are alike
                // enough for an average), and stop.
                let per_row = size.div_ceil(batch.num_rows().max(1)).max(1);
                let fit = (limits.max_bytes - bytes) / per_row;
                batches.push(batch.slice(0, fit.min(batch.num_rows())));
                truncated = Some(Truncated::Bytes(limits.max_bytes));
                break;
            }
            if rows + batch.num_rows() > limits.max_rows {
                batches.push(batch.slice(0, limits.max_rows - rows));
                truncated = Some(Truncated::Rows(limits.max_rows));
                break;
            }
            rows += batch.num_rows();
            bytes += size;
            batches.push(batch);
        }
        Ok::<_, AnalyticsError>(SqlResult {
            schema,
            batches,
            truncated,
            lineage: None,
        })
    };
    match tokio::time::timeout(limits.timeout, work).await {
        Ok(result) => result.map_err(limit_error),
        Err(_) => Err(AnalyticsError::Cancelled(format!(
            "the query ran longer than its {} s limit and was stopped",
            limits.timeout.as_secs_f64()
        ))),
    }
}

/// An error of the query's own expressions (a division by zero, an overflow, a bad
/// cast) wherever it sits in the chain: a filter pushed into the Parquet reader reports it
/// wrapped in the reader's error.
fn arrow_error_of_the_query(
    e: &datafusion::error::DataFusionError,
) -> Option<&arrow::error::ArrowError> {
    use arrow::error::ArrowError as A;
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = at {
        if let Some(a) = err.downcast_ref::<A>()
            && matches!(
                a,
                A::DivideByZero
                    | A::ArithmeticOverflow(_)
                    | A::CastError(_)
                    | A::ComputeError(_)
                    | A::InvalidArgumentError(_)
                    | A::ParseError(_)
            )
        {
            return Some(a);
        }
        at = err.source();
    }
    None
}

/// Planning errors are the caller's: a table or column not found, a type mismatch.
fn plan_error(ctx: &SessionContext, e: datafusion::error::DataFusionError) -> AnalyticsError {
    use datafusion::error::DataFusionError as E;
    match e.find_root() {
        E::Plan(m) if m.contains("not found") && m.starts_with("table ") => {
            AnalyticsError::BadRequest(format!(
                "{}; the tables are: {}",
                e.find_root(),
                table_names(ctx).join(", ")
            ))
        }
        E::Plan(_) | E::SQL(..) | E::SchemaError(..) | E::NotImplemented(_) => {
            AnalyticsError::BadRequest(format!("{}", e.find_root()))
        }
        _ => AnalyticsError::Query(e),
    }
}

/// The tables and views of the session's own schema (`public`), sorted.
pub fn table_names(ctx: &SessionContext) -> Vec<String> {
    let mut names = ctx
        .catalog(DATABASE)
        .and_then(|c| c.schema("public"))
        .map(|s| s.table_names())
        .unwrap_or_default();
    names.sort();
    names
}

/// What went wrong while the query ran, said to the analyst when it is the query's own
/// doing: a limit reached, or its expressions failing on its rows (a division by zero, a
/// bad cast). Failures of the lake (I/O, internal errors) stay ours.
pub fn limit_error(e: AnalyticsError) -> AnalyticsError {
    use datafusion::error::DataFusionError as E;
    let AnalyticsError::Query(q) = e else {
        return e;
    };
    if let Some(a) = arrow_error_of_the_query(&q) {
        return AnalyticsError::BadRequest(format!("the query failed: {a}"));
    }
    match q.find_root() {
        E::ResourcesExhausted(m) => AnalyticsError::Limit(format!(
            "the query needed more memory than its limit: {}",
            m.trim_start_matches("Resources exhausted: ")
        )),
        E::ArrowError(a, _) if !matches!(a.as_ref(), arrow::error::ArrowError::IoError(..)) => {
            AnalyticsError::BadRequest(format!("the query failed: {a}"))
        }
        E::Execution(m) => AnalyticsError::BadRequest(format!("the query failed: {m}")),
        // Refusals of the analyzer and optimizer, which run when the plan is executed.
        E::Plan(_) | E::SQL(..) | E::SchemaError(..) | E::NotImplemented(_) => {
            AnalyticsError::BadRequest(format!("{}", q.find_root()))
        }
        _ => AnalyticsError::Query(q),
    }
}
