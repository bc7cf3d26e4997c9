//! `wenming import FILE --lake DIR`: an NDJSON file into the lake, without Kafka.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use wenming_ingest::import::{ImportOptions, import_file};
use wenming_ingest::lake::Lake;

#[derive(clap::Args)]
pub struct Args {
    /// NDJSON file of events, one per line.
    file: PathBuf,
    #[command(flatten)]
    lake: super::lake::LakeDir,
    /// Where rejected lines go, as NDJSON {"line","reason","message","raw"}.
    /// Default: FILE.rejects.ndjson beside the input.
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Events buffered (all tables together) before each commit.
    #[arg(long, default_value_t = 250_000)]
    batch_rows: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rejects_path = args.rejects.clone().unwrap_or_else(|| {
        let mut p = args.file.clone().into_os_string();
        p.push(".rejects.ndjson");
        PathBuf::from(p)
    });
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?
        .len();
    let rejects = File::create(&rejects_path)
        .with_context(|| format!("cannot create {}", rejects_path.display()))?;
    let lake = Lake::new(args.lake.location());
    let options = ImportOptions {
        batch_rows: args.batch_rows.max(1),
        ..ImportOptions::default()
    };
    let bar = super::progress::bar(
        size,
        "importing {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    );
    let started = Instant::now();
    let runtime = crate::memory::bounded_runtime().context("cannot start the async runtime")?;
    let stats = runtime.block_on(import_file(
        &args.file,
        &lake,
        &options,
        BufWriter::new(rejects),
        |bytes| bar.set_position(bytes),
    ))?;
    bar.finish_and_clear();
    if stats.rejected == 0 {
        let _ = std::fs::remove_file(&rejects_path);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}: read {} = stored {} + duplicates {} + rejected {} + already in the lake {} ({} commits, {:.1} s, {:.0} events/s)",
        args.file.display(),
        stats.read,
        stats.stored,
        stats.duplicates,
        stats.rejected,
        stats.already_stored,
        stats.commits,
        secs,
        stats.read as f64 / secs.max(1e-9),
    );
    for (table, n) in &stats.by_table {
        println!("  {table:<20} +{n}");
    }
    if stats.rejected > 0 {
        println!(
            "rejected lines and their reasons: {}",
            rejects_path.display()
        );
    }
    anyhow::ensure!(stats.reconciles(), "counts do not add up: {stats:?}");
    Ok(ExitCode::SUCCESS)
}
