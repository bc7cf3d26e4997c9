//! `wenming validate FILE`: every line checked against the event contract, counted by
//! type and by rejection code.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use wenming_ingest::ndjson::{CHUNK_BYTES, NdjsonReader, decode_chunk};

#[derive(clap::Args)]
pub struct Args {
    /// NDJSON file of events, one per line (`-` reads standard input).
    file: PathBuf,
    /// `text` for people; `json` for one machine-readable object on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Serialize)]
struct RejectedLine {
    line: u64,
    reason: String,
    message: String,
}

/// The counts of one file.
#[derive(Serialize, Default)]
struct Report {
    /// Non-blank lines read.
    lines: u64,
    /// Lines that are valid events (re-sends included).
    valid: u64,
    /// Valid lines whose event_id was already seen in the file (exact re-sends).
    duplicates: u64,
    /// Valid lines by event type.
    by_type: BTreeMap<&'static str, u64>,
    /// Rejected lines by the contract's reason code.
    rejected: BTreeMap<String, u64>,
    /// Every rejected line, in file order.
    rejections: Vec<RejectedLine>,
}

fn tally(input: impl BufRead, size: Option<u64>) -> io::Result<Report> {
    let mut reader = NdjsonReader::new(input);
    let mut report = Report::default();
    let mut seen: HashSet<u128> = HashSet::new();
    let bar = super::progress::bar(
        size.unwrap_or(0),
        "validating {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    );
    if size.is_none() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    loop {
        let chunk = reader.next_chunk(CHUNK_BYTES)?;
        if chunk.is_empty() {
            break;
        }
        for (record, decoded) in chunk.iter().zip(decode_chunk(&chunk)) {
            report.lines += 1;
            match decoded {
                Ok(event) => {
                    report.valid += 1;
                    *report.by_type.entry(event.event_type().name()).or_default() += 1;
                    if !seen.insert(event.event_id.as_u128()) {
                        report.duplicates += 1;
                    }
                }
                Err(rejection) => {
                    let reason = rejection.reason();
                    *report.rejected.entry(reason.clone()).or_default() += 1;
                    report.rejections.push(RejectedLine {
                        line: record.number(),
                        reason,
                        message: rejection.message,
                    });
                }
            }
        }
        bar.set_position(reader.bytes_read());
    }
    bar.finish_and_clear();
    Ok(report)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = if args.file.as_os_str() == "-" {
        tally(io::stdin().lock(), None).context("cannot read standard input")?
    } else {
        let file = File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        tally(BufReader::with_capacity(1 << 20, file), size)
            .with_context(|| format!("cannot read {}", args.file.display()))?
    };
    let mut out = io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Text => print_text(&mut out, &args.file, &report)?,
    }
    Ok(if report.rejections.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// How many rejected lines the text report lists before pointing to `--format json`.
const TEXT_REJECTIONS: usize = 20;

fn print_text(out: &mut impl Write, file: &std::path::Path, r: &Report) -> io::Result<()> {
    let rejected = r.lines - r.valid;
    writeln!(
        out,
        "{}: {} lines, {} valid ({} re-sent duplicates), {} rejected",
        file.display(),
        r.lines,
        r.valid,
        r.duplicates,
        rejected
    )?;
    if !r.by_type.is_empty() {
        writeln!(out, "\nvalid events by type:")?;
        for (t, n) in &r.by_type {
            writeln!(out, "  {t:<26} {n:>12}")?;
        }
    }
    if !r.rejected.is_empty() {
        writeln!(out, "\nrejected lines by reason:")?;
        for (code, n) in &r.rejected {
            writeln!(out, "  {code:<26} {n:>12}")?;
        }
        writeln!(out, "\nrejected lines:")?;
        for rej in r.rejections.iter().take(TEXT_REJECTIONS) {
            writeln!(out, "  line {}: {}: {}", rej.line, rej.reason, rej.message)?;
        }
        if r.rejections.len() > TEXT_REJECTIONS {
            writeln!(
                out,
                "  ... and {} more (use --format json to list them all)",
                r.rejections.len() - TEXT_REJECTIONS
            )?;
        }
    }
    Ok(())
}
