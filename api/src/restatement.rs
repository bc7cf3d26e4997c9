//! The restatement sheet of an export run (数据修订说明): when a period is exported again
//! after its earlier run, the cells whose figures moved since that run, each with the
//! events that explain it, written beside the files as `<name>_<period>_restatement.csv`.

use std::sync::Arc;

use wenming_analytics::lineage::{At, SnapshotId};
use wenming_analytics::restatement::Restatement;
use wenming_analytics::{Analytics, AnalyticsError, KpiRequest, Num, Scope};

pub const COLUMNS: [&str; 14] = [
    "kpi",
    "period",
    "area",
    "area_name",
    "star",
    "rank",
    "old",
    "new",
    "late",
    "new_events",
    "amended",
    "revoked",
    "duplicates",
    "other",
];

/// Whether `earlier` names versions no newer than `later`'s, table by table (a run
/// pinned to an older snapshot is not restated against a newer run).
pub fn is_before(earlier: &SnapshotId, later: &SnapshotId) -> bool {
    let (e, l) = (earlier.versions(), later.versions());
    earlier != later
        && e.iter()
            .all(|(t, v)| v.unwrap_or(0) <= l.get(t).copied().flatten().unwrap_or(0))
}

/// The restatement of each question between the two snapshots.
pub async fn restate(
    analytics: &Arc<Analytics>,
    questions: &[KpiRequest],
    scope: &Scope,
    since: &SnapshotId,
    until: &SnapshotId,
) -> Result<Vec<Restatement>, AnalyticsError> {
    let mut out = Vec::new();
    for q in questions {
        let since = At::Snapshot(since.clone());
        let until = At::Snapshot(until.clone());
        out.push(analytics.changes(q, scope, &since, &until).await?);
    }
    Ok(out)
}

/// The sheet as CSV, one row per changed cell; returns the bytes and the row count.
pub fn csv(restated: &[Restatement]) -> Result<(Vec<u8>, usize), AnalyticsError> {
    let num = |n: Option<Num>| match n {
        Some(Num::Int(i)) => i.to_string(),
        Some(Num::Real(f)) => f.to_string(),
        None => String::new(),
    };
    let mut rows = Vec::new();
    for r in restated {
        for c in &r.changes {
            let k = &c.causes;
            rows.push(vec![
                r.kpi.clone(),
                c.period.to_string(),
                c.area.clone(),
                c.area_name.clone().unwrap_or_default(),
                c.star.map(|s| s.to_string()).unwrap_or_default(),
                c.rank.map(|s| s.to_string()).unwrap_or_default(),
                num(c.old),
                num(c.new),
                k.late.to_string(),
                k.new.to_string(),
                k.amended.to_string(),
                k.revoked.to_string(),
                k.duplicates.to_string(),
                (k.updated + k.units + k.volunteers).to_string(),
            ]);
        }
    }
    let n = rows.len();
    Ok((wenming_analytics::encode::csv(&COLUMNS, &rows)?, n))
}
