//! The scope wall: a raw table restricted to a scope's units, filtered inside its own scan.
//!
//! Why not a view (`SELECT * FROM t WHERE unit_id IN (scope)`)? The optimizer sees through
//! a view. It pushes an analyst's predicates below the view's filter, into the scan, and
//! may evaluate them on rows of other scopes first: `CASE WHEN unit_id LIKE '%330203%' THEN
//! 1/0 END` then fails only when another district has rows, and `EXPLAIN ANALYZE` counts
//! them. A `ScopedTable` is opaque instead:
//!
//! - it takes none of the query's filters (`Unsupported`), so they stay in a filter above;
//! - its scan is a leaf (`ScopedScanExec`) that runs the table's own scan with only our
//!   scope predicate, keeps the rows of the scope, and only then hands batches up;
//! - the table's own scan is not a child of that leaf: no optimizer rule can push a filter,
//!   a projection or a limit into it, and `EXPLAIN` / `EXPLAIN ANALYZE` show neither its
//!   statistics nor its metrics (the leaf reports only the rows it let through).
//!
//! The cost of a scan is that of reading the table and keeping the scope's rows, whatever
//! the analyst asks of them: a question about another district costs what a question about
//! an empty area costs.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, col, lit};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::StreamExt;

/// The column every raw table names its unit in.
pub const UNIT_COLUMN: &str = "unit_id";

/// Up to this many units, the scope is also handed to the table's scan as a predicate, so
/// that Parquet statistics can skip files and row groups of other units. (DataFusion's
/// pruning gives up on longer lists anyway.)
const PRUNE_WITH_AT_MOST: usize = 20;

/// The units of a scope: what the wall lets through.
#[derive(Debug)]
pub struct ScopeUnits {
    /// The scope as the caller's token names it, for `EXPLAIN`.
    label: String,
    ids: HashSet<String>,
}

impl ScopeUnits {
    pub fn new(label: impl Into<String>, ids: impl IntoIterator<Item = String>) -> Self {
        ScopeUnits {
            label: label.into(),
            ids: ids.into_iter().collect(),
        }
    }

    /// The scope as the caller's token names it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The units let through.
    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.ids.iter()
    }

    /// Which rows of a unit column are inside the scope (a null unit never is).
    fn mask(&self, units: &ArrayRef) -> Result<BooleanArray> {
        let keep = |v: Option<&str>| Some(v.is_some_and(|s| self.ids.contains(s)));
        Ok(match units.data_type() {
            DataType::Utf8 => units.as_string::<i32>().iter().map(keep).collect(),
            DataType::LargeUtf8 => units.as_string::<i64>().iter().map(keep).collect(),
            DataType::Utf8View => units.as_string_view().iter().map(keep).collect(),
            _ => {
                let text = arrow::compute::cast(units, &DataType::Utf8)?;
                text.as_string::<i32>().iter().map(keep).collect()
            }
        })
    }
}

/// A table seen through the wall: only the rows of `units`.
#[derive(Debug)]
pub struct ScopedTable {
    name: &'static str,
    inner: Arc<dyn TableProvider>,
    units: Arc<ScopeUnits>,
    unit_column: usize,
}

impl ScopedTable {
    pub fn new(
        name: &'static str,
        inner: Arc<dyn TableProvider>,
        units: Arc<ScopeUnits>,
    ) -> Result<ScopedTable> {
        let unit_column = inner.schema().index_of(UNIT_COLUMN).map_err(|_| {
            DataFusionError::Internal(format!(
                "the table {name} has no {UNIT_COLUMN} column to scope it by"
            ))
        })?;
        Ok(ScopedTable {
            name,
            inner,
            units,
            unit_column,
        })
    }

    /// The raw table's name.
    pub fn table(&self) -> &'static str {
        self.name
    }

    /// The table behind the wall.
    pub fn inner(&self) -> &Arc<dyn TableProvider> {
        &self.inner
    }

    pub fn units(&self) -> &Arc<ScopeUnits> {
        &self.units
    }
}

#[async_trait]
impl TableProvider for ScopedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// None: an analyst's filter must never run below the wall.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        // A limit below the wall would count rows of other scopes toward it.
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let width = self.inner.schema().fields().len();
        let wanted: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..width).collect());
        let mut read = wanted.clone();
        let unit_at = match read.iter().position(|c| *c == self.unit_column) {
            Some(i) => i,
            None => {
                read.push(self.unit_column);
                read.len() - 1
            }
        };
        let ours: Vec<Expr> = if self.units.ids.len() <= PRUNE_WITH_AT_MOST {
            let list = self.units.ids.iter().map(|u| lit(u.as_str())).collect();
            vec![col(UNIT_COLUMN).in_list(list, false)]
        } else {
            vec![]
        };
        let plan = self.inner.scan(state, Some(&read), &ours, None).await?;
        // The optimizer cannot spread the hidden scan over the cores; the wall does.
        let options = state.config_options();
        let plan = plan
            .repartitioned(options.execution.target_partitions, options)?
            .unwrap_or(plan);
        let schema = Arc::new(self.inner.schema().project(&wanted)?);
        Ok(Arc::new(ScopedScanExec::new(
            self.name,
            plan,
            self.units.clone(),
            unit_at,
            (0..wanted.len()).collect(),
            schema,
        )))
    }
}

/// The wall's scan: runs the hidden scan and lets through the rows of the scope only.
pub struct ScopedScanExec {
    table: &'static str,
    /// Not a child: see the module's documentation.
    hidden: Arc<dyn ExecutionPlan>,
    units: Arc<ScopeUnits>,
    /// The unit column's place in the hidden scan's output.
    unit_at: usize,
    /// The hidden scan's columns this scan outputs.
    keep: Vec<usize>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for ScopedScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedScanExec")
            .field("table", &self.table)
            .field("scope", &self.units.label)
            .finish()
    }
}

impl ScopedScanExec {
    pub(crate) fn new(
        table: &'static str,
        hidden: Arc<dyn ExecutionPlan>,
        units: Arc<ScopeUnits>,
        unit_at: usize,
        keep: Vec<usize>,
        schema: SchemaRef,
    ) -> Self {
        let partitions = hidden.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        ScopedScanExec {
            table,
            hidden,
            units,
            unit_at,
            keep,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

/// The parts of the scan, for sending it to another process (`distributed::codec`).
impl ScopedScanExec {
    pub(crate) fn table(&self) -> &'static str {
        self.table
    }
    pub(crate) fn hidden(&self) -> &Arc<dyn ExecutionPlan> {
        &self.hidden
    }
    pub(crate) fn units(&self) -> &Arc<ScopeUnits> {
        &self.units
    }
    pub(crate) fn unit_at(&self) -> usize {
        self.unit_at
    }
    pub(crate) fn keep(&self) -> &[usize] {
        &self.keep
    }
}

impl DisplayAs for ScopedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "ScopedScan: table={}, scope={}",
                self.table, self.units.label
            ),
            DisplayFormatType::TreeRender => {
                writeln!(f, "table={}", self.table)?;
                write!(f, "scope={}", self.units.label)
            }
        }
    }
}

impl ExecutionPlan for ScopedScanExec {
    fn name(&self) -> &'static str {
        "ScopedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.hidden.execute(partition, context)?;
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let (units, unit_at, keep) = (self.units.clone(), self.unit_at, self.keep.clone());
        let schema = self.schema();
        let out_schema = schema.clone();
        let scoped = input.filter_map(move |batch| {
            let result = batch.and_then(|batch| {
                let _timer = baseline.elapsed_compute().timer();
                let mask = units.mask(batch.column(unit_at))?;
                let kept = filter_record_batch(&batch, &mask)?;
                let columns = keep.iter().map(|c| kept.column(*c).clone()).collect();
                // The row count is said, for a query that reads no column (count(*)).
                let options = RecordBatchOptions::new().with_row_count(Some(kept.num_rows()));
                Ok(RecordBatch::try_new_with_options(
                    out_schema.clone(),
                    columns,
                    &options,
                )?)
            });
            let result = match result {
                Ok(b) if b.num_rows() == 0 => None,
                Ok(b) => {
                    baseline.record_output(b.num_rows());
                    Some(Ok(b))
                }
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(result)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, scoped)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, StringViewArray};

    #[test]
    fn the_mask_keeps_the_scope_and_never_a_null_unit() {
        let units = ScopeUnits::new("district:330203", ["S1".to_string(), "S2".to_string()]);
        let plain: ArrayRef = Arc::new(StringArray::from(vec![
            Some("S1"),
            Some("S4"),
            None,
            Some("S2"),
        ]));
        let view: ArrayRef = Arc::new(StringViewArray::from(vec![
            Some("S1"),
            Some("S4"),
            None,
            Some("S2"),
        ]));
        let want = BooleanArray::from(vec![true, false, false, true]);
        assert_eq!(units.mask(&plain).unwrap(), want);
        assert_eq!(units.mask(&view).unwrap(), want);
        assert_eq!(units.mask(&plain).unwrap().null_count(), 0);
    }
}
