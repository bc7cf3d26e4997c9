//! The state the main loop and the rebalance callback share, and how a run of decoded
//! messages is routed: dead letters, replays, duplicates, the buffer of each table.

use super::*;

/// The state a flush works on: owned by the main loop, reached by the rebalance
/// callback too (which librdkafka calls from inside `poll`, on the same thread).
pub(super) struct Pipeline {
    pub(super) lake: Lake,
    pub(super) runtime: Handle,
    pub(super) topic: String,
    pub(super) partitions: BTreeMap<i32, Partition>,
    pub(super) buffer: BTreeMap<Family, FamilyBatch>,
    pub(super) rows: usize,
    pub(super) bytes: usize,
    pub(super) oldest: Option<Instant>,
    pub(super) ids: RecentIds,
    /// Ids first seen in the buffer's events: forgotten again if the buffer is dropped,
    /// or their re-read would count as a duplicate and the event would be lost.
    pub(super) buffered_ids: Vec<u128>,
    /// When the dedup window last learned the lake's ids (microseconds since the epoch)...
    pub(super) seeded_at_us: i64,
    /// ... and the tables' versions just before, moved on by this writer's own commits:
    /// if no other writer committed since, there is nothing new to learn (the first
    /// assignment after start-up, on a lake of millions of events, read them all a
    /// second time, and a later rebalance re-read the writer's own last hour).
    pub(super) seeded_versions: OwnVersions,
    pub(super) ids_capacity: usize,
    pub(super) dlq: Dlq,
    pub(super) metrics: Arc<Metrics>,
    /// This run's counts beside the lake, for the quality report; rewritten after
    /// every successful flush.
    pub(super) run_log: crate::runs::RunLog,
    pub(super) last_commit: HashMap<Family, Instant>,
    pub(super) data_commits: HashMap<Family, u64>,
    pub(super) compact_every: u64,
    pub(super) compaction: Option<tokio::task::JoinHandle<()>>,
    pub(super) idle_advance: Duration,
    /// The flush whose commits are running, if any.
    pub(super) in_flight: Option<InFlight>,
    /// Messages polled, not yet decoded and routed: the run being filled...
    pub(super) polled: Polled,
    /// ... and the runs before it, being decoded, oldest first.
    pub(super) decoding: std::collections::VecDeque<Decoding>,
    /// Routed runs' buffers, to fill again.
    pub(super) spare: Spares,
    /// The buffer was dropped; the partitions must be re-read from the lake.
    pub(super) needs_reset: bool,
    /// When the assignment last changed (for `--exit-at-end` in a group).
    pub(super) assignment_changed: Instant,
    /// When partitions were first assigned to this member.
    pub(super) first_assigned: Option<Instant>,
    /// An assignment could not be read from the lake: stop rather than guess.
    pub(super) fatal: Option<IngestError>,
    /// Where the assigned partitions' messages go (set once the consumer exists).
    pub(super) fetched: Option<Arc<FetchQueue>>,
}

impl Pipeline {
    pub(super) fn app_id(&self, partition: i32) -> String {
        format!("kafka:{}:{partition}", self.topic)
    }

    /// Reads partitions' positions from the lake, each table loaded once.
    pub(super) fn load(&self, partitions: &[i32]) -> Result<Vec<(i32, Partition)>, IngestError> {
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
    pub(super) fn refresh_ids(&mut self) -> Result<(), IngestError> {
        // Rows carry the time they were buffered, which precedes their commit by at most
        // a flush; an hour of margin covers any flush policy.
        let versions = self.runtime.block_on(self.lake.versions());
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
    pub(super) fn rotate(&mut self) {
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
    pub(super) fn route_polled(&mut self) {
        while let Some(previous) = self.decoding.pop_front() {
            self.route_decoding(previous);
        }
        if !self.polled.is_empty() {
            let run = std::mem::replace(&mut self.polled, self.spare.take());
            let decoded = run.decode();
            self.route(run, decoded);
        }
    }

    pub(super) fn route_decoding(&mut self, decoding: Decoding) {
        let (run, decoded) = decoding
            .recv()
            .expect("a run's decoding ends with its results: decode does not panic");
        self.route(run, decoded);
    }

    pub(super) fn route(&mut self, run: Polled, decoded: Vec<Decoded>) {
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
    pub(super) fn unrouted(&self) -> bool {
        !self.polled.is_empty() || !self.decoding.is_empty()
    }

    /// One message taken from librdkafka: copied into the run being filled, which goes
    /// to the decoding threads once full.
    pub(super) fn polled_one(
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
    pub(super) fn partition_ended(&mut self, partition: i32) {
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
    pub(super) fn discard_polled(&mut self) {
        self.decoding.clear();
        self.polled = std::mem::take(&mut self.polled).emptied();
    }

    pub(super) fn handle(
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
}
