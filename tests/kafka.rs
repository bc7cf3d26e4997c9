//! Kafka end to end, with real processes and sockets: `wenming broker` (or the Kafka
//! `KAFKA_BROKERS` names), `wenming produce`, `wenming ingest`, real Delta tables.
//!
//! Set `WENMING_HEAVY=1` for the long versions (bigger streams, more kills).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

mod common;
use common::{Broker, lake_counts, ok, unique_topic, wenming};

fn heavy() -> bool {
    std::env::var("WENMING_HEAVY").is_ok_and(|v| v == "1")
}

/// What a file should become: distinct valid events, and (payload, reason) of every
/// rejected line.
struct Expected {
    distinct: u64,
    rejected: Vec<(String, String)>,
}

fn expected(file: &Path) -> Expected {
    let f = file.to_str().unwrap();
    let report: Value =
        serde_json::from_slice(&wenming(&["validate", f, "--format", "json"]).stdout).unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    let mut rejected: Vec<(String, String)> = report["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let line = r["line"].as_u64().unwrap() as usize;
            let raw = lines[line - 1].trim_end_matches('\r').to_owned();
            (raw, r["reason"].as_str().unwrap().to_owned())
        })
        .collect();
    rejected.sort();
    Expected {
        distinct: report["valid"].as_u64().unwrap() - report["duplicates"].as_u64().unwrap(),
        rejected,
    }
}

fn generate(file: &Path, seed: &str, invalid_rate: &str) {
    let mut args = vec![
        "generate",
        "--seed",
        seed,
        "--invalid-rate",
        invalid_rate,
        "--duplicate-rate",
        "0.02",
        "--out",
        file.to_str().unwrap(),
    ];
    if !heavy() {
        // Three weeks of the tiny network: a few thousand events.
        args.extend(["--from", "2024-01-01", "--to", "2024-01-21"]);
    }
    ok(&wenming(&args));
}

/// A broker, a generated stream on a topic of its own, and where its lake goes.
struct Setup {
    broker: Broker,
    dir: tempfile::TempDir,
    file: std::path::PathBuf,
    lake: std::path::PathBuf,
    expected: Expected,
    topic: String,
}

impl Setup {
    /// Generates (seed, share of broken lines) without producing it.
    fn new(name: &str, seed: &str, invalid_rate: &str) -> Setup {
        let broker = Broker::start();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.ndjson");
        let lake = dir.path().join("lake");
        generate(&file, seed, invalid_rate);
        let expected = expected(&file);
        let topic = unique_topic(name);
        Setup {
            broker,
            dir,
            file,
            lake,
            expected,
            topic,
        }
    }

    /// [`Setup::new`], then `wenming produce` of the stream.
    fn produced(name: &str, seed: &str, invalid_rate: &str) -> Setup {
        let setup = Setup::new(name, seed, invalid_rate);
        produce(&setup.broker, &setup.topic, &setup.file);
        setup
    }
}

fn produce(broker: &Broker, topic: &str, file: &Path) {
    ok(&wenming(&[
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

fn ingest_command(broker: &Broker, topic: &str, lake: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wenming"));
    cmd.args([
        "ingest",
        "--brokers",
        &broker.bootstrap,
        "--topic",
        topic,
        "--group",
        &format!("{topic}.group"),
        "--lake",
        lake.to_str().unwrap(),
        "--partitions",
        "3",
        // Quick rebalances when a member dies, in tests.
        "-X",
        "session.timeout.ms=6000",
        "-X",
        "heartbeat.interval.ms=500",
    ]);
    cmd.args(extra);
    cmd
}

/// A consumer that reads where it is assigned, reports partition ends and commits
/// nothing.
fn reader(broker: &Broker, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", group)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Every message of a topic, read from the start to the end of every partition:
/// (payload, headers).
fn read_topic(broker: &Broker, topic: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let consumer = reader(broker, &format!("{topic}.reader"));
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len();
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut at_end = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} timed out"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for header in h.iter() {
                        headers.insert(
                            header.key.to_owned(),
                            String::from_utf8_lossy(header.value.unwrap_or(b"")).into_owned(),
                        );
                    }
                }
                let payload = String::from_utf8_lossy(m.payload().unwrap_or(b"")).into_owned();
                out.push((payload, headers));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
    out
}

/// The dead-letter topic holds every rejected line exactly once, with its reason, a
/// sentence and where it came from.
fn assert_dead_letters(broker: &Broker, topic: &str, expected: &Expected) {
    assert_eq!(dead_letters(broker, topic, false), expected.rejected);
}

/// Every rejected line is on the dead-letter topic, counting messages with the same
/// `wenming.source` once: after a SIGKILL between the dead-letter acknowledgement and
/// the lake commit, a rejection is sent again (at least once, idempotent by source).
fn assert_dead_letters_by_source(broker: &Broker, topic: &str, expected: &Expected) {
    assert_eq!(dead_letters(broker, topic, true), expected.rejected);
}

/// (payload, reason) of every dead letter, sorted; `by_source`: one per source.
fn dead_letters(broker: &Broker, topic: &str, by_source: bool) -> Vec<(String, String)> {
    let dlq = read_topic(broker, &format!("{topic}.dlq"));
    let mut seen = std::collections::BTreeMap::new();
    let mut got = Vec::new();
    for (payload, headers) in &dlq {
        let source = &headers["wenming.source"];
        assert!(
            source.starts_with(&format!("{topic}/")) && source.split('/').count() == 3,
            "wenming.source is topic/partition/offset: {source}"
        );
        assert!(!headers["wenming.message"].is_empty());
        let letter = (payload.clone(), headers["wenming.reason"].clone());
        if by_source && let Some(before) = seen.insert(source.clone(), letter.clone()) {
            assert_eq!(before, letter, "two different dead letters from {source}");
            continue;
        }
        got.push(letter);
    }
    got.sort();
    got
}

/// Runs ingest with --exit-at-end.
fn run_to_end(broker: &Broker, topic: &str, lake: &Path, extra: &[&str]) -> String {
    let child = ingest_command(broker, topic, lake, extra)
        .arg("--exit-at-end")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child)
}

/// Waits for a process with piped output, failing (rather than hanging) after two
/// minutes; returns its standard output.
fn finish(mut child: Child) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "ingest did not finish in 2 minutes:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&child.wait_with_output().unwrap())
}

/// How long a dead member keeps its place in the group (the tests' session timeout).
const SESSION: Duration = Duration::from_secs(6);

/// `read N = stored a + duplicates b + rejected c + already in the lake d + re-read later e`
fn counts(summary: &str) -> BTreeMap<String, u64> {
    let line = summary
        .lines()
        .find(|l| l.starts_with("read "))
        .unwrap_or_else(|| panic!("no summary line in {summary}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = BTreeMap::new();
    let num = |i: usize| words[i].trim_end_matches(',').parse::<u64>().unwrap();
    out.insert("read".into(), num(1));
    out.insert("stored".into(), num(4));
    out.insert("duplicates".into(), num(7));
    out.insert("rejected".into(), num(10));
    out
}

#[tokio::test]
async fn a_stream_with_resends_and_defects_lands_once_with_every_rejection_dead_lettered() {
    let Setup {
        broker,
        dir,
        file,
        lake,
        expected,
        topic,
    } = Setup::produced("e2e", "31", "0.03");
    assert!(expected.rejected.len() > 20 && expected.distinct > 1000);

    let summary = run_to_end(&broker, &topic, &lake, &[]);
    let c = counts(&summary);
    let lines = std::fs::read_to_string(&file).unwrap().lines().count() as u64;
    assert_eq!(c["read"], lines, "{summary}");
    assert_eq!(c["stored"], expected.distinct, "{summary}");
    assert_eq!(c["rejected"], expected.rejected.len() as u64, "{summary}");
    assert_eq!(c["read"], c["stored"] + c["duplicates"] + c["rejected"]);
    // The time without start-up, which `wenming bench ingest` compares like for like.
    let since: f64 = summary
        .lines()
        .find_map(|l| l.strip_prefix("from the first assignment: "))
        .and_then(|rest| rest.split_once(" s")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no time from the first assignment: {summary}"));
    assert!(since > 0.0 && since < 120.0, "{summary}");
    assert_eq!(
        lake_counts(&lake).await,
        (expected.distinct, expected.distinct)
    );
    assert_dead_letters(&broker, &topic, &expected);

    // `lake info` shows the committed offset of every partition, ending at the last.
    let info = ok(&wenming(&[
        "lake",
        "info",
        "--lake",
        lake.to_str().unwrap(),
    ]));
    for p in 0..3 {
        assert!(info.contains(&format!("kafka:{topic}:{p}")), "{info}");
    }

    // A second run (same group or not) finds everything in the lake: nothing new,
    // nothing dead-lettered twice.
    let again = run_to_end(&broker, &topic, &lake, &[]);
    assert_eq!(counts(&again)["stored"], 0, "{again}");
    assert_eq!(
        lake_counts(&lake).await,
        (expected.distinct, expected.distinct)
    );
    assert_dead_letters(&broker, &topic, &expected);

    // Events imported from a file and the same events over Kafka are one set: the
    // dedup window is seeded from the lake.
    let lake2 = dir.path().join("lake2");
    ok(&wenming(&[
        "import",
        file.to_str().unwrap(),
        "--lake",
        lake2.to_str().unwrap(),
    ]));
    let topic2 = unique_topic("cross");
    produce(&broker, &topic2, &file);
    let summary = run_to_end(&broker, &topic2, &lake2, &[]);
    assert_eq!(counts(&summary)["stored"], 0, "{summary}");
    assert_eq!(
        lake_counts(&lake2).await,
        (expected.distinct, expected.distinct)
    );
}

fn spawn_ingest(broker: &Broker, topic: &str, lake: &Path, extra: &[&str]) -> Child {
    ingest_command(broker, topic, lake, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILL at random moments, restart, again: every valid event is in the lake once.
#[tokio::test]
async fn ingest_killed_again_and_again_loses_and_doubles_nothing() {
    let Setup {
        broker,
        dir: _dir,
        file: _,
        lake,
        expected,
        topic,
    } = Setup::produced("crash", "32", "0.01");

    // Small, frequent commits so that kills land between and inside them.
    let small = ["--flush-rows", "300", "--flush-ms", "100"];
    let rounds = if heavy() { 12 } else { 4 };
    let mut seed = 0x9e37_79b9_u64;
    for _ in 0..rounds {
        let mut child = spawn_ingest(&broker, &topic, &lake, &small);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(1500 + seed % 2500));
        child.kill().unwrap(); // SIGKILL: no chance to finish the batch in hand
        child.wait().unwrap();
        // Let the dead member's session expire: the embedded broker (tansu 0.6) does
        // not hand a dead leader's group to a newcomer before that.
        std::thread::sleep(SESSION + Duration::from_secs(1));
    }
    let mid = lake_counts(&lake).await;
    assert!(
        mid.0 > 0,
        "no commit before the kills: the test proved nothing"
    );
    assert_eq!(mid.0, mid.1, "doubled rows after kills");

    let summary = run_to_end(&broker, &topic, &lake, &small);
    assert_eq!(
        lake_counts(&lake).await,
        (expected.distinct, expected.distinct),
        "{summary}"
    );
    assert_dead_letters_by_source(&broker, &topic, &expected);
}

/// Two ingest processes in one group, one killed mid-stream: the other takes its
/// partitions over from the lake's positions.
#[tokio::test]
async fn a_group_member_killed_mid_stream_loses_and_doubles_nothing() {
    let Setup {
        broker,
        dir,
        file: _,
        lake,
        expected,
        topic,
    } = Setup::produced("rebalance", "33", "0.01");

    // Slow, small commits so the stream outlasts the kill.
    let small = ["--flush-rows", "200", "--flush-ms", "100"];
    // The survivor joins first: the embedded broker cannot replace a dead group leader
    // (a tansu 0.6 limitation; a real Kafka can), so the member killed is the second.
    let survivor_log = dir.path().join("survivor.log");
    // The survivor also compacts in the background, every 5 commits to a table, while
    // it appends: the counts below show that loses and doubles nothing.
    let survivor = ingest_command(&broker, &topic, &lake, &small)
        .args(["--exit-at-end", "--compact-every", "5"])
        .env("RUST_LOG", "wenming_ingest=info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&survivor_log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let victim_log = dir.path().join("victim.log");
    let mut victim = ingest_command(&broker, &topic, &lake, &small)
        .env("RUST_LOG", "wenming_ingest=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&victim_log).unwrap())
        .spawn()
        .unwrap();
    // Wait until the victim holds partitions and has read from them, then kill it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(&victim_log).unwrap_or_default();
        if log.contains("assigned") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second member never got partitions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    victim.kill().unwrap();
    victim.wait().unwrap();
    let summary = finish(survivor);
    let log = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        lake_counts(&lake).await,
        (expected.distinct, expected.distinct),
        "{summary}\nsurvivor:\n{}\nvictim:\n{}",
        log(&survivor_log),
        log(&victim_log)
    );
    assert_dead_letters_by_source(&broker, &topic, &expected);
    let compacted = std::fs::read_dir(&lake).unwrap().flatten().any(|table| {
        std::fs::read_dir(table.path().join("_delta_log"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                std::fs::read_to_string(entry.path())
                    .is_ok_and(|text| text.contains("\"operation\":\"OPTIMIZE\""))
            })
    });
    assert!(compacted, "no background compaction ran");
}

/// SIGTERM: the batch in hand is committed and ingest exits 0 with counts that add
/// up; the metrics endpoint serves the same counters.
#[tokio::test]
async fn sigterm_commits_the_batch_in_hand_and_metrics_reconcile() {
    let Setup {
        broker,
        dir: _dir,
        file,
        lake,
        expected,
        topic,
    } = Setup::produced("sigterm", "34", "0.02");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let metrics_addr = format!("127.0.0.1:{port}");
    // A latency far beyond the test: only SIGTERM can make it commit.
    let child = ingest_command(
        &broker,
        &topic,
        &lake,
        &[
            "--flush-ms",
            "600000",
            "--flush-rows",
            "100000000",
            "--metrics",
            &metrics_addr,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Wait until everything is read (the metrics say so), then SIGTERM.
    let lines = std::fs::read_to_string(&file).unwrap().lines().count() as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let metrics = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "ingest never read it all"
        );
        std::thread::sleep(Duration::from_millis(300));
        let Ok(body) = http_get(&metrics_addr).await else {
            continue;
        };
        if metric(&body, "wenming_ingest_read_total") == Some(lines) {
            break body;
        }
    };
    assert_eq!(
        metric(&metrics, "wenming_ingest_stored_total"),
        Some(0),
        "{metrics}"
    );
    let pending = metric(&metrics, "wenming_ingest_pending").unwrap();
    let dups = metric(&metrics, "wenming_ingest_duplicates_total").unwrap();
    let rejected = metric(&metrics, "wenming_ingest_rejected_total").unwrap();
    assert_eq!(lines, pending + dups + rejected, "{metrics}");
    assert_eq!(pending, expected.distinct);
    for name in [
        "# TYPE wenming_ingest_commit_seconds histogram",
        "wenming_ingest_commit_seconds_count 0",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let summary = ok(&out);
    assert_eq!(counts(&summary)["stored"], expected.distinct, "{summary}");
    assert_eq!(
        lake_counts(&lake).await,
        (expected.distinct, expected.distinct)
    );
}

async fn http_get(addr: &str) -> Result<String, reqwest::Error> {
    reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await
}

fn metric(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// A producer that shares no code with librdkafka (kafka-python) feeds the broker,
/// uncompressed and with each of its codecs (gzip, lz4, zstd, snappy: record batches
/// librdkafka did not write); the lake and the dead-letter topic come out the same.
/// Needs `pip install kafka-python lz4 zstandard python-snappy`; CI sets
/// WENMING_TEST_PYTHON=1 so that a missing module fails there.
#[tokio::test]
async fn events_produced_by_kafka_python_land_exactly_once() {
    let python = |modules: &str| {
        Command::new("python3")
            .args(["-c", &format!("import {modules}")])
            .status()
            .is_ok_and(|s| s.success())
    };
    let required = std::env::var("WENMING_TEST_PYTHON").is_ok();
    if !python("kafka") {
        assert!(
            !required,
            "WENMING_TEST_PYTHON is set but kafka-python is not installed"
        );
        eprintln!("skipped: python3 with kafka-python not found (pip install kafka-python)");
        return;
    }
    let Setup {
        broker,
        dir,
        file,
        lake: _,
        expected,
        topic,
    } = Setup::new("python", "35", "0.03");
    let codecs = [
        ("none", "kafka"),
        ("gzip", "kafka"),
        ("lz4", "lz4"),
        ("zstd", "zstandard"),
        ("snappy", "snappy"),
    ];
    for (codec, module) in codecs {
        if !python(module) {
            assert!(
                !required,
                "WENMING_TEST_PYTHON is set but {module} is not installed"
            );
            eprintln!("{codec} skipped: the Python module {module} is not installed");
            continue;
        }
        let topic = format!("{topic}.{codec}");
        let lake = dir.path().join(format!("lake-{codec}"));
        // The topic exists before kafka-python writes (the broker creates none on demand).
        ok(&wenming(&[
            "produce",
            "/dev/null",
            "--brokers",
            &broker.bootstrap,
            "--topic",
            &topic,
            "--partitions",
            "3",
        ]));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/produce.py");
        let out = Command::new("python3")
            .args([
                script,
                &broker.bootstrap,
                &topic,
                file.to_str().unwrap(),
                codec,
            ])
            .output()
            .unwrap();
        ok(&out);
        let summary = run_to_end(&broker, &topic, &lake, &[]);
        assert_eq!(
            lake_counts(&lake).await,
            (expected.distinct, expected.distinct),
            "{codec}: {summary}"
        );
        assert_dead_letters(&broker, &topic, &expected);

        // And Python's own Delta reader (deltalake / polars), when present, agrees.
        let check = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lake_counts.py");
        let out = Command::new("python3")
            .args([check, lake.to_str().unwrap()])
            .output()
            .unwrap();
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                text.trim(),
                format!("{} {}", expected.distinct, expected.distinct),
                "{codec}"
            );
        } else {
            assert!(
                !required,
                "python lake check failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A consumer that starts in the middle of a record batch reads the rest of that batch.
/// Exactly-once ingest resumes from the lake's offsets, which fall mid-batch after most
/// commits; tansu 0.6.0's in-memory engine answered with the *next* batch and silently
/// skipped the rest (wenming carries a patched tansu-storage for it).
#[tokio::test]
async fn a_consumer_resuming_mid_batch_reads_the_rest_of_the_batch() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let broker = Broker::start();
    let topic = unique_topic("midbatch");
    wenming_ingest::topics::ensure(&broker.bootstrap, std::slice::from_ref(&topic), 1)
        .await
        .unwrap();
    // Twenty messages sent together with a generous linger go out as one batch.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("linger.ms", "200")
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    // `send_result` enqueues at once (`send` would wait for each delivery in turn).
    let payloads: Vec<String> = (0..20).map(|i| format!("message {i}")).collect();
    let deliveries: Vec<_> = payloads
        .iter()
        .map(|payload| {
            producer
                .send_result(
                    FutureRecord::to(&topic)
                        .partition(0)
                        .key("k")
                        .payload(payload),
                )
                .map_err(|(e, _)| e)
                .expect("enqueued")
        })
        .collect();
    let mut offsets = Vec::new();
    for delivery in deliveries {
        let delivered = delivery.await.expect("delivered").expect("acknowledged");
        offsets.push(delivered.offset);
    }
    assert_eq!(offsets, (0..20).collect::<Vec<i64>>());

    for start in [1_i64, 7, 19] {
        let consumer = reader(&broker, &format!("{topic}.{start}"));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(start))
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut read = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "reading from {start} timed out"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(m)) => read.push((
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
                )),
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => panic!("reading from {start}: {e}"),
            }
        }
        let want: Vec<(i64, String)> = (start..20).map(|i| (i, format!("message {i}"))).collect();
        assert_eq!(read, want, "reading from offset {start}");
    }
}

/// The default broker is durable: messages it acknowledged are there after it is
/// killed and started again on the same data directory.
#[tokio::test]
async fn the_durable_broker_keeps_acknowledged_messages_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("broker");
    let data_arg = data.to_str().unwrap();
    let file = dir.path().join("events.ndjson");
    generate(&file, "21", "0.0");
    let lines = std::fs::read_to_string(&file).unwrap().lines().count();
    let topic = unique_topic("durable");

    let broker = Broker::spawn(&["--data", data_arg]);
    produce(&broker, &topic, &file);
    let before = read_topic(&broker, &topic);
    assert_eq!(before.len(), lines);
    drop(broker); // SIGKILL: nothing is flushed on the way out

    let broker = Broker::spawn(&["--data", data_arg]);
    let after = read_topic(&broker, &topic);
    let payloads = |messages: &[(String, BTreeMap<String, String>)]| {
        let mut p: Vec<String> = messages.iter().map(|(p, _)| p.clone()).collect();
        p.sort();
        p
    };
    assert_eq!(payloads(&after), payloads(&before));
}

/// `wenming bench ingest` end to end on a small stream, with its broker in memory and on
/// the durable engine: every stage runs, the bare consumer reads every message, and the
/// figures it prints add up (read = stored + duplicates, every event in the lake).
#[test]
fn the_ingest_benchmark_runs_every_stage_on_both_broker_engines() {
    for engine in [&[][..], &["--durable"][..]] {
        let mut args = vec!["bench", "ingest", "--events", "3000"];
        args.extend_from_slice(engine);
        let out = ok(&wenming(&args));
        let line = |prefix: &str| {
            out.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
                .to_owned()
        };
        assert!(line("stream: ").starts_with("stream: 3000 events"), "{out}");
        // The bare consumer's clock stops at its last message; the time to every
        // partition's end, which holds the broker's empty fetches, is printed apart.
        assert!(
            line("bare consumer: ").contains("to its last message"),
            "{out}"
        );
        assert!(line("  to every partition's end: ").ends_with("held by the broker)"));
        // The consumer + decode stage reads the same stream and decodes every message.
        assert!(
            line("consumer + decode: ").contains("nothing stored) = "),
            "{out}"
        );
        assert_eq!(
            line("  decoded: ")
                .split_whitespace()
                .take(5)
                .collect::<Vec<_>>(),
            ["decoded:", "3000", "events,", "0", "rejected"],
            "{out}"
        );
        assert!(
            line("wenming ingest: ").contains("x bare consumer"),
            "{out}"
        );
        assert!(
            line("  from its assignment: ").contains("like for like"),
            "{out}"
        );
        assert!(line("wenming import: ").contains("no broker"), "{out}");
        let said = counts(line("ingest said: ").trim_start_matches("ingest said: "));
        assert_eq!(said["read"], 3000, "{out}");
        assert_eq!(said["stored"] + said["duplicates"], 3000, "{out}");
        assert!(said["duplicates"] > 0, "the stream has re-sends: {out}");
        assert_eq!(said["rejected"], 0, "{out}");
    }
}
