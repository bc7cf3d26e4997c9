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

use common::server::{Server, other_district, token_config};
use common::{ok, wenming};

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
    assert_eq!(stdout.matches("ok  ").count(), 10, "{stdout}");
}
