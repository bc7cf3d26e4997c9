//! The scope wall and the request bounds, tested as an attacker would test them: with a
//! token of one district on a server over a lake of two, every surface is probed for
//! what it tells of the other district (errors, counts, plans, "not found"), and the
//! server is sent requests built to exhaust its memory or its stack. Each attack is a
//! test with the refusal it must get.
//!
//! District A is 330203 (stations S330203001001, S330203001002, S330203002001 and a
//! station whose id is a spreadsheet formula, `=1+1`); district B is 330212 (station
//! S330212001001). Every id of a district's rows carries its station's id, so a probe
//! for "330203" in any column finds A's rows and only A's.

mod common;

use std::collections::BTreeMap;

use common::server::{Answer, Server, ndjson, token_config};
use serde_json::{Value, json};

const TOKENS: &[(&str, &str, &str)] = &[
    ("city-admin", "admin", "city"),
    ("a-viewer", "viewer", "district:330203"),
    ("a-analyst", "analyst", "district:330203"),
    ("a-admin", "admin", "district:330203"),
    ("b-analyst", "analyst", "district:330212"),
    ("b-viewer", "viewer", "district:330212"),
];

const A_STATIONS: &[&str] = &["S330203001001", "S330203001002", "S330203002001", "=1+1"];
const B_STATIONS: &[&str] = &["S330212001001"];

/// Both districts with rows in every table: units, a team, a volunteer, an activity
/// with a check-in, a service record (amended), an order through its steps, points, a
/// wish and a feedback per station.
fn fixture() -> String {
    events_of(&["330203", "330212"])
}

/// The fixture's events of `districts` only.
fn events_of(districts: &[&str]) -> String {
    let mut ev: Vec<(&str, String, String, Value)> = Vec::new();
    let reg = "2024-01-01T09:00:00+08:00";
    for (district, centre) in [("330203", "C330203"), ("330212", "C330212")] {
        if !districts.contains(&district) {
            continue;
        }
        ev.push((
            "unit.registered",
            reg.to_string(),
            centre.to_string(),
            json!({"level": "center", "name": format!("中心 {district}"), "area_code": format!("{district}000000")}),
        ));
    }
    let stations = A_STATIONS.iter().chain(B_STATIONS).enumerate();
    for (i, id) in stations {
        let area = match *id {
            "=1+1" => "330203002002".to_string(),
            s => s[1..].to_string(),
        };
        if !districts.contains(&&area[..6]) {
            continue;
        }
        let centre = format!("C{}", &area[..6]);
        let at = |day: u32| format!("2024-03-{day:02}T10:00:00+08:00");
        let (v, a, o, t) = (
            format!("V-{id}"),
            format!("A-{id}"),
            format!("O-{id}"),
            format!("T-{id}"),
        );
        let mut push =
            |ty: &'static str, when: String, data: Value| ev.push((ty, when, id.to_string(), data));
        push(
            "unit.registered",
            reg.to_string(),
            json!({"level": "station", "name": format!("站 {id}"), "area_code": area, "parent_id": centre, "residents": 1000 * (i + 1)}),
        );
        push(
            "team.registered",
            reg.to_string(),
            json!({"team_id": t, "name": "队"}),
        );
        push(
            "volunteer.registered",
            reg.to_string(),
            json!({"volunteer_id": v}),
        );
        push(
            "activity.published",
            at(1),
            json!({"activity_id": a, "category": "culture", "title": "t", "starts_at": at(5), "ends_at": "2024-03-05T12:00:00+08:00"}),
        );
        push(
            "attendance.checked_in",
            at(5),
            json!({"activity_id": a, "person_id": format!("P-{id}"), "role": "resident", "method": "scan"}),
        );
        push(
            "activity.completed",
            at(5),
            json!({"activity_id": a, "anonymous_headcount": 3}),
        );
        push(
            "service.recorded",
            at(6),
            json!({"record_id": format!("R-{id}"), "volunteer_id": v, "started_at": "2024-03-05T09:00:00+08:00", "ended_at": "2024-03-05T12:00:00+08:00", "minutes": 10 * (i + 1)}),
        );
        push(
            "service.amended",
            at(7),
            json!({"record_id": format!("R-{id}"), "minutes": 5 * (i + 1)}),
        );
        push(
            "order.placed",
            at(2),
            json!({"order_id": o, "category": "convenience", "channel": "app"}),
        );
        push(
            "order.accepted",
            at(3),
            json!({"order_id": o, "team_id": t}),
        );
        push("order.rated", at(8), json!({"order_id": o, "score": 5}));
        push(
            "points.earned",
            at(6),
            json!({"volunteer_id": v, "points": 10, "reason": "service"}),
        );
        push("wish.posted", at(2), json!({"wish_id": format!("W-{id}")}));
        push(
            "feedback.submitted",
            at(2),
            json!({"feedback_id": format!("F-{id}"), "kind": "suggestion", "due_at": at(20)}),
        );
    }
    let events: Vec<(&str, &str, &str, Value)> = ev
        .iter()
        .map(|(t, at, u, d)| (*t, at.as_str(), u.as_str(), d.clone()))
        .collect();
    ndjson(&events, 1)
}

fn serve(extra: &str) -> Server {
    Server::start(
        &fixture(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ingest]\nenabled = false\n[sql]\ntimeout_secs = 20\n{extra}\n{}",
            token_config(TOKENS)
        ),
    )
}

/// Every published table with a column that carries the station's id in each row.
const PROBES: &[(&str, &str)] = &[
    ("unit_events", "unit_id"),
    ("team_events", "unit_id"),
    ("volunteer_events", "unit_id"),
    ("activity_events", "unit_id"),
    ("attendance_events", "unit_id"),
    ("service_events", "unit_id"),
    ("order_events", "unit_id"),
    ("points_events", "unit_id"),
    ("wish_events", "unit_id"),
    ("feedback_events", "unit_id"),
    ("units", "unit_id"),
    ("volunteers", "home_unit_id"),
    ("teams", "unit_id"),
    ("activities", "unit_id"),
    ("attendance", "activity_id"),
    ("service_records", "unit_id"),
    ("orders", "unit_id"),
    ("points", "volunteer_id"),
    ("wishes", "unit_id"),
    ("feedback", "unit_id"),
];

/// A query that divides by zero on every row whose `column` holds `marker`.
fn divide_by_zero_where(table: &str, column: &str, marker: &str) -> String {
    format!(
        "SELECT count(*) AS n FROM {table} WHERE CASE WHEN {column} LIKE '%{marker}%' \
         THEN CAST(1/0 AS BIGINT) ELSE 0 END = 0"
    )
}

#[test]
fn the_analysts_expressions_never_meet_a_row_of_another_district() {
    let s = serve("");
    for (table, column) in PROBES {
        let about_a = s.sql("b-analyst", &divide_by_zero_where(table, column, "330203"));
        let about_nothing = s.sql("b-analyst", &divide_by_zero_where(table, column, "999999"));
        assert_eq!(about_a.status, 200, "{table}: {}", about_a.text());
        assert_eq!(about_a.body, about_nothing.body, "{table}");
        let mine = s.sql("b-analyst", &format!("SELECT count(*) AS n FROM {table}"));
        assert_eq!(
            about_a.json(),
            mine.json(),
            "{table}: all of B's rows, no error"
        );
        assert!(
            mine.json()[0]["n"].as_u64().unwrap() > 0,
            "{table}: B has rows"
        );
        // The probe is live: on B's own rows the division runs, and fails.
        let about_b = s.sql("b-analyst", &divide_by_zero_where(table, column, "330212"));
        assert_eq!(about_b.status, 400, "{table}: {}", about_b.text());
        assert!(
            about_b.detail().contains("zero"),
            "{table}: {}",
            about_b.detail()
        );
    }
}

/// Every `output_rows=N` of an EXPLAIN ANALYZE answer.
fn output_rows(a: &Answer) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for row in a.json().as_array().unwrap() {
        for line in row["plan"].as_str().unwrap_or("").lines() {
            let op = line
                .trim()
                .split([':', ','])
                .next()
                .unwrap_or("")
                .to_string();
            if let Some(at) = line.find("output_rows=") {
                let digits: String = line[at + 12..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                out.push((op, digits.parse().unwrap()));
            }
        }
    }
    out
}

#[test]
fn explain_analyze_counts_only_the_callers_rows() {
    let s = serve("");
    // The same district alone in a lake: what B's plans may show.
    let alone = Server::start(
        &events_of(&["330212"]),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ingest]\nenabled = false\n{}",
            token_config(TOKENS)
        ),
    );
    for (table, _) in PROBES {
        let count = |token: &str| {
            let a = s.sql(token, &format!("SELECT count(*) AS n FROM {table}"));
            assert_eq!(a.status, 200, "{table}: {}", a.text());
            a.json()[0]["n"].as_u64().unwrap()
        };
        let (mine, all) = (count("b-analyst"), count("city-admin"));
        assert!(mine < all, "{table}: the other district has rows");
        let plan = s.sql(
            "b-analyst",
            &format!("EXPLAIN ANALYZE SELECT count(*) FROM {table}"),
        );
        assert_eq!(plan.status, 200, "{}", plan.text());
        let rows = output_rows(&plan);
        assert!(!rows.is_empty(), "{table}: {}", plan.text());
        // Every operator counts what it would count if B were alone in the city.
        let alone = output_rows(&alone.sql(
            "b-analyst",
            &format!("EXPLAIN ANALYZE SELECT count(*) FROM {table}"),
        ));
        assert_eq!(rows, alone, "{table}: B has {mine} rows");
        let text = plan.text();
        for a in A_STATIONS {
            assert!(!text.contains(a), "{table}: the plan names {a}");
        }
        let plain = s.sql(
            "b-analyst",
            &format!("EXPLAIN VERBOSE SELECT * FROM {table}"),
        );
        assert_eq!(plain.status, 200, "{}", plain.text());
        assert!(!plain.text().contains("330203"), "{}", plain.text());
    }
}

#[test]
fn a_question_about_another_district_costs_what_an_empty_one_costs() {
    // Cost is work: every operator handles as many rows when the predicate names the
    // other district as when it names nothing at all (the wall dropped the other
    // district's rows before the predicate), so the time cannot differ by the data.
    let s = serve("");
    for (table, column) in PROBES {
        let plan = |marker: &str| {
            let a = s.sql(
                "b-analyst",
                &format!(
                    "EXPLAIN ANALYZE SELECT count(*) FROM {table} WHERE {column} LIKE '%{marker}%'"
                ),
            );
            assert_eq!(a.status, 200, "{}", a.text());
            output_rows(&a)
        };
        let (other, empty) = (plan("330203"), plan("999999"));
        assert_eq!(other, empty, "{table}");
        assert!(
            other
                .iter()
                .any(|(op, n)| op.contains("ScopedScan") && *n > 0),
            "{table}: {other:?}"
        );
    }
}

/// The same answer, but for the name the caller gave.
fn alike(a: &Answer, a_name: &str, b: &Answer, b_name: &str) {
    assert_eq!(a.status, b.status, "{} / {}", a.text(), b.text());
    assert_eq!(
        a.text().replace(a_name, "?"),
        b.text().replace(b_name, "?"),
        "the answers tell {a_name} from {b_name}"
    );
}

#[test]
fn areas_units_and_exports_outside_the_scope_answer_like_ones_that_do_not_exist() {
    let out = tempfile::tempdir().unwrap();
    let s = serve(&format!(
        "[[exports]]\nname = \"b-monthly\"\nschedule = \"0 0 6 1 * *\"\nkpis = [\"service_hours\"]\nscope = \"district:330212\"\noutput = \"{}\"\n",
        out.path().display()
    ));
    let kpi = |area: &str| {
        s.get(
            &format!("/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31&area={area}"),
            "a-viewer",
        )
    };
    for (other, nowhere) in [
        ("330212", "990101"),
        ("330212001", "990101001"),
        ("S330212001001", "S990101001001"),
        ("C330212", "C990101"),
    ] {
        let (o, n) = (kpi(other), kpi(nowhere));
        assert_eq!(o.status, 404, "{}", o.text());
        assert!(
            o.detail().contains("no such area in your scope"),
            "{}",
            o.text()
        );
        alike(&o, other, &n, nowhere);
    }
    // Its own areas answer.
    assert_eq!(kpi("330203001").status, 200);
    // An export of another district: not found, like one that does not exist.
    let file = |name: &str| {
        s.get(
            &format!("/v1/exports/{name}/files/2024-03/x.csv"),
            "a-viewer",
        )
    };
    let (o, n) = (file("b-monthly"), file("no-such-export"));
    assert_eq!(o.status, 404);
    alike(&o, "b-monthly", &n, "no-such-export");
    let run = |name: &str| {
        s.request(
            reqwest::Method::POST,
            &format!("/v1/exports/{name}/run?period=2024-03"),
            Some("a-admin"),
            None,
        )
    };
    alike(
        &run("b-monthly"),
        "b-monthly",
        &run("no-such-export"),
        "no-such-export",
    );
    assert_eq!(run("b-monthly").status, 404);
    let listed = s.get("/v1/exports", "a-viewer").json();
    assert_eq!(listed, json!([]), "A sees no export of B");
    assert_eq!(
        s.get("/v1/exports", "b-viewer").json()[0]["name"],
        "b-monthly"
    );
}

#[test]
fn every_aggregate_is_scoped() {
    let s = serve("");
    let a = s.get("/v1/quality", "a-viewer").json();
    assert_eq!(a["ingest"], Value::Null, "the run records count the city");
    assert_eq!(a["events"]["unit_events"], json!(A_STATIONS.len() + 1));
    let city = s.get("/v1/quality", "city-admin").json();
    assert!(city["ingest"]["stored"].as_u64().unwrap() > 0, "{city}");
    let units = s.get("/v1/units", "a-viewer").json();
    let ids: Vec<&str> = units["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|u| u.contains("330203") || *u == "=1+1"),
        "{ids:?}"
    );
    assert_eq!(s.get_open("/metrics").status, 401);
    assert_eq!(s.get("/metrics", "a-viewer").status, 403);
    let metrics = s.get("/metrics", "city-admin");
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("wenming_kpi_slots_free"));
    assert_eq!(s.get_open("/readyz").status, 200);
}

#[test]
fn memory_bombs_are_refused_and_the_server_goes_on() {
    let mut s = serve("");
    let ladder = |f: &dyn Fn(&str) -> String, levels: usize| {
        let mut q = "WITH l0 AS (SELECT repeat('x', 1000) AS s)".to_string();
        for i in 1..=levels {
            q.push_str(&format!(
                ", l{i} AS (SELECT {} AS s FROM l{})",
                f("s"),
                i - 1
            ));
        }
        q + &format!(" SELECT length(s) AS n FROM l{levels}")
    };
    let pipes = ladder(&|s| [s; 10].join(" || "), 7);
    let concats = ladder(&|s| format!("concat({})", [s; 10].join(", ")), 7);
    for bomb in [
        "SELECT length(repeat('x', 1500000000)) AS n",
        "SELECT length(lpad('x', 2000000000)) AS n",
        "SELECT length(rpad('x', 2000000000, 'yz')) AS n",
        "SELECT cardinality(array_repeat(1, 2000000000)) AS n",
        "SELECT cardinality(range(1, 3000000000)) AS n",
        "SELECT cardinality(generate_series(TIMESTAMP '2000-01-01', TIMESTAMP '2024-01-01', INTERVAL '1 microsecond')) AS n",
        "SELECT length(replace(repeat('a', 100000), 'a', repeat('b', 100000))) AS n",
        "SELECT length(string_agg(repeat('x', 100000), ',')) AS n FROM generate_series(1, 100000)",
        &pipes,
        &concats,
    ] {
        let a = s.sql("b-analyst", bomb);
        assert_eq!(a.status, 422, "{bomb}: {}", a.text());
        assert!(
            a.detail().contains("at most") || a.detail().contains("limit"),
            "{bomb}: {}",
            a.detail()
        );
    }
    let window = s.sql(
        "b-analyst",
        "SELECT array_agg(unit_id) OVER (ORDER BY occurred_at) AS a FROM service_events",
    );
    assert_eq!(window.status, 400, "{}", window.text());
    assert!(
        window.detail().contains("window function"),
        "{}",
        window.detail()
    );
    // What the functions are for still works, with `||`'s own null rule.
    let fine = s.sql(
        "b-analyst",
        "SELECT repeat('ab', 3) AS r, lpad('7', 3, '0') AS p, 'a' || 'b' AS c, \
         CAST(NULL AS VARCHAR) || 'b' AS n, concat('a', NULL, 'b') AS k, \
         cardinality(range(1, 11)) AS g",
    );
    assert_eq!(fine.status, 200, "{}", fine.text());
    assert_eq!(
        fine.json(),
        json!([{"r": "ababab", "p": "007", "c": "ab", "k": "ab", "g": 10}])
    );
    assert!(s.alive());
    assert_eq!(s.get_open("/healthz").status, 200);
}

fn or_chain(n: usize) -> String {
    let terms: Vec<String> = (0..n).map(|i| format!("0 = {}", i + 1)).collect();
    format!("SELECT 1 AS x WHERE {}", terms.join(" OR "))
}

#[test]
fn deep_and_long_queries_are_refused_and_never_take_the_server_down() {
    let mut s = serve("");
    let long = s.sql("b-analyst", &or_chain(30_000));
    assert_eq!(long.status, 403, "{}", long.text());
    assert!(
        long.detail().contains("limit is 20000"),
        "{}",
        long.detail()
    );
    let chained = s.sql("b-analyst", &or_chain(1_100));
    assert_eq!(chained.status, 403, "{}", chained.text());
    assert!(
        chained.detail().contains("limit is 1000"),
        "{}",
        chained.detail()
    );
    let nested = format!("SELECT {}1{} AS x", "(".repeat(5000), ")".repeat(5000));
    let nested = s.sql("b-analyst", &nested);
    assert_eq!(nested.status, 400, "{}", nested.text());
    assert!(
        nested.detail().contains("deeper than"),
        "{}",
        nested.detail()
    );
    let unions = vec!["SELECT 1 AS x"; 2000].join(" UNION ALL ");
    assert_eq!(s.sql("b-analyst", &unions).status, 403);
    // Just under the depth limit, planned and run on the query threads.
    let deep = s.sql("b-analyst", &or_chain(990));
    assert_eq!(deep.status, 200, "{}", deep.text());
    assert_eq!(deep.json(), json!([]));
    assert!(s.alive());
    assert_eq!(s.get_open("/healthz").status, 200);
}

#[test]
fn wide_kpi_questions_are_bounded_while_health_and_small_questions_answer() {
    let s = serve("[kpi]\nmax_cells = 5000\nmax_concurrent = 2\nper_token = 1\nqueue_secs = 1\n");
    let wide = s.get(
        "/v1/kpis/service_hours?from=2005-01-01&to=2024-12-31&granularity=day&level=unit",
        "city-admin",
    );
    assert_eq!(wide.status, 422, "{}", wide.text());
    for says in ["limit is 5000", "coarser granularity"] {
        assert!(wide.detail().contains(says), "{}", wide.detail());
    }
    let small = "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31";
    assert_eq!(s.get(small, "a-viewer").status, 200);
    // Many uncached questions from one token at once: answered or refused with 429,
    // never a failure; health and another token's cached question answer meanwhile.
    let statuses = std::thread::scope(|scope| {
        let askers: Vec<_> = (0..12)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    let to = format!("2024-{:02}-28", 1 + i % 12);
                    let a = s.get(
                        &format!(
                            "/v1/kpis/participation_rate?from=2023-01-01&to={to}&granularity=week&level=unit&compare=yoy"
                        ),
                        "city-admin",
                    );
                    if a.status == 429 {
                        assert!(a.detail().contains("per token"), "{}", a.detail());
                    }
                    a.status
                })
            })
            .collect();
        for _ in 0..5 {
            assert_eq!(s.get_open("/healthz").status, 200);
            assert_eq!(s.get(small, "a-viewer").status, 200);
        }
        askers
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<u16>>()
    });
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[test]
fn exports_are_kept_per_scope_and_bad_periods_are_refused() {
    let out = tempfile::tempdir().unwrap();
    let s = serve(&format!(
        "[[exports]]\nname = \"monthly\"\nschedule = \"0 0 6 1 * *\"\nkpis = [\"service_hours\"]\nlevel = \"unit\"\nformats = [\"csv\", \"xlsx\"]\noutput = \"{}\"\n",
        out.path().display()
    ));
    let run = |token: &str, period: &str| {
        s.request(
            reqwest::Method::POST,
            &format!("/v1/exports/monthly/run?period={period}"),
            Some(token),
            None,
        )
    };
    let city = run("city-admin", "2024-03");
    assert_eq!(city.status, 200, "{}", city.text());
    let city_dir = out.path().join("monthly/city/2024-03");
    let city_csv = std::fs::read(city_dir.join("monthly_2024-03.csv")).unwrap();
    let district = run("a-admin", "2024-03");
    assert_eq!(district.status, 200, "{}", district.text());
    assert_eq!(district.json()["scope"], "district:330203");
    assert_eq!(
        std::fs::read(city_dir.join("monthly_2024-03.csv")).unwrap(),
        city_csv,
        "the district's run left the city's file as it was"
    );
    let a_csv = std::fs::read_to_string(
        out.path()
            .join("monthly/district-330203/2024-03/monthly_2024-03.csv"),
    )
    .unwrap();
    assert!(!a_csv.contains("330212"), "{a_csv}");
    // Each reads its own file through the API.
    let file = "/v1/exports/monthly/files/2024-03/monthly_2024-03.csv";
    assert_eq!(s.get(file, "a-viewer").text(), a_csv);
    assert_eq!(s.get(file, "city-admin").body, city_csv);
    assert_eq!(
        s.get("/v1/exports", "a-viewer").json()[0]["scope"],
        "district:330203"
    );
    // No temporary file is left behind.
    for dir in ["monthly/city/2024-03", "monthly/district-330203/2024-03"] {
        for f in std::fs::read_dir(out.path().join(dir)).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            assert!(!name.ends_with(".tmp"), "{name}");
        }
    }
    // A station id that is a formula is text in the CSV.
    let city_csv = String::from_utf8(city_csv).unwrap();
    assert!(city_csv.contains(",'=1+1,"), "{city_csv}");
    assert!(!city_csv.contains(",=1+1,"), "{city_csv}");
    for period in ["262142-Q4", "0000-00", "2024-13", "2024-Q5", "24"] {
        let a = run("city-admin", period);
        assert_eq!(a.status, 400, "{period}: {}", a.text());
        assert!(a.detail().contains("YYYY-MM"), "{period}: {}", a.detail());
    }
    // XLSX cells are strings and numbers, never formulas.
    let xlsx = city_dir.join("monthly_2024-03.xlsx");
    let script = format!(
        "import openpyxl\nwb = openpyxl.load_workbook({:?})\n\
         kinds = {{c.data_type for ws in wb for row in ws.iter_rows() for c in row if c.value is not None}}\n\
         print(sorted(kinds))",
        xlsx.to_str().unwrap()
    );
    match std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
    {
        Ok(o) if o.status.success() => {
            let kinds = String::from_utf8_lossy(&o.stdout);
            assert_eq!(kinds.trim(), "['n', 's']", "cell kinds: {kinds}");
        }
        other => {
            assert!(
                std::env::var("WENMING_TEST_PYTHON").is_err(),
                "openpyxl is needed: {other:?}"
            );
            eprintln!("skipped the XLSX check: python3 with openpyxl is missing");
        }
    }
}

#[test]
fn stations_and_districts_write_only_inside_their_scope_through_the_gateway() {
    let broker = common::Broker::start();
    let topic = common::unique_topic("gateway_scope");
    // `produce` creates the topic (the embedded broker creates none on demand).
    let empty = tempfile::NamedTempFile::new().unwrap();
    let path = empty.path().to_str().unwrap();
    common::ok(&common::wenming(&[
        "produce",
        path,
        "--brokers",
        &broker.bootstrap,
        "--topic",
        &topic,
    ]));
    let tokens = [
        ("station-a1", "station", "unit:S330203001001"),
        ("district-a", "station", "district:330203"),
    ];
    let s = Server::start(
        &fixture(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ingest]\nenabled = false\nbrokers = \"{}\"\ntopic = \"{}\"\n{}",
            broker.bootstrap,
            topic,
            token_config(&tokens)
        ),
    );
    let mut n = 0x9000u64;
    let mut send = |token: &str, ty: &str, unit: &str, data: Value| {
        n += 1;
        let event = serde_json::from_str::<Value>(
            ndjson(&[(ty, "2024-04-01T10:00:00+08:00", unit, data)], n).trim(),
        )
        .unwrap();
        let a = s.post("/v1/events", token, &json!([event]));
        assert_eq!(a.status, 200, "{}", a.text());
        let r = a.json()["results"][0].clone();
        (
            r["status"].as_str().unwrap().to_string(),
            r["message"].as_str().unwrap_or("").to_string(),
        )
    };
    let station = |area: &str, parent: &str| json!({"level": "station", "name": "x", "area_code": area, "parent_id": parent});
    // A station renames itself, but cannot move into B or hang from B's centre.
    let renamed = send(
        "station-a1",
        "unit.registered",
        "S330203001001",
        station("330203001001", "C330203"),
    );
    assert_eq!(renamed.0, "accepted", "{}", renamed.1);
    for (area, parent) in [("330212001009", "C330203"), ("330203001001", "C330212")] {
        let (status, message) = send(
            "station-a1",
            "unit.registered",
            "S330203001001",
            station(area, parent),
        );
        assert_eq!(status, "rejected", "{area} {parent}");
        assert!(message.contains("cannot move"), "{message}");
    }
    // Nor write for another unit, existing or not, in the same words.
    let wish = |id: &str| json!({"wish_id": id});
    let (other, other_says) = send("station-a1", "wish.posted", "S330212001001", wish("w1"));
    let (nowhere, nowhere_says) = send("station-a1", "wish.posted", "S999", wish("w2"));
    assert_eq!((other.as_str(), nowhere.as_str()), ("rejected", "rejected"));
    assert_eq!(
        other_says.replace("S330212001001", "?"),
        nowhere_says.replace("S999", "?")
    );
    // A district registers inside itself only, and cannot take B's unit.
    assert_eq!(
        send(
            "district-a",
            "unit.registered",
            "S330203001009",
            station("330203001009", "C330203")
        )
        .0,
        "accepted"
    );
    for (unit, area, parent) in [
        ("S330212001009", "330212001009", "C330212"),
        ("S330203001010", "330203001010", "C330212"),
        ("S330212001001", "330203001011", "C330203"),
    ] {
        let (status, message) = send("district-a", "unit.registered", unit, station(area, parent));
        assert_eq!(status, "rejected", "{unit}: {message}");
    }
    let (status, _) = send("district-a", "unit.closed", "S330212001001", json!({}));
    assert_eq!(status, "rejected");
}

#[test]
fn unknown_tokens_are_slowed_down_per_address() {
    let s = serve("");
    let limit = 20; // auth::Attempts::MAX_FAILURES
    for i in 0..limit {
        let a = s.get("/v1/kpis", &format!("guess-{i}"));
        assert_eq!(a.status, 401, "{}", a.text());
    }
    let blocked = s.get("/v1/kpis", "guess-x");
    assert_eq!(blocked.status, 429, "{}", blocked.text());
    // A right token from the same address is refused alike until the window passes:
    // otherwise the refusal would tell a right guess from a wrong one.
    let right = s.get("/v1/kpis", "a-viewer");
    assert_eq!(right.status, 429);
    assert_eq!(right.detail(), blocked.detail());
    assert_eq!(s.get_open("/healthz").status, 200);
}

#[test]
fn failures_carry_a_request_id() {
    let s = serve("");
    let a = s.get(
        "/v1/kpis/service_hours?from=2024-03-01&to=2024-03-31",
        "a-viewer",
    );
    let id = a.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "{id}");
    let ids: BTreeMap<String, ()> = (0..5)
        .map(|_| {
            let a = s.get_open("/healthz");
            (a.headers["x-request-id"].to_str().unwrap().to_string(), ())
        })
        .collect();
    assert_eq!(ids.len(), 5, "one id per request");
}
