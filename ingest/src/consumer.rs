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

/// How one partition stands for this consumer.
#[derive(Debug, Default)]
struct Partition {
    /// Per table, the last offset whose events the table holds.
    committed: BTreeMap<Family, Option<i64>>,
    /// The first offset this consumer wants (anything earlier is a stale prefetch).
    start: i64,
    /// The last offset read into the buffer.
    upto: Option<i64>,
    /// Reached the end of the partition and nothing newer arrived since.
    at_end: bool,
}

impl Partition {
    /// Where to read from: the smallest position over all tables, plus one.
    fn resume_offset(&self) -> Option<i64> {
        let mut min = None::<i64>;
        for position in self.committed.values() {
            let next = position.map_or(0, |p| p + 1);
            min = Some(min.map_or(next, |m| m.min(next)));
        }
        min
    }

    /// The last offset whose rejected messages the dead-letter topic already holds: a
    /// flush acknowledges the dead letters before its first commit, so any table's
    /// position is past them.
    fn dead_letters_upto(&self) -> Option<i64> {
        self.committed.values().flatten().copied().max()
    }
}

/// The state a flush works on: owned by the main loop, reached by the rebalance
/// callback too (which librdkafka calls from inside `poll`, on the same thread).
struct Pipeline {
    lake: Lake,
    runtime: Handle,
    topic: String,
    partitions: BTreeMap<i32, Partition>,
    buffer: BTreeMap<Family, FamilyBatch>,
    rows: usize,
    bytes: usize,
    oldest: Option<Instant>,
    ids: RecentIds,
    /// Ids first seen in the buffer's events: forgotten again if the buffer is dropped,
    /// or their re-read would count as a duplicate and the event would be lost.
    buffered_ids: Vec<u128>,
    /// When the dedup window last learned the lake's ids (microseconds since the epoch)...
    seeded_at_us: i64,
    /// ... and the tables' versions just before, moved on by this writer's own commits:
    /// if no other writer committed since, there is nothing new to learn (the first
    /// assignment after start-up, on a lake of millions of events, read them all a
    /// second time, and a later rebalance re-read the writer's own last hour).
    seeded_versions: OwnVersions,
    ids_capacity: usize,
    dlq: Dlq,
    metrics: Arc<Metrics>,
    /// This run's counts beside the lake, for the quality report; rewritten after
    /// every successful flush.
    run_log: crate::runs::RunLog,
    last_commit: HashMap<Family, Instant>,
    data_commits: HashMap<Family, u64>,
    compact_every: u64,
    compaction: Option<tokio::task::JoinHandle<()>>,
    idle_advance: Duration,
    /// The flush whose commits are running, if any.
    in_flight: Option<InFlight>,
    /// Messages polled, not yet decoded and routed: the run being filled...
    polled: Polled,
    /// ... and the runs before it, being decoded, oldest first.
    decoding: std::collections::VecDeque<Decoding>,
    /// Routed runs' buffers, to fill again.
    spare: Spares,
    /// The buffer was dropped; the partitions must be re-read from the lake.
    needs_reset: bool,
    /// When the assignment last changed (for `--exit-at-end` in a group).
    assignment_changed: Instant,
    /// When partitions were first assigned to this member.
    first_assigned: Option<Instant>,
    /// An assignment could not be read from the lake: stop rather than guess.
    fatal: Option<IngestError>,
    /// Where the assigned partitions' messages go (set once the consumer exists).
    fetched: Option<Arc<FetchQueue>>,
}

/// Messages polled but not yet routed, copied out of librdkafka back to back, so that
/// they can be decoded on the other cores while the main loop (one thread) polls and
/// routes. Routed in poll order before anything else touches the partitions' state: a
/// rebalance, an end of partition, a flush.
#[derive(Default)]
struct Polled {
    data: Vec<u8>,
    messages: Vec<PolledMessage>,
}

/// A message's event, or why it was rejected.
type Decoded = Result<wenming_schemas::Event, wenming_schemas::Rejection>;

/// A run being decoded in the background: it comes back with its events.
type Decoding = std::sync::mpsc::Receiver<(Polled, Vec<Decoded>)>;

struct PolledMessage {
    partition: i32,
    offset: i64,
    key: Option<std::ops::Range<usize>>,
    payload: std::ops::Range<usize>,
}

impl Polled {
    /// Messages routed at a time: enough to keep both cores decoding, few enough
    /// that routing is never far behind polling.
    const MESSAGES: usize = 2048;

    /// Runs being decoded while the main loop polls and routes: the decoding threads
    /// share the cores with the Parquet encoding of the flush in flight, and a queue of
    /// runs rides out the bursts where encoding has them (main loop waiting for
    /// decoding, 2 M events: 1.0 s with one run, 0.27 s with three).
    const DECODING: usize = 3;

    fn push(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        let key = key.map(|k| {
            let start = self.data.len();
            self.data.extend_from_slice(k);
            start..self.data.len()
        });
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.messages.push(PolledMessage {
            partition,
            offset,
            key,
            payload: start..self.data.len(),
        });
    }

    fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Full at [`Self::MESSAGES`], or at `flush_rows` if that is smaller, so that a
    /// small flush policy (tests, low-latency setups) is kept to the message.
    fn is_full(&self, flush_rows: usize) -> bool {
        self.messages.len() >= Self::MESSAGES.min(flush_rows.max(1))
    }

    fn decode(&self) -> Vec<Decoded> {
        use rayon::prelude::*;
        self.messages
            .par_iter()
            .with_min_len(128)
            .map(|m| wenming_schemas::decode(&self.data[m.payload.clone()]))
            .collect()
    }

    /// The same buffers, empty, to fill again without allocating.
    fn emptied(mut self) -> Polled {
        self.data.clear();
        self.messages.clear();
        self
    }
}

/// Routed runs' buffers, filled again rather than allocated anew. At most one per run
/// that can be in the pipeline: a partial run is routed whenever librdkafka has no
/// message at hand, and when each such run left a spare behind, a 12 M-event backlog
/// ended with ≈ 220 MB of them (docs/benchmarks.md).
#[derive(Default)]
struct Spares(Vec<Polled>);

impl Spares {
    const MAX: usize = Polled::DECODING + 2;

    /// A run's buffers to fill: a spare, or new ones.
    fn take(&mut self) -> Polled {
        self.0.pop().unwrap_or_default()
    }

    /// Keeps a routed run's buffers to fill again, unless enough are kept already.
    fn give(&mut self, run: Polled) {
        if self.0.len() < Self::MAX {
            self.0.push(run.emptied());
        }
    }
}

/// The tables' versions as this writer knows them: as they were when its dedup window
/// last learned the lake's ids, then moved on by its own commits. A table whose
/// versions since were all this writer's holds no id the window has not seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnVersions(BTreeMap<Family, Option<i64>>);

impl OwnVersions {
    fn new(versions: BTreeMap<Family, Option<i64>>) -> Self {
        OwnVersions(versions)
    }

    /// This writer committed `version` of a table. Unless it directly follows the
    /// version known, another commit came between (another writer's, or a compaction):
    /// the table is no longer known to hold only what the window saw.
    fn committed(&mut self, family: Family, version: i64) {
        let follows = match self.0.get(&family) {
            Some(Some(before)) => version == before + 1,
            Some(None) => version == 0,
            None => false,
        };
        if follows {
            self.0.insert(family, Some(version));
        } else {
            self.0.remove(&family);
        }
    }

    /// Whether the lake's `versions` are all accounted for by this writer's commits.
    fn only_ours(&self, versions: &BTreeMap<Family, Option<i64>>) -> bool {
        versions.iter().all(|(f, v)| self.0.get(f) == Some(v))
    }
}

/// One table's commit of a flush: the table, the rows it stores, the commit.
type TableCommit = (Family, u64, tokio::task::JoinHandle<Result<i64, LakeError>>);

/// A flush whose commits run in the background while the next buffer fills.
struct InFlight {
    started: Instant,
    /// Per partition, the last offset the flush covers.
    upto: Vec<(i32, i64)>,
    /// Per table: rows committed, and the commit.
    tasks: Vec<TableCommit>,
    /// The ids first seen in the flushed events (forgotten if the flush fails).
    ids: Vec<u128>,
}

impl Pipeline {
    fn app_id(&self, partition: i32) -> String {
        format!("kafka:{}:{partition}", self.topic)
    }

    /// Reads partitions' positions from the lake, each table loaded once.
    fn load(&self, partitions: &[i32]) -> Result<Vec<(i32, Partition)>, IngestError> {
        let app_ids: Vec<String> = partitions.iter().map(|p| self.app_id(*p)).collect();
        let mut found = self
            .runtime
            .block_on(self.lake.positions_of_sources(&app_ids))
            .map_err(|source| IngestError::Positions {
                partitions: partitions.to_vec(),
                source: Box::new(source),
            })?;
        Ok(partitions
            .iter()
            .zip(&app_ids)
            .map(|(p, app_id)| {
                let mut state = Partition {
                    committed: found.remove(app_id).unwrap_or_default(),
                    ..Partition::default()
                };
                state.start = state.resume_offset().unwrap_or(0);
                (*p, state)
            })
            .collect())
    }

    /// Teaches the dedup window the ids other writers (other group members, imports)
    /// stored since it last looked, so that a partition taken over from another member
    /// does not store a re-send of an event that member stored.
    fn refresh_ids(&mut self) -> Result<(), IngestError> {
        // Rows carry the time they were buffered, which precedes their commit by at most
        // a flush; an hour of margin covers any flush policy.
        let versions = self.lake.versions();
        if self.seeded_versions.only_ours(&versions) {
            return Ok(());
        }
        let since = self.seeded_at_us - 3_600_000_000;
        let now = chrono::Utc::now().timestamp_micros();
        let ids = &mut self.ids;
        self.runtime.block_on(self.lake.recent_ids(
            self.ids_capacity,
            Some(since),
            |chunk, more| ids.seed_all(chunk, more),
        ))?;
        self.seeded_at_us = now;
        self.seeded_versions = OwnVersions::new(versions);
        Ok(())
    }

    /// Hands the full run of polled messages to the decoding threads and routes the
    /// oldest run beyond [`Polled::DECODING`], whose decoding ran meanwhile: the main
    /// loop polls and routes while the other cores decode.
    fn rotate(&mut self) {
        let run = std::mem::replace(&mut self.polled, self.spare.take());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rayon::spawn(move || {
            let decoded = run.decode();
            // The receiver is gone only if the run was discarded (a reset).
            let _ = tx.send((run, decoded));
        });
        self.decoding.push_back(rx);
        while self.decoding.len() > Polled::DECODING {
            let previous = self.decoding.pop_front().expect("not empty");
            self.route_decoding(previous);
        }
    }

    /// Routes every message polled so far, in poll order: the runs being decoded, then
    /// the run being filled (decoded now, on every core).
    fn route_polled(&mut self) {
        while let Some(previous) = self.decoding.pop_front() {
            self.route_decoding(previous);
        }
        if !self.polled.is_empty() {
            let run = std::mem::replace(&mut self.polled, self.spare.take());
            let decoded = run.decode();
            self.route(run, decoded);
        }
    }

    fn route_decoding(&mut self, decoding: Decoding) {
        let (run, decoded) = decoding
            .recv()
            .expect("a run's decoding ends with its results: decode does not panic");
        self.route(run, decoded);
    }

    fn route(&mut self, run: Polled, decoded: Vec<Decoded>) {
        // One ingest time for the run (a clock read per event was 3 % of this thread);
        // the run was polled within milliseconds.
        let ingested_at_us = chrono::Utc::now().timestamp_micros();
        let event_id = |d: &Decoded| d.as_ref().ok().map(|e| e.event_id.as_u128());
        // The dedup window's memory is read ahead, as import does for a chunk.
        for id in decoded.iter().take(RecentIds::AHEAD).filter_map(event_id) {
            self.ids.prefetch(id);
        }
        for (i, (message, this)) in run.messages.iter().zip(&decoded).enumerate() {
            if let Some(id) = decoded.get(i + RecentIds::AHEAD).and_then(event_id) {
                self.ids.prefetch(id);
            }
            self.handle(
                message.partition,
                message.offset,
                message.key.clone().map(|k| &run.data[k]),
                &run.data[message.payload.clone()],
                this,
                ingested_at_us,
            );
        }
        // Freeing the events is a free per string, of memory the decoding threads
        // allocated: done there, not on this thread, which everything else waits for.
        rayon::spawn(move || drop(decoded));
        self.spare.give(run);
    }

    /// Whether messages were polled and not yet routed.
    fn unrouted(&self) -> bool {
        !self.polled.is_empty() || !self.decoding.is_empty()
    }

    /// One message taken from librdkafka: copied into the run being filled, which goes
    /// to the decoding threads once full.
    fn polled_one(
        &mut self,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        flush_rows: usize,
    ) {
        self.polled.push(partition, offset, key, payload);
        if self.polled.is_full(flush_rows) {
            self.rotate();
        }
    }

    /// `partition` is at its end, after every message polled before this (routed now).
    fn partition_ended(&mut self, partition: i32) {
        self.route_polled();
        if let Some(part) = self.partitions.get_mut(&partition) {
            tracing::info!(
                partition,
                upto = part.upto,
                start = part.start,
                "end of partition"
            );
            part.at_end = true;
        }
    }

    /// Forgets every message polled and not routed (they are read again after a seek).
    fn discard_polled(&mut self) {
        self.decoding.clear();
        self.polled = std::mem::take(&mut self.polled).emptied();
    }

    fn handle(
        &mut self,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        decoded: &Decoded,
        ingested_at_us: i64,
    ) {
        let Some(part) = self.partitions.get_mut(&partition) else {
            return; // revoked while queued; its new owner reads it
        };
        if offset < part.start || part.upto.is_some_and(|u| offset <= u) {
            return; // prefetched before a seek
        }
        if part.upto.is_none() && offset > part.start {
            // Kafka may skip offsets (transaction markers, compaction), but a jump right
            // after a seek is how a broker that mishandles mid-batch fetches shows.
            tracing::warn!(
                partition,
                offset,
                wanted = part.start,
                "first message after the seek is past the position asked for"
            );
        }
        part.upto = Some(offset);
        part.at_end = false;
        self.metrics.read.fetch_add(1, Relaxed);
        let event = match decoded {
            Ok(event) => event,
            Err(rejection) => {
                self.metrics.rejected.fetch_add(1, Relaxed);
                if part.dead_letters_upto().is_some_and(|d| offset <= d) {
                    return; // sent before a restart
                }
                let source = format!("{}/{partition}/{offset}", self.topic);
                if let Err(e) = self.dlq.send(key, payload, rejection, &source) {
                    self.fatal.get_or_insert(e.into());
                    return;
                }
                self.metrics.dlq_sent.fetch_add(1, Relaxed);
                *self
                    .metrics
                    .rejected_by_reason
                    .lock()
                    .expect("not poisoned")
                    .entry(rejection.reason())
                    .or_default() += 1;
                return;
            }
        };
        let family = event.event_type().family();
        // The window learns replayed ids too, to recognise their later re-sends.
        let seen = self.ids.insert(event.event_id.as_u128());
        if part.committed[&family].is_some_and(|done| offset <= done) {
            // Stored by an earlier run; a re-send was a duplicate then too.
            if seen == Seen::ThisRun {
                self.metrics.duplicates.fetch_add(1, Relaxed);
            } else {
                self.metrics.already_stored.fetch_add(1, Relaxed);
            }
            return;
        }
        if seen != Seen::New {
            self.metrics.duplicates.fetch_add(1, Relaxed);
            return;
        }
        let provenance = Provenance {
            partition: Some(partition),
            offset: Some(offset),
            ingested_at_us,
        };
        self.buffered_ids.push(event.event_id.as_u128());
        self.buffer
            .entry(family)
            .or_insert_with(|| FamilyBatch::new(family))
            .push(event, provenance, payload.len());
        self.rows += 1;
        self.bytes += payload.len();
        self.oldest.get_or_insert_with(Instant::now);
        self.metrics.pending.fetch_add(1, Relaxed);
    }

    fn due(&self, options: &IngestOptions) -> bool {
        self.rows >= options.flush_rows
            || self.bytes >= options.flush_bytes
            || self
                .oldest
                .is_some_and(|t| t.elapsed() >= options.flush_latency)
    }

    /// Commits the buffer. The commits run in the background while the main loop reads
    /// on; at most one flush is in flight, so this first settles the one before.
    /// `complete`: also move every other table to the end of what was read, and wait
    /// for the commits (at exit and when partitions are handed over), so the next
    /// reader starts exactly here.
    fn flush(&mut self, complete: bool) -> Result<(), IngestError> {
        self.route_polled();
        self.settle()?;
        self.begin_flush(complete)?;
        if complete {
            self.settle()?;
        }
        Ok(())
    }

    /// Starts the commits of the buffer, one task per touched table, and empties it.
    fn begin_flush(&mut self, complete: bool) -> Result<(), IngestError> {
        self.metrics.flushes.fetch_add(1, Relaxed);
        tracing::debug!(rows = self.rows, complete, "flush begins");
        // Dead letters are acknowledged before any position that covers them is.
        self.dlq.flush()?;
        let now = Instant::now();
        let mut tasks = Vec::new();
        for family in Family::ALL.iter().copied() {
            let positions: Vec<Position> = self
                .partitions
                .iter()
                .filter_map(|(p, part)| {
                    let upto = part.upto?;
                    let done = part.committed[&family];
                    (done.is_none_or(|d| upto > d)).then(|| Position {
                        app_id: self.app_id(*p),
                        version: upto,
                        expected: done,
                    })
                })
                .collect();
            let has_rows = self.buffer.get(&family).is_some_and(|b| !b.is_empty());
            if positions.is_empty() && !has_rows {
                continue;
            }
            let lake = self.lake.clone();
            if has_rows {
                let batch = self.buffer.get_mut(&family).expect("has rows");
                let rows = batch.len() as u64;
                let record_batch = batch.finish().map_err(|source| IngestError::Batch {
                    table: family.table_name(),
                    source,
                })?;
                let task = self.runtime.spawn(async move {
                    lake.commit(family, vec![record_batch], &positions).await
                });
                tasks.push((family, rows, task));
            } else {
                let idle = self
                    .last_commit
                    .get(&family)
                    .is_none_or(|t| now.duration_since(*t) >= self.idle_advance);
                if complete || idle {
                    let task = self
                        .runtime
                        .spawn(async move { lake.advance(family, &positions).await });
                    tasks.push((family, 0, task));
                }
            }
        }
        self.in_flight = Some(InFlight {
            started: now,
            upto: self
                .partitions
                .iter()
                .filter_map(|(p, part)| Some((*p, part.upto?)))
                .collect(),
            tasks,
            ids: std::mem::take(&mut self.buffered_ids),
        });
        self.rows = 0;
        self.bytes = 0;
        self.oldest = None;
        Ok(())
    }

    /// Waits for the flush in flight, if any, and records what it committed. Every
    /// commit is awaited before an error is returned, so what is recorded here matches
    /// the lake; on an error the buffer read since is dropped too, and the partitions
    /// are read again from the lake's positions.
    fn settle(&mut self) -> Result<(), IngestError> {
        let Some(flight) = self.in_flight.take() else {
            return Ok(());
        };
        let waited = Instant::now();
        let mut first_error = None;
        let small = is_small_flush(flight.tasks.iter().map(|(_, rows, _)| rows).sum());
        for (family, rows, task) in flight.tasks {
            match self.runtime.block_on(task) {
                Ok(Ok(version)) => {
                    self.seeded_versions.committed(family, version);
                    for (partition, upto) in &flight.upto {
                        if let Some(part) = self.partitions.get_mut(partition) {
                            let done = part.committed.get_mut(&family).expect("every family");
                            if done.is_none_or(|d| *upto > d) {
                                *done = Some(*upto);
                            }
                        }
                    }
                    self.last_commit.insert(family, flight.started);
                    self.metrics.commits.fetch_add(1, Relaxed);
                    if rows > 0 {
                        self.metrics.stored.fetch_add(rows, Relaxed);
                        self.metrics.pending.fetch_sub(rows, Relaxed);
                        if small {
                            *self.data_commits.entry(family).or_default() += 1;
                        }
                    }
                }
                Ok(Err(e)) => {
                    if matches!(e, LakeError::PositionMoved { .. }) {
                        self.metrics.stale_commits.fetch_add(1, Relaxed);
                    }
                    tracing::warn!("commit refused: {e}");
                    first_error.get_or_insert(IngestError::Lake(e));
                }
                Err(join) => {
                    first_error.get_or_insert(IngestError::Task(join.to_string()));
                }
            }
        }
        if let Some(e) = first_error {
            for id in flight.ids {
                self.ids.forget(id);
            }
            self.drop_buffer();
            return Err(e);
        }
        tracing::debug!(
            started = ?flight.started.elapsed(),
            waited = ?waited.elapsed(),
            "flush landed"
        );
        self.record_run();
        self.maybe_compact();
        Ok(())
    }

    /// Whether the flush in flight has finished and only waits to be settled.
    fn flight_landed(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|f| f.tasks.iter().all(|(_, _, task)| task.is_finished()))
    }

    /// Rejected = dead-lettered by this run: a rejection re-read after a restart was
    /// dead-lettered (and counted) by the run before.
    fn record_run(&mut self) {
        let m = self.metrics.snapshot();
        let by_reason = self
            .metrics
            .rejected_by_reason
            .lock()
            .expect("not poisoned")
            .clone();
        self.run_log.update(&crate::runs::RunCounts {
            read: m.read,
            stored: m.stored,
            duplicates: m.duplicates,
            rejected: m.dlq_sent,
            rejected_by_reason: by_reason,
        });
    }

    /// Forgets the buffer; the partitions are re-read from the lake's positions.
    fn drop_buffer(&mut self) {
        let pending = self.metrics.pending.swap(0, Relaxed);
        self.metrics.dropped_for_replay.fetch_add(pending, Relaxed);
        for id in self.buffered_ids.drain(..) {
            self.ids.forget(id);
        }
        self.buffer.clear();
        self.rows = 0;
        self.bytes = 0;
        self.oldest = None;
        self.needs_reset = true;
    }

    /// Compacts small files in the background, one table at a time and never two
    /// compactions at once; appends go on meanwhile (Delta lets an append and a
    /// compaction of other files both commit).
    fn maybe_compact(&mut self) {
        if self.compact_every == 0 || self.compaction.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let due: Vec<Family> = self
            .data_commits
            .iter()
            .filter(|(_, n)| **n >= self.compact_every)
            .map(|(f, _)| *f)
            .collect();
        if due.is_empty() {
            return;
        }
        for f in &due {
            self.data_commits.insert(*f, 0);
        }
        let lake = self.lake.clone();
        let metrics = self.metrics.clone();
        self.compaction = Some(self.runtime.spawn(async move {
            for family in due {
                match lake.optimize_table(family, 128 << 20).await {
                    Ok(_) => {
                        metrics.compactions.fetch_add(1, Relaxed);
                    }
                    Err(e) => tracing::warn!("background compaction: {e}"),
                }
            }
        }));
    }
}

/// A flush of fewer events than this writes small files, which compaction merges.
///
/// Small files cost twice: a scan opens each, and every commit to the table costs more
/// with each file it holds (deltalake 1.1 lists the table's files again after every
/// commit: 29 ms a commit at 40 files, 178 ms at 355, docs/benchmarks.md). A backlog's
/// flushes (200 k events) are not counted: compacting during a backlog only added to
/// its memory (12.4 M events: 498 MiB against 456). The timed flushes of a quiet stream
/// are what `compact_every` counts.
const SMALL_FLUSH_ROWS: u64 = 64 * 1024;

/// Whether a flush of `rows` events wrote files compaction should merge.
fn is_small_flush(rows: u64) -> bool {
    rows < SMALL_FLUSH_ROWS
}

/// The consumer's context: serves rebalances (reading positions from the lake and
/// seeking there) and librdkafka's statistics (consumer lag).
struct IngestContext {
    pipeline: Arc<Mutex<Pipeline>>,
    metrics: Arc<Metrics>,
}

impl ClientContext for IngestContext {
    /// librdkafka reports partition EOF as an error too; it is how ingest knows a
    /// partition is drained, not a fault.
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::debug!("{reason}");
        } else {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut lag = self.metrics.lag.lock().expect("lag lock");
        for topic in statistics.topics.values() {
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.consumer_lag >= 0 {
                    lag.insert(*id, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut pipeline = self.pipeline.lock().expect("pipeline lock");
        // Messages polled before the rebalance belong to the assignment before it.
        pipeline.route_polled();
        pipeline.assignment_changed = Instant::now();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            rdkafka::consumer::RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                pipeline.first_assigned.get_or_insert_with(Instant::now);
                // Start every new partition where the lake says, not where Kafka's
                // group offsets say; and learn what other writers stored meanwhile.
                if let Err(e) = pipeline.refresh_ids() {
                    tracing::error!("{e}");
                    pipeline.fatal.get_or_insert(e);
                }
                let topic_of: BTreeMap<i32, String> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.partition(), e.topic().to_owned()))
                    .collect();
                let partitions: Vec<i32> = topic_of.keys().copied().collect();
                match pipeline.load(&partitions) {
                    Ok(states) => {
                        for (partition, state) in states {
                            let offset = Offset::Offset(state.start);
                            if let Err(e) =
                                tpl.set_partition_offset(&topic_of[&partition], partition, offset)
                            {
                                pipeline.fatal.get_or_insert(e.into());
                            }
                            tracing::info!(partition, start = state.start, "assigned");
                            pipeline.partitions.insert(partition, state);
                        }
                    }
                    Err(e) => {
                        tracing::error!("{e}");
                        pipeline.fatal.get_or_insert(e);
                    }
                }
                // Their messages come to the fetch queue, read in batches; forwarded
                // before the assignment, so that none reaches the consumer's queue.
                if let Some(fetched) = &pipeline.fetched {
                    for (partition, topic) in &topic_of {
                        if !fetched.take_partition(consumer, topic, *partition) {
                            tracing::warn!(partition, "no queue for the partition");
                        }
                    }
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    pipeline.fatal.get_or_insert(e.into());
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Hand over cleanly: commit what was read, so the next owner starts
                // exactly here. If that fails, the next owner re-reads from the lake.
                if pipeline.partitions.values().any(|p| p.upto.is_some())
                    && let Err(e) = pipeline.flush(true)
                {
                    tracing::warn!("flush before handing partitions over: {e}");
                }
                for elem in tpl.elements() {
                    tracing::info!(partition = elem.partition(), "revoked");
                    pipeline.partitions.remove(&elem.partition());
                }
                let revoked = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = revoked {
                    tracing::warn!("unassign: {e}");
                }
            }
            other => {
                tracing::error!("rebalance error: {other:?}");
                if !cooperative {
                    let _ = consumer.unassign();
                }
            }
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
    let seeded_versions = OwnVersions::new(lake.versions());

    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &options.brokers)
        .set("linger.ms", "20");
    topics::apply_properties(&mut producer_config, &options.properties)?;
    let dlq = Dlq::new(producer_config, &options.dlq_topic)?;

    let pipeline = Arc::new(Mutex::new(Pipeline {
        run_log: crate::runs::RunLog::start(lake.root(), "ingest", &options.topic),
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
    let p = pipeline.lock().expect("pipeline lock");
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

#[cfg(test)]
mod tests {
    /// A rebalance re-reads the lake's recent ids only if some other writer (or a
    /// compaction) committed since the window last learned them: this writer's own
    /// commits, each directly after the last, leave nothing to learn.
    #[test]
    fn own_commits_leave_nothing_to_learn_and_any_other_commit_does() {
        use super::OwnVersions;
        use std::collections::BTreeMap;
        use wenming_schemas::Family;
        let (a, b) = (Family::ALL[0], Family::ALL[1]);
        let lake = |va: Option<i64>, vb: Option<i64>| BTreeMap::from([(a, va), (b, vb)]);
        let mut known = OwnVersions::new(lake(Some(4), None));
        assert!(known.only_ours(&lake(Some(4), None)));
        known.committed(a, 5);
        known.committed(a, 6);
        known.committed(b, 0);
        assert!(known.only_ours(&lake(Some(6), Some(0))));
        // The lake moved past what this writer committed: another writer did.
        assert!(!known.only_ours(&lake(Some(7), Some(0))));
        // A commit that skips a version had another one before it.
        known.committed(b, 2);
        assert!(!known.only_ours(&lake(Some(6), Some(2))));
        // And the table stays unknown until the window learns the lake again.
        known.committed(b, 3);
        assert!(!known.only_ours(&lake(Some(6), Some(3))));
        assert!(OwnVersions::new(lake(Some(6), Some(3))).only_ours(&lake(Some(6), Some(3))));
    }

    use super::*;

    fn partition(positions: &[(Family, Option<i64>)]) -> Partition {
        let mut committed: BTreeMap<Family, Option<i64>> =
            Family::ALL.iter().map(|f| (*f, Some(100))).collect();
        for (f, p) in positions {
            committed.insert(*f, *p);
        }
        Partition {
            committed,
            ..Partition::default()
        }
    }

    #[test]
    fn a_partition_resumes_after_the_table_that_lags_most() {
        assert_eq!(partition(&[]).resume_offset(), Some(101));
        let p = partition(&[(Family::Wish, Some(7)), (Family::Service, Some(250))]);
        assert_eq!(p.resume_offset(), Some(8));
        // A table that never recorded the partition: read it from the start.
        let p = partition(&[(Family::Order, None)]);
        assert_eq!(p.resume_offset(), Some(0));
    }

    #[test]
    fn dead_letters_are_known_sent_up_to_the_table_furthest_ahead() {
        let p = partition(&[(Family::Wish, Some(7)), (Family::Service, Some(250))]);
        assert_eq!(p.dead_letters_upto(), Some(250));
        let none: Vec<(Family, Option<i64>)> = Family::ALL.iter().map(|f| (*f, None)).collect();
        assert_eq!(partition(&none).dead_letters_upto(), None);
    }

    #[test]
    fn a_polled_run_keeps_every_message_and_decodes_them_in_poll_order() {
        const EXAMPLES: &str = include_str!("../../schemas/tests/fixtures/examples.ndjson");
        let mut lines: Vec<&[u8]> = EXAMPLES.lines().map(str::as_bytes).collect();
        lines.insert(1, b"{not json");
        lines.push(b"");
        let mut run = Polled::default();
        for (i, line) in lines.iter().enumerate() {
            let key = (i % 2 == 0).then_some(format!("key{i}"));
            run.push(
                i as i32 % 3,
                100 + i as i64,
                key.as_deref().map(str::as_bytes),
                line,
            );
        }
        // A run is full at 2,048 messages, or at a smaller flush policy.
        assert!(run.is_full(lines.len()) && !run.is_full(lines.len() + 1));
        assert!(!run.is_full(usize::MAX) && run.is_full(0));

        let decoded = run.decode();
        assert_eq!(decoded.len(), lines.len());
        for (i, ((message, decoded), line)) in
            run.messages.iter().zip(&decoded).zip(&lines).enumerate()
        {
            assert_eq!(
                (message.partition, message.offset),
                (i as i32 % 3, 100 + i as i64)
            );
            assert_eq!(&run.data[message.payload.clone()], *line);
            let key = message.key.clone().map(|k| run.data[k].to_vec());
            assert_eq!(key, (i % 2 == 0).then(|| format!("key{i}").into_bytes()));
            match wenming_schemas::decode(line) {
                Ok(event) => assert_eq!(decoded.as_ref().ok(), Some(&event), "line {i}"),
                Err(rejection) => assert_eq!(
                    decoded.as_ref().err().map(|r| r.reason()),
                    Some(rejection.reason()),
                    "line {i}"
                ),
            }
        }
        assert!(decoded[1].is_err() && decoded.last().unwrap().is_err());

        let emptied = run.emptied();
        assert!(emptied.is_empty() && emptied.data.is_empty());
    }

    /// A quiet stream's timed flushes write small files, which compaction counts; a
    /// backlog's full flushes (200 k events) do not.
    #[test]
    fn only_small_flushes_count_toward_compaction() {
        assert!(is_small_flush(1));
        assert!(is_small_flush(SMALL_FLUSH_ROWS - 1));
        assert!(!is_small_flush(SMALL_FLUSH_ROWS));
        assert!(!is_small_flush(
            IngestOptions::new("b", "t", "g").flush_rows as u64
        ));
    }

    #[test]
    fn spare_runs_are_filled_again_and_never_pile_up() {
        let full = || {
            let mut run = Polled::default();
            run.push(0, 1, None, &[b'x'; 1000]);
            run
        };
        let mut spares = Spares::default();
        // Far more runs routed than taken, as when partial runs are routed each time
        // librdkafka has nothing at hand.
        for _ in 0..100 {
            spares.give(full());
        }
        assert_eq!(spares.0.len(), Spares::MAX);
        let again = spares.take();
        assert!(again.is_empty(), "a spare comes back empty");
        assert!(again.data.capacity() >= 1000, "with its buffer kept");
        assert_eq!(spares.0.len(), Spares::MAX - 1);
        let mut empty = Spares::default();
        assert_eq!(empty.take().data.capacity(), 0);
    }
}
