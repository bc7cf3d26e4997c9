//! `wenming import`: an NDJSON file into the lake without Kafka (historical ledgers,
//! backfill), through the same decode, dedup, routing and commit path.
//!
//! The file is a source like a Kafka partition: its id is `file:blake3:<hash of the
//! contents>` and its position is a line number. Each commit into a family's table
//! records the last line it covers, so importing the same file again stores nothing
//! new, and an import that died resumes after its last commit.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use wenming_schemas::Family;

use crate::batch::{FamilyBatch, Provenance};
use crate::dedup::{DEFAULT_WINDOW, RecentIds, Seen};
use crate::lake::{Lake, LakeError, Position};
use crate::ndjson::{CHUNK_BYTES, Chunk, NdjsonReader, decode_chunk};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the rejects file: {0}")]
    Rejects(#[source] std::io::Error),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("a commit task failed: {0}")]
    Task(String),
    #[error("cannot build a batch for {table}: {source}")]
    Batch {
        table: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
}

/// How an import batches its commits.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Rows buffered (all families together) before a commit.
    pub batch_rows: usize,
    /// Recent event ids remembered for dedup.
    pub dedup_window: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_rows: 250_000,
            dedup_window: DEFAULT_WINDOW,
        }
    }
}

/// What an import did. `read = stored + duplicates + rejected + already_stored`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Non-blank lines read.
    pub read: u64,
    /// Events written to the lake by this run.
    pub stored: u64,
    /// Re-sent events (an id already seen) skipped.
    pub duplicates: u64,
    /// Lines refused by the contract (written to the rejects file).
    pub rejected: u64,
    /// Events a previous import of this file already committed.
    pub already_stored: u64,
    /// Delta commits made.
    pub commits: u64,
    /// Events stored per table.
    pub by_table: std::collections::BTreeMap<&'static str, u64>,
    /// Rejections by reason code.
    pub rejected_by_reason: std::collections::BTreeMap<String, u64>,
}

impl ImportStats {
    fn run_counts(&self) -> crate::runs::RunCounts {
        crate::runs::RunCounts {
            read: self.read,
            stored: self.stored,
            duplicates: self.duplicates,
            rejected: self.rejected,
            rejected_by_reason: self.rejected_by_reason.clone(),
        }
    }
}

impl ImportStats {
    pub fn reconciles(&self) -> bool {
        self.read == self.stored + self.duplicates + self.rejected + self.already_stored
    }
}

/// The source id of a file: its contents' BLAKE3 hash, so a renamed copy is the same
/// source. BLAKE3 rather than SHA-256 because the id is needed before the first line is
/// routed, so hashing is time no other work overlaps: each 16 MiB read is hashed on
/// every core (SHA-256, one core, took 10 s of a 10 GB import). Read, not memory-mapped:
/// a mapping of the whole file would count in the process's memory.
pub fn source_id(path: &Path) -> Result<String, ImportError> {
    let read_err = |source| ImportError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 16 << 20];
    // The hash does not depend on how the file is cut into reads.
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update_rayon(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
    }
    Ok(format!("file:blake3:{}", hasher.finalize().to_hex()))
}

/// Imports one file. Rejected lines go to `rejects` as NDJSON objects
/// `{"line", "reason", "message", "raw"}`; `progress` is told the bytes read so far.
pub async fn import_file(
    path: &Path,
    lake: &Lake,
    options: &ImportOptions,
    mut rejects: impl Write,
    mut progress: impl FnMut(u64),
) -> Result<ImportStats, ImportError> {
    let app_id = source_id(path)?;
    let read_err = |source| ImportError::Read {
        path: path.display().to_string(),
        source,
    };
    // Where earlier imports of this file stopped, per table.
    let mut committed = lake.positions(&app_id).await?;

    let file = File::open(path).map_err(read_err)?;
    let file_bytes = file.metadata().map_err(read_err)?.len();
    let reader = NdjsonReader::new(BufReader::with_capacity(1 << 20, file));
    // Seeded with what the lake holds (from Kafka or other files), so that an event
    // stored by any source is stored once.
    let mut ids = RecentIds::new(options.dedup_window);
    lake.recent_ids(options.dedup_window, None, |chunk, more| {
        ids.seed_all(chunk, more)
    })
    .await?;
    let mut batches: HashMap<Family, (FamilyBatch, i64)> = HashMap::new();
    let mut buffered = 0usize;
    let mut in_flight: Option<Flush> = None;
    let mut stats = ImportStats::default();
    let ingested_at_us = chrono::Utc::now().timestamp_micros();
    let mut run_log = crate::runs::RunLog::start(lake.root(), "import", &app_id);

    // The loop runs in a block of its own so that, whatever error ends it, the flush
    // in flight lands first: the counts then name everything that reached the lake.
    let routed: Result<(), ImportError> = async {
        let (mut decoded_chunks, recycle) = decode_ahead(reader);
        while let Some(next) = decoded_chunks.recv().await {
            let Decoded {
                chunk,
                events: decoded,
                bytes_read,
            } = next.map_err(read_err)?;
            if stats.read == 0 && bytes_read > 0 {
                // Room for the whole file's ids at once, estimated from the first chunk.
                let lines = file_bytes as u128 * chunk.len() as u128 / bytes_read as u128;
                ids.reserve(usize::try_from(lines + lines / 16).unwrap_or(usize::MAX));
            }
            // What follows is in file order, while the next chunks are decoded. The dedup
            // window learns the chunk's ids in one pass (its memory is read ahead).
            let event_ids: Vec<u128> = decoded
                .iter()
                .filter_map(|d| d.as_ref().ok())
                .map(|event| event.event_id.as_u128())
                .collect();
            let mut seen_ids = ids.insert_all(&event_ids).into_iter();
            for (record, decoded) in chunk.iter().zip(&decoded) {
                stats.read += 1;
                let line = record.number() as i64;
                let event = match decoded {
                    Ok(event) => event,
                    Err(rejection) => {
                        stats.rejected += 1;
                        *stats
                            .rejected_by_reason
                            .entry(rejection.reason())
                            .or_default() += 1;
                        let entry = serde_json::json!({
                            "line": line, "reason": rejection.reason(),
                            "message": rejection.message, "raw": record.text()
                        });
                        writeln!(rejects, "{entry}").map_err(ImportError::Rejects)?;
                        continue;
                    }
                };
                // The window learns lines already committed too, to recognise their
                // re-sends further down the file.
                let seen = seen_ids.next().expect("one per decoded event");
                let family = event.event_type().family();
                if committed[&family].is_some_and(|done| line <= done) {
                    // Committed by an earlier import of this file: its re-sends were
                    // duplicates then too.
                    if seen == Seen::ThisRun {
                        stats.duplicates += 1;
                    } else {
                        stats.already_stored += 1;
                    }
                    continue;
                }
                if seen != Seen::New {
                    stats.duplicates += 1;
                    continue;
                }
                let (batch, last) = batches
                    .entry(family)
                    .or_insert_with(|| (FamilyBatch::new(family), 0));
                batch.push(
                    event,
                    Provenance {
                        partition: None,
                        offset: None,
                        ingested_at_us,
                    },
                    record.len(),
                );
                *last = line;
                buffered += 1;
            }
            // Freeing a chunk's events is a free per string, on memory the decoding
            // threads allocated: done there, not on this thread, which all the others wait for.
            let recycle = recycle.clone();
            rayon::spawn(move || {
                drop(decoded);
                let _ = recycle.send(chunk);
            });
            if buffered >= options.batch_rows {
                // One flush in flight while the next rows are decoded: a commit's position
                // names the one before it, so the previous flush lands first.
                if let Some(previous) = in_flight.take() {
                    previous.land(&mut committed, &mut stats).await?;
                    run_log.update(&stats.run_counts());
                }
                in_flight = Some(Flush::start(lake, &app_id, &mut batches, &committed)?);
                buffered = 0;
            }
            progress(bytes_read);
        }
        Ok(())
    }
    .await;
    if let Some(previous) = in_flight.take() {
        let landed = previous.land(&mut committed, &mut stats).await;
        run_log.update(&stats.run_counts());
        landed?;
    }
    routed?;
    Flush::start(lake, &app_id, &mut batches, &committed)?
        .land(&mut committed, &mut stats)
        .await?;
    run_log.update(&stats.run_counts());
    run_log.written().await;
    rejects.flush().map_err(ImportError::Rejects)?;
    Ok(stats)
}

/// A chunk of lines and their decoded events, in the chunk's order.
struct Decoded {
    chunk: Chunk,
    events: Vec<Result<wenming_schemas::Event, wenming_schemas::Rejection>>,
    /// Bytes of the file read up to the end of the chunk (for progress).
    bytes_read: u64,
}

/// Reads and decodes the file ahead, on a thread of its own (decoding on every core),
/// while the caller dedups and routes the chunk before. Two chunks wait at most, so
/// memory stays bounded. Spent chunks sent back on the second channel are refilled.
fn decode_ahead(
    mut reader: NdjsonReader<BufReader<File>>,
) -> (
    tokio::sync::mpsc::Receiver<std::io::Result<Decoded>>,
    std::sync::mpsc::Sender<Chunk>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let (recycle, spent) = std::sync::mpsc::channel::<Chunk>();
    std::thread::spawn(move || {
        loop {
            let chunk = match reader
                .next_chunk_reusing(CHUNK_BYTES, spent.try_recv().unwrap_or_default())
            {
                Ok(chunk) if chunk.is_empty() => return,
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            let events = decode_chunk(&chunk);
            let decoded = Decoded {
                chunk,
                events,
                bytes_read: reader.bytes_read(),
            };
            // The importer stopped (an error): nothing more to read.
            if tx.blocking_send(Ok(decoded)).is_err() {
                return;
            }
        }
    });
    (rx, recycle)
}

/// The commits of one flush: every family with buffered rows, each with its position in
/// the file. The tables are independent (each has its own positions), so their commits
/// run concurrently, and beside the decoding of the rows that follow: most of a commit
/// is encoding Parquet, and that uses every core.
struct Flush {
    commits: Vec<Commit>,
}

/// One table's commit of a flush: its rows, the last line it covers, the task.
type Commit = (
    Family,
    u64,
    i64,
    tokio::task::JoinHandle<Result<i64, LakeError>>,
);

impl Flush {
    fn start(
        lake: &Lake,
        app_id: &str,
        batches: &mut HashMap<Family, (FamilyBatch, i64)>,
        committed: &BTreeMap<Family, Option<i64>>,
    ) -> Result<Flush, ImportError> {
        let mut families: Vec<Family> = batches
            .iter()
            .filter(|(_, (b, _))| !b.is_empty())
            .map(|(f, _)| *f)
            .collect();
        families.sort();
        let mut commits = Vec::new();
        for family in families {
            let (batch, last) = batches.get_mut(&family).expect("listed above");
            let rows = batch.len() as u64;
            let record_batch = batch.finish().map_err(|source| ImportError::Batch {
                table: family.table_name(),
                source,
            })?;
            let position = Position {
                app_id: app_id.to_owned(),
                version: *last,
                expected: committed[&family],
            };
            let lake = lake.clone();
            let task =
                tokio::spawn(
                    async move { lake.commit(family, vec![record_batch], &[position]).await },
                );
            commits.push((family, rows, *last, task));
        }
        Ok(Flush { commits })
    }

    /// Waits for every commit, then records what reached the lake. Every commit is
    /// awaited before an error is returned, so the positions recorded match the lake.
    async fn land(
        self,
        committed: &mut BTreeMap<Family, Option<i64>>,
        stats: &mut ImportStats,
    ) -> Result<(), ImportError> {
        let mut first_error = None;
        for (family, rows, last, task) in self.commits {
            match task.await {
                Ok(Ok(_version)) => {
                    committed.insert(family, Some(last));
                    stats.stored += rows;
                    stats.commits += 1;
                    *stats.by_table.entry(family.table_name()).or_default() += rows;
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(ImportError::Lake(e));
                }
                Err(join) => {
                    first_error.get_or_insert(ImportError::Task(join.to_string()));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
