//! The distributed engine: a Ballista scheduler and two executors on loopback
//! (`wenming ballista scheduler|executor`), and two servers over one lake, one answering
//! in-process, one with `[analytics] engine = "ballista://…"`. Every KPI and a district
//! analyst's SQL must come back the same from both, the wall must hold on the cluster as
//! it does here, and the plans must really have run there.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{Server, token_config};
use common::{free_port, listening, ok, wenming};
use serde_json::Value;

/// A process of the cluster; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `wenming ballista ARGS` and wait for its first line (it has bound its ports).
fn start(args: &[&str]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wenming"))
        .arg("ballista")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("it printed a line").unwrap();
    assert!(first.starts_with("ballista "), "{first}");
    std::thread::spawn(move || for _ in lines {});
    Process(child)
}

/// A scheduler and two executors reading `lake`; returns them and the engine setting.
fn cluster(lake: &Path) -> (Vec<Process>, String) {
    let lake = lake.to_str().unwrap();
    let scheduler = format!("127.0.0.1:{}", free_port());
    let mut processes = vec![start(&["scheduler", "--bind", &scheduler, "--lake", lake])];
    listening(&scheduler);
    for _ in 0..2 {
        let (flight, grpc) = (free_port(), free_port());
        processes.push(start(&[
            "executor",
            "--scheduler",
            &scheduler,
            "--bind",
            &format!("127.0.0.1:{flight}"),
            "--grpc-port",
            &grpc.to_string(),
            "--concurrent-tasks",
            "2",
            "--memory-mib",
            "1024",
            "--lake",
            lake,
        ]));
        listening(&format!("127.0.0.1:{flight}"));
    }
    (processes, format!("ballista://{scheduler}"))
}

const TOKENS: &[(&str, &str, &str)] = &[
    ("city", "analyst", "city"),
    ("district", "analyst", "district:330203"),
];

fn serve(lake: &Path, engine: &str) -> Server {
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[lake]\npath = \"{}\"\n[ingest]\nenabled = false\n\
         [analytics]\nengine = \"{engine}\"\n{}",
        lake.display(),
        token_config(TOKENS)
    );
    Server::serve(&config)
}

/// An answer without what differs between two servers (the lineage's commit times are
/// the same lake's, but a server answering from the version before would say so).
fn answer(server: &Server, path: &str, token: &str) -> Value {
    let got = server.get(path, token);
    assert_eq!(got.status, 200, "{path}: {}", got.text());
    let mut v = got.json();
    v.as_object_mut().unwrap().remove("lineage");
    v
}

fn rows(server: &Server, token: &str, query: &str) -> Value {
    let got = server.sql(token, query);
    assert_eq!(got.status, 200, "{query}: {}", got.text());
    got.json()
}

/// Wait until the server has a snapshot to answer from (its first refresh).
fn ready(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.get("/v1/kpis", "city").status != 200 {
        assert!(Instant::now() < deadline, "the server never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_ballista_cluster_answers_every_kpi_and_a_scoped_query_as_the_embedded_engine() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    let lake = dir.path().join("lake");
    ok(&wenming(&[
        "generate",
        "--scale",
        "tiny",
        "--seed",
        "11",
        "--from",
        "2024-01-01",
        "--to",
        "2024-03-31",
        "--out",
        events.to_str().unwrap(),
    ]));
    // A second district (鄞州区), for the wall to keep out.
    let mut all = std::fs::read_to_string(&events).unwrap();
    all.push_str(&common::server::other_district());
    std::fs::write(&events, all).unwrap();
    ok(&wenming(&[
        "import",
        events.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
    ]));

    let (processes, engine) = cluster(&lake);
    let embedded = serve(&lake, "embedded");
    let distributed = serve(&lake, &engine);
    ready(&embedded);
    ready(&distributed);

    // Every KPI of the catalog, city-wide by district, and as the district office sees
    // its streets.
    let catalog = embedded.get("/v1/kpis", "city").json();
    let names: Vec<String> = catalog
        .as_array()
        .or_else(|| catalog["kpis"].as_array())
        .expect("the catalog lists the KPIs")
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 18, "{catalog}");
    let mut nonzero = 0;
    for name in &names {
        for (token, level) in [("city", "district"), ("district", "street")] {
            let path = format!(
                "/v1/kpis/{name}?from=2024-01-01&to=2024-03-31&granularity=month&level={level}"
            );
            let want = answer(&embedded, &path, token);
            let got = answer(&distributed, &path, token);
            assert_eq!(got, want, "{name} as {token}");
            if want["rows"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["value"].as_f64().is_some_and(|v| v != 0.0))
            {
                nonzero += 1;
            }
        }
    }
    assert!(
        nonzero >= 30,
        "the answers compared must hold numbers: {nonzero}"
    );

    // A district analyst's SQL: the same rows on both engines, only the district's.
    let query = "SELECT u.district_code, count(*) AS records, sum(s.minutes) AS minutes \
                 FROM service_records s JOIN units u ON u.unit_id = s.unit_id \
                 GROUP BY u.district_code ORDER BY 1";
    let want = rows(&embedded, "district", query);
    assert_eq!(rows(&distributed, "district", query), want);
    assert_eq!(want.as_array().unwrap().len(), 1, "{want}");
    assert_eq!(want[0]["district_code"], "330203", "{want}");
    let city = rows(&distributed, "city", query);
    assert!(city.as_array().unwrap().len() > 1, "{city}");

    // The wall holds on the cluster: an expression that fails on any other district's
    // row never meets one.
    let probe = "SELECT count(*) AS n FROM service_events WHERE \
                 CASE WHEN unit_id NOT IN (SELECT unit_id FROM units) THEN true \
                      WHEN substr(unit_id, 2, 6) = '330203' THEN true \
                      ELSE CAST(1 / 0 AS BOOLEAN) END";
    let probe_rows = |server: &Server| {
        let got = server.sql("district", probe);
        (got.status, got.json())
    };
    let (status, n) = probe_rows(&embedded);
    assert_eq!(status, 200, "{n}");
    assert!(n[0]["n"].as_u64().unwrap() > 0, "{n}");
    assert_eq!((status, n), probe_rows(&distributed));

    // The plans ran on the cluster: EXPLAIN shows Ballista's stages, and a district
    // analyst's plan carries the wall, with its scope, into them.
    let explain = |server: &Server, token: &str| {
        let got = server.sql(token, "EXPLAIN SELECT count(*) FROM service_events");
        assert_eq!(got.status, 200, "{}", got.text());
        got.text()
    };
    let city = explain(&distributed, "city");
    assert!(
        city.contains("distributed_plan") && city.contains("ShuffleWriterExec"),
        "{city}"
    );
    let district = explain(&distributed, "district");
    assert!(district.contains("distributed_plan"), "{district}");
    assert!(
        district.contains("ScopedScan: table=service_events, scope=district:330203"),
        "{district}"
    );
    assert!(!explain(&embedded, "city").contains("distributed_plan"));

    // EXPLAIN ANALYZE on the cluster shows a district analyst the wall's scan, with the
    // rows it let through, and not the hidden scan of every district's rows.
    let count = |token: &str| {
        rows(
            &distributed,
            token,
            "SELECT count(*) AS n FROM service_events",
        )[0]["n"]
            .as_u64()
            .unwrap()
    };
    let (all, own) = (count("city"), count("district"));
    assert!(all > own, "{all} {own}");
    let analyzed = distributed.sql(
        "district",
        "EXPLAIN ANALYZE SELECT count(*) FROM service_events",
    );
    assert_eq!(analyzed.status, 200, "{}", analyzed.text());
    let text = analyzed.text();
    assert!(text.contains("ScopedScan: table=service_events"), "{text}");
    // The table's own scan, which reads every district's rows, is not in the plan shown.
    assert!(
        !text.contains("DataSourceExec") && !text.contains("file_groups"),
        "{text}"
    );

    // What a Postgres client asks on connecting reads no lake table: answered here,
    // from this session's catalog, as the embedded engine answers it.
    for query in [
        "SELECT count(*) AS n FROM pg_catalog.pg_class",
        "SELECT count(*) AS n FROM information_schema.tables",
        "SELECT 1 AS one",
    ] {
        assert_eq!(
            rows(&distributed, "district", query),
            rows(&embedded, "district", query),
            "{query}"
        );
    }

    // A cluster that is down is said to be down, by name.
    drop(processes);
    let down = distributed.sql("city", "SELECT count(*) FROM units");
    assert_eq!(down.status, 503, "{}", down.text());
    assert!(
        down.detail().contains("cannot be reached"),
        "{}",
        down.text()
    );
}

#[test]
fn an_engine_nobody_listens_on_is_a_clear_error_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    let lake = dir.path().join("lake");
    std::fs::write(
        &events,
        common::server::ndjson(
            &[(
                "unit.registered",
                "2024-01-01T08:00:00+08:00",
                "S1",
                serde_json::json!({"level": "station", "name": "一站", "parent_id": "I330203001", "area_code": "330203001001"}),
            )],
            1,
        ),
    )
    .unwrap();
    ok(&wenming(&[
        "import",
        events.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
    ]));
    let port = free_port();
    let out = wenming(&[
        "sql",
        "SELECT count(*) FROM units",
        "--lake",
        lake.to_str().unwrap(),
        "--engine",
        &format!("ballista://127.0.0.1:{port}"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the Ballista scheduler at 127.0.0.1:{port}"))
            && err.contains("cannot be reached"),
        "{err}"
    );

    let out = wenming(&[
        "sql",
        "SELECT 1",
        "--lake",
        lake.to_str().unwrap(),
        "--engine",
        "spark://x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spark://x") && err.contains("ballista://host:port"),
        "{err}"
    );
}
