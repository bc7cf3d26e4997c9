//! The `wenming` binary end to end: generate → validate, a corpus with one defect per
//! line through `validate --format json`, schemas, and clear errors with the documented
//! exit codes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

const EXAMPLES: &str = include_str!("../schemas/tests/fixtures/examples.ndjson");

fn wenming(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wenming"))
        .args(args)
        .output()
        .expect("the wenming binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn validate_json(path: &Path) -> (i32, Value) {
    let out = wenming(&["validate", path.to_str().unwrap(), "--format", "json"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code().unwrap(), report)
}

#[test]
fn generated_tiny_city_validates_with_zero_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.ndjson");
    let out = wenming(&[
        "generate",
        "--scale",
        "tiny",
        "--seed",
        "7",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("generated"),
        "{}",
        text(&out.stderr)
    );

    let (code, report) = validate_json(&file);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["rejected"], json!({}));
    assert_eq!(report["rejections"], json!([]));
    assert_eq!(report["lines"], report["valid"]);
    assert!(report["lines"].as_u64().unwrap() > 10_000);
    assert!(
        report["duplicates"].as_u64().unwrap() > 0,
        "0.5 % re-sends by default"
    );
    assert_eq!(report["by_type"].as_object().unwrap().len(), 25);

    let out = wenming(&["validate", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("0 rejected"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn generate_to_stdout_and_to_a_file_agree() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.ndjson");
    let a = wenming(&[
        "generate",
        "--seed",
        "3",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-10",
    ]);
    assert!(a.status.success());
    let b = wenming(&[
        "generate",
        "--seed",
        "3",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-10",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(b.status.success());
    assert!(a.stdout == std::fs::read(&file).unwrap());
}

#[test]
fn invalid_rate_lines_are_counted_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.ndjson");
    let out = wenming(&[
        "generate",
        "--seed",
        "4",
        "--invalid-rate",
        "0.02",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let (code, report) = validate_json(&file);
    assert_eq!(code, 1);
    let rejected: u64 = report["rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        rejected,
        report["rejections"].as_array().unwrap().len() as u64
    );
    assert_eq!(
        report["lines"].as_u64().unwrap(),
        report["valid"].as_u64().unwrap() + rejected
    );
    let share = rejected as f64 / report["lines"].as_f64().unwrap();
    assert!((0.01..0.03).contains(&share), "{share}");
}

/// One defect per line, every code of the contract; validate must name each line's code.
#[test]
fn a_corpus_with_one_defect_per_line_is_rejected_line_by_line() {
    let examples: Vec<Value> = EXAMPLES
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_type = |t: &str| examples.iter().find(|e| e["type"] == t).unwrap().clone();
    let mut lines: Vec<(String, &str)> = Vec::new();
    let mut add = |v: Value, code: &'static str| lines.push((v.to_string(), code));
    let edit = |t: &str, f: &dyn Fn(&mut Value)| {
        let mut v = by_type(t);
        f(&mut v);
        v
    };

    add(
        edit("service.recorded", &|v| {
            v["data"].as_object_mut().unwrap().remove("minutes");
        }),
        "missing_field:minutes",
    );
    add(
        edit("order.rated", &|v| v["data"]["score"] = json!("5")),
        "bad_type:score",
    );
    add(
        edit("service.recorded", &|v| v["data"]["minutes"] = json!(90.5)),
        "bad_type:minutes",
    );
    add(
        edit("order.rated", &|v| v["data"]["score"] = json!(6)),
        "bad_value:score",
    );
    add(
        edit("service.recorded", &|v| v["data"]["minutes"] = json!(0)),
        "bad_value:minutes",
    );
    add(
        edit("service.recorded", &|v| v["data"]["minutes"] = json!(1000)),
        "bad_value:minutes",
    );
    add(
        edit("service.amended", &|v| v["data"]["minutes"] = json!(1441)),
        "bad_value:minutes",
    );
    add(
        edit("team.registered", &|v| v["data"]["unit_id"] = json!("S000")),
        "bad_value:unit_id",
    );
    add(
        edit("activity.published", &|v| {
            v["data"]["category"] = json!("sports")
        }),
        "bad_value:category",
    );
    add(
        edit("attendance.checked_in", &|v| {
            v["data"]["role"] = json!("guest")
        }),
        "bad_value:role",
    );
    add(
        edit("attendance.checked_in", &|v| {
            v["data"].as_object_mut().unwrap().remove("person_id");
        }),
        "missing_field:person_id",
    );
    add(
        edit("unit.registered", &|v| {
            v["data"]["area_code"] = json!("4403")
        }),
        "bad_value:area_code",
    );
    add(
        edit("unit.registered", &|v| {
            v["data"]["level"] = json!("province")
        }),
        "bad_value:level",
    );
    add(
        edit("volunteer.registered", &|v| {
            v["data"]["party_member"] = json!("yes")
        }),
        "bad_type:party_member",
    );
    add(
        edit("volunteer.registered", &|v| {
            v["data"]["gender"] = json!("female")
        }),
        "bad_value:gender",
    );
    add(
        edit("points.earned", &|v| v["data"]["points"] = json!(0)),
        "bad_value:points",
    );
    add(
        edit("points.redeemed", &|v| v["data"]["points"] = json!(-5)),
        "bad_value:points",
    );
    add(
        edit("activity.completed", &|v| {
            v["data"]["anonymous_headcount"] = json!(-1)
        }),
        "bad_value:anonymous_headcount",
    );
    add(
        edit("order.placed", &|v| v["data"]["channel"] = json!("fax")),
        "bad_value:channel",
    );
    add(
        edit("feedback.submitted", &|v| {
            v["data"]["due_at"] = json!("2025-02-15")
        }),
        "bad_value:due_at",
    );
    add(
        edit("feedback.submitted", &|v| {
            v["data"]["kind"] = json!("praise")
        }),
        "bad_value:kind",
    );
    add(
        edit("wish.posted", &|v| v["data"]["wish_id"] = json!("")),
        "bad_value:wish_id",
    );
    add(
        edit("order.dispatched", &|v| {
            v["data"]["team_id"] = json!("T".repeat(65))
        }),
        "bad_value:team_id",
    );
    add(
        edit("order.accepted", &|v| v["data"]["team_id"] = json!(4)),
        "bad_type:team_id",
    );
    add(
        edit("wish.fulfilled", &|v| v["event_id"] = json!("W0")),
        "bad_value:event_id",
    );
    add(
        edit("feedback.closed", &|v| {
            v.as_object_mut().unwrap().remove("event_id");
        }),
        "missing_field:event_id",
    );
    add(
        edit("order.completed", &|v| v["type"] = json!("order.finished")),
        "unknown_type",
    );
    add(
        edit("order.declined", &|v| v["schema_version"] = json!(2)),
        "unsupported_schema_version",
    );
    add(
        edit("unit.closed", &|v| {
            v["occurred_at"] = json!("2025-01-10T12:00:00")
        }),
        "bad_value:occurred_at",
    );
    add(
        edit("unit.updated", &|v| v["data"]["residents"] = json!(-1)),
        "bad_value:residents",
    );
    add(
        edit("volunteer.deregistered", &|v| v["data"] = json!([])),
        "bad_type:data",
    );
    add(
        edit("activity.cancelled", &|v| {
            v.as_object_mut().unwrap().remove("data");
        }),
        "missing_field:data",
    );
    add(
        edit("service.revoked", &|v| v["unit_id"] = json!(7)),
        "bad_type:unit_id",
    );
    add(json!([1, 2, 3]), "not_object");
    let mut huge = by_type("wish.posted");
    huge["data"]["note"] = json!("x".repeat(1 << 20));
    add(huge, "too_large");
    lines.push((
        "{\"event_id\": \"4d100d8f-daf0-405b-a06c-05a1c76abf43\", \"type\": ".into(),
        "not_json",
    ));
    // Valid lines between the bad ones must stay valid.
    lines.push((EXAMPLES.lines().next().unwrap().to_owned(), "valid"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corpus.ndjson");
    let body: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    std::fs::write(&file, body).unwrap();

    let (code, report) = validate_json(&file);
    assert_eq!(code, 1);
    assert_eq!(report["lines"], json!(lines.len()));
    assert_eq!(report["valid"], json!(1));
    let rejections = report["rejections"].as_array().unwrap();
    let expected: Vec<(u64, &str)> = lines
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| *c != "valid")
        .map(|(i, (_, c))| (i as u64 + 1, *c))
        .collect();
    let got: Vec<(u64, &str)> = rejections
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(got, expected);
    for r in rejections {
        assert!(r["message"].as_str().unwrap().len() > 10, "{r}");
    }
    assert_eq!(report["rejected"]["bad_value:minutes"], json!(3));
}

#[test]
fn schema_writes_one_file_per_type_and_a_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let out = wenming(&["schema", "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 26);
    let recorded: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("service.recorded.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        recorded["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(
        recorded["properties"]["data"]["properties"]["minutes"]["maximum"],
        1440
    );
    let catalog: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("event.schema.json")).unwrap())
            .unwrap();
    assert_eq!(catalog["$defs"].as_object().unwrap().len(), 25);
}

#[test]
fn usage_and_io_errors_exit_2_with_a_clear_message() {
    let out = wenming(&["validate", "/nonexistent/events.ndjson"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot open /nonexistent/events.ndjson"),
        "{}",
        text(&out.stderr)
    );

    let out = wenming(&["validate"]);
    assert_eq!(out.status.code(), Some(2));

    let out = wenming(&["validate", "x.ndjson", "--format", "xml"]);
    assert_eq!(out.status.code(), Some(2));

    let out = wenming(&["generate", "--from", "2024-05-01", "--to", "2024-04-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--from 2024-05-01 is after --to 2024-04-01"),
        "{}",
        text(&out.stderr)
    );

    let out = wenming(&["generate", "--scale", "country"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown scale"),
        "{}",
        text(&out.stderr)
    );

    let out = wenming(&["generate", "--invalid-rate", "1.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--invalid-rate must be between 0 and 1"),
        "{}",
        text(&out.stderr)
    );

    // A dedup window of no ids, or past the largest (2^30 ids, ≈ 12 GB), is refused
    // before anything connects.
    for window in ["0", "2000000000"] {
        let out = wenming(&["ingest", "--dedup-window", window]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            text(&out.stderr).contains(&format!("invalid value '{window}' for '--dedup-window")),
            "{}",
            text(&out.stderr)
        );
    }
}

/// A broker that is not there: `produce` and `ingest` exit 2 naming the address, say
/// the cause once (it was said three times over), and point to `wenming broker`.
#[test]
fn an_unreachable_broker_is_named_with_its_cause_once_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.ndjson");
    std::fs::write(&file, "{}\n").unwrap();
    let lake = dir.path().join("lake");
    let runs: [Vec<&str>; 2] = [
        vec![
            "produce",
            "--brokers",
            "127.0.0.1:1",
            "--topic",
            "t",
            file.to_str().unwrap(),
        ],
        vec![
            "ingest",
            "--brokers",
            "127.0.0.1:1",
            "--topic",
            "t",
            "--group",
            "g",
            "--exit-at-end",
            "--lake",
            lake.to_str().unwrap(),
        ],
    ];
    for args in runs {
        let out = wenming(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot reach the brokers at 127.0.0.1:1: "),
            "{stderr}"
        );
        assert_eq!(stderr.matches("transport failure").count(), 1, "{stderr}");
        assert!(
            stderr.contains("`wenming broker` starts a development one"),
            "{stderr}"
        );
    }
}

#[test]
fn help_explains_every_subcommand() {
    let out = wenming(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for sub in ["validate", "generate", "schema"] {
        assert!(help.contains(sub), "{help}");
    }
}

/// `wenming.toml` in the working directory sets what flags and the environment do not;
/// a flag still wins; a broken file is refused by name.
#[test]
fn the_config_file_gives_defaults_that_flags_override() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, EXAMPLES).unwrap();
    let from_file = dir.path().join("lake-from-file");
    std::fs::write(
        dir.path().join("wenming.toml"),
        format!("[lake]\npath = \"{}\"\n", from_file.display()),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wenming"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("WENMING_LAKE__PATH")
            .output()
            .unwrap()
    };
    let out = run(&["import", events.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        from_file.join("wish_events").is_dir(),
        "the file's lake path was used"
    );

    let flag = dir.path().join("lake-from-flag");
    let out = run(&[
        "import",
        events.to_str().unwrap(),
        "--lake",
        flag.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(flag.join("wish_events").is_dir(), "the flag wins");

    std::fs::write(dir.path().join("bad.toml"), "path = 1\n").unwrap();
    let out = run(&["--config", "bad.toml", "lake", "info"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.toml"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("[section]"),
        "{}",
        text(&out.stderr)
    );
}
