//! `wenming kpi`, `wenming sql`, `wenming quality`: the query layer from the command line.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use wenming_analytics::encode::{self, Format};
use wenming_analytics::lineage::At;
use wenming_analytics::restatement::Restatement;
use wenming_analytics::sql::{SqlLimits, Truncated};
use wenming_analytics::{
    Analytics, AnalyticsError, Compare, Granularity, Kpi, KpiRequest, KpiResponse, Level, Scope,
    Settings,
};

use super::lake::LakeDir;

/// Settings of the query layer shared by the query commands.
#[derive(clap::Args)]
pub struct AnalyticsArgs {
    #[command(flatten)]
    pub lake: LakeDir,
    /// Time zone of calendar periods (IANA name).
    #[arg(long, env = "WENMING_ANALYTICS__TZ", default_value = "Asia/Shanghai")]
    pub tz: String,
    /// Target line of volunteer_registration_rate (shown in the catalog).
    #[arg(
        long,
        env = "WENMING_ANALYTICS__REGISTRATION_TARGET",
        default_value_t = 0.13
    )]
    pub registration_target: f64,
    /// Events ingested more than this many hours after they occurred are reported late.
    #[arg(
        long,
        env = "WENMING_ANALYTICS__LATE_AFTER_HOURS",
        default_value_t = 72
    )]
    pub late_after_hours: i64,
    /// Where KPI and SQL plans run: "embedded" (this process) or
    /// "ballista://host:port" (a Ballista scheduler of `wenming ballista`).
    #[arg(long, env = "WENMING_ANALYTICS__ENGINE", default_value = "embedded")]
    pub engine: String,
}

impl AnalyticsArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        Ok(Settings {
            tz: wenming_analytics::calendar::parse_tz(&self.tz).map_err(anyhow::Error::msg)?,
            registration_target: self.registration_target,
            late_after_hours: self.late_after_hours,
            engine: self.engine.parse().map_err(anyhow::Error::msg)?,
            ..Settings::default()
        })
    }

    pub async fn open(&self) -> anyhow::Result<Analytics> {
        Analytics::open(self.lake.location(), self.settings()?)
            .await
            .with_context(|| format!("cannot open the lake at {}", self.lake.path))
    }
}

const KPI_HELP: &str = "KPIs (kpis.md v1; `wenming kpi --list` prints each definition):
  participation  activities_held, participant_visits (参与人次), resident_visits (服务群众人次),
                 unique_participants, participation_rate
  coverage       active_station_rate, volunteer_registration_rate (注册率),
                 volunteer_activity_rate (活跃度)
  service        service_hours (服务时长), serving_volunteers, hours_per_volunteer,
                 hours_per_resident, star_volunteers
  orders         orders_placed, order_completion_rate, order_response_minutes_p50,
                 order_satisfaction
  rankings       volunteer_ranking (--top N)

Periods are calendar periods in --tz, labelled by their first day and clipped to
--from..--to (both inclusive). Every area of the level with a unit open during a period
gets a row, with 0 or null where nothing happened.";

/// Compute a KPI over the lake.
#[derive(clap::Args)]
#[command(after_help = KPI_HELP)]
pub struct KpiArgs {
    /// The KPI's name (see below).
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// Print the catalog: every KPI with its titles, unit and definition.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub analytics: AnalyticsArgs,
    /// First day (YYYY-MM-DD), inclusive.
    #[arg(long, required_unless_present = "list")]
    pub from: Option<NaiveDate>,
    /// Last day, inclusive.
    #[arg(long, required_unless_present = "list")]
    pub to: Option<NaiveDate>,
    /// day, week (ISO, from Monday), month, quarter, year or total.
    #[arg(long, short = 'g', default_value = "month")]
    pub granularity: Granularity,
    /// city, district, street or unit.
    #[arg(long, short = 'l', default_value = "city")]
    pub level: Level,
    /// Restrict to a district (6 digits), a street (9 digits) or a unit id.
    #[arg(long)]
    pub area: Option<String>,
    /// Add the previous period (mom) or the same period a year earlier (yoy).
    #[arg(long)]
    pub compare: Option<Compare>,
    /// volunteer_ranking: how many volunteers per period and area (default 10).
    #[arg(long)]
    pub top: Option<usize>,
    /// table, json (the contract's shape) or csv.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Compute the answer from all events with the reference computation (SQL over the
    /// views) rather than from the rollups, print it, and check that the rollups give
    /// the same: exit 1, naming the first row that differs, if they do not.
    #[arg(long)]
    pub exact_recompute: bool,
    #[command(flatten)]
    pub at: AtArgs,
    /// Print the restatement instead: the cells that differ between this snapshot (an
    /// earlier answer's `lineage.snapshot`, or an instant) and --changes-until (default
    /// the newest), each with the events that explain it.
    #[arg(long, conflicts_with_all = ["snapshot", "as_of", "exact_recompute"])]
    pub changes_since: Option<String>,
    /// The later snapshot of --changes-since (a snapshot id or an instant).
    #[arg(long, requires = "changes_since")]
    pub changes_until: Option<String>,
}

/// Which table versions to answer from (default: the newest).
#[derive(clap::Args)]
pub struct AtArgs {
    /// A snapshot id (an answer's `lineage.snapshot`): answer from those versions, the
    /// identical answer.
    #[arg(long, conflicts_with = "as_of")]
    pub snapshot: Option<String>,
    /// An instant (RFC 3339, e.g. 2024-04-01T09:00:00+08:00): answer from the versions
    /// current then.
    #[arg(long)]
    pub as_of: Option<String>,
}

impl AtArgs {
    pub fn at(&self) -> anyhow::Result<At> {
        At::from_params(self.snapshot.as_deref(), self.as_of.as_deref()).map_err(anyhow::Error::msg)
    }
}

/// A snapshot id, or an instant naming the versions current then.
fn snapshot_or_instant(v: &str) -> anyhow::Result<At> {
    let at = if v.trim().starts_with('s') {
        At::from_params(Some(v), None)
    } else {
        At::from_params(None, Some(v))
    };
    at.map_err(anyhow::Error::msg)
}

pub fn kpi(args: KpiArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        return list(&args);
    }
    let name = args.name.clone().expect("clap requires it");
    let kpi = Kpi::parse(&name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown KPI {name:?}; one of: {}",
            Kpi::ALL
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let req = KpiRequest {
        kpi,
        from: args.from.expect("clap requires it"),
        to: args.to.expect("clap requires it"),
        granularity: args.granularity,
        level: args.level,
        area: args.area.clone(),
        compare: args.compare,
        top: args.top,
    };
    let runtime = query_runtime()?;
    if let Some(since) = &args.changes_since {
        let since = snapshot_or_instant(since)?;
        let until = match &args.changes_until {
            Some(u) => snapshot_or_instant(u)?,
            None => At::Latest,
        };
        let restated = runtime.block_on(async {
            let analytics = args.analytics.open().await?;
            analytics
                .changes(&req, &Scope::City, &since, &until)
                .await
                .map_err(usage)
        })?;
        print_restatement(args.format, &restated)?;
        return Ok(ExitCode::SUCCESS);
    }
    let at = args.at.at()?;
    let (answer, rolled_up) = runtime.block_on(async {
        let analytics = args.analytics.open().await?;
        if !args.exact_recompute {
            let answer = analytics
                .kpi_at(&req, &Scope::City, &at)
                .await
                .map_err(usage)?;
            return anyhow::Ok((answer, None));
        }
        let exact = analytics
            .kpi_exact_at(&req, &Scope::City, &at)
            .await
            .map_err(usage)?;
        let rolled_up = analytics
            .kpi_at(&req, &Scope::City, &at)
            .await
            .map_err(usage)?;
        Ok((exact, Some(rolled_up)))
    })?;
    let bytes = encode::kpi(args.format, &answer)?;
    std::io::stdout().write_all(&bytes)?;
    if args.format != Format::Json
        && let Some(lineage) = &answer.lineage
    {
        eprintln!("snapshot: {}", lineage.snapshot);
    }
    if let Some(rolled_up) = rolled_up {
        return Ok(check_rollup(&answer, &rolled_up));
    }
    Ok(ExitCode::SUCCESS)
}

/// A restatement as JSON, or as a table of the changed cells and their causes.
fn print_restatement(format: Format, r: &Restatement) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut out, r)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} {}..{} by {} per {}: {} cell(s) changed from {} to {}",
        r.kpi,
        r.from,
        r.to,
        r.granularity.name(),
        r.level.name(),
        r.changes.len(),
        r.since.snapshot,
        r.until.snapshot
    )?;
    let num = |n: Option<wenming_analytics::Num>| serde_json::to_string(&n).unwrap_or_default();
    for c in &r.changes {
        let c_ = &c.causes;
        let causes: Vec<String> = [
            ("late", c_.late),
            ("new", c_.new),
            ("amended", c_.amended),
            ("revoked", c_.revoked),
            ("duplicates", c_.duplicates),
            ("updated", c_.updated),
            ("units", c_.units),
            ("volunteers", c_.volunteers),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
        writeln!(
            out,
            "{}  {:<12} {:>12} → {:<12} {}",
            c.period,
            c.area,
            num(c.old),
            num(c.new),
            causes.join(", ")
        )?;
    }
    Ok(())
}

/// Say on stderr whether the rollups' answer equals the reference answer.
fn check_rollup(exact: &KpiResponse, rolled_up: &KpiResponse) -> ExitCode {
    if exact == rolled_up {
        eprintln!(
            "kpi: recomputed exactly from all events: the rollups give the same {} rows",
            exact.rows.len()
        );
        return ExitCode::SUCCESS;
    }
    let differ = exact
        .rows
        .iter()
        .zip(&rolled_up.rows)
        .position(|(e, r)| e != r)
        .unwrap_or(exact.rows.len().min(rolled_up.rows.len()));
    eprintln!(
        "kpi: the rollups' answer differs from the exact recomputation ({} rows against {}); \
         first at row {}: exact {:?}, rollups {:?}. Please report it: the printed answer is \
         the exact one",
        rolled_up.rows.len(),
        exact.rows.len(),
        differ + 1,
        exact.rows.get(differ),
        rolled_up.rows.get(differ)
    );
    ExitCode::FAILURE
}

fn list(args: &KpiArgs) -> anyhow::Result<ExitCode> {
    let catalog = wenming_analytics::kpi::catalog::catalog(args.analytics.registration_target);
    let mut out = std::io::stdout().lock();
    if args.format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &catalog)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    for k in catalog {
        writeln!(
            out,
            "{} — {} / {} [{}]",
            k.name, k.title_zh, k.title_en, k.unit
        )?;
        writeln!(out, "    {}", k.definition)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A caller's mistake reads as one plain sentence.
fn usage(e: AnalyticsError) -> anyhow::Error {
    match e {
        AnalyticsError::BadRequest(m)
        | AnalyticsError::Refused(m)
        | AnalyticsError::Limit(m)
        | AnalyticsError::NotFound(m) => anyhow::anyhow!(m),
        AnalyticsError::History(h) => anyhow::anyhow!(h.to_string()),
        other => anyhow::Error::new(other),
    }
}

/// Run read-only SQL over the published tables and views.
#[derive(clap::Args)]
#[command(
    after_help = "Tables: units, volunteers, teams, activities, attendance, \
service_records, orders, points, wishes, feedback (current state, see docs/tables.md) and \
the raw event tables unit_events, team_events, volunteer_events, activity_events, \
attendance_events, service_events, order_events, points_events, wish_events, \
feedback_events. Only SELECT, WITH and EXPLAIN."
)]
pub struct SqlArgs {
    /// The query.
    pub query: String,
    #[command(flatten)]
    pub analytics: AnalyticsArgs,
    /// table, json, csv or arrow (IPC stream).
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Stop after this many rows.
    #[arg(long, default_value_t = 100_000)]
    pub max_rows: usize,
    /// Stop the query after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Memory the query may hold (MiB) before its sorts and aggregates spill to disk;
    /// past that it fails with an error naming the operator.
    #[arg(long, default_value_t = 512)]
    pub memory_mib: usize,
    #[command(flatten)]
    pub at: AtArgs,
}

pub fn sql(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let runtime = query_runtime()?;
    let limits = SqlLimits {
        timeout: std::time::Duration::from_secs(args.timeout_secs),
        max_rows: args.max_rows,
        memory_bytes: args.memory_mib.max(16) << 20,
        ..SqlLimits::default()
    };
    let at = args.at.at()?;
    let result = runtime.block_on(async {
        let analytics = args.analytics.open().await?;
        analytics
            .sql_at(&args.query, &Scope::City, &limits, &at)
            .await
            .map_err(usage)
    })?;
    if let Some(lineage) = &result.lineage {
        eprintln!("snapshot: {}", lineage.snapshot);
    }
    let bytes = encode::batches(args.format, &result.schema, &result.batches)?;
    std::io::stdout().write_all(&bytes)?;
    match result.truncated {
        Some(Truncated::Rows(n)) => eprintln!("note: stopped at {n} rows (--max-rows)"),
        Some(Truncated::Bytes(n)) => eprintln!("note: stopped at {n} bytes of result"),
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The data-quality report.
#[derive(clap::Args)]
pub struct QualityArgs {
    #[command(flatten)]
    pub analytics: AnalyticsArgs,
    /// table or json.
    #[arg(long, default_value = "table")]
    pub format: Format,
}

pub fn quality(args: QualityArgs) -> anyhow::Result<ExitCode> {
    let runtime = query_runtime()?;
    let report = runtime.block_on(async {
        let analytics = args.analytics.open().await?;
        analytics.quality(&Scope::City).await.map_err(usage)
    })?;
    let mut out = std::io::stdout().lock();
    if args.format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "events in the lake:")?;
    for (t, n) in &report.events {
        writeln!(out, "  {t:<20} {n:>12}")?;
    }
    writeln!(out, "checks:")?;
    for c in &report.checks {
        writeln!(out, "  {:<28} {:>10}  {}", c.name, c.count, c.description)?;
        if !c.examples.is_empty() {
            writeln!(
                out,
                "  {:<28} {:>10}  e.g. {}",
                "",
                "",
                c.examples.join(", ")
            )?;
        }
    }
    let Some(i) = &report.ingest else {
        return Ok(ExitCode::SUCCESS);
    };
    writeln!(
        out,
        "counted by ingest and import: {} stored, {} duplicates skipped, {} rejected",
        i.stored, i.duplicates, i.rejected
    )?;
    for (reason, n) in &i.rejected_by_reason {
        writeln!(out, "  {reason:<28} {n:>10}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A runtime whose threads have stacks for the deepest expressions a query may hold
/// (`wenming_analytics::sql::QUERY_STACK_BYTES`).
pub fn query_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(wenming_analytics::sql::QUERY_STACK_BYTES)
        .enable_all()
        .build()
}
