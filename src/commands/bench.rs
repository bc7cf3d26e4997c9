//! `wenming bench ingest`: events per second from a broker into committed Delta tables,
//! beside a bare consumer reading the same topic, a consumer that decodes every message
//! and stores nothing (what any ingest must pay), and `import` with no broker at all.
//!
//! Every stage is a real run: a `wenming broker` process (unless --brokers), the
//! producer, a bare librdkafka consumer, the consumer + decode stage, `wenming ingest
//! --exit-at-end` and `wenming import` as child processes (so their peak RSS is their
//! own).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use wenming_ingest::producer::{LineProducer, LineWriter};
use wenming_synth::{Options, Scale};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Broker → lake throughput against a bare consumer, and import throughput.
    Ingest(IngestArgs),
    /// Every KPI at month × district over a year, cold and cached, beside DuckDB.
    Kpi(super::bench_kpi::KpiBenchArgs),
    /// Requests/s and p50/p99 of the KPI endpoint, cached and cold, over real sockets.
    Api(super::bench_api::ApiBenchArgs),
    /// Rows/s of a large result and round trips/s over the Postgres wire, beside
    /// `POST /v1/sql`.
    Postgres(super::bench_postgres::PostgresBenchArgs),
    /// Uncached questions while ingest consumes a live stream: answer time, freshness,
    /// RSS, restart to first answer.
    Live(super::bench_live::LiveBenchArgs),
}

#[derive(clap::Args)]
pub struct IngestArgs {
    /// Events in the benchmark stream (synthetic district events).
    #[arg(long, default_value_t = 500_000)]
    events: u64,
    /// Use this Kafka instead of starting a `wenming broker --memory` process.
    #[arg(long)]
    brokers: Option<String>,
    /// Start the broker on its durable engine (`wenming broker --data`, its default)
    /// instead of in memory: there the broker, not the consumer, sets the pace.
    #[arg(long, conflicts_with = "brokers")]
    durable: bool,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// librdkafka properties for every client (`key=value`, repeatable).
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Also ingest and import into a lake under this object-store prefix (e.g.
    /// `s3://bench/runs`; its settings from `[lake]` / `WENMING_LAKE__*` / `AWS_*`), and
    /// compare with the local disk.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Ingest(args) => ingest(args),
        BenchCommand::Kpi(args) => super::bench_kpi::run(args),
        BenchCommand::Api(args) => super::bench_api::run(args),
        BenchCommand::Postgres(args) => super::bench_postgres::run(args),
        BenchCommand::Live(args) => super::bench_live::run(args),
    }
}

/// Keeps the first `limit` lines written to it and drops the rest.
struct FirstLines<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for FirstLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut end = 0;
        while self.left > 0 && end < buf.len() {
            match buf[end..].iter().position(|b| *b == b'\n') {
                Some(i) => {
                    end += i + 1;
                    self.left -= 1;
                }
                None => end = buf.len(),
            }
        }
        self.inner.write_all(&buf[..end])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the wenming binary")?;
    let dir = tempfile::Builder::new()
        .prefix("wenming-bench-")
        .tempdir()?;
    let file = dir.path().join("events.ndjson");
    eprintln!("generating {} district events ...", args.events);
    {
        let out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let mut options = Options::new(Scale::District, 1);
        options.duplicate_rate = 0.005;
        wenming_synth::generate(
            &options,
            FirstLines {
                inner: out,
                left: args.events,
            },
            |_| {},
        )?;
    }
    let bytes = std::fs::metadata(&file)?.len();
    let lines = BufReader::new(std::fs::File::open(&file)?).lines().count() as u64;

    let mut broker: Option<Child> = None;
    let brokers = match &args.brokers {
        Some(b) => b.clone(),
        None => {
            let data = args.durable.then(|| dir.path().join("broker"));
            let (child, bootstrap) = start_broker(&exe, args.partitions, data.as_deref())?;
            broker = Some(child);
            bootstrap
        }
    };
    let result = measure(&args, &exe, dir.path(), &file, &brokers, lines, bytes);
    if let Some(mut child) = broker {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

fn measure(
    args: &IngestArgs,
    exe: &Path,
    dir: &Path,
    file: &Path,
    brokers: &str,
    lines: u64,
    bytes: u64,
) -> anyhow::Result<ExitCode> {
    let topic = format!("wenming.bench.{}", uuid::Uuid::now_v7().simple());
    let runtime = tokio::runtime::Runtime::new()?;

    eprintln!("producing {lines} messages to {topic} at {brokers} ...");
    let started = Instant::now();
    let mut producer = runtime.block_on(LineProducer::connect(
        brokers,
        &topic,
        args.partitions,
        &args.properties,
    ))?;
    {
        let mut writer = LineWriter::new(&mut producer);
        std::io::copy(&mut BufReader::new(std::fs::File::open(file)?), &mut writer)?;
        writer.flush()?;
    }
    producer.finish()?;
    let produce_secs = started.elapsed().as_secs_f64();

    eprintln!("bare consumer ...");
    let bare = consume_all(
        brokers,
        &topic,
        ".bare",
        |_| {},
        &args.properties,
        lines,
        |_| {},
    )?;
    if bare.messages != lines {
        bail!(
            "the bare consumer read {} messages, not {lines}",
            bare.messages
        );
    }
    let (bare_msgs, bare_secs, bare_last) = (bare.messages, bare.to_end, bare.to_last);

    eprintln!("consumer + decode ...");
    let decoded = consume_and_decode(brokers, &topic, &args.properties, lines)?;

    eprintln!("wenming ingest ...");
    let lake = dir.join("lake");
    let mut cmd = Command::new(exe);
    cmd.args(["ingest", "--brokers", brokers, "--topic", &topic])
        .args(["--group", &format!("{topic}.ingest"), "--exit-at-end"])
        .arg("--lake")
        .arg(&lake);
    for p in &args.properties {
        cmd.args(["-X", p]);
    }
    let (ingest_secs, ingest_out, ingest_rss) = timed(&mut cmd)?;

    eprintln!("wenming import ...");
    let mut cmd = Command::new(exe);
    cmd.arg("import")
        .arg(file)
        .arg("--lake")
        .arg(dir.join("lake-import"));
    let (import_secs, _, import_rss) = timed(&mut cmd)?;

    let rate = |n: u64, s: f64| n as f64 / s.max(1e-9);
    // The bare consumer's rate is taken to its last message. librdkafka reports a
    // partition's end only after a fetch that found nothing new, and the broker holds
    // such a fetch for `fetch.wait.max.ms` (500 ms by default): the clock to the last
    // end of partition counted that wait as reading time, which made the bare consumer
    // look half as fast as it reads (docs/benchmarks.md, session 21).
    let bare = rate(bare_msgs, bare_last);
    let ingest = rate(lines, ingest_secs);
    println!(
        "stream: {lines} events, {:.0} MB ({:.0} B/event), {} partitions",
        bytes as f64 / 1e6,
        bytes as f64 / lines.max(1) as f64,
        args.partitions
    );
    println!(
        "produce (lz4):          {:>9.0} msg/s  ({produce_secs:.1} s)",
        rate(lines, produce_secs)
    );
    println!("bare consumer:          {bare:>9.0} msg/s  ({bare_last:.2} s to its last message)");
    println!(
        "  to every partition's end: {bare_secs:.2} s (an empty fetch per partition, held by the broker)"
    );
    println!(
        "consumer + decode:      {:>9.0} msg/s  ({:.2} s, nothing stored) = {:.2} x bare consumer",
        rate(lines, decoded.secs),
        decoded.secs,
        rate(lines, decoded.secs) / bare
    );
    println!(
        "  decoded: {} events, {} rejected (every message checked against the contract, on every core)",
        decoded.events, decoded.rejected
    );
    println!(
        "wenming ingest:         {ingest:>9.0} events/s into committed tables ({ingest_secs:.1} s, peak RSS {ingest_rss:.0} MiB) = {:.2} x bare consumer",
        ingest / bare
    );
    // Like for like: the bare consumer's clock runs from its assignment to its last
    // message, so ingest's is taken from its first assignment to its last commit
    // (without the process start, the lake's tables, joining and leaving the group).
    // Ingest's still holds one wait for the ends of partitions, `--exit-at-end` needs
    // them; its `fetch.wait.max.ms` is 100 ms.
    let since_assigned = ingest_out.lines().find_map(|l| {
        l.strip_prefix("from the first assignment: ")?
            .split_once(" s")?
            .0
            .parse::<f64>()
            .ok()
    });
    if let Some(secs) = since_assigned {
        let steady = rate(lines, secs);
        println!(
            "  from its assignment:  {steady:>9.0} events/s ({secs:.2} s) = {:.2} x bare consumer, like for like",
            steady / bare
        );
    }
    println!(
        "wenming import:         {:>9.0} events/s, no broker ({import_secs:.1} s, peak RSS {import_rss:.0} MiB)",
        rate(lines, import_secs)
    );
    if let Some(summary) = ingest_out.lines().find(|l| l.starts_with("read ")) {
        println!("ingest said: {summary}");
    }
    if let Some(store) = &args.store {
        // The same stream again, into a lake of its own on the store.
        let run = format!(
            "{}/bench-{}",
            store.trim_end_matches('/'),
            uuid::Uuid::now_v7().simple()
        );
        eprintln!("wenming ingest into {run}/lake ...");
        let mut cmd = Command::new(exe);
        cmd.args(["ingest", "--brokers", brokers, "--topic", &topic])
            .args(["--group", &format!("{topic}.store"), "--exit-at-end"])
            .args(["--lake", &format!("{run}/lake")]);
        for p in &args.properties {
            cmd.args(["-X", p]);
        }
        let (store_ingest_secs, _, _) = timed(&mut cmd)?;
        eprintln!("wenming import into {run}/lake-import ...");
        let mut cmd = Command::new(exe);
        cmd.arg("import")
            .arg(file)
            .args(["--lake", &format!("{run}/lake-import")]);
        let (store_import_secs, _, _) = timed(&mut cmd)?;
        println!(
            "ingest into {store}:  {:>9.0} events/s ({store_ingest_secs:.1} s) = {:.2} x local disk",
            rate(lines, store_ingest_secs),
            ingest_secs / store_ingest_secs
        );
        println!(
            "import into {store}:  {:>9.0} events/s ({store_import_secs:.1} s) = {:.2} x local disk",
            rate(lines, store_import_secs),
            import_secs / store_import_secs
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts `wenming broker` on a free port, in memory or durable in `data`; returns it
/// and its address.
pub(crate) fn start_broker(
    exe: &Path,
    partitions: i32,
    data: Option<&Path>,
) -> anyhow::Result<(Child, String)> {
    let mut cmd = Command::new(exe);
    cmd.args(["broker", "--listen", "127.0.0.1:0"])
        .args(["--partitions", &partitions.to_string()]);
    match data {
        Some(dir) => cmd.arg("--data").arg(dir),
        None => cmd.arg("--memory"),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start wenming broker")?;
    let stdout = child.stdout.take().context("broker stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let bootstrap = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(addr) = line.strip_prefix("bootstrap: ") {
                    break addr.trim().to_owned();
                }
            }
            _ => bail!("wenming broker exited before printing its address"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, bootstrap))
}

/// What a consumer that read a topic to its end saw.
struct Consumed {
    messages: u64,
    /// When the consumer was assigned the partitions.
    started: Instant,
    /// Seconds to the end of every partition.
    to_end: f64,
    /// Seconds to the `expected`-th message.
    to_last: f64,
}

/// Reads every partition from the beginning to its end, handing each payload to
/// `each` and nothing more. With librdkafka's defaults and an `each` that does nothing,
/// it is the bare consumer: the ceiling any consumer of this broker can reach.
/// `configure` sets properties before `properties` (which win).
fn consume_all(
    brokers: &str,
    topic: &str,
    group_suffix: &str,
    configure: impl FnOnce(&mut ClientConfig),
    properties: &[String],
    expected: u64,
    mut each: impl FnMut(&[u8]),
) -> anyhow::Result<Consumed> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}{group_suffix}"))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false");
    configure(&mut config);
    wenming_ingest::topics::apply_properties(&mut config, properties)?;
    let consumer: BaseConsumer<Quiet> = config.create_with_context(Quiet)?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    let started = Instant::now();
    consumer.assign(&tpl)?;
    let mut at_end = std::collections::BTreeSet::new();
    let mut count = 0u64;
    let mut last = 0.0;
    while at_end.len() < partitions {
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Ok(m)) => {
                count += 1;
                each(std::hint::black_box(m.payload().unwrap_or_default()));
                if count == expected {
                    last = started.elapsed().as_secs_f64();
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => bail!("consumer: {e}"),
        }
    }
    Ok(Consumed {
        messages: count,
        started,
        to_end: started.elapsed().as_secs_f64(),
        to_last: last,
    })
}

/// What the consumer + decode stage measured.
struct Decoded {
    events: u64,
    rejected: u64,
    /// Seconds from the assignment until the last message was decoded.
    secs: f64,
}

/// The bare consumer, with every message decoded by the contract's decoder as ingest
/// decodes them: in runs of 2048, on every core, while the next run is read. Nothing is
/// deduplicated or stored. It is the least any ingest that checks every event does,
/// so no ingest of this broker can be faster than this stage.
fn consume_and_decode(
    brokers: &str,
    topic: &str,
    properties: &[String],
    expected: u64,
) -> anyhow::Result<Decoded> {
    use rayon::prelude::*;
    const RUN: usize = 2048;
    /// Messages copied back to back, as ingest copies them out of librdkafka.
    #[derive(Default)]
    struct Run {
        data: Vec<u8>,
        ends: Vec<usize>,
    }
    // Three runs decoding while the next fills, as in ingest.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Run>(3);
    let decoder = std::thread::spawn(move || {
        let (mut events, mut rejected) = (0u64, 0u64);
        let mut finished = Instant::now();
        for run in rx {
            let starts = std::iter::once(0).chain(run.ends.iter().copied());
            let spans: Vec<(usize, usize)> = starts.zip(run.ends.iter().copied()).collect();
            let ok = spans
                .par_iter()
                .with_min_len(128)
                .filter(|(start, end)| wenming_schemas::decode(&run.data[*start..*end]).is_ok())
                .count() as u64;
            events += ok;
            rejected += spans.len() as u64 - ok;
            finished = Instant::now();
        }
        (events, rejected, finished)
    });
    let mut run = Run::default();
    let mut sent = Ok(());
    let mut read = 0u64;
    // Fetching as ingest fetches: with librdkafka's defaults, a consumer slower than
    // the broker fills its prefetch queue and then stops fetching for a second
    // (`fetch.queue.backoff.ms`), which idled this stage a third of the time.
    let settings = wenming_ingest::consumer::fetch_settings;
    let consumed = consume_all(
        brokers,
        topic,
        ".decode",
        settings,
        properties,
        expected,
        |payload| {
            run.data.extend_from_slice(payload);
            run.ends.push(run.data.len());
            read += 1;
            // The last run goes at the last message, not after the ends of partitions.
            if (run.ends.len() == RUN || read == expected) && sent.is_ok() {
                sent = tx.send(std::mem::take(&mut run));
            }
        },
    );
    if !run.ends.is_empty() && sent.is_ok() {
        sent = tx.send(run);
    }
    drop(tx);
    let (events, rejected, finished) = decoder
        .join()
        .map_err(|_| anyhow::anyhow!("the decoding thread panicked"))?;
    let consumed = consumed?;
    sent.context("the decoding thread stopped early")?;
    if consumed.messages != expected {
        bail!(
            "the consumer + decode stage read {} messages, not {expected}",
            consumed.messages
        );
    }
    if events + rejected != expected {
        bail!(
            "the consumer + decode stage decoded {events} events and rejected {rejected} of {expected} messages"
        );
    }
    // Decoding ends after the last message was read; the end-of-partition wait that
    // follows it is not counted, as for the bare consumer.
    let secs = finished
        .duration_since(consumed.started)
        .as_secs_f64()
        .max(consumed.to_last);
    Ok(Decoded {
        events,
        rejected,
        secs,
    })
}

/// librdkafka reports partition EOF as a "global error" too; here it is expected.
struct Quiet;

impl rdkafka::ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(
            error,
            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

/// Runs a child to completion; its wall time, standard output and peak RSS (MiB).
/// The peak is the child's own, from `wait4`: `RUSAGE_CHILDREN` is the largest of
/// every child waited for, so import's figure was ingest's whenever ingest's was higher.
fn timed(cmd: &mut Command) -> anyhow::Result<(f64, String, f64)> {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let started = Instant::now();
    let mut child = cmd
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: both out-pointers are valid for the call; the child is ours and not yet
    // waited for (std's `Child` is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        bail!(
            "cannot wait for {cmd:?}: {}",
            std::io::Error::last_os_error()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() {
        bail!("{cmd:?} failed ({status}): {stdout}");
    }
    Ok((secs, stdout, usage.ru_maxrss as f64 / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each stage's peak RSS is its own: a small child run after a large one reports
    /// its own few MiB, not the large one's.
    #[test]
    fn each_child_reports_its_own_peak_rss() {
        let mut large = Command::new("dd");
        large.args([
            "if=/dev/zero",
            "of=/dev/null",
            "bs=64M",
            "count=1",
            "status=none",
        ]);
        let (_, _, large_rss) = timed(&mut large).unwrap();
        assert!(large_rss >= 64.0, "dd held a 64 MiB block: {large_rss} MiB");
        let (_, out, small_rss) = timed(Command::new("echo").arg("done")).unwrap();
        assert_eq!(out, "done\n");
        assert!(small_rss < 32.0, "echo: {small_rss} MiB");
        let failed = timed(&mut Command::new("false")).unwrap_err();
        assert!(failed.to_string().contains("failed"), "{failed}");
    }
}
