//! The changes of the views since the version a rollup reflects, as the rollup's own
//! queries read them: the rows taken out and the rows put in.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use datafusion::catalog::MemTable;
use datafusion::prelude::SessionContext;

use super::columns::str_column;
use super::{participation, service};
use crate::error::AnalyticsError;
use crate::lakehouse::Snapshot;
use crate::materialized::Delta;
use crate::reference::collect;

/// The changes of a view's rows since its raw table's version `from`, as the rollup's
/// query reads them (rows taken out, rows put in), oldest first; `None` when the view was
/// not updated from there (computed whole, or too many versions ago).
pub async fn since(
    snapshot: &Snapshot,
    view: &'static str,
    from: Option<u64>,
) -> Result<Option<Vec<Changes>>, AnalyticsError> {
    let Some(materialized) = snapshot.view(view) else {
        return Ok(None);
    };
    materialized.rows().await?;
    let Some(chain) = materialized.delta().and_then(|d| d.since(from)) else {
        return Ok(None);
    };
    let sql = match view {
        "service_records" => service::SQL,
        _ => return Ok(None),
    };
    let mut out = Vec::new();
    for delta in chain {
        out.push((
            project(view, sql, &delta.replaced).await?,
            project(view, sql, &delta.added).await?,
        ));
    }
    Ok(Some(out))
}

/// `sql` over `rows` published as `table`.
pub async fn project(
    table: &str,
    sql: &str,
    rows: &[RecordBatch],
) -> Result<Vec<RecordBatch>, AnalyticsError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let ctx = datafusion::prelude::SessionContext::new();
    let mem = datafusion::catalog::MemTable::try_new(first.schema(), vec![rows.to_vec()])?;
    ctx.register_table(table, Arc::new(mem))?;
    collect(&ctx, sql).await
}

/// Rows as they were before the first change naming their entity, and the entities
/// named.
type FirstRows = (Vec<RecordBatch>, HashSet<String>);

/// Rows taken out, rows put in.
pub type Changes = (Vec<RecordBatch>, Vec<RecordBatch>);

/// The changes of `view` since its raw table's version `from`, oldest first: an empty
/// list when the version did not move, `None` when they do not reach back to it.
async fn deltas(
    snapshot: &Snapshot,
    view: &str,
    table: &str,
    from: Option<u64>,
) -> Result<Option<Vec<Arc<Delta>>>, AnalyticsError> {
    if snapshot.versions.get(table).copied().flatten() == from {
        return Ok(Some(Vec::new()));
    }
    let Some(materialized) = snapshot.view(view) else {
        return Ok(None);
    };
    materialized.rows().await?;
    Ok(materialized.delta().and_then(|d| d.since(from)))
}

/// Over a chain of changes keyed by `key`: each entity's rows as they were before the
/// first change that named it, and every entity named. `None` if a row has no key
/// (such rows are derived again at every change: the rollup is then built whole).
fn first_rows_and_keys(
    chain: &[Arc<Delta>],
    key: &str,
) -> Result<Option<FirstRows>, AnalyticsError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut first = Vec::new();
    for delta in chain {
        let mut named = Vec::new();
        for batch in &delta.replaced {
            let col = batch.schema().index_of(key)?;
            let keys = str_column(batch, col)?;
            let mut keep = Vec::with_capacity(batch.num_rows());
            for i in 0..batch.num_rows() {
                let Some(k) = keys.get(i) else {
                    return Ok(None);
                };
                keep.push(!seen.contains(k));
                named.push(k.to_string());
            }
            first.push(arrow::compute::filter_record_batch(
                batch,
                &BooleanArray::from(keep),
            )?);
        }
        for batch in &delta.added {
            let keys = str_column(batch, batch.schema().index_of(key)?)?;
            for i in 0..batch.num_rows() {
                let Some(k) = keys.get(i) else {
                    return Ok(None);
                };
                named.push(k.to_string());
            }
        }
        seen.extend(named);
    }
    Ok(Some((first, seen)))
}

/// The participation rollup's rows (`participation::SQL`) of every activity whose
/// facts changed since `from` (versions of activity_events, attendance_events): as they
/// were, and as they are. `None` when the changes do not reach back that far.
pub async fn participation(
    snapshot: &Snapshot,
    from: (Option<u64>, Option<u64>),
) -> Result<Option<Changes>, AnalyticsError> {
    let Some(activities) = deltas(snapshot, "activities", "activity_events", from.0).await? else {
        return Ok(None);
    };
    let Some(attendance) = deltas(snapshot, "attendance", "attendance_events", from.1).await?
    else {
        return Ok(None);
    };
    let (Some((old_activities, changed_activities)), Some((old_attendance, changed_attendance))) = (
        first_rows_and_keys(&activities, "activity_id")?,
        first_rows_and_keys(&attendance, "activity_id")?,
    ) else {
        return Ok(None);
    };
    let (Some(now_activities), Some(now_attendance)) =
        (snapshot.view("activities"), snapshot.view("attendance"))
    else {
        return Ok(None);
    };
    let (now_activities, now_attendance) =
        (now_activities.rows().await?, now_attendance.rows().await?);
    let all: HashSet<&String> = changed_activities
        .iter()
        .chain(&changed_attendance)
        .collect();
    let ids = |set: &mut dyn Iterator<Item = &String>| -> Result<Arc<MemTable>, AnalyticsError> {
        let array = arrow::array::StringArray::from_iter_values(set);
        let batch = RecordBatch::try_from_iter(vec![("id", Arc::new(array) as _)])?;
        Ok(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?))
    };
    // One session for both sides: the activities and check-ins of the changed
    // activities, then and now.
    let ctx = SessionContext::new();
    ctx.register_table("k_all", ids(&mut all.iter().copied())?)?;
    ctx.register_table("k_activities", ids(&mut changed_activities.iter())?)?;
    ctx.register_table("k_attendance", ids(&mut changed_attendance.iter())?)?;
    ctx.register_table("now_activities", now_activities)?;
    ctx.register_table("now_attendance", now_attendance)?;
    // Each changed activity as it was: its rows before the first change that named it,
    // or (unchanged in that view) its rows now.
    let was = |table: &str, old: &[RecordBatch]| -> Result<String, AnalyticsError> {
        let mut sql = format!(
            "SELECT * FROM now_{table} WHERE activity_id IN (SELECT id FROM k_all) \
             AND activity_id NOT IN (SELECT id FROM k_{table})"
        );
        if let Some(b) = old.first() {
            let rows = MemTable::try_new(b.schema(), vec![old.to_vec()])?;
            ctx.register_table(format!("old_{table}"), Arc::new(rows))?;
            sql.push_str(&format!(" UNION ALL SELECT * FROM old_{table}"));
        }
        Ok(sql)
    };
    let (was_activities, was_attendance) = (
        was("activities", &old_activities)?,
        was("attendance", &old_attendance)?,
    );
    let sides = [
        (was_activities, was_attendance),
        (
            "SELECT * FROM now_activities WHERE activity_id IN (SELECT id FROM k_all)".to_string(),
            "SELECT * FROM now_attendance WHERE activity_id IN (SELECT id FROM k_all)".to_string(),
        ),
    ];
    let mut out = Vec::new();
    for (activities, attendance) in sides {
        let sql = format!(
            "WITH activities AS ({activities}), attendance AS ({attendance}) {}",
            participation::SQL
        );
        out.push(ctx.sql(&sql).await?.collect().await?);
    }
    let after = out.pop().expect("two sides");
    let before = out.pop().expect("two sides");
    Ok(Some((before, after)))
}
