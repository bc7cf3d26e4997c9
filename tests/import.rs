//! `wenming import` end to end: a generated stream with re-sends and broken lines lands
//! in real Delta tables exactly once, with every rejection in the rejects file, and a
//! second import (even of a renamed copy) stores nothing new.

use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{lake_counts, wenming};
use wenming_schemas::Family;

#[tokio::test]
async fn import_stores_each_valid_event_once_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let lake = dir.path().join("lake");
    let f = file.to_str().unwrap();
    let l = lake.to_str().unwrap();
    let out = wenming(&[
        "generate",
        "--seed",
        "21",
        "--invalid-rate",
        "0.02",
        "--duplicate-rate",
        "0.01",
        "--out",
        f,
    ]);
    assert!(out.status.success());

    let report: Value =
        serde_json::from_slice(&wenming(&["validate", f, "--format", "json"]).stdout).unwrap();
    let valid = report["valid"].as_u64().unwrap();
    let duplicates = report["duplicates"].as_u64().unwrap();
    let rejections = report["rejections"].as_array().unwrap();
    assert!(duplicates > 0 && !rejections.is_empty());

    // Small batches: many commits, as a long-running import would make.
    let out = wenming(&["import", f, "--lake", l, "--batch-rows", "5000"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = format!(
        "read {} = stored {} + duplicates {} + rejected {} + already in the lake 0",
        report["lines"],
        valid - duplicates,
        duplicates,
        rejections.len()
    );
    assert!(stdout.contains(&expected), "{stdout}\nexpected: {expected}");

    let (rows, ids) = lake_counts(&lake).await;
    assert_eq!(rows, valid - duplicates, "every valid event once");
    assert_eq!(ids, rows, "no event twice");

    // The rejects file lists every rejected line with the reason validate gives.
    let rejects_path = format!("{f}.rejects.ndjson");
    let rejects: Vec<Value> = std::fs::read_to_string(&rejects_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejects.len(), rejections.len());
    for (got, want) in rejects.iter().zip(rejections) {
        assert_eq!(got["line"], want["line"]);
        assert_eq!(got["reason"], want["reason"]);
    }

    // Again, and as a renamed copy: nothing new.
    let copy = dir.path().join("copy.ndjson");
    std::fs::copy(&file, &copy).unwrap();
    for input in [f, copy.to_str().unwrap()] {
        let out = wenming(&["import", input, "--lake", l]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains(" = stored 0 + "), "{stdout}");
        assert!(
            stdout.contains(&format!("already in the lake {}", valid - duplicates)),
            "{stdout}"
        );
    }
    assert_eq!(lake_counts(&lake).await, (rows, ids));

    // `lake info` shows the tables and the file's committed position (its last line of
    // each table), named by the file's content hash (`file:blake3:…`).
    let out = wenming(&["lake", "info", "--lake", l]);
    let info = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{info}");
    for family in Family::ALL {
        assert!(info.contains(family.table_name()), "{info}");
    }
    let listed_rows: u64 = info
        .lines()
        .filter(|l| !l.starts_with(" ") && l.contains("_events "))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(listed_rows, rows, "{info}");
    assert!(info.contains("committed positions"), "{info}");
    assert!(
        info.contains("→ file:") || info.contains(" file:"),
        "{info}"
    );
}

#[test]
fn lake_info_on_a_missing_lake_fails_clearly() {
    let out = wenming(&["lake", "info", "--lake", "/nonexistent/lake"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no lake at /nonexistent/lake"));
}

#[test]
fn import_of_a_missing_file_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = wenming(&[
        "import",
        "/nonexistent.ndjson",
        "--lake",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent.ndjson"));
}

/// Exactly once across crashes: an import is SIGKILLed again and again mid-run, then
/// run to the end; every valid event is in the lake once, none twice.
#[tokio::test]
async fn an_import_killed_again_and_again_still_stores_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let lake = dir.path().join("lake");
    let (f, l) = (file.to_str().unwrap(), lake.to_str().unwrap());
    let out = wenming(&[
        "generate",
        "--seed",
        "33",
        "--duplicate-rate",
        "0.02",
        "--out",
        f,
    ]);
    assert!(out.status.success());
    let report: Value =
        serde_json::from_slice(&wenming(&["validate", f, "--format", "json"]).stdout).unwrap();
    let distinct = report["valid"].as_u64().unwrap() - report["duplicates"].as_u64().unwrap();

    // Small batches make many commits, so the kills land between and inside them. Each
    // run is killed once it has committed something (so every round resumes mid-file,
    // however fast the machine), a little later each round.
    let log_entries = || -> usize {
        std::fs::read_dir(&lake)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|table| std::fs::read_dir(table.path().join("_delta_log")).ok())
            .map(|log| log.count())
            .sum()
    };
    let mut killed_mid_run = 0;
    for round in 0..5u64 {
        let before = log_entries();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wenming"))
            .args(["import", f, "--lake", l, "--batch-rows", "400"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none()
            && log_entries() == before
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(3 * round)).await;
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().ok(); // SIGKILL: no chance to finish the batch in hand
        child.wait().unwrap();
    }
    let out = wenming(&["import", f, "--lake", l, "--batch-rows", "400"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(
        killed_mid_run > 0,
        "no kill landed mid-run; the test proved nothing"
    );
    assert_eq!(
        lake_counts(&lake).await,
        (distinct, distinct),
        "after {killed_mid_run} kills: {stdout}"
    );
}

/// Small commits leave many small files; `lake optimize` compacts them without changing
/// a row or a position, and `lake vacuum` deletes the old files only past its guard.
/// A generated stream (seed `seed`) in a temp dir: the dir, the file, where its lake goes.
fn generated(seed: u64) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let out = wenming(&[
        "generate",
        "--seed",
        &seed.to_string(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lake = dir.path().join("lake");
    (dir, file, lake)
}

#[tokio::test]
async fn optimize_and_vacuum_keep_every_row_and_position() {
    let (_dir, file, lake) = generated(8);
    let (f, l) = (file.to_str().unwrap(), lake.to_str().unwrap());
    assert!(
        wenming(&["import", f, "--lake", l, "--batch-rows", "2000"])
            .status
            .success()
    );
    let before = lake_counts(&lake).await;
    let text = |o: Output| {
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    };
    let positions = |info: &str| -> Vec<String> {
        info.lines()
            .filter(|l| l.contains("file:"))
            .map(str::to_owned)
            .collect()
    };
    let info_before = text(wenming(&["lake", "info", "--lake", l]));

    let out = wenming(&["lake", "optimize", "--lake", l]);
    assert!(out.status.success());
    let report = text(out);
    assert!(
        report.contains("service_events") && report.contains("files compacted into 1"),
        "{report}"
    );
    assert_eq!(
        lake_counts(&lake).await,
        before,
        "compaction changes no row"
    );
    let info_after = text(wenming(&["lake", "info", "--lake", l]));
    assert_eq!(
        positions(&info_after),
        positions(&info_before),
        "nor any position"
    );

    // The guard: under 7 days only with --force.
    let out = wenming(&["lake", "vacuum", "--lake", l, "--retention-hours", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(out).contains("under 168 (7 days)"));
    let out = wenming(&[
        "lake",
        "vacuum",
        "--lake",
        l,
        "--retention-hours",
        "0",
        "--force",
        "--dry-run",
    ]);
    let dry = text(out);
    assert!(dry.contains("would delete"), "{dry}");
    let would: u64 = dry
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    assert!(would > 0, "{dry}");
    let out = wenming(&[
        "lake",
        "vacuum",
        "--lake",
        l,
        "--retention-hours",
        "0",
        "--force",
    ]);
    let done = text(out);
    let deleted: u64 = done
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    assert_eq!(deleted, would, "{done}");
    assert_eq!(
        lake_counts(&lake).await,
        before,
        "vacuum deletes only unused files"
    );

    // Positions still hold: importing again stores nothing.
    let again = text(wenming(&["import", f, "--lake", l]));
    assert!(again.contains(" = stored 0 + "), "{again}");
}

/// `wenming sql` holds a query to `--memory-mib`: past it the query fails with a
/// sentence saying so (and the operator), not an out-of-memory kill, and the same limit
/// answers a small query.
#[test]
fn sql_stops_a_query_over_its_memory_limit_with_a_clear_error() {
    let (_dir, file, lake) = generated(5);
    let (f, l) = (file.to_str().unwrap(), lake.to_str().unwrap());
    assert!(wenming(&["import", f, "--lake", l]).status.success());

    // One string of every pair of check-ins: an aggregate that cannot spill, far
    // over 16 MiB.
    let pairs = "SELECT length(string_agg(a.event_id || b.event_id, ',')) \
                 FROM attendance_events a CROSS JOIN attendance_events b";
    let out = wenming(&[
        "sql",
        "--lake",
        l,
        "--memory-mib",
        "16",
        "--timeout-secs",
        "120",
        pairs,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("needed more memory than its limit"),
        "{stderr}"
    );

    let out = wenming(&[
        "sql",
        "--lake",
        l,
        "--memory-mib",
        "16",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM units",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("a count");
    assert!(n > 0);
}

/// `wenming kpi --exact-recompute` prints the answer computed from all events by the
/// reference computation, which is the rollups' answer, and says so.
#[test]
fn kpi_exact_recompute_prints_the_reference_answer_and_checks_the_rollups() {
    let (_dir, file, lake) = generated(12);
    let (f, l) = (file.to_str().unwrap(), lake.to_str().unwrap());
    assert!(wenming(&["import", f, "--lake", l]).status.success());
    for kpi in [
        "star_volunteers",
        "unique_participants",
        "volunteer_ranking",
    ] {
        let ask = |extra: &[&str]| {
            let mut args = vec![
                "kpi",
                kpi,
                "--lake",
                l,
                "--from",
                "2024-01-01",
                "--to",
                "2024-02-29",
                "-g",
                "week",
                "-l",
                "street",
                "--compare",
                "mom",
                "--format",
                "json",
            ];
            args.extend_from_slice(extra);
            wenming(&args)
        };
        let exact = ask(&["--exact-recompute"]);
        assert!(
            exact.status.success(),
            "{kpi}: {}",
            String::from_utf8_lossy(&exact.stderr)
        );
        assert!(
            String::from_utf8_lossy(&exact.stderr).contains("the rollups give the same"),
            "{kpi}: {}",
            String::from_utf8_lossy(&exact.stderr)
        );
        let rolled: Value = serde_json::from_slice(&ask(&[]).stdout).unwrap();
        let exact: Value = serde_json::from_slice(&exact.stdout).unwrap();
        assert_eq!(rolled, exact, "{kpi}");
        assert!(!exact["rows"].as_array().unwrap().is_empty(), "{kpi}");
    }
}
