//! Reproducing a reported number, over a real socket and from the command line: the
//! lineage on every surface (KPI JSON, CSV and XLSX headers, SQL headers, export
//! manifests, the CLI), the identical answer re-asked with its snapshot after late
//! events and amendments landed, an export re-run from its manifest's snapshot with the
//! same SHA-256, restatements scoped like everything else, and time travel past vacuum
//! refused with the oldest instant still answerable.

mod common;

use common::server::{Server, ndjson, token_config};
use common::{ok, wenming};
use serde_json::{Value, json};

const TOKENS: &[(&str, &str, &str)] = &[
    ("city-admin", "admin", "city"),
    ("a-analyst", "analyst", "district:330203"),
    ("b-analyst", "analyst", "district:330212"),
];

/// Two districts with a station each; March 2024 records at both.
fn first() -> String {
    let reg = "2023-12-01T09:00:00+08:00";
    let events = vec![
        (
            "unit.registered",
            reg,
            "C330203",
            json!({"level": "center", "name": "海曙区新时代文明实践中心", "area_code": "330203000000"}),
        ),
        (
            "unit.registered",
            reg,
            "S330203001001",
            json!({"level": "station", "name": "A站", "area_code": "330203001001", "parent_id": "C330203", "residents": 1000}),
        ),
        (
            "unit.registered",
            reg,
            "C330212",
            json!({"level": "center", "name": "鄞州区新时代文明实践中心", "area_code": "330212000000"}),
        ),
        (
            "unit.registered",
            reg,
            "S330212001001",
            json!({"level": "station", "name": "B站", "area_code": "330212001001", "parent_id": "C330212", "residents": 800}),
        ),
        (
            "volunteer.registered",
            reg,
            "S330203001001",
            json!({"volunteer_id": "V-A"}),
        ),
        (
            "volunteer.registered",
            reg,
            "S330212001001",
            json!({"volunteer_id": "V-B"}),
        ),
        (
            "service.recorded",
            "2024-03-05T12:00:00+08:00",
            "S330203001001",
            json!({"record_id": "R-A1", "volunteer_id": "V-A", "started_at": "2024-03-05T11:00:00+08:00", "ended_at": "2024-03-05T12:00:00+08:00", "minutes": 60}),
        ),
        (
            "service.recorded",
            "2024-03-06T12:00:00+08:00",
            "S330212001001",
            json!({"record_id": "R-B1", "volunteer_id": "V-B", "started_at": "2024-03-06T10:00:00+08:00", "ended_at": "2024-03-06T12:00:00+08:00", "minutes": 120}),
        ),
    ];
    ndjson(&events, 1)
}

/// After the March report: a late March record and an amendment in 330203; a
/// revocation in 330212.
fn second() -> String {
    let events = vec![
        (
            "service.recorded",
            "2024-03-10T10:30:00+08:00",
            "S330203001001",
            json!({"record_id": "R-A2", "volunteer_id": "V-A", "started_at": "2024-03-10T10:00:00+08:00", "ended_at": "2024-03-10T10:30:00+08:00", "minutes": 30}),
        ),
        (
            "service.amended",
            "2024-04-02T09:00:00+08:00",
            "S330203001001",
            json!({"record_id": "R-A1", "minutes": 90}),
        ),
        (
            "service.revoked",
            "2024-04-03T09:00:00+08:00",
            "S330212001001",
            json!({"record_id": "R-B1"}),
        ),
    ];
    ndjson(&events, 1000)
}

const MARCH: &str =
    "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31&granularity=month&level=district";

fn import_more(s: &Server, events: &str) {
    let file = s.dir.join("more.ndjson");
    std::fs::write(&file, events).unwrap();
    ok(&wenming(&[
        "import",
        file.to_str().unwrap(),
        "--lake",
        s.lake().to_str().unwrap(),
    ]));
}

/// Wait until the server answers from a snapshot other than `old`.
fn until_moved(s: &Server, old: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let a = s.get(MARCH, "city-admin");
        assert_eq!(a.status, 200, "{}", a.text());
        let body = a.json();
        if body["lineage"]["snapshot"] != old {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not see the commit"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `wenming kpi service_hours` for March 2024 by district over the server's lake, with
/// `extra` flags; its standard output.
fn march_cli(s: &Server, extra: &[&str]) -> String {
    let lake = s.lake();
    let mut args = vec![
        "kpi",
        "service_hours",
        "--lake",
        lake.to_str().unwrap(),
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-31",
        "--level",
        "district",
    ];
    args.extend_from_slice(extra);
    ok(&wenming(&args))
}

fn sha256(bytes: &[u8]) -> String {
    <sha2::Sha256 as sha2::Digest>::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_reported_number_is_reproduced_and_its_restatement_explained_on_every_surface() {
    let out = tempfile::tempdir().unwrap();
    let s = Server::start(
        &first(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ingest]\nenabled = false\n\
             [[exports]]\nname = \"monthly\"\nschedule = \"0 0 6 1 * *\"\n\
             kpis = [\"service_hours\", \"serving_volunteers\"]\nlevel = \"district\"\n\
             formats = [\"csv\", \"xlsx\", \"parquet\"]\noutput = \"{}\"\n{}",
            out.path().display(),
            token_config(TOKENS)
        ),
    );

    // The March report, on every surface.
    let report = s.get(MARCH, "city-admin");
    assert_eq!(report.status, 200, "{}", report.text());
    let report_body = report.body.clone();
    let lineage = report.json()["lineage"].clone();
    let snapshot = lineage["snapshot"].as_str().unwrap().to_string();
    assert!(snapshot.starts_with("s1."), "{lineage}");
    assert_eq!(lineage["kpi_catalog"], "v1");
    assert_eq!(lineage["tz"], "Asia/Shanghai");
    assert!(lineage["tables"]["service_events"]["version"].is_u64());
    assert!(lineage["tables"]["service_events"]["committed_at"].is_string());
    assert_eq!(report.headers["wenming-snapshot"], snapshot.as_str());
    for format in ["csv", "xlsx"] {
        let a = s.get(&format!("{MARCH}&format={format}"), "city-admin");
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["wenming-snapshot"], snapshot.as_str(), "{format}");
        let l: Value =
            serde_json::from_str(a.headers["wenming-lineage"].to_str().unwrap()).unwrap();
        assert_eq!(l, lineage, "{format}");
    }
    let count = "SELECT count(*) AS n FROM service_events";
    let sql = s.sql("city-admin", count);
    assert_eq!(sql.status, 200, "{}", sql.text());
    assert_eq!(sql.headers["wenming-snapshot"], snapshot.as_str());
    assert_eq!(sql.json()[0]["n"], 2);
    let run = s.request(
        reqwest::Method::POST,
        "/v1/exports/monthly/run?period=2024-03",
        Some("city-admin"),
        None,
    );
    assert_eq!(run.status, 200, "{}", run.text());
    let manifest = run.json();
    assert_eq!(manifest["lineage"]["snapshot"], snapshot.as_str());
    let shas = |m: &Value| -> Vec<(String, String)> {
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_string(),
                    f["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let first_run = shas(&manifest);
    let cli: Value = serde_json::from_str(&march_cli(&s, &["--format", "json"])).unwrap();
    assert_eq!(cli["lineage"], lineage, "the CLI names the same snapshot");

    // Late events and corrections for March land.
    import_more(&s, &second());
    let now = until_moved(&s, &snapshot);
    assert_ne!(now["rows"], report.json()["rows"]);

    // Re-asked with the report's snapshot: the same bytes; as of the report's last
    // commit: the same bytes too.
    let again = s.get(&format!("{MARCH}&snapshot={snapshot}"), "city-admin");
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.body, report_body, "byte for byte");
    // The report's last commit: every table's version then is the report's.
    let committed = lineage["tables"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["committed_at"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    let as_of = s.get(
        &format!("{MARCH}&as_of={}", committed.replace('+', "%2B")),
        "city-admin",
    );
    assert_eq!(as_of.body, report_body, "{}", as_of.text());
    let sql_then = s.post(
        "/v1/sql",
        "city-admin",
        &json!({"sql": count, "snapshot": snapshot}),
    );
    assert_eq!(sql_then.json()[0]["n"], 2, "{}", sql_then.text());
    assert_eq!(sql_then.headers["wenming-snapshot"], snapshot.as_str());
    assert_eq!(s.sql("city-admin", count).json()[0]["n"], 5);
    let cli_then = march_cli(&s, &["--format", "json", "--snapshot", &snapshot]);
    let cli_then: Value = serde_json::from_str(&cli_then).unwrap();
    assert_eq!(cli_then, cli, "the CLI reproduces it too");

    // The export re-run from its manifest's snapshot: the same files; run on the newest
    // data: other files.
    let rerun = s.request(
        reqwest::Method::POST,
        &format!("/v1/exports/monthly/run?period=2024-03&snapshot={snapshot}"),
        Some("city-admin"),
        None,
    );
    assert_eq!(rerun.status, 200, "{}", rerun.text());
    assert_eq!(
        shas(&rerun.json()),
        first_run,
        "same SHA-256 from the same snapshot"
    );
    let dir = out.path().join("monthly").join("city").join("2024-03");
    for (name, sha) in &first_run {
        assert_eq!(
            &sha256(&std::fs::read(dir.join(name)).unwrap()),
            sha,
            "{name}"
        );
    }
    let fresh = s.request(
        reqwest::Method::POST,
        "/v1/exports/monthly/run?period=2024-03",
        Some("city-admin"),
        None,
    );
    let fresh = fresh.json();
    assert_ne!(shas(&fresh), first_run, "the newest data makes other files");
    // … and a restatement sheet against the run before: the cells that moved.
    assert_eq!(fresh["restated_since"], snapshot.as_str());
    let sheet = std::fs::read_to_string(dir.join("monthly_2024-03_restatement.csv")).unwrap();
    let mut lines: Vec<&str> = sheet.lines().collect();
    assert_eq!(
        lines.remove(0),
        "kpi,period,area,area_name,star,rank,old,new,late,new_events,amended,revoked,duplicates,other"
    );
    lines.sort();
    assert_eq!(
        lines,
        [
            "service_hours,2024-03-01,330203,海曙区,,,1,2,1,0,1,0,0,0",
            "service_hours,2024-03-01,330212,鄞州区,,,2,0,0,0,0,1,0,0",
            "serving_volunteers,2024-03-01,330212,鄞州区,,,1,0,0,0,0,1,0,0",
        ],
        "{sheet}"
    );

    // The restatement: both districts' March cells, with their causes.
    let changes = s.get(
        &format!(
            "{}&since={snapshot}",
            MARCH.replace("service_hours?", "service_hours/changes?")
        ),
        "city-admin",
    );
    assert_eq!(changes.status, 200, "{}", changes.text());
    let c = changes.json();
    assert_eq!(c["since"]["snapshot"], snapshot.as_str());
    assert_eq!(c["until"], now["lineage"]);
    let cells = c["changes"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{c:#}");
    let a = cells.iter().find(|x| x["area"] == "330203").unwrap();
    assert_eq!(
        (a["old"].as_f64(), a["new"].as_f64()),
        (Some(1.0), Some(2.0))
    );
    assert_eq!(a["causes"]["late"], 1);
    assert_eq!(a["causes"]["amended"], 1);
    assert_eq!(a["causes"]["revoked"], 0);
    let b = cells.iter().find(|x| x["area"] == "330212").unwrap();
    assert_eq!(
        (b["old"].as_f64(), b["new"].as_f64()),
        (Some(2.0), Some(0.0))
    );
    assert_eq!(b["causes"]["revoked"], 1);
    assert_eq!(b["causes"]["late"], 0);

    // Scoped: district A's analyst sees its own cell only, and asking about B's area
    // is refused exactly as an area that does not exist.
    let path = format!(
        "{}&since={snapshot}",
        MARCH.replace("service_hours?", "service_hours/changes?")
    );
    let mine = s.get(&path, "a-analyst").json();
    let mine = mine["changes"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["area"], "330203");
    assert_eq!(mine[0]["causes"], a["causes"]);
    let theirs = s.get(&format!("{path}&area=330212"), "a-analyst");
    let nowhere = s.get(&format!("{path}&area=330299"), "a-analyst");
    assert_eq!(theirs.status, nowhere.status);
    assert_eq!(
        theirs.detail().replace("330212", "X"),
        nowhere.detail().replace("330299", "X")
    );

    // The CLI's restatement.
    let cli_changes = march_cli(&s, &["--changes-since", &snapshot]);
    assert!(cli_changes.contains("2 cell(s) changed"), "{cli_changes}");
    assert!(cli_changes.contains("late 1, amended 1"), "{cli_changes}");
    assert!(cli_changes.contains("revoked 1"), "{cli_changes}");

    // Bad snapshots and instants: clear 400s.
    let bad = s.get(&format!("{MARCH}&snapshot=yesterday"), "city-admin");
    assert_eq!(bad.status, 400);
    assert!(
        bad.detail().contains("`snapshot` must be"),
        "{}",
        bad.detail()
    );
    let both = s.get(
        &format!("{MARCH}&snapshot={snapshot}&as_of=2024-04-01T00:00:00Z"),
        "city-admin",
    );
    assert_eq!(both.status, 400);
    let future = s.get(&format!("{MARCH}&as_of=2099-01-01T00:00:00Z"), "city-admin");
    assert_eq!(future.status, 400);
    assert!(
        future.detail().contains("in the future"),
        "{}",
        future.detail()
    );

    // Compacted and vacuumed: the report's snapshot is gone, said with the oldest
    // instant still answerable, and that instant answers.
    ok(&wenming(&[
        "lake",
        "optimize",
        "--lake",
        s.lake().to_str().unwrap(),
    ]));
    ok(&wenming(&[
        "lake",
        "vacuum",
        "--lake",
        s.lake().to_str().unwrap(),
        "--retention-hours",
        "0",
        "--force",
    ]));
    let gone = s.get(&format!("{MARCH}&snapshot={snapshot}"), "city-admin");
    assert_eq!(gone.status, 410, "{}", gone.text());
    let detail = gone.detail();
    let oldest = detail
        .split("the oldest instant still answerable is ")
        .nth(1)
        .unwrap_or_else(|| panic!("names the oldest instant: {detail}"))
        .trim()
        .to_string();
    let then = s.get(
        &format!("{MARCH}&as_of={}", oldest.replace('+', "%2B")),
        "city-admin",
    );
    assert_eq!(then.status, 200, "{}", then.text());
    assert_eq!(then.json()["rows"], now["rows"]);
}
