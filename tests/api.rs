//! `wenming serve` end to end: the real binary on port 0, talked to over HTTP on a real
//! socket, over a real lake. A scope matrix (two districts, a street, a unit and the
//! city) against every reading endpoint, SQL attacks, a slow query cancelled while
//! others are answered, exports read back, the OpenAPI document, and the events
//! gateway through the embedded broker.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Datelike;
use common::*;
use serde_json::{Value, json};

/// One request through `reqwest`: the status, the head as text (`name: value` lines,
/// names in lower case, for assertions on headers) and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
    });
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if !body.is_empty() {
        req = req.body(body.to_vec());
    }
    let resp = req.send().expect("the server answers");
    let mut head = format!("HTTP/1.1 {}\r\n", resp.status());
    for (k, v) in resp.headers() {
        head.push_str(&format!(
            "{k}: {}\r\n",
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    let status = resp.status().as_u16();
    (status, head, resp.bytes().expect("a body").to_vec())
}

fn get_json(addr: &str, path: &str, token: &str) -> (u16, Value) {
    let (status, _, body) = http(addr, "GET", path, Some(token), &[], b"");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn sql(addr: &str, token: &str, query: &str) -> (u16, Value) {
    let body = json!({"sql": query}).to_string();
    let (status, _, body) = http(
        addr,
        "POST",
        "/v1/sql",
        Some(token),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

const TOKENS: &[(&str, &str, &str)] = &[
    ("city-admin", "admin", "city"),
    ("d3-viewer", "viewer", "district:330203"),
    ("d3-analyst", "analyst", "district:330203"),
    ("d5-analyst", "analyst", "district:330205"),
    ("street-analyst", "analyst", "street:330203001"),
    ("unit-analyst", "analyst", "unit:S2"),
    ("s1-station", "station", "unit:S1"),
];

/// Two districts: 330203 (streets 330203001 with S1, S2; 330203002 with S3) and
/// 330205 (S4). Each station has an activity and a service record in March 2024.
fn fixture() -> String {
    let mut lines = Vec::new();
    let mut n = 0;
    let mut ev = |ty: &str, at: &str, unit: &str, mut data: Value| {
        n += 1;
        data["unit_id"] = json!(unit);
        lines.push(json!({"event_id": format!("00000000-0000-7000-8000-{n:012x}"), "type": ty, "schema_version": 1,
            "occurred_at": at, "unit_id": unit, "data": data}).to_string());
    };
    let reg = "2024-01-01T09:00:00+08:00";
    ev(
        "unit.registered",
        reg,
        "C3",
        json!({"level": "center", "name": "c", "area_code": "330203000000"}),
    );
    ev(
        "unit.registered",
        reg,
        "C5",
        json!({"level": "center", "name": "c", "area_code": "330205000000"}),
    );
    for (id, area, residents) in [
        ("S1", "330203001001", 1000),
        ("S2", "330203001002", 2000),
        ("S3", "330203002001", 3000),
        ("S4", "330205001001", 4000),
    ] {
        ev(
            "unit.registered",
            reg,
            id,
            json!({"level": "station", "name": id, "area_code": area, "residents": residents}),
        );
        ev(
            "volunteer.registered",
            reg,
            id,
            json!({"volunteer_id": format!("V-{id}")}),
        );
        ev(
            "activity.published",
            "2024-03-01T09:00:00+08:00",
            id,
            json!({"activity_id": format!("A-{id}"), "category": "culture",
            "title": "t", "starts_at": "2024-03-05T09:00:00+08:00", "ends_at": "2024-03-05T11:00:00+08:00"}),
        );
        ev(
            "service.recorded",
            "2024-03-05T12:00:00+08:00",
            id,
            json!({"record_id": format!("R-{id}"), "volunteer_id": format!("V-{id}"),
            "started_at": "2024-03-05T09:00:00+08:00", "ended_at": "2024-03-05T14:00:00+08:00", "minutes": 60 * residents / 1000}),
        );
    }
    lines.join("\n") + "\n"
}

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token_config() -> String {
    let mut out = String::new();
    for (name, role, scope) in TOKENS {
        out.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nrole = \"{role}\"\nscope = \"{scope}\"\n\n",
            wenming_api::auth::hash_hex(name)
        ));
    }
    out
}

/// A fresh directory with the fixture imported into `lake/` in it.
fn fixture_lake() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    std::fs::write(path.join("events.ndjson"), fixture()).unwrap();
    ok(&wenming(&[
        "import",
        path.join("events.ndjson").to_str().unwrap(),
        "--lake",
        path.join("lake").to_str().unwrap(),
    ]));
    (dir, path)
}

/// Import the fixture into a fresh lake and start `wenming serve` on it.
fn serve(extra: &str) -> Server {
    let (dir, path) = fixture_lake();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[lake]\npath = \"{}\"\n[ingest]\nenabled = false\n[sql]\ntimeout_secs = 2\nmax_concurrent = 2\n{extra}\n{}",
        path.join("lake").display(),
        token_config()
    );
    std::fs::write(path.join("wenming.toml"), &config).unwrap();
    start(dir, path)
}

fn start(dir: tempfile::TempDir, path: PathBuf) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wenming"))
        .args([
            "serve",
            "--config",
            path.join("wenming.toml").to_str().unwrap(),
        ])
        .current_dir(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        assert!(Instant::now() < deadline, "serve did not print its address");
        let line = lines.next().expect("serve exited").unwrap();
        if let Some(rest) = line.strip_prefix("api: http://") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        addr,
        _dir: dir,
        dir: path,
    }
}

#[test]
fn tokens_and_roles() {
    let s = serve("");
    let a = &s.addr;
    let (status, head, body) = http(a, "GET", "/v1/kpis", None, &[], b"");
    assert_eq!(status, 401);
    assert!(head.contains("application/problem+json"), "{head}");
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 401);
    assert!(problem["detail"].as_str().unwrap().contains("bearer"));
    assert_eq!(http(a, "GET", "/v1/kpis", Some("wrong"), &[], b"").0, 401);
    // Tokens in URLs only where turned on (the demo).
    assert_eq!(
        http(a, "GET", "/v1/kpis?access_token=d3-viewer", None, &[], b"").0,
        401
    );
    // The hash itself is not a token.
    assert_eq!(
        http(
            a,
            "GET",
            "/v1/kpis",
            Some(&wenming_api::auth::hash_hex("d3-viewer")),
            &[],
            b""
        )
        .0,
        401
    );
    assert_eq!(get_json(a, "/v1/kpis", "d3-viewer").0, 200);
    assert_eq!(sql(a, "d3-viewer", "SELECT 1").0, 403);
    assert_eq!(get_json(a, "/v1/kpis", "s1-station").0, 403);
    assert_eq!(
        http(
            a,
            "POST",
            "/v1/exports/none/run?period=2024-03",
            Some("d3-analyst"),
            &[],
            b""
        )
        .0,
        403
    );
    assert_eq!(http(a, "GET", "/healthz", None, &[], b"").0, 200);
    assert_eq!(http(a, "GET", "/readyz", None, &[], b"").0, 200);
    assert_eq!(http(a, "GET", "/metrics", None, &[], b"").0, 401);
    assert_eq!(
        http(a, "GET", "/metrics", Some("d3-viewer"), &[], b"").0,
        403
    );
    // One KPI answer and one SQL answer, then the metrics: every name of before, and
    // the answer-time histograms having counted them, in the OpenMetrics text.
    let kpi = "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31";
    assert_eq!(get_json(a, kpi, "city-admin").0, 200);
    assert_eq!(sql(a, "city-admin", "SELECT 1").0, 200);
    let (status, head, metrics) = http(a, "GET", "/metrics", Some("city-admin"), &[], b"");
    assert_eq!(status, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let metrics = String::from_utf8_lossy(&metrics);
    for name in [
        "wenming_http_requests_total ",
        "wenming_http_server_errors_total ",
        "wenming_sql_slots_free ",
        "wenming_kpi_slots_free ",
        "# TYPE wenming_kpi_answer_seconds histogram",
        "# UNIT wenming_kpi_answer_seconds seconds",
        "wenming_kpi_answer_seconds_bucket{le=\"0.005\"}",
        "# TYPE wenming_sql_answer_seconds histogram",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(count("wenming_kpi_answer_seconds_count") >= 1);
    assert!(count("wenming_sql_answer_seconds_count") >= 1);
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
}

/// Every token sees exactly the units of its scope, through every reading endpoint.
#[test]
fn scope_matrix() {
    let s = serve("");
    let a = &s.addr;
    let expect: &[(&str, &[&str])] = &[
        ("city-admin", &["C3", "C5", "S1", "S2", "S3", "S4"]),
        ("d3-analyst", &["C3", "S1", "S2", "S3"]),
        ("d5-analyst", &["C5", "S4"]),
        ("street-analyst", &["S1", "S2"]),
        ("unit-analyst", &["S2"]),
    ];
    for (token, units) in expect {
        // KPI rows at unit level.
        let (status, kpi) = get_json(
            a,
            "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31&level=unit",
            token,
        );
        assert_eq!(status, 200, "{token}: {kpi}");
        let areas: Vec<&str> = kpi["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["area"].as_str().unwrap())
            .collect();
        assert_eq!(&areas, units, "{token} KPI rows");
        // The unit tree.
        let (_, tree) = get_json(a, "/v1/units", token);
        let mut ids: Vec<&str> = tree["units"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["unit_id"].as_str().unwrap())
            .collect();
        ids.sort();
        assert_eq!(&ids, units, "{token} units");
        // SQL: views and raw tables alike.
        for q in [
            "SELECT unit_id FROM units ORDER BY unit_id",
            "SELECT DISTINCT unit_id FROM unit_events ORDER BY unit_id",
        ] {
            let (status, rows) = sql(a, token, q);
            assert_eq!(status, 200, "{token} {q}: {rows}");
            let got: Vec<&str> = rows
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["unit_id"].as_str().unwrap())
                .collect();
            assert_eq!(&got, units, "{token}: {q}");
        }
        // Quality counts only the scope's events.
        let (_, q) = get_json(a, "/v1/quality", token);
        let events = q["events"]["unit_events"].as_i64().unwrap();
        assert_eq!(events as usize, units.len(), "{token} quality");
    }
    // A district's KPI total equals its own stations' minutes: 60+120+180 min = 6 h.
    let (_, kpi) = get_json(
        a,
        "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31&level=city",
        "d3-viewer",
    );
    assert_eq!(kpi["rows"][0]["value"], json!(6.0));
    // Asking for another district's area gets what a district that does not exist
    // gets (tests/attack.rs tries every way of telling them apart).
    let (status, kpi) = get_json(
        a,
        "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31&level=city&area=330205",
        "d3-viewer",
    );
    assert_eq!(status, 404, "{kpi}");
    assert!(
        kpi["detail"]
            .as_str()
            .unwrap()
            .contains("no such area in your scope")
    );
}

#[test]
fn sql_attacks_are_refused_and_slow_queries_cancelled() {
    let s = serve("");
    let a = &s.addr;
    let lake = s.dir.join("lake");
    let secret = s.dir.join("events.ndjson");
    for (q, status, says) in [
        ("CREATE TABLE t (x INT)", 403, "not allowed"),
        ("DROP TABLE units", 403, "not allowed"),
        ("INSERT INTO units VALUES ('x')", 403, "not allowed"),
        ("DELETE FROM units", 403, "not allowed"),
        ("COPY units TO '/tmp/stolen.csv'", 403, "COPY"),
        ("SET datafusion.execution.batch_size = 1", 403, "SET"),
        (
            &*format!(
                "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{}'",
                secret.display()
            ),
            403,
            "EXTERNAL",
        ),
        (&*format!("SELECT * FROM '{}'", secret.display()), 400, ""),
        (
            &*format!(
                "SELECT * FROM read_parquet('{}')",
                lake.join("unit_events").display()
            ),
            400,
            "",
        ),
        ("SELECT * FROM datafusion.public.q_area", 400, ""),
        ("SELECT * FROM wenming.public.q_area", 400, "the tables are"),
        ("SELECT * FROM wm_scope_units", 400, ""),
        ("SELECT 1; SELECT 2", 403, "one statement"),
        ("SELEC nonsense", 400, "parse"),
    ] {
        let (got, body) = sql(a, "d5-analyst", q);
        assert_eq!(got, status, "{q}: {body}");
        let detail = body["detail"].as_str().unwrap_or("");
        assert!(detail.contains(says), "{q}: {detail}");
    }
    // The catalog answers, and lists the published tables only.
    let (got, body) = sql(
        a,
        "d5-analyst",
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    );
    assert_eq!(got, 200, "{body}");
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["table_name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"units") && names.contains(&"service_events"),
        "{names:?}"
    );
    assert_eq!(names.len(), 20, "ten raw tables and ten views: {names:?}");
    for q in ["SHOW TABLES", "DESCRIBE units", "SHOW COLUMNS FROM units"] {
        let (got, body) = sql(a, "d5-analyst", q);
        assert_eq!(got, 200, "{q}: {body}");
    }
    // Reaching around the scope: subqueries, joins and unions all see only 330205.
    for q in [
        "SELECT count(*) AS n FROM units WHERE district_code = '330203'",
        "SELECT count(*) AS n FROM (SELECT * FROM unit_events UNION ALL SELECT * FROM unit_events) e WHERE substr(area_code, 1, 6) = '330203'",
        "SELECT count(*) AS n FROM service_records r JOIN units u ON true WHERE u.district_code = '330203' OR r.unit_id IN ('S1','S2','S3')",
        "SELECT count(*) AS n FROM activity_events WHERE unit_id IN (SELECT 'S1')",
    ] {
        let (got, body) = sql(a, "d5-analyst", q);
        assert_eq!(got, 200, "{q}: {body}");
        assert_eq!(body[0]["n"], json!(0), "{q}");
    }
    // CSV and Arrow by Accept.
    let q = json!({"sql": "SELECT unit_id FROM units ORDER BY unit_id"}).to_string();
    let (status, head, body) = http(
        a,
        "POST",
        "/v1/sql",
        Some("d5-analyst"),
        &[("Accept", "text/csv")],
        q.as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(head.contains("text/csv"));
    assert_eq!(String::from_utf8_lossy(&body), "unit_id\nC5\nS4\n");
    let (status, head, body) = http(
        a,
        "POST",
        "/v1/sql",
        Some("d5-analyst"),
        &[("Accept", "application/vnd.apache.arrow.stream")],
        q.as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(head.contains("arrow"));
    let reader =
        deltalake::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 2);
    assert_eq!(
        http(
            a,
            "POST",
            "/v1/sql",
            Some("d5-analyst"),
            &[("Accept", "image/png")],
            q.as_bytes()
        )
        .0,
        406
    );

    // A slow query is stopped at its 2 s limit while other requests are answered.
    let slow_addr = a.clone();
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let r = sql(
            &slow_addr,
            "city-admin",
            "SELECT count(*) FROM generate_series(1, 1000000000000) a",
        );
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(
        get_json(
            a,
            "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31",
            "d3-viewer"
        )
        .0,
        200
    );
    assert_eq!(http(a, "GET", "/healthz", None, &[], b"").0, 200);
    let answered_in = started.elapsed();
    let ((status, body), took) = slow.join().unwrap();
    assert_eq!(status, 408, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("limit"), "{body}");
    assert!(took < Duration::from_secs(30), "cancelled after {took:?}");
    eprintln!("others answered in {answered_in:?} while the slow query ran");
}

#[test]
fn exports_write_files_a_manifest_and_rerun_idempotently() {
    let out = tempfile::tempdir().unwrap();
    let s = serve(&format!(
        "[[exports]]\nname = \"monthly\"\nschedule = \"0 0 6 1 * *\"\nkpis = [\"service_hours\", \"activities_held\", \"volunteer_ranking\"]\nlevel = \"district\"\nformats = [\"csv\", \"xlsx\", \"parquet\"]\noutput = \"{}\"\n",
        out.path().display()
    ));
    let a = &s.addr;
    assert_eq!(
        http(
            a,
            "POST",
            "/v1/exports/monthly/run?period=2024-03",
            Some("d3-viewer"),
            &[],
            b""
        )
        .0,
        403
    );
    let (status, _, body) = http(
        a,
        "POST",
        "/v1/exports/monthly/run?period=2024-03",
        Some("city-admin"),
        &[],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let manifest: Value = serde_json::from_slice(&body).unwrap();
    let dir = out.path().join("monthly").join("city").join("2024-03");
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(on_disk["files"], manifest["files"]);
    assert!(manifest["table_versions"]["service_events"].is_number());
    for f in manifest["files"].as_array().unwrap() {
        let bytes = std::fs::read(dir.join(f["name"].as_str().unwrap())).unwrap();
        let sha: String = <sha2::Sha256 as sha2::Digest>::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(f["sha256"].as_str().unwrap(), sha, "{f}");
        assert_eq!(f["bytes"].as_u64().unwrap(), bytes.len() as u64);
    }
    // CSV: 2 districts × (service_hours + activities_held) + ranking rows (4 volunteers);
    // a district is named by its centre (here "c").
    let csv = std::fs::read_to_string(dir.join("monthly_2024-03.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "kpi,period,area,area_name,star,rank,volunteer_id,value,numerator,denominator"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 + 2 + 4, "{csv}");
    assert!(rows.contains(&vec![
        "service_hours",
        "2024-03-01",
        "330203",
        "c",
        "",
        "",
        "",
        "6",
        "",
        ""
    ]));
    assert!(rows.contains(&vec![
        "service_hours",
        "2024-03-01",
        "330205",
        "c",
        "",
        "",
        "",
        "4",
        "",
        ""
    ]));
    // Parquet, read back by the parquet reader.
    let file = std::fs::File::open(dir.join("monthly_2024-03.parquet")).unwrap();
    let reader =
        deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
    assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 8);
    // XLSX, opened by a library that shares no code with ours, when Python has it.
    let xlsx = dir.join("monthly_2024-03.xlsx");
    let check = Command::new("python3")
        .args(["-c", "import openpyxl, sys; wb = openpyxl.load_workbook(sys.argv[1]); print(len(wb.sheetnames), sum(ws.max_row - 1 for ws in wb.worksheets), wb.worksheets[0]['A1'].value)", xlsx.to_str().unwrap()])
        .output();
    match check {
        Ok(o) if o.status.success() => {
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "3 8 周期")
        }
        _ => assert!(
            std::env::var("WENMING_TEST_PYTHON").is_err(),
            "WENMING_TEST_PYTHON is set but openpyxl is missing"
        ),
    }
    // Re-run: the same files, the same bytes for CSV and Parquet.
    let (_, _, again) = http(
        a,
        "POST",
        "/v1/exports/monthly/run?period=2024-03",
        Some("city-admin"),
        &[],
        b"",
    );
    let again: Value = serde_json::from_slice(&again).unwrap();
    let names = |m: &Value| {
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].clone(), f["rows"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&again), names(&manifest));
    for i in [0, 2] {
        assert_eq!(again["files"][i]["sha256"], manifest["files"][i]["sha256"]);
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
    // Listed, and downloadable within scope only.
    // The schedule's last fire time (06:00 on the 1st, Shanghai) passed while the
    // service was down, so it fired once at start, for the month before that 1st: the
    // lake's events end in March 2024, so that month has no data yet, and the run is
    // skipped (recorded as done, no zeros written).
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let mut fired = now.date_naive().with_day(1).unwrap();
    if now.date_naive() == fired && chrono::Timelike::hour(&now) < 6 {
        fired = (fired - chrono::Duration::days(1)).with_day(1).unwrap();
    }
    let scheduled = (fired - chrono::Duration::days(1))
        .format("%Y-%m")
        .to_string();
    let marker = out.path().join("monthly").join("last_fire.txt");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.is_file() {
        assert!(
            Instant::now() < deadline,
            "the missed fire time was not handled"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (_, list) = get_json(a, "/v1/exports", "city-admin");
    assert_eq!(list[0]["runs"], json!(["2024-03"]));
    assert!(!out.path().join("monthly/city").join(&scheduled).exists());
    assert_eq!(manifest["no_data_yet"], json!(false));
    // Run by hand for a month after the data: written, and said to have no data yet.
    let (status, _, later) = http(
        a,
        "POST",
        &format!("/v1/exports/monthly/run?period={scheduled}"),
        Some("city-admin"),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    let later: Value = serde_json::from_slice(&later).unwrap();
    assert_eq!(later["no_data_yet"], json!(true), "{later}");
    let (status, _, body) = http(
        a,
        "GET",
        "/v1/exports/monthly/files/2024-03/monthly_2024-03.csv",
        Some("city-admin"),
        &[],
        b"",
    );
    assert_eq!((status, body), (200, csv.into_bytes()));
    // A district's viewer reads its own part of the export, which nobody ran yet.
    assert_eq!(
        http(
            a,
            "GET",
            "/v1/exports/monthly/files/2024-03/monthly_2024-03.csv",
            Some("d3-viewer"),
            &[],
            b""
        )
        .0,
        404
    );
    assert_eq!(
        http(
            a,
            "GET",
            "/v1/exports/monthly/files/2024-03/..%2F..%2Fwenming.toml",
            Some("city-admin"),
            &[],
            b""
        )
        .0,
        404
    );
    assert_eq!(
        http(
            a,
            "POST",
            "/v1/exports/monthly/run?period=2024-13",
            Some("city-admin"),
            &[],
            b""
        )
        .0,
        400
    );
    // By hand from the command line, the same files.
    let config = s.dir.join("wenming.toml");
    let export_cli = |name: &str| {
        let config = config.to_str().unwrap();
        wenming(&["--config", config, "export", name, "--period", "2024-03"])
    };
    assert!(ok(&export_cli("monthly")).contains("monthly_2024-03.csv"));
    // A name the settings do not have: the command names those they do.
    let out_cli = export_cli("monthy");
    assert_eq!(out_cli.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out_cli.stderr);
    assert!(
        stderr
            .contains(r#"no export named "monthy" in your scope; the settings configure: monthly"#),
        "{stderr}"
    );
}

#[test]
fn bad_requests_get_clear_problems_and_openapi_lists_every_endpoint() {
    let s = serve("");
    let a = &s.addr;
    for (path, says) in [
        ("/v1/kpis/service_hours?from=2024-03-01", "`to` is required"),
        (
            "/v1/kpis/service_hours?from=2024-3-1&to=2024-03-31",
            "YYYY-MM-DD",
        ),
        (
            "/v1/kpis/service_hours?from=2024-03-31&to=2024-03-01",
            "before",
        ),
        (
            "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31&granularity=fortnight",
            "granularity",
        ),
        (
            "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31&level=planet",
            "level",
        ),
        (
            "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31&compare=wow",
            "comparison",
        ),
        (
            "/v1/kpis/volunteer_ranking?from=2024-03-01&to=2024-03-31&top=-1",
            "top",
        ),
    ] {
        let (status, body) = get_json(a, path, "city-admin");
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
    let (status, body) = get_json(
        a,
        "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31&area=999999",
        "city-admin",
    );
    assert_eq!(status, 404, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no such area in your scope")
    );
    assert_eq!(
        get_json(
            a,
            "/v1/kpis/happiness?from=2024-03-01&to=2024-03-31",
            "city-admin"
        )
        .0,
        404
    );
    assert_eq!(get_json(a, "/v2/nothing", "city-admin").0, 404);
    let (status, _, body) = http(a, "POST", "/v1/sql", Some("city-admin"), &[], b"{not json");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));

    let (status, _, body) = http(a, "GET", "/openapi.json", None, &[], b"");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let kpis = doc["paths"]["/v1/kpis/{name}"]["get"]["parameters"][0]["schema"]["enum"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(kpis, 18);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        // An event stream does not end: it is followed by the browser test.
        if path.ends_with("/stream") {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{name}", "service_hours")
                .replace("{period}", "2024-03")
                .replace("{file}", "x.csv");
            let (status, _, _) = http(
                a,
                &method.to_uppercase(),
                &concrete,
                Some("city-admin"),
                &[],
                b"",
            );
            assert!(
                status != 405 && !(status == 404 && concrete.starts_with("/v1/kpis")),
                "{method} {concrete}: {status}"
            );
        }
    }
}

/// The events gateway through the embedded broker, into the lake by the in-process
/// ingest loop, and out again through a KPI.
#[test]
fn events_gateway_publishes_within_scope_and_ingest_stores_them() {
    let (dir, path) = fixture_lake();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[lake]\npath = \"{}\"\n[broker]\nlisten = \"127.0.0.1:0\"\ndata = \"{}\"\npartitions = 2\n{}",
        path.join("lake").display(),
        path.join("broker").display(),
        token_config()
    );
    std::fs::write(path.join("wenming.toml"), &config).unwrap();
    let s = start(dir, path);
    let a = &s.addr;
    let event = |id: u32, unit: &str, minutes: i64| {
        json!({
        "event_id": format!("10000000-0000-7000-8000-{id:012x}"), "type": "service.recorded", "schema_version": 1,
        "occurred_at": "2024-03-20T12:00:00+08:00", "unit_id": unit,
        "data": {"record_id": format!("G-{id}"), "volunteer_id": "V-S1", "unit_id": unit,
                 "started_at": "2024-03-20T09:00:00+08:00", "ended_at": "2024-03-20T12:00:00+08:00", "minutes": minutes}})
    };
    let batch = json!([event(1, "S1", 120), event(2, "S2", 60), event(3, "S1", 0)]);
    assert_eq!(
        http(
            a,
            "POST",
            "/v1/events",
            Some("d3-viewer"),
            &[],
            batch.to_string().as_bytes()
        )
        .0,
        403
    );
    let (status, _, body) = http(
        a,
        "POST",
        "/v1/events",
        Some("s1-station"),
        &[],
        batch.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let r: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(r["accepted"], 1, "{r}");
    assert_eq!(r["results"][1]["reason"], "out_of_scope");
    assert_eq!(r["results"][2]["reason"], "bad_value:minutes");
    assert_eq!(http(a, "GET", "/readyz", None, &[], b"").0, 200);
    // Ingest stores it: S1's March hours grow from 1 h to 3 h.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, kpi) = get_json(
            a,
            "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31&level=unit&area=S1",
            "city-admin",
        );
        if kpi["rows"][0]["value"] == json!(3.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the event did not reach the KPI: {kpi}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `wenming demo` at `scale` on free ports, data in `dir`, standard output piped.
fn demo_command(dir: &Path, scale: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wenming"));
    cmd.args(["demo", "--scale", scale, "--listen", "127.0.0.1:0"])
        .args([
            "--broker",
            "127.0.0.1:0",
            "--postgres",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.join("data"))
        .current_dir(dir)
        .stdout(Stdio::piped());
    cmd
}

/// Waits up to 60 s for `child` to exit after `signal` (named in the panic).
fn exit_after(child: &mut std::process::Child, signal: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("demo did not exit within 60 s of {signal}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The README's first command: `wenming demo` brings up the broker, ingest and the API,
/// streams a generated network in, and prints a one-time link to the dashboard: the link
/// opens the page, its code logs in once (and only once), and the numbers are real.
#[test]
fn demo_shows_real_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo_command(dir.path(), "tiny")
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("demo exited").unwrap();
        if let Some(rest) = line.strip_prefix("open:") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let code = path.split_once("code=").expect("a one-time code").1;
    assert!(!url.contains("demo-"), "no token in the link: {url}");
    let (status, head, page) = http(addr, "GET", path, None, &[], b"");
    assert_eq!(status, 200);
    assert!(head.contains("text/html"), "{head}");
    assert!(String::from_utf8_lossy(&page).contains("/assets/app."));
    // The page exchanges the code for a session cookie, once.
    let login = json!({"code": code}).to_string();
    let (status, head, body) = http(addr, "POST", "/v1/session", None, &[], login.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        head.contains("HttpOnly") && head.contains("SameSite=Strict"),
        "{head}"
    );
    let again = http(addr, "POST", "/v1/session", None, &[], login.as_bytes());
    assert_eq!(again.0, 401, "a code works once");
    let today = chrono::Utc::now().date_naive();
    let question = format!(
        "/v1/kpis/service_hours?from={}&to={today}&granularity=year&level=street",
        today - chrono::Duration::days(365 * 3)
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, _, body) = http(addr, "GET", &question, None, &[("Cookie", &cookie)], b"");
        let kpi: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let hours: f64 = kpi["rows"]
            .as_array()
            .map_or(0.0, |r| r.iter().filter_map(|r| r["value"].as_f64()).sum());
        if status == 200 && hours > 100.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no numbers yet: {status} {kpi}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // SIGTERM: ingest commits the batch in hand and leaves the group before the
    // embedded broker goes; the process exits 0. (The broker used to stop on the
    // signal itself, and ingest's consumer then waited on it for good.)
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = exit_after(&mut child, "SIGTERM");
    assert!(status.success(), "demo after SIGTERM: {status}");
}

/// Size of the files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => bytes_under(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A restarted demo streams nothing again: the stream's plan is kept beside its data, the
/// broker holds the whole stream, and the lake is said to have caught up, with the
/// broker's store about the size it was.
#[test]
fn restarting_the_demo_streams_nothing_again() {
    let dir = tempfile::tempdir().unwrap();
    let run_until = |says: &[&str]| {
        let mut child = demo_command(dir.path(), "tiny")
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(240);
        while !seen.iter().any(|l: &String| l.contains("has caught up")) {
            assert!(Instant::now() < deadline, "not caught up: {seen:?}");
            seen.push(lines.next().expect("demo exited").unwrap());
        }
        std::thread::spawn(move || for _ in lines {});
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert!(exit_after(&mut child, "SIGTERM").success());
        for s in says {
            assert!(seen.iter().any(|l| l.contains(s)), "{s:?} not in {seen:?}");
        }
        seen
    };
    run_until(&["demo: streaming a generated tiny network"]);
    let broker = dir.path().join("data").join("broker");
    let before = bytes_under(&broker);
    let again = run_until(&["not streaming it again", "0 stored in this run"]);
    assert!(
        !again.iter().any(|l| l.starts_with("demo: streaming")),
        "{again:?}"
    );
    let after = bytes_under(&broker);
    assert!(
        after < before + (4 << 20),
        "the broker's store grew from {before} to {after} bytes"
    );
}

/// Ctrl-C in a terminal signals the whole process group: the demo and the generator it
/// runs. The demo stops cleanly (exit 0) and says the streaming stopped; it does not
/// call the generator's end by the signal a failure.
#[test]
fn ctrl_c_stops_the_demo_and_its_generator_cleanly() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo_command(dir.path(), "district")
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("demo exited").unwrap();
        if line.starts_with("demo: streaming") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    // A district takes the generator far longer than this: it is mid-stream.
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on the process group of our own child, as a terminal's Ctrl-C.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let status = exit_after(&mut child, "Ctrl-C");
    let errors = errors.join().unwrap();
    assert!(status.success(), "demo after Ctrl-C: {status}\n{errors}");
    assert!(errors.contains("demo: streaming stopped"), "{errors}");
    assert!(!errors.contains("failed"), "{errors}");
}

/// The OpenAPI document against the running server, checked by schemathesis (PyPI), a
/// tool that shares nothing with us: every documented operation is called with examples,
/// boundary values and fuzzed inputs, and every answer must match the document (status
/// codes, content types, schemas), reject what the schema forbids, and never be a 5xx.
///
/// `positive_data_acceptance` is left out on purpose: the API rightly refuses requests a
/// schema cannot rule out (`from` after `to`, an area code that does not exist, `top` on
/// a KPI that is not a ranking, SQL that does not parse), each with a 400 problem.
#[test]
fn openapi_document_holds_under_schemathesis() {
    let version = Command::new("schemathesis").arg("--version").output();
    if !matches!(&version, Ok(o) if o.status.success()) {
        assert!(
            std::env::var("WENMING_TEST_PYTHON").is_err(),
            "WENMING_TEST_PYTHON is set but schemathesis is missing"
        );
        eprintln!("skipped: schemathesis is not installed (pip install schemathesis)");
        return;
    }
    // Everything on, so that every operation can answer: the embedded broker behind
    // the events gateway, and an export to run and fetch.
    let (dir, path) = fixture_lake();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[lake]\npath = \"{}\"\n[broker]\nlisten = \"127.0.0.1:0\"\ndata = \"{}\"\npartitions = 2\n\
         [sql]\ntimeout_secs = 5\n\
         [[exports]]\nname = \"monthly\"\nschedule = \"0 0 6 1 * *\"\nkpis = [\"service_hours\"]\nlevel = \"district\"\nformats = [\"csv\"]\noutput = \"{}\"\n{}",
        path.join("lake").display(),
        path.join("broker").display(),
        path.join("exports").display(),
        token_config()
    );
    std::fs::write(path.join("wenming.toml"), &config).unwrap();
    let s = start(dir, path);
    let out = Command::new("schemathesis")
        .args([
            "run",
            &format!("http://{}/openapi.json", s.addr),
            "--header",
            "Authorization: Bearer city-admin",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--workers",
            "1",
            "--no-shrink",
            "--exclude-checks",
            "positive_data_acceptance",
            // An endless event stream, and the login (whose fuzzed tokens would, rightly,
            // get the test's own address refused for a minute): tests/dashboard.rs
            // drives both through a browser.
            "--exclude-path",
            "/v1/freshness/stream",
            "--exclude-path",
            "/v1/session",
        ])
        .current_dir(&s.dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It really exercised the API: every operation was tested.
    assert!(stdout.contains("Tested: 15"), "{stdout}");
}
