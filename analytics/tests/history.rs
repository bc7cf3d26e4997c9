//! Numbers that can be reproduced: every answer names the snapshot it was computed from;
//! re-asked of that snapshot (or of the instant it was current) it is the identical
//! answer after more events landed; `changes` lists exactly the cells that moved, with
//! causes that add up to the new events feeding each (counted here from the events
//! themselves); a snapshot whose files were vacuumed is refused, naming the oldest
//! instant still answerable.

mod common;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use common::*;
use serde_json::{Value, json};
use wenming_analytics::lineage::{At, SnapshotId};
use wenming_analytics::{Analytics, Granularity, KpiRequest, Level, Scope, Settings};

fn parsed(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn at(v: &Value, field: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("{field}: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

fn month_of(t: DateTime<Utc>) -> NaiveDate {
    let local = t.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap()
}

/// A year split in two imports: the first 70 % of the stream, then the rest with
/// corrections of the first part's records (amended, revoked, recorded again) and a
/// record that happened in the first part but arrives only now (late).
struct Split {
    first: Stream,
    second: Stream,
    all: Vec<Value>,
    year: i32,
}

fn split(seed: u64) -> Split {
    let lines = generated(seed);
    let cut = lines.len() * 7 / 10;
    let events = parsed(&lines[..cut]);
    let records: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "service.recorded")
        .collect();
    assert!(records.len() > 20, "the stream has records to correct");
    let mut second = Stream::after(10_000_000);
    second.lines = lines[cut..].to_vec();
    let corrected_at = |e: &Value| at(&e["occurred_at"], "occurred_at") + chrono::Duration::days(2);
    for (i, r) in records.iter().take(12).enumerate() {
        let unit = r["unit_id"].as_str().unwrap();
        let data = &r["data"];
        let when = corrected_at(r).to_rfc3339();
        match i % 4 {
            0 => {
                second.ev(
                    "service.amended",
                    &when,
                    unit,
                    json!({"record_id": data["record_id"], "minutes": 7}),
                );
            }
            1 => {
                second.ev(
                    "service.revoked",
                    &when,
                    unit,
                    json!({"record_id": data["record_id"]}),
                );
            }
            2 => {
                // Recorded again (another event id): one record, the latest recording.
                let mut again = data.clone();
                again["minutes"] = json!(11);
                second.ev("service.recorded", &when, unit, again);
            }
            _ => {
                // A record that happened then and arrives only now.
                let mut late = data.clone();
                late["record_id"] = json!(format!("LATE-{i}"));
                second.ev(
                    "service.recorded",
                    r["occurred_at"].as_str().unwrap(),
                    unit,
                    late,
                );
            }
        }
    }
    // A record that starts after the first import: news, not late.
    let fresh_start = Utc::now() + chrono::Duration::minutes(5);
    let fresh_end = fresh_start + chrono::Duration::minutes(30);
    let mut fresh = records[0]["data"].clone();
    fresh["record_id"] = json!("FRESH-1");
    fresh["started_at"] = json!(fresh_start.to_rfc3339());
    fresh["ended_at"] = json!(fresh_end.to_rfc3339());
    fresh["minutes"] = json!(30);
    second.ev(
        "service.recorded",
        &fresh_end.to_rfc3339(),
        records[0]["unit_id"].as_str().unwrap(),
        fresh,
    );
    let year = at(
        &records[records.len() / 2]["data"]["started_at"],
        "started_at",
    )
    .with_timezone(&chrono_tz::Asia::Shanghai)
    .year();
    let mut first = Stream::default();
    first.lines = lines[..cut].to_vec();
    let mut all = events;
    all.extend(parsed(&second.lines));
    Split {
        first,
        second,
        all,
        year,
    }
}

/// Monthly service hours per district from the stream's year to next month.
fn question(year: i32) -> KpiRequest {
    let to = (Utc::now() + chrono::Duration::days(40)).date_naive();
    req(
        "service_hours",
        &format!("{year}-01-01"),
        &to.to_string(),
        Granularity::Month,
        Level::District,
    )
}

fn json_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

#[tokio::test]
async fn an_answer_reasked_of_its_snapshot_is_identical_and_changes_explain_what_moved() {
    let s = split(21);
    let (dir, a) = lake_of(&s.first).await;
    let q = question(s.year);
    let first = a.kpi(&q, &Scope::City).await.unwrap();
    let first_json = json_of(&*first);
    let lineage = first
        .lineage
        .clone()
        .expect("every answer carries its lineage");
    assert_eq!(lineage.kpi_catalog, "v1");
    assert_eq!(lineage.tz, "Asia/Shanghai");
    let service = &lineage.tables["service_events"];
    // The commit time is the one the commit entry records.
    let entry = std::fs::read_to_string(dir.path().join(format!(
        "lake/service_events/_delta_log/{:020}.json",
        service.version
    )))
    .unwrap();
    let info: Value = entry
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l.get("commitInfo").is_some())
        .unwrap();
    assert_eq!(
        service.committed_at.timestamp_millis(),
        info["commitInfo"]["timestamp"].as_i64().unwrap()
    );
    let limits = wenming_analytics::sql::SqlLimits::default();
    let count = "SELECT count(*) AS n FROM service_events";
    let rows_then = a.sql(count, &Scope::City, &limits).await.unwrap();
    assert_eq!(
        rows_then.lineage.as_ref().unwrap().snapshot,
        lineage.snapshot
    );
    let n_then = common::count_of(&rows_then);

    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    import_more(&dir, &s.second).await;
    assert!(a.refresh().await.unwrap());
    let now = a.kpi(&q, &Scope::City).await.unwrap();
    assert_ne!(now.lineage, first.lineage, "a new snapshot");
    assert_ne!(now.rows, first.rows, "the new events changed the answer");

    // Re-asked with its snapshot, or at an instant it was current: the same bytes.
    let id = SnapshotId::parse(&lineage.snapshot).unwrap();
    let again = a
        .kpi_at(&q, &Scope::City, &At::Snapshot(id.clone()))
        .await
        .unwrap();
    assert_eq!(json_of(&*again), first_json);
    let as_of = a
        .kpi_at(&q, &Scope::City, &At::Instant(between))
        .await
        .unwrap();
    assert_eq!(json_of(&*as_of), first_json);
    // The reference computation of that snapshot agrees.
    let exact = a
        .kpi_exact_at(&q, &Scope::City, &At::Snapshot(id.clone()))
        .await
        .unwrap();
    assert_eq!(exact.rows, first.rows);
    // SQL too.
    let rows_at = a
        .sql_at(count, &Scope::City, &limits, &At::Snapshot(id.clone()))
        .await
        .unwrap();
    assert_eq!(common::count_of(&rows_at), n_then);
    assert!(common::count_of(&a.sql(count, &Scope::City, &limits).await.unwrap()) > n_then);

    // The changes: exactly the cells that differ, causes adding up to the new events
    // feeding each, counted here from the events.
    let restated = a
        .changes(&q, &Scope::City, &At::Snapshot(id.clone()), &At::Latest)
        .await
        .unwrap();
    assert_eq!(restated.since.snapshot, lineage.snapshot);
    assert_eq!(restated.until, now.lineage.clone().unwrap());
    let cell = |r: &wenming_analytics::Row| (r.period, r.area.clone());
    let old: BTreeMap<_, _> = first.rows.iter().map(|r| (cell(r), r.value)).collect();
    let differing: Vec<_> = now
        .rows
        .iter()
        .filter(|r| old.get(&cell(r)) != Some(&r.value))
        .map(cell)
        .collect();
    let listed: Vec<_> = restated
        .changes
        .iter()
        .map(|c| (c.period, c.area.clone()))
        .collect();
    assert_eq!(listed, differing, "exactly the changed cells");
    assert!(!listed.is_empty());

    let expected = expected_causes(&s, &first_json, q.from, q.to);
    let mut seen = (0, 0, 0);
    let news: u64 = restated.changes.iter().map(|c| c.causes.new).sum();
    assert_eq!(news, 1, "the record started after the first import is news");
    for c in &restated.changes {
        let want = expected
            .get(&(c.period, c.area.clone()))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            c.causes.total(),
            want.total,
            "causes of {} {} add up to the new events feeding it: {:?}",
            c.period,
            c.area,
            c.causes
        );
        assert_eq!(c.causes.amended, want.amended, "{} {}", c.period, c.area);
        assert_eq!(c.causes.revoked, want.revoked, "{} {}", c.period, c.area);
        assert_eq!(c.causes.late, want.late, "late in {} {}", c.period, c.area);
        assert!(c.causes.total() > 0, "a cell changed with no cause: {c:?}");
        seen.0 += c.causes.amended;
        seen.1 += c.causes.revoked;
        seen.2 += c.causes.late;
    }
    assert!(
        seen.0 > 0 && seen.1 > 0 && seen.2 > 0,
        "amendments, revocations and late records explained: {seen:?}"
    );

    // Another district's caller sees only its own cells and causes.
    let district = now.rows[0].area.clone();
    let scoped = a
        .changes(
            &q,
            &Scope::District(district.clone()),
            &At::Snapshot(id),
            &At::Latest,
        )
        .await
        .unwrap();
    assert!(scoped.changes.iter().all(|c| c.area == district));
    let mine: Vec<_> = restated
        .changes
        .iter()
        .filter(|c| c.area == district)
        .map(|c| (c.period, c.causes.clone()))
        .collect();
    let theirs: Vec<_> = scoped
        .changes
        .iter()
        .map(|c| (c.period, c.causes.clone()))
        .collect();
    assert_eq!(theirs, mine);
}

#[derive(Default, Clone, Debug)]
struct Expected {
    total: u64,
    amended: u64,
    revoked: u64,
    late: u64,
}

/// Per (month, district): the second import's service, unit and volunteer events that
/// feed it, from the events themselves.
fn expected_causes(
    s: &Split,
    first_json: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> HashMap<(NaiveDate, String), Expected> {
    let first: Value = serde_json::from_str(first_json).unwrap();
    let report_time = first["lineage"]["tables"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| at(&t["committed_at"], "committed_at"))
        .max()
        .unwrap();
    let district: HashMap<String, String> = s
        .all
        .iter()
        .filter(|e| e["type"] == "unit.registered")
        .map(|e| {
            let area = e["data"]["area_code"].as_str().unwrap();
            (
                e["unit_id"].as_str().unwrap().to_string(),
                area[..6].to_string(),
            )
        })
        .collect();
    // Each record's latest recording: its unit and start.
    let mut record: HashMap<String, (DateTime<Utc>, String, String, DateTime<Utc>)> =
        HashMap::new();
    for e in s.all.iter().filter(|e| e["type"] == "service.recorded") {
        let id = e["data"]["record_id"].as_str().unwrap().to_string();
        let key = (
            at(&e["occurred_at"], "occurred_at"),
            e["event_id"].as_str().unwrap().to_string(),
        );
        let entry = (
            key.0,
            key.1.clone(),
            e["unit_id"].as_str().unwrap().to_string(),
            at(&e["data"]["started_at"], "started_at"),
        );
        match record.get(&id) {
            Some(have) if (have.0, have.1.clone()) >= key => {}
            _ => {
                record.insert(id, entry);
            }
        }
    }
    let first_ids: std::collections::HashSet<String> = s
        .first
        .lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let known_records: std::collections::HashSet<String> = parsed(&s.first.lines)
        .iter()
        .filter(|e| e["type"] == "service.recorded")
        .map(|e| e["data"]["record_id"].as_str().unwrap().to_string())
        .collect();
    let months: Vec<NaiveDate> =
        std::iter::successors(Some(from), |m| m.checked_add_months(chrono::Months::new(1)))
            .take_while(|m| *m <= to)
            .collect();
    let month_end = |m: NaiveDate| {
        let next = m.checked_add_months(chrono::Months::new(1)).unwrap();
        next.and_hms_opt(0, 0, 0)
            .unwrap()
            .and_local_timezone(chrono_tz::Asia::Shanghai)
            .unwrap()
            .with_timezone(&Utc)
    };
    let mut out: HashMap<(NaiveDate, String), Expected> = HashMap::new();
    let mut seen_ids = std::collections::HashSet::new();
    let mut new_events: Vec<Value> = parsed(&s.second.lines)
        .into_iter()
        .filter(|e| {
            let id = e["event_id"].as_str().unwrap().to_string();
            // Re-sent with its id: stored once, not new.
            !first_ids.contains(&id) && seen_ids.insert(id)
        })
        .collect();
    // The first news of a record: its earliest new recording.
    new_events.sort_by_key(|e| {
        (
            at(&e["occurred_at"], "occurred_at"),
            e["event_id"].as_str().unwrap().to_string(),
        )
    });
    let mut new_recordings: HashMap<String, u32> = HashMap::new();
    for e in new_events {
        let ty = e["type"].as_str().unwrap();
        let unit = e["unit_id"].as_str().unwrap().to_string();
        let occurred = at(&e["occurred_at"], "occurred_at");
        let Some(d) = district.get(&unit) else {
            continue;
        };
        if ty.starts_with("unit.") || ty.starts_with("volunteer.") {
            for m in &months {
                if occurred < month_end(*m) {
                    out.entry((*m, d.clone())).or_default().total += 1;
                }
            }
            continue;
        }
        if !ty.starts_with("service.") {
            continue;
        }
        let rid = e["data"]["record_id"].as_str().unwrap().to_string();
        let (unit, started) = match record.get(&rid) {
            Some((_, _, u, s)) => (u.clone(), *s),
            None => (unit, occurred),
        };
        let Some(d) = district.get(&unit) else {
            continue;
        };
        let m = month_of(started);
        if m < from || m > to {
            continue;
        }
        let cell = out.entry((m, d.clone())).or_default();
        cell.total += 1;
        match ty {
            "service.amended" => cell.amended += 1,
            "service.revoked" => cell.revoked += 1,
            _ => {
                let nth = new_recordings.entry(rid.clone()).or_default();
                *nth += 1;
                if !known_records.contains(&rid) && *nth == 1 && started < report_time {
                    cell.late += 1;
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn a_snapshot_whose_files_were_vacuumed_is_refused_naming_the_oldest_answerable_instant() {
    let s = split(23);
    let (dir, a) = lake_of(&s.first).await;
    let q = question(s.year);
    let first = a.kpi(&q, &Scope::City).await.unwrap();
    let id = SnapshotId::parse(&first.lineage.as_ref().unwrap().snapshot).unwrap();
    import_more(&dir, &s.second).await;
    let lake = wenming_ingest::lake::Lake::new(dir.path().join("lake"));
    lake.optimize(256 << 20).await.unwrap();
    assert!(a.refresh().await.unwrap());
    // Still answerable: compaction only marks the old files removed.
    let before_vacuum = a.kpi_at(&q, &Scope::City, &At::Snapshot(id.clone())).await;
    assert_eq!(before_vacuum.unwrap().rows, first.rows);
    lake.vacuum(chrono::Duration::zero(), false, true)
        .await
        .unwrap();
    let fresh = Analytics::open(dir.path().join("lake"), Settings::default())
        .await
        .unwrap();
    let err = fresh
        .kpi_at(&q, &Scope::City, &At::Snapshot(id))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("can no longer be answered"), "{err}");
    let oldest = err
        .split("the oldest instant still answerable is ")
        .nth(1)
        .unwrap_or_else(|| panic!("names the oldest instant: {err}"));
    let oldest = DateTime::parse_from_rfc3339(oldest.trim())
        .unwrap()
        .with_timezone(&Utc);
    // That instant is answerable, and what it answers is the compacted lake's data.
    let then = fresh
        .kpi_at(&q, &Scope::City, &At::Instant(oldest))
        .await
        .unwrap();
    let latest = fresh.kpi(&q, &Scope::City).await.unwrap();
    assert_eq!(then.rows, latest.rows);
    // Just before it: refused alike.
    let earlier = oldest - chrono::Duration::milliseconds(1);
    let err = fresh
        .kpi_at(&q, &Scope::City, &At::Instant(earlier))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the oldest instant still answerable is"),
        "{err}"
    );

    // A future instant and a version the lake never had: clear refusals.
    let err = fresh
        .kpi_at(
            &q,
            &Scope::City,
            &At::Instant(Utc::now() + chrono::Duration::days(1)),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("in the future"), "{err}");
    let n = wenming_schemas::Family::ALL.len();
    let far = SnapshotId::parse(&format!("s1{}", ".999".repeat(n))).unwrap();
    let err = fresh
        .kpi_at(&q, &Scope::City, &At::Snapshot(far))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("which this lake does not have"), "{err}");
}
