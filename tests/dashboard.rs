//! The dashboard in a real browser: `tests/browser/dashboard.py` (selenium driving
//! Debian's chromium) against a `wenming serve` over a lake of two districts: the tiny
//! generated network (海曙区, 330203) and a small 鄞州区 (330212) whose first station is
//! named like an XSS attack. The browser checks are listed in the script; this test
//! starts the server, runs them, and writes the screenshots to docs/img/.
//!
//! Without chromium, chromedriver or selenium the test says so and passes, unless
//! `WENMING_TEST_BROWSER=1` (as in CI), where it fails.

mod common;

use std::process::Command;

use common::server::{Server, ndjson, token_config};
use common::{ok, wenming};
use serde_json::json;

const HOSTILE: &str = r#"<img src=x onerror="window.__xss=1">"#;

/// 鄞州区: a centre, a street institute, two stations (one named like an attack), each
/// with activities, check-ins and service in January and February 2024.
fn other_district() -> String {
    let reg = "2023-12-01T09:00:00+08:00";
    let mut ev = vec![
        (
            "unit.registered",
            reg.to_string(),
            "C330212".to_string(),
            json!({"level": "center", "name": "鄞州区新时代文明实践中心", "area_code": "330212000000"}),
        ),
        (
            "unit.registered",
            reg.to_string(),
            "I330212001".to_string(),
            json!({"level": "institute", "name": "东柳街道新时代文明实践所", "area_code": "330212001000", "parent_id": "C330212"}),
        ),
    ];
    for (i, (id, name)) in [
        ("S330212001001", HOSTILE),
        ("S330212001002", "东柳社区新时代文明实践站"),
    ]
    .into_iter()
    .enumerate()
    {
        ev.push((
            "unit.registered",
            reg.to_string(),
            id.to_string(),
            json!({"level": "station", "name": name, "area_code": format!("33021200100{}", i + 1), "parent_id": "I330212001", "residents": 3000}),
        ));
        ev.push((
            "volunteer.registered",
            reg.to_string(),
            id.to_string(),
            json!({"volunteer_id": format!("VB-{i}")}),
        ));
        for month in [1, 2] {
            let at =
                |day: u32, hour: u32| format!("2024-{month:02}-{day:02}T{hour:02}:00:00+08:00");
            let activity = format!("AB-{i}-{month}");
            ev.push((
                "activity.published",
                at(1, 9),
                id.to_string(),
                json!({"activity_id": activity, "category": "culture", "title": "讲座", "starts_at": at(10, 9), "ends_at": at(10, 11)}),
            ));
            ev.push((
                "attendance.checked_in",
                at(10, 9),
                id.to_string(),
                json!({"activity_id": activity, "person_id": format!("PB-{i}"), "role": "resident", "method": "scan"}),
            ));
            ev.push((
                "service.recorded",
                at(10, 12),
                id.to_string(),
                json!({"record_id": format!("RB-{i}-{month}"), "volunteer_id": format!("VB-{i}"), "started_at": at(10, 9), "ended_at": at(10, 11), "minutes": 120}),
            ));
        }
    }
    let events: Vec<(&str, &str, &str, serde_json::Value)> = ev
        .iter()
        .map(|(t, at, u, d)| (*t, at.as_str(), u.as_str(), d.clone()))
        .collect();
    ndjson(&events, 0xB000)
}

/// Whether this machine can run the browser checks (or must, under
/// WENMING_TEST_BROWSER=1).
fn browser_available() -> bool {
    let ready = std::path::Path::new("/usr/bin/chromium").exists()
        && std::path::Path::new("/usr/bin/chromedriver").exists()
        && Command::new("python3")
            .args(["-c", "import selenium"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        assert!(
            std::env::var("WENMING_TEST_BROWSER").is_err(),
            "WENMING_TEST_BROWSER is set, but chromium, chromedriver or selenium is missing"
        );
        eprintln!(
            "skipped: the browser checks need chromium, chromium-driver and selenium (.ci/run installs them)"
        );
    }
    ready
}

#[test]
fn the_dashboard_works_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.ndjson");
    ok(&wenming(&[
        "generate",
        "--scale",
        "tiny",
        "--seed",
        "11",
        "--out",
        tiny.to_str().unwrap(),
    ]));
    let events = std::fs::read_to_string(&tiny).unwrap() + &other_district();
    let tokens = [
        ("city-admin", "admin", "city"),
        ("a-viewer", "viewer", "district:330203"),
        ("b-viewer", "viewer", "district:330212"),
    ];
    let s = Server::start(
        &events,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ingest]\nenabled = false\n{}",
            token_config(&tokens)
        ),
    );
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/img");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py"))
        .args(["--url", &format!("http://{}", s.addr)])
        .args(["--shots", shots.to_str().unwrap()])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("ok  ").count(), 9, "{stdout}");
}
