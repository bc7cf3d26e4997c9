//! The rollups answer every KPI exactly as the reference computation does (the SQL
//! measures over the views): a generated stream, with late syncs, amendments,
//! revocations, cancellations, deregistrations, closures and re-sent events, imported
//! in commits, and after each commit the same questions asked both ways — every KPI ×
//! granularity × level, random ranges, comparisons, areas and scopes.

mod common;

use common::*;
use serde_json::{Value, json};
use wenming_analytics::{Analytics, Compare, Granularity, Kpi, KpiRequest, Level, Scope, Settings};

/// The generated stream's lines, in arrival order.
/// The first event of `ty` in `lines` and its data.
fn first_of(lines: &[String], ty: &str, skip: usize) -> Value {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == ty)
        .nth(skip)
        .unwrap_or_else(|| panic!("no {ty} in the stream"))
}

/// Volunteers with hours enough for every star level (24 h a day from mid-December),
/// then late corrections: an amendment, a revocation, a deregistration, a closure.
fn stars_and_corrections(lines: &[String]) -> (Stream, Stream) {
    let station = first_of(lines, "unit.registered", 3)["unit_id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = first_of(lines, "unit.registered", 6)["unit_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut stars = Stream::after(1 << 40);
    for (v, home, from_day) in [
        ("VS1", &station, 0),
        ("VS2", &other, 20),
        ("VS3", &station, 40),
    ] {
        stars.volunteer(v, home, "2023-12-01T00:00:00+08:00");
        let start = chrono::NaiveDate::from_ymd_opt(2023, 12, 15).unwrap();
        for day in from_day..from_day + 70 {
            let d = start + chrono::Duration::days(day);
            let unit = if day % 3 == 0 { &other } else { home };
            stars.record(
                &format!("{v}-R{day}"),
                v,
                unit,
                &format!("{d}T00:00:00+08:00"),
                1440,
            );
        }
    }
    let mut late = Stream::after(1 << 41);
    let record = first_of(lines, "service.recorded", 10)["data"]["record_id"].clone();
    late.ev(
        "service.amended",
        "2024-03-20T10:00:00+08:00",
        &station,
        json!({"record_id": record, "minutes": 7}),
    );
    late.ev(
        "service.amended",
        "2024-03-20T10:00:00+08:00",
        &station,
        json!({"record_id": "VS1-R30", "minutes": 60}),
    );
    late.ev(
        "service.revoked",
        "2024-03-20T11:00:00+08:00",
        &station,
        json!({"record_id": "VS3-R50"}),
    );
    late.ev(
        "volunteer.deregistered",
        "2024-02-10T00:00:00+08:00",
        &other,
        json!({"volunteer_id": "VS2"}),
    );
    let activity = first_of(lines, "activity.published", 5)["data"].clone();
    late.ev(
        "activity.cancelled",
        "2024-03-01T00:00:00+08:00",
        activity["unit_id"].as_str().unwrap(),
        json!({"activity_id": activity["activity_id"]}),
    );
    late.ev(
        "unit.closed",
        "2024-02-15T00:00:00+08:00",
        &other,
        json!({}),
    );
    (stars, late)
}

/// A small deterministic generator of question parameters.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Questions of every KPI at every granularity, the other dimensions drawn from `dice`.
fn questions(dice: &mut Dice, areas: &[String]) -> Vec<(KpiRequest, Scope)> {
    let first = d("2023-12-01");
    let levels = [Level::City, Level::District, Level::Street, Level::Unit];
    let mut out = Vec::new();
    for kpi in Kpi::ALL {
        for g in Granularity::ALL {
            let from = first + chrono::Duration::days(dice.roll(100) as i64);
            let span = if g == Granularity::Day { 40 } else { 130 };
            let to = from + chrono::Duration::days(dice.roll(span) as i64);
            let compare = [None, Some(Compare::Mom), Some(Compare::Yoy)][dice.roll(3) as usize];
            let area =
                (dice.roll(4) == 0).then(|| areas[dice.roll(areas.len() as u64) as usize].clone());
            let scope = if dice.roll(4) == 0 {
                Scope::District("330203".into())
            } else {
                Scope::City
            };
            out.push((
                KpiRequest {
                    kpi: *kpi,
                    from,
                    to,
                    granularity: g,
                    level: levels[dice.roll(4) as usize],
                    area,
                    compare,
                    top: (*kpi == Kpi::VolunteerRanking).then(|| 1 + dice.roll(12) as usize),
                },
                scope,
            ));
        }
    }
    out
}

/// Every question answered from the rollups equals the reference answer, and the
/// answers are not all empty (so the comparison compares something).
async fn same_answers(a: &Analytics, dice: &mut Dice, areas: &[String], what: &str) {
    let mut nonzero = std::collections::BTreeSet::new();
    for (q, scope) in questions(dice, areas) {
        let fast = a.kpi(&q, &scope).await;
        let exact = a.kpi_exact(&q, &scope).await;
        match (fast, exact) {
            (Ok(fast), Ok(exact)) => {
                if fast != exact {
                    let differ = fast.rows.iter().zip(&exact.rows).find(|(f, e)| f != e);
                    panic!(
                        "{what}: {q:?} in {scope}: rollup {} rows, reference {}; first difference:\n{differ:#?}",
                        fast.rows.len(),
                        exact.rows.len()
                    );
                }
                if fast
                    .rows
                    .iter()
                    .any(|r| r.value.is_some_and(|v| v.as_f64() != 0.0))
                {
                    nonzero.insert(q.kpi.name());
                }
            }
            (Err(f), Err(e)) => assert_eq!(f.to_string(), e.to_string(), "{what}: {q:?}"),
            (f, e) => panic!("{what}: {q:?}: rollup {f:?}, reference {e:?}"),
        }
    }
    assert!(
        nonzero.len() >= 15,
        "{what}: only {nonzero:?} had a non-zero value somewhere"
    );
}

/// Unit ids and their districts' area codes: the areas questions ask about.
fn areas_of(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "unit.registered")
        .flat_map(|e| {
            let code = e["data"]["area_code"].as_str().unwrap().to_string();
            [
                code[..9].to_string(),
                e["unit_id"].as_str().unwrap().to_string(),
            ]
        })
        .collect()
}

/// The saved parts' directories under `<lake>/_rollups`, by name.
fn saved_parts(lake: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(lake.join("_rollups"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn rollups_saved_beside_the_lake_resume_a_restart_and_follow_later_commits() {
    let lines = generated(5);
    let areas = areas_of(&lines);
    let chunks: Vec<&[String]> = lines.chunks(lines.len().div_ceil(2)).collect();
    let stream = |lines: &[String]| {
        let mut s = Stream::default();
        s.lines = lines.to_vec();
        s
    };
    let (dir, _) = lake_of(&stream(chunks[0])).await;
    let lake = dir.path().join("lake");
    let saving = Settings {
        save_rollups_every: Some(std::time::Duration::from_secs(3600)),
        ..Settings::default()
    };
    let mut dice = Dice(0x5eed_1234_abcd_0001);
    let a = Analytics::open(&lake, saving.clone()).await.unwrap();
    same_answers(&a, &mut dice, &areas, "before saving").await;
    let asked = questions(&mut dice, &areas);
    let mut before = Vec::new();
    for (q, scope) in &asked {
        before.push(a.kpi(q, scope).await.map_err(|e| e.to_string()));
    }
    assert_eq!(
        a.save_rollups().await.unwrap(),
        2,
        "participation and service saved"
    );
    let parts = saved_parts(&lake);
    assert_eq!(parts.len(), 2, "one directory per part: {parts:?}");
    assert!(
        parts[0].starts_with("participation@activity_events="),
        "{parts:?}"
    );
    assert!(parts[1].starts_with("service@service_events="), "{parts:?}");
    assert!(
        lake.join("_rollups")
            .join(&parts[1])
            .join("manifest.json")
            .is_file()
    );
    drop(a);

    // A restart on the same versions resumes both parts, answers as before (only from
    // the rollups: nothing computes the views for them), and follows the next commit
    // from its changes.
    let b = Analytics::open(&lake, saving.clone()).await.unwrap();
    for ((q, scope), before) in asked.iter().zip(&before) {
        let after = b.kpi(q, scope).await.map_err(|e| e.to_string());
        assert_eq!(&after, before, "resumed: {q:?} in {scope}");
    }
    assert_eq!(
        b.rollups_resumed(),
        2,
        "both parts resumed, not counted again"
    );
    import_more(&dir, &stream(chunks[1])).await;
    assert!(b.refresh().await.unwrap());
    same_answers(&b, &mut dice, &areas, "a commit after resuming").await;
    assert!(
        b.rollup_updates() >= 2,
        "the resumed parts were updated from the commit's changes: {} updates",
        b.rollup_updates()
    );
    assert_eq!(b.save_rollups().await.unwrap(), 2);
    assert_eq!(saved_parts(&lake).len(), 2, "older versions removed");
    drop(b);

    // Saved for another time zone: not used (its days are other days).
    let berlin = Settings {
        tz: chrono_tz::Tz::Europe__Berlin,
        ..Settings::default()
    };
    let c = Analytics::open(&lake, berlin).await.unwrap();
    same_answers(&c, &mut dice, &areas, "another time zone").await;
    assert_eq!(c.rollups_resumed(), 0);
    drop(c);

    // A damaged file: that part is counted again, the other resumed, answers exact.
    let service = saved_parts(&lake)
        .into_iter()
        .find(|p| p.starts_with("service@"))
        .unwrap();
    std::fs::write(
        lake.join("_rollups").join(service).join("entries.parquet"),
        b"not parquet",
    )
    .unwrap();
    let d = Analytics::open(&lake, saving).await.unwrap();
    same_answers(&d, &mut dice, &areas, "a damaged saved part").await;
    assert_eq!(d.rollups_resumed(), 1, "only participation resumed");
}

#[tokio::test]
async fn a_prepared_start_has_every_part_built_or_resumed_before_the_first_question() {
    let lines = generated(9);
    let areas = areas_of(&lines);
    let mut s = Stream::default();
    s.lines = lines;
    let (dir, _) = lake_of(&s).await;
    let lake = dir.path().join("lake");
    let saving = Settings {
        save_rollups_every: Some(std::time::Duration::from_secs(3600)),
        ..Settings::default()
    };
    let a = Analytics::open(&lake, saving.clone()).await.unwrap();
    assert!(
        !Kpi::ALL.iter().all(|k| a.prepared(*k)),
        "nothing is built before a question or prepare"
    );
    a.prepare().await.unwrap();
    for kpi in Kpi::ALL {
        assert!(a.prepared(*kpi), "{kpi:?} prepared");
    }
    assert_eq!(a.rollups_resumed(), 0, "nothing saved yet: counted");
    let mut dice = Dice(0x5eed_1234_abcd_0009);
    same_answers(&a, &mut dice, &areas, "prepared").await;
    assert_eq!(a.save_rollups().await.unwrap(), 2);
    drop(a);

    // The next start prepares by resuming the saved parts.
    let b = Analytics::open(&lake, saving).await.unwrap();
    b.prepare().await.unwrap();
    assert_eq!(b.rollups_resumed(), 2, "both saved parts resumed");
    for kpi in Kpi::ALL {
        assert!(b.prepared(*kpi), "{kpi:?} prepared after a restart");
    }
    same_answers(&b, &mut dice, &areas, "prepared from saved parts").await;
}

#[tokio::test]
async fn while_a_commit_is_taken_in_questions_are_answered_from_the_version_before() {
    let lines = generated(9);
    let areas = areas_of(&lines);
    let chunks: Vec<&[String]> = lines.chunks(lines.len().div_ceil(2)).collect();
    let mut first = Stream::default();
    first.lines = chunks[0].to_vec();
    let (dir, _) = lake_of(&first).await;
    // Every question looks for new versions first (no interval).
    let eager = Settings {
        refresh_every: std::time::Duration::ZERO,
        ..Settings::default()
    };
    let a = Analytics::open(dir.path().join("lake"), eager)
        .await
        .unwrap();
    let mut dice = Dice(0x0bad_cafe_0000_0001);
    let asked = questions(&mut dice, &areas);
    let mut before = Vec::new();
    for (q, scope) in &asked {
        before.push(a.kpi(q, scope).await.unwrap());
    }
    let mut more = Stream::default();
    more.lines = chunks[1].to_vec();
    import_more(&dir, &more).await;
    // Asked at once: each answer is wholly of the version before or wholly of the new
    // one (never a mix), and says which by the span of data it reports.
    let mut stale = 0;
    for ((q, scope), old) in asked.iter().zip(&before) {
        let now = a.kpi(q, scope).await.unwrap();
        if now.data_through == old.data_through {
            assert_eq!(
                &*now, &**old,
                "{q:?}: an answer of the version before, changed"
            );
            stale += 1;
        }
    }
    assert!(
        stale > 0,
        "the first questions after the commit waited for the new version instead"
    );
    // Once refreshed (waiting for the rollups), every answer is the new version's, exact.
    assert!(a.refresh().await.is_ok());
    same_answers(&a, &mut dice, &areas, "after the commit").await;
    println!(
        "{stale} of {} answered from the version before",
        asked.len()
    );
}

#[tokio::test]
async fn rollups_answer_every_kpi_as_the_reference_computation_does() {
    let lines = generated(11);
    let (stars, late) = stars_and_corrections(&lines);
    let areas = areas_of(&lines);
    // Three commits of the generated stream (in its arrival order: stations that sync
    // late bring earlier events), then the star volunteers, then the late corrections.
    let chunks: Vec<&[String]> = lines.chunks(lines.len().div_ceil(3)).collect();
    let mut first = Stream::default();
    first.lines = chunks[0].to_vec();
    let (dir, a) = lake_of(&first).await;
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    same_answers(&a, &mut dice, &areas, "commit 1").await;
    for (n, chunk) in chunks.iter().enumerate().skip(1) {
        let mut more = Stream::default();
        more.lines = chunk.to_vec();
        import_more(&dir, &more).await;
        assert!(a.refresh().await.unwrap());
        same_answers(&a, &mut dice, &areas, &format!("commit {}", n + 1)).await;
    }
    for (name, stream) in [("star volunteers", stars), ("late corrections", late)] {
        import_more(&dir, &stream).await;
        assert!(a.refresh().await.unwrap());
        same_answers(&a, &mut dice, &areas, name).await;
    }
    assert!(
        a.rollup_updates() >= 7,
        "the service and participation rollups were updated from the commits' changes, not built again: {} updates",
        a.rollup_updates()
    );
    // Stars were reached.
    let stars_req = req(
        "star_volunteers",
        "2024-01-01",
        "2024-02-29",
        Granularity::Month,
        Level::City,
    );
    let answer = a.kpi(&stars_req, &Scope::City).await.unwrap();
    assert!(
        answer
            .rows
            .iter()
            .filter(|r| r.value.is_some_and(|v| v.as_f64() > 0.0))
            .count()
            >= 4,
        "star levels reached: {:?}",
        answer.rows
    );

    // Another time zone cuts other days: the same holds.
    let berlin = Settings {
        tz: chrono_tz::Tz::Europe__Berlin,
        ..Settings::default()
    };
    let b = Analytics::open(dir.path().join("lake"), berlin)
        .await
        .unwrap();
    same_answers(&b, &mut dice, &areas, "Europe/Berlin").await;
}
