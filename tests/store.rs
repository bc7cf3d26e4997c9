//! The lake on an S3-compatible object store: a real S3 API served locally by moto
//! (PyPI `moto[server]`), reached over HTTP like MinIO or OSS would be. Import, Kafka
//! ingest, KPIs, SQL and exports on `s3://`, several ingest workers and several `serve`
//! replicas sharing one lake, and a Ballista cluster reading it.
//!
//! Skipped when `moto_server` is not installed, unless WENMING_TEST_PYTHON=1 (CI),
//! which makes a missing server a failure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::server::{Server, token_config};
use common::{Broker, free_port, listening, ok, unique_topic};

/// A moto S3 server of this test's own, with one bucket `lake` (killed when dropped).
struct S3 {
    endpoint: String,
    child: Child,
}

impl S3 {
    fn start() -> Option<S3> {
        let port = free_port();
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    std::env::var("WENMING_TEST_PYTHON").is_err(),
                    "WENMING_TEST_PYTHON is set but moto_server cannot start: {e}"
                );
                eprintln!("skipped: moto_server (PyPI moto[server]) is not installed");
                return None;
            }
        };
        let s3 = S3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Creating the bucket is also the wait for the server to listen.
        loop {
            match client.put(format!("{}/lake", s3.endpoint)).send() {
                Ok(r) if r.status().is_success() => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                other => panic!("moto did not create the bucket: {other:?}"),
            }
        }
        Some(s3)
    }

    /// The `[lake]` settings of a lake at `prefix` in the bucket.
    fn lake_config(&self, prefix: &str) -> String {
        format!(
            "[lake]\npath = \"s3://lake/{prefix}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
             access_key_id = \"test\"\nsecret_access_key = \"test\"\npath_style = true\n\
             allow_http = true\n",
            self.endpoint
        )
    }

    /// `wenming ARGS` with the store's settings in the environment (as `[lake]` in
    /// wenming.toml would set them).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wenming"));
        cmd.args(args)
            .env("WENMING_LAKE__ENDPOINT", &self.endpoint)
            .env("WENMING_LAKE__REGION", "us-east-1")
            .env("WENMING_LAKE__ACCESS_KEY_ID", "test")
            .env("WENMING_LAKE__SECRET_ACCESS_KEY", "test")
            .env("WENMING_LAKE__PATH_STYLE", "true")
            .env("WENMING_LAKE__ALLOW_HTTP", "true");
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        ok(&self.command(args).output().unwrap())
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn generate(file: &Path, seed: &str, from: &str, to: &str) {
    ok(&common::wenming(&[
        "generate",
        "--seed",
        seed,
        "--duplicate-rate",
        "0.02",
        "--from",
        from,
        "--to",
        to,
        "--out",
        file.to_str().unwrap(),
    ]));
}

/// `wenming produce` of a file onto a topic of three partitions.
fn produce(broker: &Broker, topic: &str, file: &Path) {
    ok(&common::wenming(&[
        "produce",
        file.to_str().unwrap(),
        "--brokers",
        &broker.bootstrap,
        "--topic",
        topic,
        "--partitions",
        "3",
    ]));
}

/// (rows, distinct event ids) over the lake's ten tables, asked through `wenming sql`.
fn counts(run: impl Fn(&[&str]) -> String, lake: &str) -> (u64, u64) {
    let tables = wenming_schemas::Family::ALL
        .iter()
        .map(|f| {
            format!(
                "SELECT CAST(event_id AS VARCHAR) AS e FROM {}",
                f.table_name()
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let query =
        format!("SELECT count(*) AS n, count(DISTINCT e) AS ids FROM ({tables}) AS all_events");
    let out = run(&["sql", &query, "--lake", lake, "--format", "json"]);
    let rows: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let row = &rows[0];
    (row["n"].as_u64().unwrap(), row["ids"].as_u64().unwrap())
}

/// Every KPI's answer without its lineage (versions and commit times differ between
/// two lakes holding the same events).
fn answers(run: impl Fn(&[&str]) -> String, lake: &str) -> Vec<Value> {
    let list = run(&["kpi", "--list"]);
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split(" — ").next())
        .filter(|n| !n.starts_with(' ') && !n.is_empty())
        .collect();
    assert_eq!(names.len(), 18, "{list}");
    names
        .iter()
        .map(|name| {
            let out = run(&[
                "kpi",
                name,
                "--lake",
                lake,
                "--from",
                "2024-01-01",
                "--to",
                "2024-03-31",
                "--format",
                "json",
            ]);
            let mut v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
            v.as_object_mut().unwrap().remove("lineage");
            v
        })
        .collect()
}

#[test]
fn a_lake_on_s3_takes_imports_and_kafka_and_answers_as_a_local_lake_does() {
    let Some(s3) = S3::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (early, late) = (
        dir.path().join("early.ndjson"),
        dir.path().join("late.ndjson"),
    );
    generate(&early, "41", "2024-01-01", "2024-02-10");
    generate(&late, "42", "2024-02-11", "2024-03-31");
    let local = dir.path().join("lake");
    let local = local.to_str().unwrap();
    let remote = "s3://lake/city";

    // The first part imported, the second through Kafka: into both lakes.
    let broker = Broker::start();
    let topic = unique_topic("store");
    produce(&broker, &topic, &late);
    for lake in [local, remote] {
        s3.run(&["import", early.to_str().unwrap(), "--lake", lake]);
        s3.run(&[
            "ingest",
            "--brokers",
            &broker.bootstrap,
            "--topic",
            &topic,
            "--group",
            &format!("{topic}.{}", lake.len()),
            "--lake",
            lake,
            "--partitions",
            "3",
            "--exit-at-end",
        ]);
    }
    // Importing a file again stores nothing: its positions are read back from the store.
    let again = s3.run(&["import", early.to_str().unwrap(), "--lake", remote]);
    assert!(again.contains("stored 0 "), "{again}");

    let run = |args: &[&str]| s3.run(args);
    let (rows, ids) = counts(run, remote);
    assert_eq!(rows, ids, "an event stored twice on the store");
    assert_eq!((rows, ids), counts(run, local));
    assert!(rows > 1000, "{rows}");
    assert_eq!(answers(run, remote), answers(run, local));

    // An export from the store writes the same files as one from the local lake.
    let export = |lake_section: &str, out: &Path| -> Vec<u8> {
        let config = dir
            .path()
            .join(format!("export-{}.toml", out.display().to_string().len()));
        std::fs::write(
            &config,
            format!(
                "{lake_section}[[exports]]\nname = \"monthly\"\nschedule = \"0 0 6 1 * *\"\n\
                 kpis = [\"service_hours\", \"orders_placed\"]\nlevel = \"district\"\n\
                 formats = [\"csv\"]\noutput = \"{}\"\n",
                out.display()
            ),
        )
        .unwrap();
        let printed = ok(&common::wenming(&[
            "export",
            "monthly",
            "--period",
            "2024-02",
            "--config",
            config.to_str().unwrap(),
        ]));
        let csv = walk(out)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "csv"))
            .unwrap_or_else(|| panic!("no CSV written: {printed}"));
        std::fs::read(csv).unwrap()
    };
    let from_store = export(&s3.lake_config("city"), &dir.path().join("out-store"));
    let from_disk = export(
        &format!("[lake]\npath = \"{local}\"\n"),
        &dir.path().join("out-disk-lake"),
    );
    assert!(from_store.iter().filter(|b| **b == b'\n').count() > 2);
    assert_eq!(from_store, from_disk);

    // `lake info` reads the positions from the store's log.
    let info = s3.run(&["lake", "info", "--lake", remote]);
    assert!(info.contains(&format!("kafka:{topic}:0")), "{info}");
    assert!(info.contains("file:blake3:"), "{info}");
    // Compaction and vacuum work on the store and change no answer.
    s3.run(&["lake", "optimize", "--lake", remote]);
    s3.run(&[
        "lake",
        "vacuum",
        "--lake",
        remote,
        "--retention-hours",
        "0",
        "--force",
    ]);
    assert_eq!(counts(run, remote), (rows, ids));

    // A bad location or an unreachable store is a clear error, not a panic.
    let bad = s3
        .command(&["lake", "info", "--lake", "gs://x/y"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("`gs://` is not a supported store"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// Two `serve` replicas on one lake: one ingests, the other sees its commits; both keep
/// the same export schedule, and the fire is run by one of them only.
#[test]
fn two_replicas_on_one_store_see_each_others_commits_and_run_a_scheduled_export_once() {
    let Some(s3) = S3::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (early, late) = (
        dir.path().join("early.ndjson"),
        dir.path().join("late.ndjson"),
    );
    // Data in the month before this one: the period the scheduled export writes.
    use chrono::Datelike;
    let this_month = chrono::Utc::now().date_naive().with_day(1).unwrap();
    let previous = (this_month - chrono::Days::new(1)).with_day(1).unwrap();
    let day = |d: u64| (previous + chrono::Days::new(d)).to_string();
    generate(
        &early,
        "51",
        &(previous - chrono::Days::new(30)).to_string(),
        &day(5),
    );
    generate(&late, "52", &day(6), &day(20));
    s3.run(&[
        "import",
        early.to_str().unwrap(),
        "--lake",
        "s3://lake/replicas",
    ]);
    let broker = Broker::start();
    let topic = unique_topic("replicas");
    let tokens = token_config(&[("city-token", "admin", "city")]);
    let export = |out: &Path| {
        format!(
            "[[exports]]\nname = \"monthly\"\nschedule = \"0 0 6 1 * *\"\n\
             kpis = [\"service_hours\"]\nlevel = \"district\"\nformats = [\"csv\"]\n\
             output = \"{}\"\n",
            out.display()
        )
    };
    let (out_a, out_b) = (dir.path().join("exports-a"), dir.path().join("exports-b"));
    let lake = s3.lake_config("replicas");
    let a = Server::serve(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{lake}[ingest]\nenabled = true\nbrokers = \"{}\"\n\
         topic = \"{topic}\"\ngroup = \"{topic}.group\"\n[broker]\npartitions = 3\n{tokens}{}",
        broker.bootstrap,
        export(&out_a)
    ));
    let b = Server::serve(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{lake}[ingest]\nenabled = false\n{tokens}{}",
        export(&out_b)
    ));

    let count = |server: &Server| -> u64 {
        let answer = server.sql("city-token", "SELECT count(*) AS n FROM service_records");
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()[0]["n"].as_u64().unwrap()
    };
    let before = count(&b);
    assert_eq!(before, count(&a));
    produce(&broker, &topic, &late);
    // A commits what it ingests; B, which ingests nothing, answers from it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let seen = loop {
        let n = count(&b);
        if n > before && n == count(&a) {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "B never saw A's commits: {n} vs {before}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(seen > before);

    // Both replicas reach the fire (it is due at start); one ran it.
    let fired = |out: &Path| out.join("monthly").join("last_fire.txt").exists();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(fired(&out_a) && fired(&out_b)) {
        assert!(
            Instant::now() < deadline,
            "a replica never reached the fire"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let manifests = |out: &Path| -> usize {
        walk(out)
            .iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "manifest.json"))
            .count()
    };
    assert_eq!(
        manifests(&out_a) + manifests(&out_b),
        1,
        "A: {:?}\nB: {:?}",
        walk(&out_a),
        walk(&out_b)
    );
    drop((a, b));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn heavy() -> bool {
    std::env::var("WENMING_HEAVY").is_ok_and(|v| v == "1")
}

/// Two ingest workers in one consumer group on one lake in the store, the second killed
/// (SIGKILL) mid-stream: the survivor takes its partitions over from the positions in
/// the Delta log, and every event is stored once. WENMING_HEAVY=1: the district network's
/// first half-year, 1.15 M lines (1.13 M events and their re-sent copies).
#[test]
fn two_ingest_workers_on_one_store_one_killed_lose_and_double_nothing() {
    let Some(s3) = S3::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let mut args = vec!["generate", "--seed", "61", "--duplicate-rate", "0.02"];
    if heavy() {
        args.extend([
            "--scale",
            "district",
            "--from",
            "2024-01-01",
            "--to",
            "2024-06-30",
        ]);
    }
    args.extend(["--out", file.to_str().unwrap()]);
    ok(&common::wenming(&args));
    let broker = Broker::start();
    let topic = unique_topic("workers");
    produce(&broker, &topic, &file);
    let lake = "s3://lake/workers";
    let worker = |log: &Path, exit_at_end: bool| {
        let mut cmd = s3.command(&[
            "ingest",
            "--brokers",
            &broker.bootstrap,
            "--topic",
            &topic,
            "--group",
            &format!("{topic}.group"),
            "--lake",
            lake,
            "--partitions",
            "3",
            // Small commits, so the stream outlasts the kill; quick rebalances.
            "--flush-rows",
            "2000",
            "--flush-ms",
            "200",
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=500",
        ]);
        if exit_at_end {
            cmd.args(["--exit-at-end", "--compact-every", "5"]);
        }
        cmd.env("RUST_LOG", "wenming_ingest=info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    };
    // The survivor joins first: the embedded broker cannot replace a dead group leader.
    let (survivor_log, victim_log) = (
        dir.path().join("survivor.log"),
        dir.path().join("victim.log"),
    );
    let survivor = worker(&survivor_log, true);
    std::thread::sleep(Duration::from_millis(1000));
    let mut victim = worker(&victim_log, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&victim_log)
        .unwrap_or_default()
        .contains("assigned")
    {
        assert!(
            Instant::now() < deadline,
            "the second worker never got partitions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    victim.kill().unwrap();
    victim.wait().unwrap();
    let out = survivor.wait_with_output().unwrap();
    let log = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    assert!(
        out.status.success(),
        "survivor: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        log(&survivor_log)
    );

    let (rows, ids) = counts(|a: &[&str]| s3.run(a), lake);
    assert_eq!(
        rows,
        ids,
        "an event stored twice\nvictim:\n{}",
        log(&victim_log)
    );
    // What the file holds, stored once: an import of it into a local lake.
    let local = dir.path().join("lake");
    s3.run(&[
        "import",
        file.to_str().unwrap(),
        "--lake",
        local.to_str().unwrap(),
    ]);
    assert_eq!(
        (rows, ids),
        counts(|a: &[&str]| s3.run(a), local.to_str().unwrap()),
        "the store lost events\nsurvivor:\n{}\nvictim:\n{}",
        log(&survivor_log),
        log(&victim_log)
    );
}

/// A `wenming ballista` process (killed when dropped).
struct Ballista(Child);

impl Drop for Ballista {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_ballista_cluster_reads_a_lake_on_s3_and_answers_every_kpi_as_the_embedded_engine() {
    let Some(s3) = S3::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    generate(&events, "43", "2024-01-01", "2024-03-31");
    let lake = "s3://lake/ballista";
    s3.run(&["import", events.to_str().unwrap(), "--lake", lake]);

    // A scheduler and two executors, each given the store's settings (and nothing of
    // any caller's scope).
    let spawn = |args: &[&str], addr: &str| {
        let mut all = vec!["ballista"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--lake", lake]);
        let child = s3
            .command(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        listening(addr);
        Ballista(child)
    };
    let scheduler = format!("127.0.0.1:{}", free_port());
    let mut cluster = vec![spawn(&["scheduler", "--bind", &scheduler], &scheduler)];
    for _ in 0..2 {
        let flight = format!("127.0.0.1:{}", free_port());
        let grpc = free_port().to_string();
        cluster.push(spawn(
            &[
                "executor",
                "--scheduler",
                &scheduler,
                "--bind",
                &flight,
                "--grpc-port",
                &grpc,
            ],
            &flight,
        ));
    }
    let engine = format!("ballista://{scheduler}");

    let embedded = answers(|args| s3.run(args), lake);
    let distributed = answers(
        |args| {
            let mut all = args.to_vec();
            if args[0] != "kpi" || args[1] != "--list" {
                all.extend_from_slice(&["--engine", &engine]);
            }
            s3.run(&all)
        },
        lake,
    );
    assert_eq!(distributed, embedded);
    let (rows, ids) = counts(|args| s3.run(args), lake);
    let (d_rows, d_ids) = counts(
        |args| {
            let mut all = args.to_vec();
            all.extend_from_slice(&["--engine", &engine]);
            s3.run(&all)
        },
        lake,
    );
    assert_eq!((d_rows, d_ids), (rows, ids));
    assert!(ids > 10_000, "{ids}");
    drop(cluster);
}
