//! `wenming generate`: a synthetic practice network's event stream, as NDJSON.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use wenming_ingest::producer::{LineProducer, LineWriter};
use wenming_synth::{Options, Scale};

#[derive(clap::Args)]
pub struct Args {
    /// How big a network: tiny (for tests), district, or city.
    #[arg(long, value_parser = parse_scale, default_value = "tiny")]
    scale: Scale,
    /// Random seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First day of the range (YYYY-MM-DD). Default: 2024-01-01.
    #[arg(long)]
    from: Option<NaiveDate>,
    /// Last day of the range, inclusive. Default: 2024-02-29 (tiny) or 2024-12-31.
    #[arg(long)]
    to: Option<NaiveDate>,
    /// Output file; standard output when omitted.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Share of lines broken in one of the contract's ways (0..=1).
    #[arg(long, default_value_t = 0.0)]
    invalid_rate: f64,
    /// Share of events re-sent with the same event_id (0..=1).
    #[arg(long, default_value_t = 0.005)]
    duplicate_rate: f64,
    /// Send the lines to Kafka (these bootstrap servers) instead of a file.
    #[arg(long, conflicts_with = "out")]
    brokers: Option<String>,
    /// Topic for --brokers.
    #[arg(long, default_value = "wenming.events", requires = "brokers")]
    topic: String,
    /// Leave out the first N lines (resuming an interrupted stream: the same seed gives
    /// the same lines).
    #[arg(long, default_value_t = 0)]
    skip_lines: u64,
    /// librdkafka properties for --brokers (`key=value`, repeatable).
    #[arg(
        short = 'X',
        long = "property",
        value_name = "KEY=VALUE",
        requires = "brokers"
    )]
    properties: Vec<String>,
}

fn parse_scale(s: &str) -> Result<Scale, String> {
    Scale::parse(s).ok_or_else(|| format!("unknown scale {s:?}: use tiny, district or city"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut options = Options::new(args.scale, args.seed);
    if let Some(from) = args.from {
        options.from = from;
    }
    if let Some(to) = args.to {
        options.to = to;
    }
    options.invalid_rate = args.invalid_rate;
    options.duplicate_rate = args.duplicate_rate;

    let started = Instant::now();
    if let Some(brokers) = &args.brokers {
        return to_kafka(&args, brokers, &options, started);
    }
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let out = SkipLines::new(BufWriter::with_capacity(4 << 20, sink), args.skip_lines);
    let bar = super::progress::bar(0, "generating {bar:40} day {pos}/{len} {msg} ({eta})");
    let summary = wenming_synth::generate(&options, out, |p| {
        bar.set_length(p.days_total);
        bar.set_position(p.days_done);
        bar.set_message(format!("{} lines", p.lines_written));
    })?;
    bar.finish_and_clear();

    report(
        &options,
        &summary,
        started,
        args.out.as_ref().map(|p| p.display().to_string()),
    );
    Ok(ExitCode::SUCCESS)
}

/// `generate --brokers`: the stream straight onto a topic, every line acknowledged.
fn to_kafka(
    args: &Args,
    brokers: &str,
    options: &Options,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut producer = runtime.block_on(LineProducer::connect(
        brokers,
        &args.topic,
        6,
        &args.properties,
    ))?;
    let bar = super::progress::bar(0, "generating {bar:40} day {pos}/{len} {msg} ({eta})");
    let summary = {
        let out = SkipLines::new(LineWriter::new(&mut producer), args.skip_lines);
        wenming_synth::generate(options, out, |p| {
            bar.set_length(p.days_total);
            bar.set_position(p.days_done);
            bar.set_message(format!("{} lines", p.lines_written));
        })?
    };
    bar.finish_and_clear();
    let produced = producer.finish()?;
    report(
        options,
        &summary,
        started,
        Some(format!(
            "{} at {} ({} acknowledged)",
            args.topic, brokers, produced.acked
        )),
    );
    Ok(ExitCode::SUCCESS)
}

fn report(
    options: &Options,
    summary: &wenming_synth::Summary,
    started: Instant,
    target: Option<String>,
) {
    let s = &summary.stats;
    let invalid: u64 = s.invalid.values().sum();
    eprintln!(
        "generated {} lines for {} units, {} to {} (seed {}) in {:.1} s: {} events, {} re-sent duplicates, {} invalid{}",
        s.lines(),
        summary.units,
        options.from,
        options.to,
        options.seed,
        started.elapsed().as_secs_f64(),
        s.events,
        s.duplicates,
        invalid,
        target.map(|t| format!(" → {t}")).unwrap_or_default(),
    );
}

/// A writer that drops the first `skip` lines it is given and passes the rest on.
struct SkipLines<W> {
    inner: W,
    skip: u64,
}

impl<W: Write> SkipLines<W> {
    fn new(inner: W, skip: u64) -> Self {
        SkipLines { inner, skip }
    }
}

impl<W: Write> Write for SkipLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut at = 0;
        while self.skip > 0 && at < buf.len() {
            match memchr::memchr(b'\n', &buf[at..]) {
                Some(i) => {
                    at += i + 1;
                    self.skip -= 1;
                }
                None => return Ok(buf.len()),
            }
        }
        if at < buf.len() {
            self.inner.write_all(&buf[at..])?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipping_lines_keeps_the_rest_whole() {
        let mut out = SkipLines::new(Vec::new(), 2);
        for chunk in ["a\nb", "\nc\n", "d\n"] {
            out.write_all(chunk.as_bytes()).unwrap();
        }
        assert_eq!(out.inner, b"c\nd\n");
    }
}
