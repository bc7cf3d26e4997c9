//! `wenming`: one binary, one subcommand per job. This file only parses arguments,
//! installs logging and hands over to a command module; the work lives in the crates.

mod commands;
mod config;
mod logging;
mod memory;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// wenming: event-sourced analytics for the New Era Civilization Practice network
/// (新时代文明实践). Stations send events; wenming checks them against the event contract,
/// keeps them in a Delta Lake, and computes the KPIs that civilization offices oversee.
#[derive(Parser)]
#[command(name = "wenming", version, propagate_version = true)]
struct Cli {
    /// Settings file (TOML, `[section] key = value` → WENMING_SECTION__KEY). Default:
    /// ./wenming.toml when it exists, or WENMING_CONFIG. Flags and environment win.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check an NDJSON file of events against the event contract (v1).
    ///
    /// Prints how many lines are valid, by event type, and how many were rejected, by
    /// the contract's reason code (missing_field:minutes, bad_value:unit_id, ...), with
    /// the line number and a sentence for each. Exit status: 0 when every line is valid,
    /// 1 when some are rejected, 2 on a usage or I/O error.
    Validate(commands::validate::Args),
    /// Generate a realistic synthetic practice network and its event stream.
    ///
    /// Deterministic for a seed. Lines come in arrival order (stations sync late), with
    /// exact re-sends at --duplicate-rate and, at --invalid-rate, lines broken in each
    /// way the contract names. Scales: tiny (1 district, 8 stations, 2 months), district
    /// (150 stations, 1 year), city (10 districts, 3,000 stations and points, ~30 M
    /// events, 1 year).
    Generate(commands::generate::Args),
    /// Import an NDJSON file of events into the lake, without Kafka.
    ///
    /// For historical ledgers and backfills: the same decode, dedup and routing as
    /// Kafka ingest, one Delta table per event family. Rejected lines are written with
    /// their reasons to a rejects file. Idempotent: importing the same file again stores
    /// nothing new, and an interrupted import resumes after its last commit.
    Import(commands::import::Args),
    /// Consume events from Kafka into the lake, exactly once.
    ///
    /// A consumer-group member (run more processes with the same --group to share the
    /// partitions). Valid events go to their family's Delta table; re-sent ones are
    /// counted and skipped; refused ones go to the dead-letter topic with their reason.
    /// Each commit records the Kafka offsets it covers, and on every (re)assignment
    /// ingest resumes from the lake, never from Kafka's group offsets.
    Ingest(commands::ingest::Args),
    /// Send an NDJSON file's lines to a Kafka topic (key = unit_id); exits when every
    /// message is acknowledged.
    Produce(commands::produce::Args),
    /// Run the embedded single-node Kafka-protocol broker for development and tests.
    ///
    /// Creates wenming.events and wenming.events.dlq, prints its bootstrap address.
    /// Durable (SQLite under --data) by default; --memory for throwaway runs. Not for
    /// production: use a real Kafka cluster there (see README).
    Broker(commands::broker::Args),
    /// Measure throughput (`wenming bench ingest`, `bench kpi`, `bench api`); figures in
    /// docs/benchmarks.md.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Run a Ballista scheduler or executor for `[analytics] engine = "ballista://…"`:
    /// KPI and SQL plans on a cluster (docs/deployment.md).
    #[command(subcommand)]
    Ballista(commands::ballista::BallistaCommand),
    /// Look into the lake (`wenming lake info`).
    #[command(subcommand)]
    Lake(commands::lake::LakeCommand),
    /// Compute a KPI of kpis.md over the lake (`wenming kpi --list` for the catalog).
    ///
    /// Answers in the contract's shape: one row per period and area (zeros shown),
    /// ratios with their numerator and denominator, with --compare the earlier value
    /// and the relative change.
    Kpi(commands::kpi::KpiArgs),
    /// Run read-only SQL (SELECT, WITH, EXPLAIN) over the lake's tables and views.
    Sql(commands::kpi::SqlArgs),
    /// The data-quality report: orphan check-ins, amendments without records, events
    /// for unknown units, late arrivals, duplicates, and what ingest rejected.
    Quality(commands::kpi::QualityArgs),
    /// Serve the API (KPIs, SQL, events, exports), with ingest, the embedded broker and
    /// the export scheduler in the same process unless turned off in the settings.
    ///
    /// With no settings file it runs on embedded defaults: a broker on 127.0.0.1:9092 and
    /// a lake under ./wenming-data, the API on 127.0.0.1:8080. Every setting and its
    /// default: README.md, "Configuration".
    Serve(commands::serve::ServeArgs),
    /// Serve on embedded defaults with a generated district streamed in: open the
    /// printed URL with the printed token and watch the numbers grow.
    Demo(commands::serve::DemoArgs),
    /// Run one configured export for a period by hand (files + manifest.json).
    Export(commands::serve::ExportArgs),
    /// Print the SHA-256 of a bearer token, for a [[tokens]] entry of the settings.
    TokenHash {
        /// The token (keep it secret; only its hash goes into the settings file).
        token: String,
    },
    /// Write the JSON Schema (draft 2020-12) of every event type, for station integrators.
    ///
    /// One file per type (`service.recorded.schema.json`, ...) plus `event.schema.json`
    /// that accepts any event. Without --out, prints `event.schema.json` to stdout.
    Schema(commands::schema::Args),
}

fn main() -> ExitCode {
    // `wenming lake info | head` should end quietly, like any Unix tool, not panic.
    // SAFETY: called first thing, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Before clap reads the environment, and before any thread exists.
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = config::load(&args) {
        eprintln!("error: {}", report(&e));
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    logging::install();
    let result = match cli.command {
        Command::Validate(args) => commands::validate::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Import(args) => commands::import::run(args),
        Command::Ingest(args) => commands::ingest::run(args),
        Command::Produce(args) => commands::produce::run(args),
        Command::Broker(args) => commands::broker::run(args),
        Command::Bench(command) => commands::bench::run(command),
        Command::Lake(command) => commands::lake::run(command),
        Command::Ballista(command) => commands::ballista::run(command),
        Command::Schema(args) => commands::schema::run(args),
        Command::Kpi(args) => commands::kpi::kpi(args),
        Command::Serve(args) => commands::serve::serve(args),
        Command::Demo(args) => commands::serve::demo(args),
        Command::Export(args) => commands::serve::export(args),
        Command::TokenHash { token } => {
            println!("{}", wenming_api::auth::hash_hex(&token));
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql(args) => commands::kpi::sql(args),
        Command::Quality(args) => commands::kpi::quality(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes, each said once. Most of our errors quote their cause in
/// their own message (`cannot reach the brokers at B: {source}`), and so do some of the
/// libraries' (rdkafka's); anyhow's `{:#}` then printed the same cause up to three times
/// over. A cause whose text is already in the message is left out.
fn report(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::report;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach the brokers at {at}: {source}")]
    struct Quoting {
        at: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct Silent(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let quoting = anyhow::Error::new(Quoting {
            at: "127.0.0.1:1",
            source: refused(),
        });
        assert_eq!(
            report(&quoting),
            "cannot reach the brokers at 127.0.0.1:1: refused"
        );
        // A cause the message does not quote is still said, and context comes first.
        let silent = anyhow::Error::new(Silent(refused())).context("ingest failed");
        assert_eq!(report(&silent), "ingest failed: cannot start: refused");
    }
}
