//! Turning a story's facts into lines of the stream: an event id, the offset the sender
//! writes, when the line *arrives* (stations sync late), exact re-sends, and, at the
//! invalid rate, a line broken in one of the ways the contract names.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use rand::Rng;
use wenming_schemas::{Event, EventData, EventType, Family, Id, Text, Timestamp};

use crate::defect;
use crate::rng::{self, SimRng};

const MINUTE_US: i64 = 60_000_000;
const HOUR_US: i64 = 60 * MINUTE_US;
const DAY_US: i64 = 24 * HOUR_US;

/// One line of output, with the key that orders the stream.
pub struct Line {
    /// When the line reaches the pipeline (µs since epoch): the stream is sorted by it.
    pub arrival: i64,
    /// Tie-breakers that make the order independent of thread scheduling.
    pub unit: u32,
    pub day: u32,
    pub seq: u32,
    pub bytes: Box<[u8]>,
}

impl Line {
    pub fn key(&self) -> (i64, u32, u32, u32) {
        (self.arrival, self.unit, self.day, self.seq)
    }
}

/// What was written, so a run can be checked against `wenming validate`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Valid events, each counted once (re-sends not included).
    pub events: u64,
    /// Exact re-sends of valid events (same `event_id`, same bytes).
    pub duplicates: u64,
    /// Broken lines by the rejection code the decoder gives them.
    pub invalid: BTreeMap<String, u64>,
    /// Valid events per type, in catalog order.
    pub by_type: Vec<u64>,
    /// Events that would have happened after `to`: not written.
    pub beyond_range: u64,
}

impl Stats {
    pub fn merge(&mut self, other: Stats) {
        self.events += other.events;
        self.duplicates += other.duplicates;
        for (k, v) in other.invalid {
            *self.invalid.entry(k).or_default() += v;
        }
        if self.by_type.len() < other.by_type.len() {
            self.by_type.resize(other.by_type.len(), 0);
        }
        for (a, b) in self.by_type.iter_mut().zip(other.by_type) {
            *a += b;
        }
        self.beyond_range += other.beyond_range;
    }

    pub fn lines(&self) -> u64 {
        self.events + self.duplicates + self.invalid.values().sum::<u64>()
    }
}

/// Settings shared by every emitter of a run.
pub struct StreamSettings {
    pub invalid_rate: f64,
    pub duplicate_rate: f64,
    /// Events after this instant (µs) are not written.
    pub end_us: i64,
}

/// Collects the lines of one unit's day.
pub struct Emitter<'a> {
    pub rng: SimRng,
    settings: &'a StreamSettings,
    unit: u32,
    day: u32,
    seq: u32,
    pub lines: Vec<Line>,
    pub stats: Stats,
    scratch: Vec<u8>,
}

impl<'a> Emitter<'a> {
    pub fn new(settings: &'a StreamSettings, rng: SimRng, unit: u32, day: u32) -> Self {
        Emitter {
            rng,
            settings,
            unit,
            day,
            seq: 0,
            lines: Vec::new(),
            scratch: Vec::with_capacity(1024),
            stats: Stats {
                by_type: vec![0; EventType::ALL.len()],
                ..Stats::default()
            },
        }
    }

    /// A delay drawn from how stations sync: most within minutes, some the same day,
    /// a few days late.
    fn arrival_delay(&mut self) -> i64 {
        let r: f64 = self.rng.random();
        if r < 0.80 {
            self.rng.random_range(0..10 * MINUTE_US)
        } else if r < 0.95 {
            self.rng.random_range(10 * MINUTE_US..DAY_US)
        } else {
            self.rng.random_range(DAY_US..7 * DAY_US)
        }
    }

    /// Writes one event that happened at `at`, owned by `unit_id`. `on_time`: it arrives
    /// as it happens (history loaded at the start).
    pub fn emit(
        &mut self,
        unit_id: &str,
        at: DateTime<FixedOffset>,
        data: impl Into<EventData>,
        source: Option<&'static str>,
        on_time: bool,
    ) {
        let occurred_us = at.timestamp_micros();
        if occurred_us > self.settings.end_us {
            self.stats.beyond_range += 1;
            return;
        }
        let mut random = [0u8; 10];
        self.rng.fill(&mut random);
        let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let event = Event {
            event_id: uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid(),
            occurred_at: Timestamp(at),
            unit_id: Id(unit_id.to_owned()),
            source: source.map(Text::from),
            data: data.into(),
        };
        let event_type = event.event_type();
        // Serialise into a reused buffer, then copy once into an exact-size line.
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, &event).expect("events always serialize");
        let bytes = self.scratch.clone();
        let arrival = occurred_us + if on_time { 0 } else { self.arrival_delay() };

        // Reference data stays intact: breaking it would only make the rest orphans.
        let breakable = !matches!(event_type.family(), Family::Unit | Family::Team);
        if breakable && rng::chance(&mut self.rng, self.settings.invalid_rate) {
            let (broken, code) = defect::break_line(&bytes, &mut self.rng);
            *self.stats.invalid.entry(code).or_default() += 1;
            self.push(arrival, broken);
            return;
        }
        self.stats.events += 1;
        let type_index = EventType::ALL
            .iter()
            .position(|t| *t == event_type)
            .expect("types come from the catalog");
        self.stats.by_type[type_index] += 1;
        if rng::chance(&mut self.rng, self.settings.duplicate_rate) {
            let resend = arrival + self.rng.random_range(1_000_000..2 * DAY_US);
            self.stats.duplicates += 1;
            self.push(resend, bytes.clone());
        }
        self.push(arrival, bytes);
    }

    fn push(&mut self, arrival: i64, bytes: Vec<u8>) {
        self.seq += 1;
        self.lines.push(Line {
            arrival,
            unit: self.unit,
            day: self.day,
            seq: self.seq,
            bytes: bytes.into_boxed_slice(),
        });
    }
}
