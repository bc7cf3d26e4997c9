//! `wenming demo`'s stream: a generated network (a year ending today) streamed through
//! the embedded broker once, whatever the number of restarts, with its progress on the
//! terminal.
//!
//! The plan of the stream (scale, seed, range) is kept in `<data>/demo-stream.json`, so
//! that a restart streams the same events: none when the stream was complete; when it was
//! interrupted, what the topic does not hold yet, from a little before (the generator
//! skips the lines the broker already has, less a margin that covers what was in flight
//! when it stopped; ingest stores a re-sent event once).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use wenming_ingest::lake::Lake;
use wenming_ingest::location::Location;
use wenming_ingest::metrics::Metrics;

/// Lines re-sent before the broker's end when an interrupted stream resumes: more than
/// the producer keeps in flight.
const RESEND_MARGIN: u64 = 100_000;
/// The demo's seed: the same network every time.
const SEED: u64 = 7;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub scale: String,
    pub seed: u64,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Whether the generator finished: every line is in the broker.
    pub complete: bool,
}

impl Plan {
    fn file(data: &Path) -> PathBuf {
        data.join("demo-stream.json")
    }

    /// The plan kept in `data` for `scale`, or a new one: from the first of this month a
    /// year ago to today (in the calendar's time zone), so that "this month", "this
    /// year" and their year-on-year comparisons have data.
    pub fn load_or_new(data: &Path, scale: &str, today: NaiveDate) -> Plan {
        let kept = std::fs::read(Plan::file(data))
            .ok()
            .and_then(|b| serde_json::from_slice::<Plan>(&b).ok());
        match kept {
            Some(p) if p.scale == scale => p,
            _ => Plan {
                scale: scale.to_string(),
                seed: SEED,
                from: NaiveDate::from_ymd_opt(today.year() - 1, today.month(), 1).unwrap_or(today),
                to: today,
                complete: false,
            },
        }
    }

    pub fn save(&self, data: &Path) -> std::io::Result<()> {
        std::fs::write(
            Plan::file(data),
            serde_json::to_vec_pretty(self).expect("a plan serialises"),
        )
    }
}

/// The end offset (high watermark) of each of the topic's partitions.
fn ends(brokers: &str, topic: &str) -> Option<Vec<(i32, i64)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("log_level", "0")
        .create()
        .ok()?;
    let timeout = Duration::from_secs(3);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).ok()?;
    let t = metadata.topics().iter().find(|t| t.name() == topic)?;
    t.partitions()
        .iter()
        .map(|p| {
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout).ok()?;
            Some((p.id(), high))
        })
        .collect()
}

/// Messages the topic holds.
pub fn in_topic(brokers: &str, topic: &str) -> Option<u64> {
    Some(
        ends(brokers, topic)?
            .iter()
            .map(|(_, h)| (*h).max(0) as u64)
            .sum(),
    )
}

/// Messages of the topic the lake does not hold yet: each partition's end against the
/// furthest position a table of the lake committed for it (the positions live with the
/// data, so this is what ingest has really stored, not what it was told).
fn behind(
    lake: &Lake,
    brokers: &str,
    topic: &str,
    runtime: &tokio::runtime::Runtime,
) -> Option<u64> {
    let ends = ends(brokers, topic)?;
    let sources: Vec<String> = ends
        .iter()
        .map(|(p, _)| format!("kafka:{topic}:{p}"))
        .collect();
    let positions = runtime.block_on(lake.positions_of_sources(&sources)).ok()?;
    Some(
        ends.iter()
            .zip(&sources)
            .map(|((_, high), source)| {
                let done = positions
                    .get(source)
                    .and_then(|by_table| by_table.values().flatten().max().copied())
                    .map_or(0, |last| last + 1);
                (high - done).max(0) as u64
            })
            .sum(),
    )
}

/// Streams the plan's events into `topic` (in a thread of its own), unless the broker
/// has them all already, and reports the progress until the lake has caught up.
pub fn stream(
    data: PathBuf,
    lake: Location,
    mut plan: Plan,
    brokers: String,
    topic: String,
    metrics: Arc<Metrics>,
    stopping: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        let held = in_topic(&brokers, &topic).unwrap_or(0);
        if plan.complete {
            println!(
                "demo: the broker holds the whole stream ({held} messages, {} to {}); not streaming it again",
                plan.from, plan.to
            );
            progress(
                &Watch {
                    lake,
                    brokers,
                    topic,
                    metrics,
                    stopping,
                },
                None,
            );
            return;
        }
        let skip = held.saturating_sub(RESEND_MARGIN);
        if let Err(e) = plan.save(&data) {
            eprintln!(
                "demo: cannot keep the stream's plan in {}: {e}",
                data.display()
            );
        }
        println!(
            "demo: streaming a generated {} network, {} to {}, into {brokers}{}",
            plan.scale,
            plan.from,
            plan.to,
            if skip > 0 {
                format!(" (resuming after {skip} of the {held} lines the broker holds)")
            } else {
                String::new()
            }
        );
        let done = Arc::new(AtomicBool::new(false));
        let reporter = {
            let watch = Watch {
                lake,
                brokers: brokers.clone(),
                topic: topic.clone(),
                metrics,
                stopping: stopping.clone(),
            };
            let done = done.clone();
            std::thread::spawn(move || progress(&watch, Some(&done)))
        };
        let generated = generate(&plan, skip, &brokers, &topic, &stopping);
        if generated {
            plan.complete = true;
            if let Err(e) = plan.save(&data) {
                eprintln!("demo: cannot keep the stream's plan: {e}");
            }
        }
        done.store(true, Ordering::Relaxed);
        let _ = reporter.join();
    });
}

/// Runs the generator; whether it finished.
fn generate(plan: &Plan, skip: u64, brokers: &str, topic: &str, stopping: &AtomicBool) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("demo: cannot find the wenming executable to generate with: {e}");
            return false;
        }
    };
    let status = std::process::Command::new(exe)
        .args([
            "generate",
            "--scale",
            &plan.scale,
            "--seed",
            &plan.seed.to_string(),
        ])
        .args([
            "--from",
            &plan.from.to_string(),
            "--to",
            &plan.to.to_string(),
        ])
        .args(["--skip-lines", &skip.to_string()])
        .args(["--brokers", brokers, "--topic", topic])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => true,
        // Ctrl-C in a terminal reaches the generator too (same process group), often
        // before the demo itself has begun to stop: that is the user stopping the demo,
        // not a failure.
        Ok(s)
            if stopping.load(Ordering::Relaxed)
                || matches!(s.signal(), Some(libc::SIGINT | libc::SIGTERM)) =>
        {
            eprintln!(
                "demo: streaming stopped; running the demo again resumes it, and what landed is not stored twice"
            );
            false
        }
        Ok(s) => {
            eprintln!(
                "demo: generating the stream failed ({s}); the API keeps serving what landed"
            );
            false
        }
        Err(e) => {
            eprintln!("demo: cannot start the stream's generator: {e}");
            false
        }
    }
}

/// What the progress report looks at.
struct Watch {
    lake: Location,
    brokers: String,
    topic: String,
    metrics: Arc<Metrics>,
    stopping: Arc<AtomicBool>,
}

/// Every few seconds: what ingest stored and how far the lake is behind the broker; once
/// the generator is done (or was before) and the lake holds everything, says so.
fn progress(w: &Watch, generating: Option<&AtomicBool>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let lake = Lake::new(w.lake.clone());
    let started = Instant::now();
    loop {
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(500));
            if w.stopping.load(Ordering::Relaxed) {
                return;
            }
        }
        let m = w.metrics.snapshot();
        let generated = generating.is_none_or(|g| g.load(Ordering::Relaxed));
        let Some(behind) = behind(&lake, &w.brokers, &w.topic, &runtime) else {
            continue;
        };
        if generated && behind == 0 {
            println!(
                "demo: the lake has caught up: it holds every event of the stream ({} stored in this run, {} re-sent ones skipped)",
                m.stored, m.duplicates
            );
            return;
        }
        println!(
            "demo: {} stored ({} / s), {behind} in the broker not yet in the lake{}",
            m.stored,
            m.stored / started.elapsed().as_secs().max(1),
            if generated { "" } else { ", still generating" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_the_year_to_today_and_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let p = Plan::load_or_new(dir.path(), "district", today);
        assert_eq!(
            (p.from, p.to),
            (NaiveDate::from_ymd_opt(2025, 12, 1).unwrap(), today)
        );
        let mut done = p.clone();
        done.complete = true;
        done.save(dir.path()).unwrap();
        let later = NaiveDate::from_ymd_opt(2027, 1, 9).unwrap();
        assert_eq!(Plan::load_or_new(dir.path(), "district", later), done);
        assert_ne!(Plan::load_or_new(dir.path(), "tiny", later), done);
    }
}
