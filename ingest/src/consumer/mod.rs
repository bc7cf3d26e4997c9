//! `wenming ingest`: a Kafka consumer-group member that writes the lake exactly once.
//!
//! The main loop, in order:
//! 1. poll a message; decode it with the contract;
//! 2. rejected → dead-letter topic; a table already past this offset → skip (a replay);
//!    an id in the dedup window → count as duplicate; else buffer it for its table;
//! 3. when the buffer is full (rows or bytes) or old (latency), flush: wait for the
//!    dead-letter topic to acknowledge, then commit each touched table with one `txn`
//!    per partition recording the last offset the flush covers; then tell Kafka the
//!    offsets too, for lag monitoring only. The commits run in the background while
//!    the next buffer fills; a flush waits for the one before (at most one in flight,
//!    so at most two buffers in memory), and exit and hand-over wait for their own.
//!
//! Where to start is read from the lake on every assignment: for each partition, the
//! smallest position over all tables (each table knows how far it holds *its* events
//! of the partition). Tables a stretch of the stream had no events for are moved
//! forward with data-less commits, so that smallest position stays recent.
//!
//! A writer that lost its partitions without noticing (a zombie) finds the lake's
//! positions moved when it commits and is refused; it then drops its buffer and
//! re-reads from the lake. Nothing is lost (the lake is the truth, the stream is
//! replayable) and nothing is doubled (every commit checks the positions it extends).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext};
use tokio::runtime::Handle;
use wenming_schemas::Family;

use crate::batch::{FamilyBatch, Provenance};
use crate::dedup::{DEFAULT_WINDOW, RecentIds, Seen};
use crate::dlq::{Dlq, DlqError};
use crate::fetched::{Batch, FetchQueue, Fetched};
use crate::lake::{Lake, LakeError, Position};
use crate::metrics::{Metrics, Snapshot};
use crate::topics::{self, TopicError};

mod flush;
mod partition;
mod pipeline;
mod polled;
mod rebalance;
#[cfg(test)]
mod tests;

use flush::InFlight;
use partition::{OwnVersions, Partition};
use pipeline::Pipeline;
use polled::{Decoded, Decoding, Polled, Spares};
use rebalance::IngestContext;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("Kafka consumer: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Dlq(#[from] DlqError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("cannot build a batch for {table}: {source}")]
    Batch {
        table: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("a commit task failed: {0}")]
    Task(String),
    #[error("cannot read the positions of partitions {partitions:?} from the lake: {source}")]
    Positions {
        partitions: Vec<i32>,
        #[source]
        source: Box<LakeError>,
    },
    #[error("librdkafka could not make a queue for the fetched messages")]
    FetchQueue,
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Everything `wenming ingest` is told.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub dlq_topic: String,
    /// librdkafka properties `key=value`, applied over wenming's defaults.
    pub properties: Vec<String>,
    /// Partitions of the topics when ingest has to create them.
    pub partitions: i32,
    /// Flush when this many events are buffered...
    pub flush_rows: usize,
    /// ... or their source JSON reaches this many bytes ...
    pub flush_bytes: usize,
    /// ... or the oldest buffered message is this old.
    pub flush_latency: Duration,
    /// Move a table without new events forward at most this often.
    pub idle_advance: Duration,
    /// Compact small files in the background after this many commits of small files
    /// (flushes of fewer than [`SMALL_FLUSH_ROWS`] events) to a table.
    pub compact_every: u64,
    /// Stop once every assigned partition has reached its end.
    pub exit_at_end: bool,
    pub dedup_window: usize,
    pub metrics_addr: Option<SocketAddr>,
}

impl IngestOptions {
    pub fn new(brokers: &str, topic: &str, group: &str) -> Self {
        IngestOptions {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            dlq_topic: format!("{topic}.dlq"),
            properties: Vec::new(),
            partitions: 6,
            flush_rows: 200_000,
            flush_bytes: 64 << 20,
            flush_latency: Duration::from_secs(3),
            idle_advance: Duration::from_secs(30),
            compact_every: 50,
            exit_at_end: false,
            dedup_window: DEFAULT_WINDOW,
            metrics_addr: None,
        }
    }
}

/// How an ingest run ended.
#[derive(Debug, Clone)]
pub struct IngestSummary {
    pub counts: Snapshot,
    pub elapsed: Duration,
    /// From the first assignment to the last commit: the run without starting up,
    /// joining and leaving the group (what a benchmark compares with a consumer that
    /// only reads, from its assignment to the end of its partitions).
    pub since_assigned: Option<Duration>,
}

/// How ingest's consumer fetches: bounded prefetch, fetched again as soon as it drains.
/// Public so that `wenming bench ingest` can read the way ingest reads.
pub fn fetch_settings(config: &mut ClientConfig) {
    config
        // Bounded memory whatever the backlog: librdkafka prefetches at most this
        // much, and it costs about twice that in RSS (32 MiB reads about a sixth
        // faster from the slow durable broker, but took a city backlog to 523 MiB:
        // docs/benchmarks.md, session 22); the buffer is bounded by the flush policy.
        .set("queued.max.messages.kbytes", "8192")
        // ... and fetches again as soon as that queue drains below the bound, rather
        // than after the default second: a flush that pauses reading fills the queue,
        // and a second of idle fetcher per flush halved throughput.
        .set("fetch.queue.backoff.ms", "10")
        // A fetch of partitions at their end waits this long on the broker for new
        // messages, and while it waits no other fetch goes to that broker: with the
        // queue bound above, the last partitions of a backlog are read after the others
        // reached their end, each step behind such a wait. 100 ms rather than the
        // default 500 took a 500 k-event backlog from 1.9 to 1.4 s (docs/benchmarks.md);
        // idle, it is ten small requests a second.
        .set("fetch.wait.max.ms", "100")
        .set("fetch.max.bytes", "16777216");
}

/// Runs ingest on the calling thread until `stop` is set (SIGTERM, Ctrl-C) or, with
/// `exit_at_end`, every assigned partition is at its end. Lake commits run on
/// `runtime`; the calling thread must not be one of its workers.
pub fn run(
    options: &IngestOptions,
    lake: &Lake,
    runtime: Handle,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> Result<IngestSummary, IngestError> {
    let started = Instant::now();
    let mut wanted = vec![options.topic.clone(), options.dlq_topic.clone()];
    wanted.dedup();
    // The topics and the tables are independent: made ready together, the tables on
    // the runtime's workers while this thread asks the brokers (a blocking call).
    let tables = {
        let lake = lake.clone();
        runtime.spawn(async move { lake.ensure_tables().await })
    };
    let topics_ready = runtime.block_on(topics::ensure_with(
        &options.brokers,
        &wanted,
        options.partitions,
        &options.properties,
    ));
    tracing::debug!(after = ?started.elapsed(), "topics ready");
    let tables_ready = runtime
        .block_on(tables)
        .map_err(|e| IngestError::Task(e.to_string()))?;
    topics_ready?;
    tables_ready?;
    tracing::debug!(after = ?started.elapsed(), "topics and tables ready");
    if let Some(addr) = options.metrics_addr {
        let bound = runtime
            .block_on(crate::metrics::serve(addr, metrics.clone()))
            .map_err(|source| IngestError::Metrics { addr, source })?;
        tracing::info!("metrics on http://{bound}/metrics");
    }

    // Dedup must remember what is already stored, whoever stored it: the window is
    // seeded below, after subscribing, and what is committed from here on is learnt
    // at the assignment (`refresh_ids`).
    let seeded_at_us = chrono::Utc::now().timestamp_micros();
    let seeded_versions = OwnVersions::new(runtime.block_on(lake.versions()));

    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &options.brokers)
        .set("linger.ms", "20");
    topics::apply_properties(&mut producer_config, &options.properties)?;
    let dlq = Dlq::new(producer_config, &options.dlq_topic)?;

    let pipeline = Arc::new(Mutex::new(Pipeline {
        run_log: {
            // On an object store the run log is written by the runtime's tasks.
            let _inside = runtime.enter();
            crate::runs::RunLog::start(lake.root(), "ingest", &options.topic)
        },
        lake: lake.clone(),
        runtime: runtime.clone(),
        topic: options.topic.clone(),
        partitions: BTreeMap::new(),
        buffer: BTreeMap::new(),
        rows: 0,
        bytes: 0,
        oldest: None,
        ids: RecentIds::new(options.dedup_window),
        buffered_ids: Vec::new(),
        seeded_at_us,
        seeded_versions,
        ids_capacity: options.dedup_window,
        dlq,
        metrics: metrics.clone(),
        last_commit: HashMap::new(),
        data_commits: HashMap::new(),
        compact_every: options.compact_every,
        compaction: None,
        idle_advance: options.idle_advance,
        in_flight: None,
        polled: Polled::default(),
        decoding: Default::default(),
        spare: Spares::default(),
        needs_reset: false,
        assignment_changed: Instant::now(),
        first_assigned: None,
        fatal: None,
        fetched: None,
    }));

    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.brokers)
        .set("group.id", &options.group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("statistics.interval.ms", "5000")
        .set("max.poll.interval.ms", "600000");
    fetch_settings(&mut config);
    topics::apply_properties(&mut config, &options.properties)?;
    let context = IngestContext {
        pipeline: pipeline.clone(),
        metrics: metrics.clone(),
    };
    let consumer: BaseConsumer<IngestContext> = config.create_with_context(context)?;
    let fetched = Arc::new(FetchQueue::new(&consumer).ok_or(IngestError::FetchQueue)?);
    // Destroyed before the consumer whatever the way out (declared after it, dropped
    // before it): librdkafka's queues must go before their client.
    let _close_fetched = CloseOnDrop(fetched.clone());
    pipeline.lock().expect("pipeline lock").fetched = Some(fetched.clone());
    consumer.subscribe(&[options.topic.as_str()])?;
    tracing::debug!(after = ?started.elapsed(), "subscribed");
    // librdkafka joins the group on its own threads meanwhile; the assignment is only
    // handed over by a poll of this thread, so the window is whole before any message.
    {
        let mut p = pipeline.lock().expect("pipeline lock");
        let Pipeline {
            ids, lake, runtime, ..
        } = &mut *p;
        runtime.block_on(lake.recent_ids(options.dedup_window, None, |chunk, more| {
            ids.seed_all(chunk, more)
        }))?;
        tracing::debug!(after = ?started.elapsed(), ids = ids.len(), "dedup window seeded");
    }

    let topic_partitions = consumer
        .fetch_metadata(Some(&options.topic), Duration::from_secs(10))?
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let session_timeout = options
        .properties
        .iter()
        .find_map(|p| p.strip_prefix("session.timeout.ms="))
        .and_then(|v| v.trim().parse().ok())
        .map_or(Duration::from_secs(45), Duration::from_millis);

    let poll_every = Duration::from_millis(100);
    let mut batch = Batch::with_capacity(FETCH_BATCH);
    // Whether messages wait to be routed, and whether partitions are assigned, as the
    // pipeline stood when the loop last let go of it (read here without its lock).
    let mut unrouted = false;
    let mut assigned = false;
    loop {
        // The consumer's own queue first: rebalances, errors and statistics are served
        // in this call. It is waited on only while nothing is assigned; otherwise the
        // fetch queue is, and a rebalance waits at most `poll_every` for the next turn.
        let main_wait = if assigned || unrouted {
            Duration::ZERO
        } else {
            poll_every
        };
        let message = consumer.poll(main_wait);
        let got_message = message.is_some();
        // While messages wait to be routed, take more without waiting: route them as
        // soon as librdkafka has no more at hand.
        let fetch_wait = if assigned && !unrouted && !got_message {
            poll_every
        } else {
            Duration::ZERO
        };
        let fetched_now = fetched.consume(fetch_wait, &mut batch);
        let mut p = pipeline.lock().expect("pipeline lock");
        if let Some(e) = p.fatal.take() {
            return Err(e);
        }
        // A message on the consumer's queue was fetched before its partition's queue was
        // forwarded (librdkafka should send none there); it comes before the batch.
        match message {
            None => {}
            Some(Ok(m)) => p.polled_one(
                m.partition(),
                m.offset(),
                m.key(),
                m.payload().unwrap_or(&[]),
                options.flush_rows,
            ),
            Some(Err(KafkaError::PartitionEOF(partition))) => p.partition_ended(partition),
            Some(Err(e)) => tracing::warn!("consumer: {e}"),
        }
        for fetched in batch.iter() {
            match fetched {
                Fetched::Message {
                    partition,
                    offset,
                    key,
                    payload,
                } => p.polled_one(partition, offset, key, payload, options.flush_rows),
                Fetched::End { partition } => p.partition_ended(partition),
                Fetched::Error { partition, error } => {
                    tracing::warn!(partition, "consumer: {error}")
                }
            }
        }
        // The messages are copied out: freed now, not with the next batch.
        batch.clear();
        if fetched_now == 0 && !got_message {
            // Whatever comes next (an exit, a flush) sees every message polled before
            // it; so does every end of partition and rebalance (they route first).
            p.route_polled();
        }
        if let Some(e) = p.fatal.take() {
            return Err(e);
        }
        let stopping = stop.load(Relaxed);
        let at_end = options.exit_at_end && drained(&p, topic_partitions, session_timeout);
        if stopping || at_end {
            // Finish the batch in hand and commit everything read.
            p.flush(true)?;
            commit_group_offsets(&consumer, &p);
            if p.needs_reset && !stopping {
                reset(&consumer, &mut p)?;
                unrouted = p.unrouted();
                assigned = !p.partitions.is_empty();
                continue;
            }
            break;
        }
        let step = if p.due(options) {
            Some(p.flush(false))
        } else if p.flight_landed() {
            Some(p.settle())
        } else {
            None
        };
        match step {
            None => {}
            Some(Ok(())) => commit_group_offsets(&consumer, &p),
            Some(Err(IngestError::Lake(e))) => tracing::warn!("re-reading from the lake: {e}"),
            Some(Err(e)) => return Err(e),
        }
        if p.needs_reset {
            reset(&consumer, &mut p)?;
        }
        unrouted = p.unrouted();
        assigned = !p.partitions.is_empty();
    }
    // Everything read is committed: the work is done (leaving the group and a
    // compaction still running follow).
    let since_assigned = pipeline
        .lock()
        .expect("pipeline lock")
        .first_assigned
        .map(|t| t.elapsed());
    drop(batch);
    leave(consumer, &fetched);
    let mut p = pipeline.lock().expect("pipeline lock");
    let runtime = p.runtime.clone();
    runtime.block_on(p.run_log.written());
    if let Some(compaction) = &p.compaction {
        while !compaction.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(IngestSummary {
        counts: metrics.snapshot(),
        elapsed: started.elapsed(),
        since_assigned,
    })
}

/// Leaves the group and closes the consumer. rdkafka's drop does the same, but checks
/// whether the close is done only every 100 ms, which was most of the time an
/// `--exit-at-end` run took to stop after its last commit. Anything polled meanwhile
/// is past what the lake recorded, so the next reader reads it again.
fn leave(consumer: BaseConsumer<IngestContext>, fetched: &FetchQueue) {
    match consumer.close_queue() {
        Ok(()) => {
            while !consumer.closed() {
                let _ = consumer.poll(Duration::from_millis(5));
            }
        }
        Err(e) => tracing::warn!("leaving the group: {e}"),
    }
    fetched.close();
    drop(consumer);
}

/// Closes the fetch queue when dropped: on every way out of [`run`], before the
/// consumer it belongs to.
struct CloseOnDrop(Arc<FetchQueue>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Messages taken from the fetch queue at a time: a few fetch responses' worth, and
/// a quarter of a run.
const FETCH_BATCH: usize = 512;

/// Whether `--exit-at-end` may stop: every partition this member holds is at its end,
/// and either it holds every partition of the topic, or the group has been stable for a
/// session timeout. The second clause matters when a member died moments ago: until
/// its session expires the broker may still count its partitions as taken, and this
/// member must wait to inherit them rather than stop with them unread.
fn drained(p: &Pipeline, topic_partitions: usize, session_timeout: Duration) -> bool {
    !p.partitions.is_empty()
        && p.partitions.values().all(|part| part.at_end)
        && (p.partitions.len() >= topic_partitions
            || p.assignment_changed.elapsed() >= 2 * session_timeout + Duration::from_secs(5))
}

/// Re-reads every assigned partition's positions from the lake and seeks there.
fn reset(consumer: &BaseConsumer<IngestContext>, p: &mut Pipeline) -> Result<(), IngestError> {
    // Anything polled but not routed is read again from the lake's positions.
    p.discard_polled();
    let mut tpl = TopicPartitionList::new();
    let ids: Vec<i32> = p.partitions.keys().copied().collect();
    for (partition, state) in p.load(&ids)? {
        tpl.add_partition_offset(&p.topic, partition, Offset::Offset(state.start))?;
        p.partitions.insert(partition, state);
    }
    if tpl.count() > 0 {
        consumer.seek_partitions(tpl, Duration::from_secs(10))?;
    }
    p.needs_reset = false;
    Ok(())
}

/// Tells Kafka how far the lake has got, for lag monitoring only: ingest never reads
/// these offsets back.
fn commit_group_offsets(consumer: &BaseConsumer<IngestContext>, p: &Pipeline) {
    let mut tpl = TopicPartitionList::new();
    for (partition, part) in &p.partitions {
        if let Some(next) = part.resume_offset() {
            let _ = tpl.add_partition_offset(&p.topic, *partition, Offset::Offset(next));
        }
    }
    if tpl.count() > 0 {
        let result: KafkaResult<()> = consumer.commit(&tpl, CommitMode::Async);
        if let Err(e) = result {
            tracing::debug!("group offset commit: {e}");
        }
    }
}
