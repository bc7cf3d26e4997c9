//! `wenming lake info`: what the lake holds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use wenming_ingest::lake::Lake;

#[derive(clap::Subcommand)]
pub enum LakeCommand {
    /// Tables, versions, row and file counts, and the committed position of every
    /// source (Kafka partition offsets, imported files' last lines).
    Info {
        /// Lake directory.
        #[arg(
            long,
            env = "WENMING_LAKE__PATH",
            default_value = "./wenming-data/lake"
        )]
        lake: PathBuf,
    },
}

pub fn run(command: LakeCommand) -> anyhow::Result<ExitCode> {
    match command {
        LakeCommand::Info { lake } => info(lake),
    }
}

fn info(root: PathBuf) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        root.is_dir(),
        "no lake at {}: the directory does not exist",
        root.display()
    );
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let tables = runtime.block_on(Lake::new(&root).info())?;
    println!("lake {}", root.display());
    println!(
        "{:<20} {:>8} {:>12} {:>7} {:>12}",
        "table", "version", "rows", "files", "bytes"
    );
    for t in &tables {
        let version = t.version.map_or("-".to_owned(), |v| v.to_string());
        println!(
            "{:<20} {:>8} {:>12} {:>7} {:>12}",
            t.table, version, t.rows, t.files, t.bytes
        );
    }
    let with_positions: Vec<_> = tables.iter().filter(|t| !t.positions.is_empty()).collect();
    if !with_positions.is_empty() {
        println!("\ncommitted positions (source → last offset or line):");
        for t in with_positions {
            for (app_id, position) in &t.positions {
                println!("  {:<20} {app_id} → {position}", t.table);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
