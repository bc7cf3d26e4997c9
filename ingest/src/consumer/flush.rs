//! A flush: the buffer committed to its tables with the offsets it covers, in the
//! background while the next buffer fills; at most one in flight.

use super::*;

/// One table's commit of a flush: the table, the rows it stores, the commit.
pub(super) type TableCommit = (Family, u64, tokio::task::JoinHandle<Result<i64, LakeError>>);

/// A flush whose commits run in the background while the next buffer fills.
pub(super) struct InFlight {
    pub(super) started: Instant,
    /// Per partition, the last offset the flush covers.
    pub(super) upto: Vec<(i32, i64)>,
    /// Per table: rows committed, and the commit.
    pub(super) tasks: Vec<TableCommit>,
    /// The ids first seen in the flushed events (forgotten if the flush fails).
    pub(super) ids: Vec<u128>,
}

impl Pipeline {
    pub(super) fn due(&self, options: &IngestOptions) -> bool {
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
    pub(super) fn flush(&mut self, complete: bool) -> Result<(), IngestError> {
        self.route_polled();
        self.settle()?;
        self.begin_flush(complete)?;
        if complete {
            self.settle()?;
        }
        Ok(())
    }

    /// Starts the commits of the buffer, one task per touched table, and empties it.
    pub(super) fn begin_flush(&mut self, complete: bool) -> Result<(), IngestError> {
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
    pub(super) fn settle(&mut self) -> Result<(), IngestError> {
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
        self.metrics
            .commit_seconds
            .observe(flight.started.elapsed().as_secs_f64());
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
    pub(super) fn flight_landed(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|f| f.tasks.iter().all(|(_, _, task)| task.is_finished()))
    }

    /// Rejected = dead-lettered by this run: a rejection re-read after a restart was
    /// dead-lettered (and counted) by the run before.
    pub(super) fn record_run(&mut self) {
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
    pub(super) fn drop_buffer(&mut self) {
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
    pub(super) fn maybe_compact(&mut self) {
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
pub(super) const SMALL_FLUSH_ROWS: u64 = 64 * 1024;

/// Whether a flush of `rows` events wrote files compaction should merge.
pub(super) fn is_small_flush(rows: u64) -> bool {
    rows < SMALL_FLUSH_ROWS
}
