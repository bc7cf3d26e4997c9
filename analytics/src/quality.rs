//! The data-quality report: what in the lake the KPIs cannot use or should be doubted
//! for. Each check is one SQL question over the raw tables and views, restricted to
//! the caller's scope like every other answer.

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;
use serde::Serialize;
use wenming_schemas::Family;

use crate::error::AnalyticsError;
use crate::reference::{collect, ints, strings};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub description: &'static str,
    pub count: i64,
    /// Up to ten example ids (event ids unless said otherwise), for finding them.
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QualityReport {
    /// Events per raw table (in scope).
    pub events: BTreeMap<&'static str, i64>,
    pub checks: Vec<Check>,
    /// What ingest and import counted, from their run records: for the whole city only
    /// (a rejected event has no trustworthy unit), so `null` for a narrower scope.
    pub ingest: Option<IngestCounts>,
    /// Events counted late landed when the stream's newest event was more than this many
    /// hours newer than theirs.
    pub late_after_hours: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct IngestCounts {
    pub stored: i64,
    pub duplicates: i64,
    pub rejected: i64,
    /// Rejections by reason code.
    pub rejected_by_reason: BTreeMap<String, i64>,
}

/// `in_scope` is a SQL condition on a table alias `e` with a `unit_id` column (or
/// `TRUE` for the whole city): the scope as the query layer applies it.
pub async fn report(
    ctx: &SessionContext,
    in_scope: &str,
    late_after_hours: i64,
    ingest: Option<IngestCounts>,
) -> Result<QualityReport, AnalyticsError> {
    let mut events = BTreeMap::new();
    for f in Family::ALL {
        let t = f.table_name();
        let b = collect(ctx, &format!("SELECT count(*) FROM {t} e WHERE {in_scope}")).await?;
        events.insert(
            t,
            b.first()
                .map(|b| ints(b, 0))
                .transpose()?
                .and_then(|v| v[0])
                .unwrap_or(0),
        );
    }
    let mut checks = Vec::new();
    checks.push(
        check(
            ctx,
            "orphan_check_ins",
            "check-ins whose activity was never published (left out of participation KPIs)",
            &format!(
                "SELECT e.event_id FROM attendance_events e \
                 WHERE {in_scope} AND e.activity_id NOT IN (SELECT activity_id FROM activities)"
            ),
        )
        .await?,
    );
    for (name, kind, description) in [
        (
            "amendments_without_records",
            "service.amended",
            "service.amended events for a record_id with no service.recorded (not counted)",
        ),
        (
            "revocations_without_records",
            "service.revoked",
            "service.revoked events for a record_id with no service.recorded",
        ),
    ] {
        let sql = format!(
            "SELECT e.event_id FROM service_events e WHERE {in_scope} \
             AND e.\"type\" = '{kind}' AND e.record_id NOT IN \
               (SELECT record_id FROM service_events WHERE \"type\" = 'service.recorded')"
        );
        checks.push(check(ctx, name, description, &sql).await?);
    }
    // Late arrivals are measured against the stream's own clock, its watermark: the
    // newest `occurred_at` the lake had received by the time an event landed (events land
    // in batches, each with one `ingested_at`). An event that occurred more than
    // `late_after_hours` before that watermark arrived after its period had moved on:
    // figures of that period may have been reported without it. Against the wall clock
    // instead, every event of a replayed or imported history would count as late; live,
    // the watermark is the wall clock.
    let late_us = late_after_hours * 3_600_000_000;
    let arrivals = Family::ALL
        .iter()
        .map(|f| {
            format!(
                "SELECT e.ingested_at, e.occurred_at FROM {} e WHERE {in_scope}",
                f.table_name()
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    // One row per landing batch; cached once in memory, since every raw table's check
    // looks its batch up.
    let marks = ctx
        .sql(&format!(
            "SELECT ingested_at, max(newest) OVER (ORDER BY ingested_at \
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS watermark \
             FROM (SELECT ingested_at, max(occurred_at) AS newest FROM ({arrivals}) a \
                   GROUP BY ingested_at) g"
        ))
        .await?
        .cache()
        .await?;
    ctx.register_table("q_marks", marks.into_view())?;
    // Checks over every raw table: one SELECT of event ids per table, unioned.
    for (name, description, condition) in [
        (
            "events_for_unknown_units",
            "events naming a unit that has no unit.registered (not counted by any KPI)",
            "AND e.unit_id NOT IN (SELECT unit_id FROM units)".to_string(),
        ),
        (
            "late_arrivals",
            "events that landed when the stream had passed their time by more than the late threshold: figures of their period may have been reported without them",
            format!(
                "AND CAST((SELECT max(m.watermark) FROM q_marks m WHERE m.ingested_at = e.ingested_at) AS BIGINT) \
                 - CAST(e.occurred_at AS BIGINT) > {late_us}"
            ),
        ),
        (
            "duplicate_events_in_lake",
            "event ids stored more than once (outside ingest's dedup window); counted once by every KPI",
            "GROUP BY e.event_id HAVING count(*) > 1".to_string(),
        ),
    ] {
        let sql = Family::ALL
            .iter()
            .map(|f| {
                format!(
                    "SELECT e.event_id FROM {} e WHERE {in_scope} {condition}",
                    f.table_name()
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        checks.push(check(ctx, name, description, &sql).await?);
    }
    Ok(QualityReport {
        events,
        checks,
        ingest,
        late_after_hours,
    })
}

async fn check(
    ctx: &SessionContext,
    name: &'static str,
    description: &'static str,
    ids_sql: &str,
) -> Result<Check, AnalyticsError> {
    let count = collect(ctx, &format!("SELECT count(*) FROM ({ids_sql}) q")).await?;
    let count = count
        .first()
        .map(|b| ints(b, 0))
        .transpose()?
        .and_then(|v| v[0])
        .unwrap_or(0);
    let mut examples = Vec::new();
    if count > 0 {
        for b in collect(
            ctx,
            &format!("SELECT * FROM ({ids_sql}) q ORDER BY 1 LIMIT 10"),
        )
        .await?
        {
            examples.extend(strings(&b, 0)?.into_iter().flatten());
        }
    }
    Ok(Check {
        name,
        description,
        count,
        examples,
    })
}
