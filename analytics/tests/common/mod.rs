//! Fixtures for the KPI tests: events written by hand as NDJSON, imported into a real
//! Delta lake in a temp dir by `wenming-ingest`, queried through `Analytics`.

#![allow(dead_code)]

pub mod fixture;

use std::path::Path;

use chrono::NaiveDate;
use serde_json::{Value, json};
use wenming_analytics::{
    Analytics, Compare, Granularity, Kpi, KpiRequest, KpiResponse, Level, Num, Scope, Settings,
};

/// A stream of events under construction.
#[derive(Default)]
pub struct Stream {
    pub lines: Vec<String>,
    next: u64,
}

impl Stream {
    /// A stream whose event ids continue after `n` (a second import into one lake).
    pub fn after(n: u64) -> Stream {
        Stream {
            lines: Vec::new(),
            next: n,
        }
    }

    /// The next generated event id (increasing: later events have greater ids).
    pub fn next_id(&mut self) -> String {
        self.next += 1;
        format!("00000000-0000-7000-8000-{:012x}", self.next)
    }

    /// Add an event; `data` gets the envelope's `unit_id`. Returns its event id.
    pub fn ev(&mut self, ty: &str, at: &str, unit: &str, data: Value) -> String {
        let id = self.next_id();
        self.ev_id(&id, ty, at, unit, data);
        id
    }

    pub fn ev_id(&mut self, id: &str, ty: &str, at: &str, unit: &str, mut data: Value) {
        data["unit_id"] = json!(unit);
        let line = json!({
            "event_id": id, "type": ty, "schema_version": 1, "occurred_at": at,
            "unit_id": unit, "data": data,
        });
        self.lines.push(line.to_string());
    }

    pub fn unit(
        &mut self,
        id: &str,
        level: &str,
        parent: Option<&str>,
        area: &str,
        residents: Option<i64>,
        at: &str,
    ) {
        let mut data = json!({"level": level, "name": format!("unit {id}"), "area_code": area});
        if let Some(p) = parent {
            data["parent_id"] = json!(p);
        }
        if let Some(r) = residents {
            data["residents"] = json!(r);
        }
        self.ev("unit.registered", at, id, data);
    }

    pub fn activity(&mut self, id: &str, unit: &str, starts: &str, at: &str) -> String {
        self.ev(
            "activity.published",
            at,
            unit,
            json!({"activity_id": id, "category": "culture", "title": "t", "starts_at": starts, "ends_at": starts}),
        )
    }

    pub fn check_in(
        &mut self,
        activity: &str,
        unit: &str,
        person: &str,
        role: &str,
        at: &str,
    ) -> String {
        self.ev(
            "attendance.checked_in",
            at,
            unit,
            json!({"activity_id": activity, "person_id": person, "role": role, "method": "scan"}),
        )
    }

    pub fn volunteer(&mut self, id: &str, home: &str, at: &str) {
        self.ev(
            "volunteer.registered",
            at,
            home,
            json!({"volunteer_id": id}),
        );
    }

    /// A service record started at `start` lasting `minutes` (ended exactly then).
    pub fn record(&mut self, id: &str, volunteer: &str, unit: &str, start: &str, minutes: i64) {
        let started = chrono::DateTime::parse_from_rfc3339(start).unwrap();
        let ended = started + chrono::Duration::minutes(minutes);
        self.ev(
            "service.recorded",
            &ended.to_rfc3339(),
            unit,
            json!({"record_id": id, "volunteer_id": volunteer, "started_at": start,
                   "ended_at": ended.to_rfc3339(), "minutes": minutes}),
        );
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.lines.join("\n") + "\n").unwrap();
    }
}

/// Import a stream into a fresh lake and open the query layer on it.
pub async fn lake_of(stream: &Stream) -> (tempfile::TempDir, Analytics) {
    lake_with(stream, 0).await
}

/// As `lake_of`, for a stream with `rejected` lines the contract refuses.
pub async fn lake_with(stream: &Stream, rejected: u64) -> (tempfile::TempDir, Analytics) {
    let dir = tempfile::tempdir().unwrap();
    import_into(&dir, "events.ndjson", stream, rejected).await;
    let analytics = Analytics::open(dir.path().join("lake"), Settings::default())
        .await
        .unwrap();
    (dir, analytics)
}

/// Write `stream` to `file` in `dir` and import it into `dir/lake`.
async fn import_into(dir: &tempfile::TempDir, file: &str, stream: &Stream, rejected: u64) {
    let file = dir.path().join(file);
    stream.write(&file);
    let lake = wenming_ingest::lake::Lake::new(dir.path().join("lake"));
    let mut rejects = Vec::new();
    let stats = wenming_ingest::import::import_file(
        &file,
        &lake,
        &Default::default(),
        &mut rejects,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        stats.rejected,
        rejected,
        "fixture lines rejected: {}",
        String::from_utf8_lossy(&rejects)
    );
}

/// Import one more stream into the lake of `lake_of` (new table versions).
pub async fn import_more(dir: &tempfile::TempDir, stream: &Stream) {
    import_into(dir, "more.ndjson", stream, 0).await;
}

/// A generated tiny-scale year (`wenming generate`), 2 % of its events re-sent.
pub fn generated(seed: u64) -> Vec<String> {
    let mut options = wenming_synth::Options::new(wenming_synth::Scale::Tiny, seed);
    options.duplicate_rate = 0.02;
    let mut bytes = Vec::new();
    wenming_synth::generate(&options, &mut bytes, |_| {}).unwrap();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The single count a `SELECT count(*) …` answered.
pub fn count_of(result: &wenming_analytics::sql::SqlResult) -> i64 {
    use arrow::array::AsArray;
    result.batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

pub fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

pub fn req(kpi: &str, from: &str, to: &str, g: Granularity, level: Level) -> KpiRequest {
    KpiRequest {
        kpi: Kpi::parse(kpi).unwrap_or_else(|| panic!("no KPI {kpi}")),
        from: d(from),
        to: d(to),
        granularity: g,
        level,
        area: None,
        compare: None,
        top: None,
    }
}

pub async fn ask(a: &Analytics, r: &KpiRequest) -> KpiResponse {
    (*a.kpi(r, &Scope::City)
        .await
        .unwrap_or_else(|e| panic!("{r:?}: {e}")))
    .clone()
}

/// An expected row: (period, area, value, numerator, denominator).
pub type Expect<'a> = (&'a str, &'a str, Option<f64>, Option<f64>, Option<f64>);

fn close(a: Option<Num>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a.as_f64() - b).abs() < 1e-9,
        _ => false,
    }
}

/// The response's rows equal `expected`, in order.
pub fn assert_rows(resp: &KpiResponse, expected: &[Expect<'_>]) {
    let got: Vec<String> = resp
        .rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} {:?} {:?}",
                r.period, r.area, r.value, r.numerator, r.denominator
            )
        })
        .collect();
    assert_eq!(
        resp.rows.len(),
        expected.len(),
        "{}: got rows\n{}",
        resp.kpi,
        got.join("\n")
    );
    for (r, e) in resp.rows.iter().zip(expected) {
        let ok = r.period.to_string() == e.0
            && r.area == e.1
            && close(r.value, e.2)
            && close(r.numerator, e.3)
            && close(r.denominator, e.4);
        assert!(
            ok,
            "{}: expected {e:?}, got rows\n{}",
            resp.kpi,
            got.join("\n")
        );
    }
}

pub fn with_compare(mut r: KpiRequest, c: Compare) -> KpiRequest {
    r.compare = Some(c);
    r
}

pub fn in_area(mut r: KpiRequest, area: &str) -> KpiRequest {
    r.area = Some(area.to_string());
    r
}
