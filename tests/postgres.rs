//! The Postgres wire as analysts meet it: `psql` (Debian's postgresql-client) and
//! Python's psycopg 3, asyncpg, SQLAlchemy and pandas (tests/postgres/clients.py)
//! against a `wenming serve` over a lake of two districts (the tiny network, 海曙区
//! 330203, and a small 鄞州区 330212), with the scope matrix of HTTP again.
//!
//! Without psql or the Python clients the test says so and passes, unless
//! `WENMING_TEST_PYTHON=1` (as in CI), where it fails.

mod common;

use std::process::{Command, Output};

use common::server::{Server, other_district, token_config};
use common::{ok, wenming};

const TOKENS: [(&str, &str, &str); 5] = [
    ("city-admin", "admin", "city"),
    ("a-analyst", "analyst", "district:330203"),
    ("b-analyst", "analyst", "district:330212"),
    ("a-viewer", "viewer", "district:330203"),
    ("station", "station", "unit:S330212001001"),
];

fn required() -> bool {
    std::env::var("WENMING_TEST_PYTHON").is_ok_and(|v| v == "1")
}

/// Whether one of `tools` is not installed (then the test is skipped, unless the run
/// requires it: CI installs postgresql-client and openssl).
fn missing(tools: &[&str]) -> bool {
    let absent: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| Command::new(t).arg("--version").output().is_err())
        .collect();
    if absent.is_empty() {
        return false;
    }
    assert!(
        !required(),
        "{absent:?} missing (apt-get install postgresql-client openssl)"
    );
    eprintln!("skipped: no {absent:?}");
    true
}

fn start() -> Server {
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
    Server::start(
        &events,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ingest]\nenabled = false\n\
             [sql]\nper_token = 1\nmax_concurrent = 4\n\
             [postgres]\nlisten = \"127.0.0.1:0\"\n{}",
            token_config(&TOKENS)
        ),
    )
}

/// `psql` as `user` with `password`, running `commands` (-c each), unaligned output.
fn psql(s: &Server, user: &str, password: &str, commands: &[&str]) -> Output {
    let (host, port) = s.postgres.as_deref().unwrap().split_once(':').unwrap();
    let mut cmd = Command::new("psql");
    cmd.arg(format!(
        "host={host} port={port} dbname=wenming user={user} password={password}"
    ))
    .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=0"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.output().expect("psql runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn psql_lists_describes_queries_copies_and_is_refused_where_it_must_be() {
    if missing(&["psql"]) {
        return;
    }
    let s = start();
    let (out, err) = text(&psql(&s, "a-analyst", "a-analyst", &["\\dt", "\\dv"]));
    for table in ["service_events", "unit_events", "service_records", "units"] {
        assert!(out.contains(table), "{table} listed: {out} {err}");
    }
    // \d describes the table named (its oid from one statement, its columns from the
    // next), with the local date columns beside the instants.
    let (out, err) = text(&psql(
        &s,
        "a-analyst",
        "a-analyst",
        &["\\d service_records"],
    ));
    assert!(
        out.contains("minutes|bigint") && out.contains("started_on|date"),
        "{out} {err}"
    );
    let (out, _) = text(&psql(&s, "a-analyst", "a-analyst", &["\\d teams"]));
    assert!(
        out.contains("registered_on") && !out.contains("minutes"),
        "{out}"
    );
    // "March" by the local calendar, the same over HTTP: no record's local date differs
    // from its instant's date in Shanghai, and some differ from the UTC date.
    let count = |condition: &str| {
        let q = format!("SELECT count(*) AS n FROM service_records WHERE {condition}");
        s.sql("a-analyst", &q).json()[0]["n"].as_i64().unwrap()
    };
    assert_eq!(
        count("started_on <> CAST(started_at AT TIME ZONE 'Asia/Shanghai' AS DATE)"),
        0
    );
    assert!(count("started_on <> CAST(started_at AS DATE)") > 0);
    let (out, err) = text(&psql(&s, "a-analyst", "a-analyst", &["\\dn"]));
    assert!(out.contains("public"), "\\dn lists the schema: {out} {err}");
    let (out, err) = text(&psql(&s, "a-analyst", "a-analyst", &["\\d service_events"]));
    assert!(
        out.contains("event_id") && out.contains("timestamp with time zone"),
        "{out} {err}"
    );
    // The scope matrix: each analyst sees its own district's units, as over HTTP.
    for (token, prefix, other) in [
        ("a-analyst", "330203", "330212"),
        ("b-analyst", "330212", "330203"),
    ] {
        let q = "SELECT unit_id FROM units ORDER BY unit_id";
        let (out, err) = text(&psql(&s, token, token, &[q]));
        let units: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        assert!(!units.is_empty(), "{token}: {err}");
        assert!(
            units
                .iter()
                .all(|u| u.contains(prefix) && !u.contains(other)),
            "{token}: {units:?}"
        );
        let http: Vec<String> = s
            .sql(token, q)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["unit_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(units, http, "{token}: Postgres and HTTP agree");
        // Raw tables too, and the catalog lists the same tables to every scope.
        let (out, _) = text(&psql(
            &s,
            token,
            token,
            &["SELECT DISTINCT unit_id FROM service_events"],
        ));
        assert!(
            out.lines()
                .filter(|l| !l.is_empty())
                .all(|u| u.contains(prefix)),
            "{token}: {out}"
        );
    }
    let (city, _) = text(&psql(
        &s,
        "city-admin",
        "city-admin",
        &["SELECT count(DISTINCT unit_id) FROM units"],
    ));
    let (a, _) = text(&psql(
        &s,
        "a-analyst",
        "a-analyst",
        &["SELECT count(DISTINCT unit_id) FROM units"],
    ));
    assert!(city.trim().parse::<u32>().unwrap() > a.trim().parse::<u32>().unwrap());
    // \copy (query) TO STDOUT, text and CSV.
    let (out, err) = text(&psql(
        &s,
        "a-analyst",
        "a-analyst",
        &[
            "\\copy (SELECT unit_id, level FROM units WHERE level = 'center') TO STDOUT",
            "\\copy (SELECT unit_id, level FROM units WHERE level = 'center') TO STDOUT WITH (FORMAT csv, HEADER true)",
        ],
    ));
    assert!(
        out.contains("C330203\tcenter\n") && out.contains("unit_id,level\nC330203,center\n"),
        "{out} {err}"
    );
    // Refusals, in sentences, and the session survives them.
    let (out, err) = text(&psql(
        &s,
        "a-analyst",
        "a-analyst",
        &[
            "DROP TABLE units",
            "COPY units TO '/tmp/x'",
            "SET datafusion.execution.batch_size = 1",
            "SELECT * FROM nosuch",
            "SHOW transaction_isolation",
            "SELECT current_database()",
        ],
    ));
    assert!(err.contains("\"DROP TABLE\" is not allowed"), "{err}");
    assert!(err.contains("COPY") && err.contains("not allowed"), "{err}");
    assert!(
        err.contains("SET datafusion.execution.batch_size is not allowed"),
        "{err}"
    );
    assert!(err.contains("the tables are: activities"), "{err}");
    assert!(
        out.contains("read committed") && out.contains("wenming"),
        "{out}"
    );
    // Who gets in: a viewer and a station are refused with the reason; a wrong password
    // and an unknown user get the same answer.
    let (_, err) = text(&psql(&s, "a-viewer", "a-viewer", &["SELECT 1"]));
    assert!(err.contains("may not run SQL"), "{err}");
    let (_, err) = text(&psql(&s, "station", "station", &["SELECT 1"]));
    assert!(err.contains("may not run SQL"), "{err}");
    let (_, wrong) = text(&psql(&s, "a-analyst", "nope", &["SELECT 1"]));
    let (_, unknown) = text(&psql(&s, "nobody", "nope", &["SELECT 1"]));
    let (_, swapped) = text(&psql(&s, "a-analyst", "b-analyst", &["SELECT 1"]));
    assert!(
        wrong.contains("password authentication failed for user \"a-analyst\""),
        "{wrong}"
    );
    assert_eq!(unknown.replace("nobody", "a-analyst"), wrong);
    assert_eq!(swapped, wrong, "another token's password under this name");
    // Timeout, lowered by the client.
    let (_, err) = text(&psql(
        &s,
        "a-analyst",
        "a-analyst",
        &[
            "SET statement_timeout = '300ms'",
            "SELECT count(*) FROM service_events a, service_events b, service_events c",
        ],
    ));
    assert!(
        err.contains("canceling statement due to statement timeout"),
        "{err}"
    );
}

#[test]
fn psql_ctrl_c_cancels_while_others_answer_and_dbeaver_navigates() {
    if missing(&["psql"]) {
        return;
    }
    let s = start();
    // DBeaver's navigator queries, each answered.
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/postgres/dbeaver.sql");
    let (host, port) = s.postgres.as_deref().unwrap().split_once(':').unwrap();
    let out = Command::new("psql")
        .arg(format!(
            "host={host} port={port} dbname=wenming user=a-analyst password=a-analyst"
        ))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&script)
        .output()
        .unwrap();
    let (listing, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        listing.contains("service_records") && listing.contains("public"),
        "{listing}"
    );
    assert!(
        !listing.contains("330212"),
        "the catalog holds no other district's rows"
    );

    // Ctrl-C: psql sends a CancelRequest on SIGINT; meanwhile another session answers.
    let runaway = Command::new("psql")
        .arg(format!(
            "host={host} port={port} dbname=wenming user=a-analyst password=a-analyst"
        ))
        .args(["-X", "-A", "-t", "-c"])
        .arg("SELECT count(*) FROM service_events a, service_events b, service_events c")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (other, err) = text(&psql(&s, "b-analyst", "b-analyst", &["SELECT 41 + 1"]));
    assert_eq!(other.trim(), "42", "{err}");
    let interrupted = Command::new("kill")
        .args(["-INT", &runaway.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let done = runaway.wait_with_output().unwrap();
    let (_, err) = text(&done);
    assert!(
        err.contains("canceling statement due to user request"),
        "{err}"
    );
    // The token's one SQL slot (per_token = 1) is free again: the engine's work stopped.
    let (out, err) = text(&psql(&s, "a-analyst", "a-analyst", &["SELECT 1"]));
    assert_eq!(out.trim(), "1", "{err}");
}

#[test]
fn python_clients_agree_with_http_and_cancel_stops_queries() {
    let have = Command::new("python3")
        .args(["-c", "import psycopg, asyncpg, sqlalchemy, pandas"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            !required(),
            "python3 with psycopg, asyncpg, sqlalchemy, pandas is missing"
        );
        eprintln!("skipped: no psycopg/asyncpg/sqlalchemy/pandas");
        return;
    }
    let s = start();
    let out = Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/postgres/clients.py"))
        .args(["--pg", s.postgres.as_deref().unwrap(), "--http", &s.addr])
        .args(["--user", "a-analyst", "--token", "a-analyst"])
        .args(["--other-user", "b-analyst", "--other-token", "b-analyst"])
        .output()
        .expect("python3 runs");
    let (stdout, stderr) = text(&out);
    eprintln!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("ok  ").count(), 6, "{stdout}");
}

#[test]
fn tls_is_served_and_plaintext_beyond_loopback_is_refused() {
    if missing(&["psql", "openssl"]) {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made).1);
    let events = ok(&wenming(&["generate", "--scale", "tiny", "--seed", "3"]));
    let s = Server::start(
        &events,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[ingest]\nenabled = false\n\
             [postgres]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{}",
            cert.display(),
            key.display(),
            token_config(&TOKENS)
        ),
    );
    let (host, port) = s.postgres.as_deref().unwrap().split_once(':').unwrap();
    let out = Command::new("psql")
        .arg(format!(
            "host={host} port={port} dbname=wenming user=a-analyst password=a-analyst sslmode=require"
        ))
        .args(["-X", "-A", "-t", "-c", "\\conninfo", "-c", "SELECT count(*) > 0 FROM units"])
        .output()
        .unwrap();
    let (out, err) = text(&out);
    assert!(
        out.contains("SSL connection (protocol: TLSv1."),
        "{out} {err}"
    );
    assert!(out.contains("\nt\n") || out.ends_with("t\n"), "{out} {err}");

    // Beyond loopback without TLS: refused at start, with the reason.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wenming.toml");
    std::fs::write(
        &config,
        format!(
            "[lake]\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[ingest]\nenabled = false\n\
             [postgres]\nlisten = \"0.0.0.0:0\"\n{}",
            s.lake().display(),
            token_config(&TOKENS)
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wenming"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve listened on 0.0.0.0 without TLS");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("allow_plaintext"), "{err}");
}
