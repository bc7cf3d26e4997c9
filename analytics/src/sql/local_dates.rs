//! Local calendar columns for analysts: beside each UTC instant `X_at` of a published
//! table, `X_on`, its date in the configured time zone (`started_on` beside
//! `started_at`), so that "March" is `started_on BETWEEN '2024-03-01' AND '2024-03-31'`
//! and needs no hand-written `AT TIME ZONE`. The KPIs' calendar is the same zone.
//!
//! The columns are computed when a query reads them (a projection over the scoped
//! table, planned like a view); a query that does not name them pays nothing. The zone
//! is applied as Arrow casts: the instant relabelled to the zone, then its local date.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Column;
use datafusion::datasource::ViewTable;
use datafusion::datasource::provider_as_source;
use datafusion::error::Result;
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown, TableType, cast, col,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use super::DATABASE;
use crate::error::AnalyticsError;

/// Give every published table of `ctx` its local date columns in `tz`.
pub async fn add(ctx: &SessionContext, tz: &str) -> Result<(), AnalyticsError> {
    let Some(schema) = ctx.catalog(DATABASE).and_then(|c| c.schema("public")) else {
        return Ok(());
    };
    for name in schema.table_names() {
        let Some(table) = schema.table(&name).await.map_err(AnalyticsError::Query)? else {
            continue;
        };
        let columns = local_date_columns(&table.schema());
        if columns.is_empty() {
            continue;
        }
        let mut exprs: Vec<Expr> = table
            .schema()
            .fields()
            .iter()
            .map(|f| col(Column::new_unqualified(f.name())))
            .collect();
        for (at, on, unit) in columns {
            let local = DataType::Timestamp(unit, Some(tz.into()));
            exprs.push(
                cast(
                    cast(col(Column::new_unqualified(at)), local),
                    DataType::Date32,
                )
                .alias(on),
            );
        }
        let plan = LogicalPlanBuilder::scan(name.clone(), provider_as_source(table.clone()), None)
            .and_then(|b| b.project(exprs))
            .and_then(|b| b.build())
            .map_err(AnalyticsError::Query)?;
        schema
            .deregister_table(&name)
            .map_err(AnalyticsError::Query)?;
        schema
            .register_table(
                name.clone(),
                Arc::new(LocalDated::new(plan, table.table_type())),
            )
            .map_err(AnalyticsError::Query)?;
    }
    Ok(())
}

/// `(X_at, X_on, unit)` for each instant column that has no `X_on` beside it.
fn local_date_columns(schema: &SchemaRef) -> Vec<(String, String, TimeUnit)> {
    schema
        .fields()
        .iter()
        .filter_map(|f| {
            let DataType::Timestamp(unit, Some(_)) = f.data_type() else {
                return None;
            };
            let on = format!("{}_on", f.name().strip_suffix("_at")?);
            schema
                .field_with_name(&on)
                .is_err()
                .then(|| (f.name().clone(), on, *unit))
        })
        .collect()
}

/// A table with its local date columns: a view over it, listed as the table was (the
/// raw event tables stay tables in `\dt`).
#[derive(Debug)]
struct LocalDated {
    view: ViewTable,
    table_type: TableType,
}

impl LocalDated {
    fn new(plan: LogicalPlan, table_type: TableType) -> LocalDated {
        LocalDated {
            view: ViewTable::new(plan, None),
            table_type,
        }
    }
}

#[async_trait]
impl TableProvider for LocalDated {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }
    fn table_type(&self) -> TableType {
        self.table_type
    }
    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        self.view.get_logical_plan()
    }
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.view.supports_filters_pushdown(filters)
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.view.scan(state, projection, filters, limit).await
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::execution::runtime_env::RuntimeEnv;

    use super::*;
    use crate::sql::{SqlLimits, session};

    /// 2024-03-31 20:00 UTC is already April 1st in Shanghai: "March" in an office's
    /// calendar ends at 16:00 UTC on the 31st.
    #[tokio::test]
    async fn local_dates_follow_the_configured_zone() {
        for (tz, expected) in [("Asia/Shanghai", "2024-04-01"), ("UTC", "2024-03-31")] {
            let ctx = session(Arc::new(RuntimeEnv::default()), &SqlLimits::default()).unwrap();
            let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
            let schema = Arc::new(Schema::new(vec![
                Field::new("started_at", ts.clone(), false),
                Field::new("ended_at", ts.clone(), true),
                Field::new("recorded_at", ts, false),
                Field::new("recorded_on", DataType::Utf8, false),
            ]));
            let at = 1_711_915_200_000_000; // 2024-03-31T20:00:00Z
            let instant =
                || Arc::new(TimestampMicrosecondArray::from(vec![at]).with_timezone("UTC"));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    instant(),
                    Arc::new(TimestampMicrosecondArray::from(vec![None]).with_timezone("UTC")),
                    instant(),
                    Arc::new(StringArray::from(vec!["kept"])),
                ],
            )
            .unwrap();
            let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
            ctx.register_table("records", Arc::new(table)).unwrap();
            add(&ctx, tz).await.unwrap();
            let batches = ctx
                .sql("SELECT CAST(started_on AS VARCHAR), ended_on, recorded_on FROM records")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let row = &batches[0];
            let text =
                |c: usize| arrow::util::display::array_value_to_string(row.column(c), 0).unwrap();
            assert_eq!(text(0), expected, "{tz}");
            assert!(row.column(1).is_null(0), "a NULL instant has a NULL date");
            assert_eq!(text(2), "kept", "a column of that name is left as it is");
            let table = ctx.table_provider("records").await.unwrap();
            assert_eq!(
                table.table_type(),
                TableType::Base,
                "still listed as a table"
            );
        }
    }
}
