//! Analysts' SQL: read-only, over the published tables only, within limits.
//!
//! Three walls, each enough on its own for the attacks it names:
//! 1. The statement is parsed first and must be one `SELECT`/`WITH` query (or an
//!    `EXPLAIN` of one): DDL, DML, `COPY`, `CREATE EXTERNAL TABLE`, `SET` are refused
//!    before planning, by name.
//! 2. It is planned in a session that holds nothing but the published tables (already
//!    restricted to the caller's scope, see `Snapshot::scoped_context`), with
//!    `information_schema` off, no URL tables and no file-reading table functions:
//!    a name outside the catalog is simply not found.
//! 3. It runs with a memory pool of its own, a row cap and a timeout; dropping the
//!    future (a client hanging up) cancels it.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;

use crate::error::AnalyticsError;

/// Limits of one analyst query.
#[derive(Debug, Clone)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub max_rows: usize,
    pub memory_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            timeout: Duration::from_secs(30),
            max_rows: 100_000,
            memory_bytes: 512 << 20,
        }
    }
}

/// A query's result: the rows up to the cap, and whether more were cut off.
#[derive(Debug)]
pub struct SqlResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
}

impl SqlResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Refuse anything but one read-only query.
pub fn check_read_only(sql: &str) -> Result<(), AnalyticsError> {
    let statements = DFParser::parse_sql(sql)
        .map_err(|e| AnalyticsError::BadRequest(format!("cannot parse the SQL: {e}")))?;
    if statements.len() != 1 {
        return Err(AnalyticsError::Refused(format!(
            "send exactly one statement (got {})",
            statements.len()
        )));
    }
    check_statement(&statements[0])
}

fn check_statement(s: &DfStatement) -> Result<(), AnalyticsError> {
    let refuse = |what: &str| {
        Err(AnalyticsError::Refused(format!(
            "{what} is not allowed: only read-only queries (SELECT, WITH, EXPLAIN) over the published tables"
        )))
    };
    match s {
        DfStatement::Statement(st) => match st.as_ref() {
            Statement::Query(_) => Ok(()),
            Statement::Explain { statement, .. } => match statement.as_ref() {
                Statement::Query(_) => Ok(()),
                _ => refuse("EXPLAIN of a statement other than a query"),
            },
            Statement::Insert(_) | Statement::Update { .. } | Statement::Delete(_) => {
                refuse("changing data (INSERT, UPDATE, DELETE)")
            }
            Statement::Copy { .. } => refuse("COPY"),
            Statement::Set(_) => refuse("SET"),
            other => {
                let text = other.to_string();
                let word = text
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                refuse(&format!("the statement {word:?}"))
            }
        },
        DfStatement::CreateExternalTable(_) => refuse("CREATE EXTERNAL TABLE"),
        DfStatement::CopyTo(_) => refuse("COPY"),
        DfStatement::Explain(e) => check_statement(&e.statement),
        DfStatement::Reset(_) => refuse("RESET"),
    }
}

/// Run one read-only query within `limits`.
pub async fn run(
    ctx: &SessionContext,
    sql: &str,
    limits: &SqlLimits,
) -> Result<SqlResult, AnalyticsError> {
    check_read_only(sql)?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let work = async {
        let df = ctx
            .sql_with_options(sql, options)
            .await
            .map_err(plan_error)?;
        let schema: SchemaRef = df.schema().as_arrow().clone().into();
        let mut stream = df.execute_stream().await?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if rows + batch.num_rows() > limits.max_rows {
                batches.push(batch.slice(0, limits.max_rows - rows));
                truncated = true;
                break;
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok::<_, AnalyticsError>(SqlResult {
            schema,
            batches,
            truncated,
        })
    };
    match tokio::time::timeout(limits.timeout, work).await {
        Ok(result) => result.map_err(memory_error),
        Err(_) => Err(AnalyticsError::Cancelled(format!(
            "the query ran longer than its {} s limit and was stopped",
            limits.timeout.as_secs_f64()
        ))),
    }
}

/// Planning errors are the caller's: a table or column not found, a type mismatch.
fn plan_error(e: datafusion::error::DataFusionError) -> AnalyticsError {
    use datafusion::error::DataFusionError as E;
    match e.find_root() {
        E::Plan(_) | E::SQL(..) | E::SchemaError(..) | E::NotImplemented(_) => {
            AnalyticsError::BadRequest(format!("{}", e.find_root()))
        }
        _ => AnalyticsError::Query(e),
    }
}

fn memory_error(e: AnalyticsError) -> AnalyticsError {
    match e {
        AnalyticsError::Query(q)
            if matches!(
                q.find_root(),
                datafusion::error::DataFusionError::ResourcesExhausted(_)
            ) =>
        {
            AnalyticsError::Cancelled(format!(
                "the query needed more memory than its limit: {}",
                q.find_root()
            ))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queries_pass() {
        for ok in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "EXPLAIN SELECT * FROM units",
        ] {
            check_read_only(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "CREATE TABLE t (x INT)",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc'",
            "INSERT INTO units VALUES (1)",
            "DELETE FROM units",
            "UPDATE units SET level = 'x'",
            "DROP TABLE units",
            "COPY units TO '/tmp/x.parquet'",
            "SET datafusion.execution.batch_size = 1",
            "CREATE VIEW v AS SELECT 1",
            "SELECT 1; SELECT 2",
            "EXPLAIN COPY units TO '/tmp/x'",
        ] {
            assert!(check_read_only(bad).is_err(), "{bad} passed");
        }
    }
}
