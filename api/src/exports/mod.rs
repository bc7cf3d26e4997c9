//! Scheduled KPI exports: `[[exports]]` name a set of KPIs, a level, a scope and
//! formats; each run writes `<output>/<name>/<scope>/<period>/` with one file per format
//! (`<name>_<period>.csv|xlsx|parquet`) and `manifest.json` (files, SHA-256, rows,
//! the lineage every answer was computed from, generated_at); a period run again on
//! newer data also gets `<name>_<period>_restatement.csv`, what moved since the run
//! before. `<scope>` is the scope the run covered (`city`,
//! `district-330203`, …): a caller whose token is narrower than the export's scope runs
//! it for their own part, into a folder of its own, and never replaces the files of a
//! wider scope. Re-running a period rewrites the same files, one run of an export,
//! scope and period at a time. The scheduler fires on the cron schedule and, at start,
//! runs once for a fire time missed while the service was down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::{Datelike, Months, NaiveDate};
use chrono_tz::Tz;
use serde::Serialize;
use sha2::{Digest, Sha256};
use wenming_analytics::lineage::{At, Lineage, SnapshotId};
use wenming_analytics::{Analytics, Granularity, Kpi, KpiRequest, KpiResponse, Level, Num, Scope};

use crate::config::ExportConfig;
use crate::cron::Schedule;

pub mod claims;
mod files;
#[cfg(test)]
mod tests;

pub(crate) use files::xlsx;
use files::{csv, parquet};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("export {name:?}: {message}")]
    Config { name: String, message: String },
    /// Said alike of an export that does not exist and of one outside the caller's scope.
    #[error("no export named {0:?} in your scope")]
    Unknown(String),
    #[error(
        "bad period {0:?}: use YYYY-MM (month 01-12), YYYY-Qn (quarter 1-4) or YYYY (year), with a year from 1000 to 9999"
    )]
    Period(String),
    #[error(transparent)]
    Query(#[from] wenming_analytics::AnalyticsError),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// One configured export, checked.
#[derive(Debug, Clone)]
pub struct Export {
    pub name: String,
    pub schedule: Schedule,
    pub schedule_text: String,
    pub tz: Tz,
    pub kpis: Vec<Kpi>,
    pub level: Level,
    pub granularity: Granularity,
    pub period: String,
    pub scope: Scope,
    pub formats: Vec<String>,
    pub output: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile {
    pub name: String,
    pub format: String,
    pub sha256: String,
    pub bytes: u64,
    pub rows: usize,
}

impl ManifestFile {
    /// Write `bytes` to `path` (atomically) and describe the file for the manifest.
    fn written(
        path: &Path,
        name: String,
        format: &str,
        bytes: &[u8],
        rows: usize,
    ) -> Result<ManifestFile, ExportError> {
        write_atomically(path, bytes)?;
        Ok(ManifestFile {
            name,
            format: format.to_string(),
            sha256: Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            bytes: bytes.len() as u64,
            rows,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub export: String,
    pub period: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub granularity: Granularity,
    pub level: Level,
    pub scope: String,
    pub kpis: Vec<String>,
    pub files: Vec<ManifestFile>,
    pub table_versions: BTreeMap<String, Option<u64>>,
    /// The last event the lake held: a period that starts after it has no data yet, and
    /// its files say so (`no_data_yet`) rather than passing zeros off as figures.
    pub data_through: Option<chrono::DateTime<chrono::Utc>>,
    pub no_data_yet: bool,
    /// The snapshot every answer of the run was computed from: re-run with it
    /// (`--snapshot`, `?snapshot=`), the export writes files of the same SHA-256.
    pub lineage: Lineage,
    /// When the period was run before from older data: that run's snapshot, and the
    /// files include `<name>_<period>_restatement.csv`, the cells that moved since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restated_since: Option<String>,
    pub generated_at: String,
}

pub struct Exports {
    pub exports: Vec<Export>,
    analytics: Arc<Analytics>,
    /// One run at a time per folder (export, scope, period), so that a manifest always
    /// describes the files beside it.
    running: std::sync::Mutex<BTreeMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Scheduled fires claimed in the lake, so that of several replicas one runs each;
    /// `None`: this process alone keeps the schedule.
    claims: Option<claims::Claims>,
}

impl Exports {
    pub fn new(
        configs: &[ExportConfig],
        default_tz: Tz,
        analytics: Arc<Analytics>,
    ) -> Result<Exports, ExportError> {
        let mut exports = Vec::new();
        for c in configs {
            let bad = |message: String| ExportError::Config {
                name: c.name.clone(),
                message,
            };
            if c.name.is_empty()
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(bad("the name may hold letters, digits, - and _ only".into()));
            }
            let kpis = c
                .kpis
                .iter()
                .map(|k| Kpi::parse(k).ok_or_else(|| bad(format!("unknown KPI {k:?}"))))
                .collect::<Result<Vec<_>, _>>()?;
            for f in &c.formats {
                if !["csv", "xlsx", "parquet"].contains(&f.as_str()) {
                    return Err(bad(format!("unknown format {f:?} (csv, xlsx, parquet)")));
                }
            }
            if !["previous_month", "previous_quarter", "previous_year"].contains(&c.period.as_str())
            {
                return Err(bad(format!(
                    "period must be previous_month, previous_quarter or previous_year, not {:?}",
                    c.period
                )));
            }
            exports.push(Export {
                name: c.name.clone(),
                schedule: Schedule::parse(&c.schedule).map_err(bad)?,
                schedule_text: c.schedule.clone(),
                tz: match &c.tz {
                    Some(tz) => wenming_analytics::calendar::parse_tz(tz).map_err(bad)?,
                    None => default_tz,
                },
                kpis,
                level: c.level.parse().map_err(bad)?,
                granularity: c.granularity.parse().map_err(bad)?,
                period: c.period.clone(),
                scope: c.scope.parse().map_err(bad)?,
                formats: c.formats.clone(),
                output: c.output.clone(),
            });
        }
        Ok(Exports {
            exports,
            analytics,
            running: std::sync::Mutex::new(BTreeMap::new()),
            claims: None,
        })
    }

    /// Scheduled fires are claimed in the lake first (see `claims`): with replicas
    /// sharing the lake, each fire is run by one of them.
    pub fn with_claims(mut self, claims: claims::Claims) -> Exports {
        self.claims = Some(claims);
        self
    }

    /// The export `name` as `caller` may see it, with the scope its runs cover for them
    /// (the narrower of the export's and the caller's). An export outside the caller's
    /// scope is not found, exactly like one that does not exist.
    pub fn get(&self, name: &str, caller: &Scope) -> Result<(&Export, Scope), ExportError> {
        self.exports
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| narrower(&e.scope, caller).map(|s| (e, s)))
            .ok_or_else(|| ExportError::Unknown(name.into()))
    }

    /// The exports `caller` may see, each with the scope its runs cover for them.
    pub fn visible(&self, caller: &Scope) -> Vec<(&Export, Scope)> {
        self.exports
            .iter()
            .filter_map(|e| narrower(&e.scope, caller).map(|s| (e, s)))
            .collect()
    }

    /// Run one export for `period` (YYYY-MM, YYYY-Qn or YYYY); `scope` further limits
    /// it (a caller's scope: intersected with the export's own).
    pub async fn run(
        &self,
        name: &str,
        period: &str,
        caller: &Scope,
        at: &At,
    ) -> Result<Manifest, ExportError> {
        let (export, scope) = self.get(name, caller)?;
        let (from, to) = period_range(period)?;
        let dir = run_dir(export, &scope).join(period);
        let lock = self
            .running
            .lock()
            .expect("not poisoned")
            .entry(dir.clone())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        // Every answer of one run from one snapshot: the newest is pinned first, so
        // that a commit landing meanwhile does not mix versions in one export.
        let at = match at {
            At::Latest => At::Snapshot(self.analytics.snapshot().await?.id.clone()),
            other => other.clone(),
        };
        let mut answers: Vec<(Kpi, Arc<KpiResponse>)> = Vec::new();
        let mut questions = Vec::new();
        for kpi in &export.kpis {
            let req = KpiRequest {
                kpi: *kpi,
                from,
                to,
                granularity: export.granularity,
                level: export.level,
                area: None,
                compare: None,
                top: None,
            };
            answers.push((*kpi, self.analytics.kpi_at(&req, &scope, &at).await?));
            questions.push(req);
        }
        let lineage = answers
            .first()
            .and_then(|(_, a)| a.lineage.clone())
            .ok_or_else(|| ExportError::Config {
                name: export.name.clone(),
                message: "an export names at least one KPI".into(),
            })?;
        let versions: BTreeMap<String, Option<u64>> = SnapshotId::parse(&lineage.snapshot)
            .map(|id| {
                id.versions()
                    .into_iter()
                    .map(|(t, v)| (t.to_string(), v))
                    .collect()
            })
            .unwrap_or_default();
        let data_through = answers.first().and_then(|(_, a)| a.data_through);
        std::fs::create_dir_all(&dir).map_err(|e| write_err(&dir, e))?;
        let mut files = Vec::new();
        for format in &export.formats {
            let file = format!("{}_{}.{}", export.name, period, format);
            let path = dir.join(&file);
            let (bytes, rows) = match format.as_str() {
                "csv" => csv(&answers).map_err(|m| ExportError::Write {
                    path: path.clone(),
                    message: m,
                })?,
                "xlsx" => xlsx(&answers).map_err(|m| ExportError::Write {
                    path: path.clone(),
                    message: m,
                })?,
                _ => parquet(&answers).map_err(|m| ExportError::Write {
                    path: path.clone(),
                    message: m,
                })?,
            };
            files.push(ManifestFile::written(&path, file, format, &bytes, rows)?);
        }
        // Against the run before (its manifest, about to be replaced): what moved since.
        let sheet = format!("{}_{}_restatement.csv", export.name, period);
        let before = previous_snapshot(&dir.join("manifest.json"));
        let now = SnapshotId::parse(&lineage.snapshot).ok();
        let restated_since = match (before, now) {
            (Some(before), Some(now)) if crate::restatement::is_before(&before, &now) => {
                let restated =
                    crate::restatement::restate(&self.analytics, &questions, &scope, &before, &now)
                        .await?;
                let (bytes, rows) = crate::restatement::csv(&restated)?;
                let path = dir.join(&sheet);
                files.push(ManifestFile::written(
                    &path,
                    sheet.clone(),
                    "restatement",
                    &bytes,
                    rows,
                )?);
                Some(before.to_string())
            }
            _ => {
                // A restatement of another run is not this run's.
                let _ = std::fs::remove_file(dir.join(&sheet));
                None
            }
        };
        let manifest = Manifest {
            export: export.name.clone(),
            period: period.into(),
            from,
            to,
            granularity: export.granularity,
            level: export.level,
            scope: scope.to_string(),
            kpis: export.kpis.iter().map(|k| k.name().to_string()).collect(),
            files,
            table_versions: versions,
            no_data_yet: starts_after(from, data_through),
            data_through,
            lineage,
            restated_since,
            generated_at: chrono::Utc::now().to_rfc3339(),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        write_atomically(&dir.join("manifest.json"), &json)?;
        Ok(manifest)
    }

    /// The file of a past run for `caller`'s part of the export, if it exists (names are
    /// checked: no path tricks).
    pub fn file(
        &self,
        name: &str,
        caller: &Scope,
        period: &str,
        file: &str,
    ) -> Result<Option<PathBuf>, ExportError> {
        let (export, scope) = self.get(name, caller)?;
        let safe = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !s.starts_with('.')
        };
        if !safe(period) || !safe(file) {
            return Ok(None);
        }
        let path = run_dir(export, &scope).join(period).join(file);
        Ok(path.is_file().then_some(path))
    }

    /// The folder of the run of `export`'s part `scope` for `period`.
    pub fn folder(&self, export: &Export, scope: &Scope, period: &str) -> PathBuf {
        run_dir(export, scope).join(period)
    }

    /// Periods with a run on disk, for the export's part `scope`.
    pub fn runs(&self, export: &Export, scope: &Scope) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(run_dir(export, scope))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("manifest.json").is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The scheduler: every 20 s, run each export whose latest fire time is newer than
    /// its last recorded run (so a fire time missed while down runs once at start).
    pub async fn schedule(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            for export in &self.exports {
                let now = chrono::Utc::now().with_timezone(&export.tz);
                let Some(fired) = export.schedule.latest_at_or_before(now) else {
                    continue;
                };
                let marker = export.output.join(&export.name).join("last_fire.txt");
                let last = std::fs::read_to_string(&marker)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok());
                if last.is_some_and(|l| l >= fired.timestamp()) {
                    continue;
                }
                let period = scheduled_period(&export.period, fired.date_naive());
                if let Some(claims) = &self.claims {
                    match claims.claim(&export.name, fired.timestamp()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::info!(export = %export.name, period = %period, "export run by another replica (it claimed the fire)");
                            record_fire(&export.name, &marker, fired.timestamp());
                            continue;
                        }
                        Err(e) => {
                            // Tried again at the next tick: never run unclaimed.
                            tracing::error!(export = %export.name, error = %e, "cannot claim the export's fire in the lake");
                            continue;
                        }
                    }
                }
                // A period the lake has no data for yet is not written as zeros.
                if let (Ok((from, _)), Ok(fresh)) =
                    (period_range(&period), self.analytics.freshness().await)
                    && starts_after(from, fresh.span.data_through)
                {
                    tracing::warn!(
                        export = %export.name, period = %period,
                        data_through = ?fresh.span.data_through,
                        "export skipped: the lake has no data for the period yet"
                    );
                    record_fire(&export.name, &marker, fired.timestamp());
                    continue;
                }
                match self
                    .run(&export.name, &period, &export.scope, &At::Latest)
                    .await
                {
                    Ok(m) => {
                        tracing::info!(export = %export.name, period = %period, files = m.files.len(), "export written");
                        record_fire(&export.name, &marker, fired.timestamp());
                    }
                    Err(e) => {
                        tracing::error!(export = %export.name, period = %period, error = %e, "export failed")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(20)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The narrower of two scopes when one contains the other.
fn narrower(a: &Scope, b: &Scope) -> Option<Scope> {
    let contains = |outer: &Scope, inner: &Scope| match (outer, inner) {
        (Scope::City, _) => true,
        (Scope::District(d), Scope::District(x)) => d == x,
        (Scope::District(d), Scope::Street(s)) => s.starts_with(d.as_str()),
        (Scope::Street(s), Scope::Street(x)) => s == x,
        (Scope::Unit(u), Scope::Unit(x)) => u == x,
        _ => false,
    };
    if contains(a, b) {
        Some(b.clone())
    } else if contains(b, a) {
        Some(a.clone())
    } else {
        None
    }
}

/// `YYYY-MM`, `YYYY-Qn` or `YYYY` → first and last day. The year has four digits
/// (1000-9999), the month two (01-12), the quarter one (1-4): anything else is refused,
/// never a panic (`262142-Q4` would overflow the calendar).
pub fn period_range(p: &str) -> Result<(NaiveDate, NaiveDate), ExportError> {
    let bad = || ExportError::Period(p.into());
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let year = |s: &str| -> Result<i32, ExportError> {
        if !digits(s, 4) || s.starts_with('0') {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (y, first_month, months) = match p.split_once('-') {
        None => (year(p)?, 1, 12),
        Some((y, q)) if q.starts_with('Q') => {
            let q = &q[1..];
            if !digits(q, 1) || !("1"..="4").contains(&q) {
                return Err(bad());
            }
            let q: u32 = q.parse().map_err(|_| bad())?;
            (year(y)?, (q - 1) * 3 + 1, 3)
        }
        Some((y, m)) => {
            if !digits(m, 2) {
                return Err(bad());
            }
            let m: u32 = m.parse().map_err(|_| bad())?;
            (year(y)?, m, 1)
        }
    };
    let from = NaiveDate::from_ymd_opt(y, first_month, 1).ok_or_else(bad)?;
    let to = from
        .checked_add_months(Months::new(months))
        .and_then(|d| d.pred_opt())
        .ok_or_else(bad)?;
    Ok((from, to))
}

/// Where the runs of `export` for the part `scope` are kept.
fn run_dir(export: &Export, scope: &Scope) -> PathBuf {
    export.output.join(&export.name).join(scope_folder(scope))
}

/// A scope as a folder name: `city`, `district-330203`, `street-330203001`, `unit-S1`
/// (a unit id with other characters than letters, digits, `-` and `_` is hex-encoded).
fn scope_folder(scope: &Scope) -> String {
    match scope {
        Scope::City => "city".into(),
        Scope::District(d) => format!("district-{d}"),
        Scope::Street(s) => format!("street-{s}"),
        Scope::Unit(u) => {
            if u.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                format!("unit-{u}")
            } else {
                let hex: String = u.bytes().map(|b| format!("{b:02x}")).collect();
                format!("unit-x{hex}")
            }
        }
    }
}

/// Whether a period from `from` starts after the lake's last event (or the lake has none).
fn starts_after(from: NaiveDate, data_through: Option<chrono::DateTime<chrono::Utc>>) -> bool {
    data_through.is_none_or(|t| from > t.date_naive())
}

/// The period a scheduled run on `day` covers.
pub fn scheduled_period(kind: &str, day: NaiveDate) -> String {
    match kind {
        "previous_quarter" => {
            let q0 = (day.month0() / 3) as i32;
            let (y, q) = if q0 == 0 {
                (day.year() - 1, 4)
            } else {
                (day.year(), q0)
            };
            format!("{y}-Q{q}")
        }
        "previous_year" => format!("{}", day.year() - 1),
        _ => {
            let prev = day.with_day(1).expect("day 1") - chrono::Duration::days(1);
            format!("{}-{:02}", prev.year(), prev.month())
        }
    }
}

/// Note that the fire time `at` was dealt with (run, or skipped for want of data), in
/// the export's folder, made if the export never wrote there yet.
fn record_fire(name: &str, marker: &Path, at: i64) {
    let written = marker
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(marker, at.to_string()));
    if let Err(e) = written {
        tracing::warn!(export = %name, error = %e, "cannot record the run");
    }
}

/// The snapshot the previous run of a folder was computed from, if it left a manifest.
fn previous_snapshot(manifest: &Path) -> Option<SnapshotId> {
    let bytes = std::fs::read(manifest).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    SnapshotId::parse(json["lineage"]["snapshot"].as_str()?).ok()
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Written beside `path` under a name of this write's own, then renamed over it: a reader
/// sees the old file or the new one, and two writers never share a temporary file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", uuid::Uuid::now_v7().simple()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| write_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| write_err(path, e))
}
