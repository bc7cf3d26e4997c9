//! `wenming ingest`: Kafka → the lake, exactly once, until stopped (SIGTERM, Ctrl-C) or,
//! with --exit-at-end, until every assigned partition is drained.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use wenming_ingest::consumer::{self, IngestOptions};
use wenming_ingest::lake::Lake;
use wenming_ingest::metrics::Metrics;

use super::kafka::KafkaArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Topic of events.
    #[arg(long, env = "WENMING_KAFKA__TOPIC", default_value = "wenming.events")]
    topic: String,
    /// Consumer group: run more processes with the same group to share the partitions.
    #[arg(long, env = "WENMING_KAFKA__GROUP", default_value = "wenming-ingest")]
    group: String,
    /// Dead-letter topic. Default: the topic's name + `.dlq`.
    #[arg(long, env = "WENMING_KAFKA__DLQ_TOPIC")]
    dlq_topic: Option<String>,
    #[command(flatten)]
    lake: super::lake::LakeDir,
    /// Stop once every assigned partition has reached its end (batch runs, tests).
    #[arg(long)]
    exit_at_end: bool,
    /// Flush after this many buffered events...
    #[arg(long, default_value_t = 200_000)]
    flush_rows: usize,
    /// ... or this many MiB of buffered source JSON ...
    #[arg(long, default_value_t = 64)]
    flush_mib: usize,
    /// ... or when the oldest buffered event is this many milliseconds old.
    #[arg(long, default_value_t = 3000)]
    flush_ms: u64,
    /// Compact a table's small files in the background after this many commits of small
    /// files (flushes under 64 Ki events) to it (0: never).
    #[arg(long, default_value_t = 50)]
    compact_every: u64,
    /// Event ids remembered for dedup, at least (about 12 bytes each; 1 to 2^30).
    #[arg(long, default_value_t = wenming_ingest::dedup::DEFAULT_WINDOW as u64,
          value_parser = clap::value_parser!(u64).range(1..=wenming_ingest::dedup::MAX_WINDOW as u64))]
    dedup_window: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "WENMING_INGEST__METRICS")]
    metrics: Option<SocketAddr>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut options = IngestOptions::new(&args.kafka.brokers, &args.topic, &args.group);
    if let Some(dlq) = args.dlq_topic {
        options.dlq_topic = dlq;
    }
    options.properties = args.kafka.properties;
    options.partitions = args.kafka.partitions;
    options.exit_at_end = args.exit_at_end;
    options.flush_rows = args.flush_rows.max(1);
    options.flush_bytes = args.flush_mib.max(1) << 20;
    options.flush_latency = Duration::from_millis(args.flush_ms);
    options.compact_every = args.compact_every;
    // Within 1..=MAX_WINDOW (clap checked), so it fits a usize.
    options.dedup_window = args.dedup_window as usize;
    options.metrics_addr = args.metrics;

    let runtime = crate::memory::bounded_runtime().context("cannot start the async runtime")?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        // SIGTERM or Ctrl-C: finish the batch in hand, commit, exit 0.
        let stop = stop.clone();
        runtime.spawn(async move {
            super::terminated().await;
            eprintln!("stopping: committing the batch in hand");
            stop.store(true, Ordering::Relaxed);
        });
    }
    let lake = Lake::new(args.lake.location());
    let metrics = Arc::new(Metrics::default());
    eprintln!(
        "ingesting {} at {} (group {}) into {}; rejected messages to {}",
        options.topic, options.brokers, options.group, args.lake.path, options.dlq_topic
    );
    let summary = consumer::run(&options, &lake, runtime.handle().clone(), stop, metrics)?;
    let c = &summary.counts;
    let secs = summary.elapsed.as_secs_f64();
    println!(
        "read {} = stored {} + duplicates {} + rejected {} + already in the lake {} + re-read later {} ({} commits, {} to the dead-letter topic, {:.1} s, {:.0} msg/s)",
        c.read,
        c.stored,
        c.duplicates,
        c.rejected,
        c.already_stored,
        c.dropped_for_replay + c.pending,
        c.commits,
        c.dlq_sent,
        secs,
        c.read as f64 / secs.max(1e-9)
    );
    if let Some(since) = summary.since_assigned {
        let secs = since.as_secs_f64();
        println!(
            "from the first assignment: {secs:.2} s, {:.0} msg/s",
            c.read as f64 / secs.max(1e-9)
        );
    }
    anyhow::ensure!(c.reconciles(), "counts do not add up: {c:?}");
    Ok(ExitCode::SUCCESS)
}
