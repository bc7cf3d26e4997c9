//! Restatements (数据修订说明): which cells of a KPI answer changed between two snapshots,
//! and the events that arrived in between that explain each.
//!
//! The events of a table new in `until` are those whose `event_id` `since` does not hold
//! (compaction rewrites files, never events). Each is given one cause and counted toward
//! the cells it feeds: the cell of its unit's area (at the question's level, inside the
//! caller's scope) and of the period its fact belongs to — a service record's `started_at`
//! (an amendment or revocation: its record's), a check-in's activity's `starts_at`, an
//! order's placement. Reference events (units, volunteers) and, for `star_volunteers`,
//! service (cumulative hours) count toward every period whose end they precede. So a
//! changed cell's causes add up to the new events that feed it.

use std::collections::{BTreeMap, HashMap};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::NaiveDate;
use datafusion::prelude::{SessionConfig, SessionContext};
use serde::Serialize;

use crate::calendar::Periods;
use crate::error::AnalyticsError;
use crate::kpi::frame::unit_areas;
use crate::kpi::{Kpi, KpiRequest, KpiResponse, Num, Row};
use crate::lakehouse::Snapshot;
use crate::lineage::Lineage;
use crate::reference::Reference;
use crate::scope::Scope;

/// Why a cell changed: the new events feeding it, by kind. They add up to all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Causes {
    /// First news of a fact (a record, check-in, activity, order) that happened (its
    /// record's start, its activity's start, its order's placement) before the earlier
    /// snapshot's last commit: it arrived late for its period.
    pub late: u64,
    /// First news of a fact that happened after the earlier snapshot's last commit.
    pub new: u64,
    /// `service.amended`.
    pub amended: u64,
    /// `service.revoked`.
    pub revoked: u64,
    /// Facts already known, sent again (a record recorded again, a person checked in
    /// twice): one fact, counted once; the latest recording wins.
    pub duplicates: u64,
    /// Later events of a known activity or order (re-published, cancelled, completed;
    /// dispatched, accepted, completed, rated).
    pub updated: u64,
    /// Units registered, updated (residents) or closed.
    pub units: u64,
    /// Volunteers registered or deregistered.
    pub volunteers: u64,
}

impl Causes {
    pub fn total(&self) -> u64 {
        self.late
            + self.new
            + self.amended
            + self.revoked
            + self.duplicates
            + self.updated
            + self.units
            + self.volunteers
    }

    fn add(&mut self, kind: &str, late: bool) {
        match kind {
            "first" if late => self.late += 1,
            "first" => self.new += 1,
            "amended" => self.amended += 1,
            "revoked" => self.revoked += 1,
            "duplicates" => self.duplicates += 1,
            "updated" => self.updated += 1,
            "units" => self.units += 1,
            _ => self.volunteers += 1,
        }
    }
}

/// One cell whose value differs between the two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub period: NaiveDate,
    pub area: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub star: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    pub old: Option<Num>,
    pub new: Option<Num>,
    pub old_numerator: Option<Num>,
    pub new_numerator: Option<Num>,
    pub old_denominator: Option<Num>,
    pub new_denominator: Option<Num>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_volunteer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_volunteer_id: Option<String>,
    pub causes: Causes,
}

/// The changed cells of one question between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct Restatement {
    pub kpi: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub granularity: crate::calendar::Granularity,
    pub level: crate::scope::Level,
    pub area: Option<String>,
    pub since: Lineage,
    pub until: Lineage,
    /// The new events between the two snapshots feeding this question's cells.
    pub events: Causes,
    pub changes: Vec<Change>,
}

/// The cells of `old` and `new` (answers of one question) that differ, each with its
/// causes counted from the events `until` holds and `since` does not.
#[allow(clippy::too_many_arguments)]
pub async fn restate(
    req: &KpiRequest,
    scope: &Scope,
    old: &KpiResponse,
    new: &KpiResponse,
    since: &Snapshot,
    until: &Snapshot,
    refd: &Reference,
    tz: chrono_tz::Tz,
) -> Result<Restatement, AnalyticsError> {
    let periods =
        Periods::new(req.from, req.to, req.granularity, tz).map_err(AnalyticsError::BadRequest)?;
    let mut scopes = vec![scope.clone()];
    if let Some(area) = &req.area {
        scopes.push(Scope::from_area(area));
    }
    let areas = unit_areas(refd, req.level, &scopes);
    let since_at = since
        .span
        .last_commit_at
        .map_or(i64::MIN, |t| t.timestamp_micros());
    let mut cells: HashMap<(usize, String), Causes> = HashMap::new();
    let mut events = Causes::default();
    for (kind, unit, at, stock) in new_events(req.kpi, since, until).await? {
        let Some(area) = refd.unit_index.get(&unit).and_then(|i| areas[*i].clone()) else {
            continue;
        };
        let b = periods.bucket(at);
        let n = periods.len() as i32;
        let fed = if stock {
            b.max(0)..n
        } else {
            b..(b + 1).min(n)
        };
        let late = at < since_at;
        let mut feeds = false;
        for i in fed.filter(|i| *i >= 0) {
            cells
                .entry((i as usize, area.clone()))
                .or_default()
                .add(&kind, late);
            feeds = true;
        }
        if feeds {
            events.add(&kind, late);
        }
    }
    let index: HashMap<NaiveDate, usize> = periods
        .periods
        .iter()
        .enumerate()
        .map(|(i, p)| (p.label, i))
        .collect();
    let key = |r: &Row| (r.period, r.area.clone(), r.star, r.rank);
    let before: BTreeMap<_, &Row> = old.rows.iter().map(|r| (key(r), r)).collect();
    let after: BTreeMap<_, &Row> = new.rows.iter().map(|r| (key(r), r)).collect();
    let mut keys: Vec<_> = before.keys().chain(after.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let mut changes = Vec::new();
    for k in keys {
        let (o, n) = (before.get(&k).copied(), after.get(&k).copied());
        let field = |r: Option<&Row>, f: fn(&Row) -> Option<Num>| r.and_then(f);
        let vol = |r: Option<&Row>| r.and_then(|r| r.volunteer_id.clone());
        let same = field(o, |r| r.value) == field(n, |r| r.value)
            && field(o, |r| r.numerator) == field(n, |r| r.numerator)
            && field(o, |r| r.denominator) == field(n, |r| r.denominator)
            && vol(o) == vol(n)
            && o.is_some() == n.is_some();
        if same {
            continue;
        }
        let (period, area, star, rank) = k;
        let causes = index
            .get(&period)
            .and_then(|i| cells.get(&(*i, area.clone())))
            .cloned()
            .unwrap_or_default();
        changes.push(Change {
            period,
            area_name: n.or(o).and_then(|r| r.area_name.clone()),
            area,
            star,
            rank,
            old: field(o, |r| r.value),
            new: field(n, |r| r.value),
            old_numerator: field(o, |r| r.numerator),
            new_numerator: field(n, |r| r.numerator),
            old_denominator: field(o, |r| r.denominator),
            new_denominator: field(n, |r| r.denominator),
            old_volunteer_id: vol(o),
            new_volunteer_id: vol(n),
            causes,
        });
    }
    Ok(Restatement {
        kpi: req.kpi.name().to_string(),
        from: req.from,
        to: req.to,
        granularity: req.granularity,
        level: req.level,
        area: req.area.clone(),
        since: old.lineage.clone().expect("answers carry their lineage"),
        until: new.lineage.clone().expect("answers carry their lineage"),
        events,
        changes,
    })
}

/// (kind, unit, instant of its fact, counts toward later periods too).
type NewEvent = (String, String, i64, bool);

/// The events of the tables `kpi` reads that `until` holds and `since` does not, each
/// with its kind and the unit and instant of the fact it feeds.
async fn new_events(
    kpi: Kpi,
    since: &Snapshot,
    until: &Snapshot,
) -> Result<Vec<NewEvent>, AnalyticsError> {
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), until.runtime());
    for (name, provider) in &until.tables {
        ctx.register_table(format!("u_{name}"), provider.clone())?;
    }
    for (name, provider) in &since.tables {
        ctx.register_table(format!("s_{name}"), provider.clone())?;
    }
    let cumulative = kpi == Kpi::StarVolunteers;
    let mut queries: Vec<(String, bool)> = vec![
        (reference_sql("unit_events", "units"), true),
        (reference_sql("volunteer_events", "volunteers"), true),
    ];
    for table in crate::rollup::tables_of(kpi) {
        let (key, sql) = match *table {
            "service_events" => ("x.record_id", SERVICE_SQL),
            "attendance_events" => ("x.activity_id, x.person_id", ATTENDANCE_SQL),
            "activity_events" => ("x.activity_id", ACTIVITY_SQL),
            "order_events" => ("x.order_id", ORDER_SQL),
            _ => continue,
        };
        let sql = format!("{NEW}{sql}")
            .replace("{activities}", ACTIVITIES)
            .replace("{key}", key)
            .replace("{t}", table);
        queries.push((sql, cumulative));
    }
    let mut out = Vec::new();
    for (sql, stock) in queries {
        for batch in ctx.sql(&sql).await?.collect().await? {
            let micros = |i: usize| {
                arrow::compute::cast(
                    batch.column(i),
                    &DataType::Timestamp(TimeUnit::Microsecond, None),
                )
            };
            let text = |i: usize| arrow::compute::cast(batch.column(i), &DataType::Utf8);
            let (kind, unit) = (text(0)?, text(1)?);
            let (kind, unit) = (kind.as_string::<i32>(), unit.as_string::<i32>());
            let at = micros(2)?;
            let at = at.as_primitive::<TimestampMicrosecondType>();
            for i in 0..batch.num_rows() {
                out.push((
                    kind.value(i).to_string(),
                    unit.value(i).to_string(),
                    at.value(i),
                    stock,
                ));
            }
        }
    }
    Ok(out)
}

/// The new events of `{t}`, each numbered among the new ones of its entity and type.
const NEW: &str = "WITH n AS (SELECT x.*, ROW_NUMBER() OVER (PARTITION BY {key}, x.type \
    ORDER BY x.occurred_at, x.event_id) AS nth FROM u_{t} x \
    WHERE NOT EXISTS (SELECT 1 FROM s_{t} o WHERE o.event_id = x.event_id)) ";

const SERVICE_SQL: &str = ", rec AS (SELECT record_id, unit_id, started_at FROM (SELECT record_id, \
    unit_id, started_at, ROW_NUMBER() OVER (PARTITION BY record_id ORDER BY occurred_at DESC, \
    event_id DESC) AS rn FROM u_{t} WHERE type = 'service.recorded') WHERE rn = 1), \
    known AS (SELECT DISTINCT record_id FROM s_{t} WHERE type = 'service.recorded') \
    SELECT CASE WHEN n.type = 'service.amended' THEN 'amended' \
    WHEN n.type = 'service.revoked' THEN 'revoked' \
    WHEN k.record_id IS NOT NULL OR n.nth > 1 THEN 'duplicates' ELSE 'first' END AS kind, \
    COALESCE(r.unit_id, n.unit_id) AS unit_id, COALESCE(r.started_at, n.occurred_at) AS at \
    FROM n LEFT JOIN rec r ON r.record_id = n.record_id \
    LEFT JOIN known k ON k.record_id = n.record_id";

const ACTIVITIES: &str = ", act AS (SELECT activity_id, unit_id, starts_at FROM (SELECT \
    activity_id, unit_id, starts_at, ROW_NUMBER() OVER (PARTITION BY activity_id ORDER BY \
    occurred_at DESC, event_id DESC) AS rn FROM u_activity_events \
    WHERE type = 'activity.published') WHERE rn = 1)";

const ATTENDANCE_SQL: &str = "{activities}, known AS (SELECT DISTINCT activity_id, person_id \
    FROM s_{t}) SELECT CASE WHEN k.activity_id IS NOT NULL OR n.nth > 1 THEN 'duplicates' \
    ELSE 'first' END AS kind, COALESCE(a.unit_id, n.unit_id) AS unit_id, \
    COALESCE(a.starts_at, n.occurred_at) AS at FROM n \
    LEFT JOIN act a ON a.activity_id = n.activity_id \
    LEFT JOIN known k ON k.activity_id = n.activity_id AND k.person_id = n.person_id";

const ACTIVITY_SQL: &str = "{activities}, known AS (SELECT DISTINCT activity_id FROM s_{t} \
    WHERE type = 'activity.published') SELECT CASE WHEN n.type = 'activity.published' \
    AND k.activity_id IS NULL AND n.nth = 1 THEN 'first' ELSE 'updated' END AS kind, \
    COALESCE(a.unit_id, n.unit_id) AS unit_id, COALESCE(a.starts_at, n.occurred_at) AS at \
    FROM n LEFT JOIN act a ON a.activity_id = n.activity_id \
    LEFT JOIN known k ON k.activity_id = n.activity_id";

const ORDER_SQL: &str = ", placed AS (SELECT order_id, unit_id, occurred_at AS at FROM (SELECT \
    order_id, unit_id, occurred_at, ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY \
    occurred_at, event_id) AS rn FROM u_{t} WHERE type = 'order.placed') WHERE rn = 1), \
    known AS (SELECT DISTINCT order_id FROM s_{t} WHERE type = 'order.placed') \
    SELECT CASE WHEN n.type = 'order.placed' AND k.order_id IS NULL AND n.nth = 1 \
    THEN 'first' ELSE 'updated' END AS kind, COALESCE(p.unit_id, n.unit_id) AS unit_id, \
    COALESCE(p.at, n.occurred_at) AS at FROM n \
    LEFT JOIN placed p ON p.order_id = n.order_id LEFT JOIN known k ON k.order_id = n.order_id";

fn reference_sql(table: &str, kind: &str) -> String {
    format!(
        "SELECT '{kind}' AS kind, x.unit_id, x.occurred_at AS at FROM u_{table} x \
         WHERE NOT EXISTS (SELECT 1 FROM s_{table} o WHERE o.event_id = x.event_id)"
    )
}
