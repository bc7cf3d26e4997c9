//! A synthetic practice network and its event stream, deterministic for a seed.
//!
//! - [`network`]: the units of a [`Scale`] (districts, streets, stations, points) with
//!   residents, teams and volunteers drawn from real-looking distributions.
//! - [`calendar`]: the civic calendar (service day on the 5th, 学雷锋日, 志愿者日, lunar
//!   festivals) that shapes when activities happen.
//! - [`unit_sim`]: one unit's life a day at a time; each day starts stories (activities,
//!   service shifts, orders, wishes, feedback, registrations) that write all their events.
//! - [`emit`]: turns a story's facts into lines: ids, offsets, late arrival, re-sends.
//! - [`defect`]: lines broken in each way the contract names (`--invalid-rate`).
//!
//! [`generate`] runs the days in order. Units are simulated in parallel (each has its own
//! random stream per day, so threads do not change the output); every line lands in the
//! bucket of the day it *arrives*, and a bucket is written, sorted, once no later story
//! can add to it. Memory holds only the lines still in flight (about a week of them).

pub mod calendar;
pub mod defect;
pub mod emit;
pub mod network;
pub mod rng;
pub mod unit_sim;

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{Duration, NaiveDate};
use rayon::prelude::*;
use wenming_schemas::EventType;

pub use emit::Stats;
pub use network::Scale;

use emit::{Emitter, Line, StreamSettings};
use unit_sim::{Day, UnitSim};

/// Days before `from` on which activities of the range may already be published.
const PUBLICATION_LEAD_DAYS: i64 = 14;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("--from {from} is after --to {to}")]
    EmptyRange { from: NaiveDate, to: NaiveDate },
    #[error("{name} must be between 0 and 1, got {value}")]
    BadRate { name: &'static str, value: f64 },
    #[error("cannot write the stream: {0}")]
    Write(#[from] std::io::Error),
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub scale: Scale,
    pub seed: u64,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Share of lines broken in one of the contract's ways.
    pub invalid_rate: f64,
    /// Share of valid events re-sent (same `event_id`, same bytes).
    pub duplicate_rate: f64,
}

impl Options {
    /// The defaults of a scale: its usual date range, no invalid lines, 0.5 % re-sends.
    pub fn new(scale: Scale, seed: u64) -> Self {
        let (from, to) = scale.default_range();
        Options {
            scale,
            seed,
            from,
            to,
            invalid_rate: 0.0,
            duplicate_rate: 0.005,
        }
    }

    fn check(&self) -> Result<(), SynthError> {
        if self.from > self.to {
            return Err(SynthError::EmptyRange {
                from: self.from,
                to: self.to,
            });
        }
        for (name, value) in [
            ("--invalid-rate", self.invalid_rate),
            ("--duplicate-rate", self.duplicate_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(SynthError::BadRate { name, value });
            }
        }
        Ok(())
    }
}

/// Where the run is, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub days_done: u64,
    pub days_total: u64,
    pub lines_written: u64,
}

/// What a run wrote.
#[derive(Debug, Clone)]
pub struct Summary {
    pub units: usize,
    pub stats: Stats,
}

impl Summary {
    /// Valid events per type name.
    pub fn by_type(&self) -> BTreeMap<&'static str, u64> {
        EventType::ALL
            .iter()
            .zip(&self.stats.by_type)
            .map(|(t, n)| (t.name(), *n))
            .collect()
    }
}

fn local_day(micros: i64) -> i64 {
    (micros.div_euclid(1_000_000) + 8 * 3600).div_euclid(86_400)
}

/// Generates the stream into `out`, one event per line, in arrival order.
pub fn generate<W: Write>(
    options: &Options,
    mut out: W,
    mut progress: impl FnMut(Progress),
) -> Result<Summary, SynthError> {
    options.check()?;
    let Options {
        scale,
        seed,
        from,
        to,
        ..
    } = *options;
    let weights = calendar::weights(from, to);
    let units = network::build(scale, seed, from, to);
    let n_units = units.len();
    let mut sims: Vec<UnitSim> = units
        .into_par_iter()
        .map(|u| UnitSim::new(u, seed, from, to, &weights))
        .collect();

    let end = to
        .succ_opt()
        .unwrap_or(to)
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists");
    let settings = StreamSettings {
        invalid_rate: options.invalid_rate,
        duplicate_rate: options.duplicate_rate,
        end_us: (end - Duration::hours(8)).and_utc().timestamp_micros() - 1,
    };

    let first = from - Duration::days(PUBLICATION_LEAD_DAYS);
    let days_total = (to - first).num_days() as u64 + 1;
    let mut stats = Stats {
        by_type: vec![0; EventType::ALL.len()],
        ..Stats::default()
    };
    // Lines in flight, by the local day they arrive.
    let mut buckets: BTreeMap<i64, Vec<Line>> = BTreeMap::new();
    let mut written = 0u64;

    for (i, date) in first.iter_days().take_while(|d| *d <= to).enumerate() {
        let in_range = date >= from;
        let day = Day {
            date,
            in_range,
            weight: if in_range {
                weights[(date - from).num_days() as usize]
            } else {
                1.0
            },
        };
        let outputs: Vec<(Vec<Line>, Stats)> = sims
            .par_iter_mut()
            .map(|sim| {
                let no = sim.info.no;
                let rng = rng::stream(seed, &[2, u64::from(no), i as u64]);
                let mut em = Emitter::new(&settings, rng, no, i as u32);
                if i == 0 {
                    sim.history(&mut em, from);
                }
                sim.day(&day, &mut em);
                (em.lines, em.stats)
            })
            .collect();
        for (lines, s) in outputs {
            stats.merge(s);
            for line in lines {
                buckets
                    .entry(local_day(line.arrival))
                    .or_default()
                    .push(line);
            }
        }
        // Every story still to come starts after today, so today's arrivals are final.
        let today = local_day(
            date.and_hms_opt(12, 0, 0)
                .expect("noon exists")
                .and_utc()
                .timestamp_micros(),
        );
        written += flush(&mut buckets, Some(today), &mut out)?;
        progress(Progress {
            days_done: i as u64 + 1,
            days_total,
            lines_written: written,
        });
    }
    written += flush(&mut buckets, None, &mut out)?;
    out.flush()?;
    progress(Progress {
        days_done: days_total,
        days_total,
        lines_written: written,
    });
    debug_assert_eq!(written, stats.lines());
    Ok(Summary {
        units: n_units,
        stats,
    })
}

/// Writes, in arrival order, every bucket up to `through` (all of them with `None`).
fn flush<W: Write>(
    buckets: &mut BTreeMap<i64, Vec<Line>>,
    through: Option<i64>,
    out: &mut W,
) -> Result<u64, SynthError> {
    let mut n = 0;
    while let Some(entry) = buckets.first_entry() {
        if through.is_some_and(|t| *entry.key() > t) {
            break;
        }
        let mut lines = entry.remove();
        lines.par_sort_unstable_by_key(Line::key);
        for line in &lines {
            out.write_all(&line.bytes)?;
            out.write_all(b"\n")?;
        }
        n += lines.len() as u64;
    }
    Ok(n)
}
