//! `wenming lake info|optimize|vacuum`: look after the lake.

use std::process::ExitCode;

use anyhow::Context;
use wenming_ingest::lake::{Lake, MIN_VACUUM_RETENTION};
use wenming_ingest::location::{Location, StoreSettings};

/// The `--lake` option every command that uses the lake takes, and the settings of an
/// object store (`[lake]` in wenming.toml; unset ones come from the `AWS_*` environment).
#[derive(clap::Args)]
pub struct LakeDir {
    /// The lake: a directory (one Delta table per event family, created if missing by
    /// the commands that write) or an S3-compatible store's `s3://bucket/prefix`.
    #[arg(
        long = "lake",
        env = "WENMING_LAKE__PATH",
        default_value = "./wenming-data/lake"
    )]
    pub path: Location,
    /// Object store endpoint, e.g. http://minio:9000 (default: AWS_ENDPOINT_URL, or AWS).
    #[arg(
        long = "lake-endpoint",
        env = "WENMING_LAKE__ENDPOINT",
        hide_short_help = true
    )]
    pub endpoint: Option<String>,
    /// Object store region (default: AWS_REGION).
    #[arg(
        long = "lake-region",
        env = "WENMING_LAKE__REGION",
        hide_short_help = true
    )]
    pub region: Option<String>,
    /// Access key id (default: AWS_ACCESS_KEY_ID).
    #[arg(
        long = "lake-access-key-id",
        env = "WENMING_LAKE__ACCESS_KEY_ID",
        hide_short_help = true
    )]
    pub access_key_id: Option<String>,
    /// Secret access key: environment or file only, never a flag (it would show in ps).
    #[arg(skip = std::env::var("WENMING_LAKE__SECRET_ACCESS_KEY").ok())]
    pub secret_access_key: Option<String>,
    /// Path-style bucket addressing (MinIO and most self-hosted stores).
    #[arg(
        long = "lake-path-style",
        env = "WENMING_LAKE__PATH_STYLE",
        hide_short_help = true
    )]
    pub path_style: Option<bool>,
    /// Allow a plain-HTTP endpoint.
    #[arg(
        long = "lake-allow-http",
        env = "WENMING_LAKE__ALLOW_HTTP",
        hide_short_help = true
    )]
    pub allow_http: Option<bool>,
}

impl LakeDir {
    /// The lake's location with the store settings given.
    pub fn location(&self) -> Location {
        self.path.clone().with_settings(&StoreSettings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            path_style: self.path_style,
            allow_http: self.allow_http,
        })
    }
}

#[derive(clap::Subcommand)]
pub enum LakeCommand {
    /// Tables, versions, row and file counts, and the committed position of every
    /// source (Kafka partition offsets, imported files' last lines).
    Info {
        #[command(flatten)]
        lake: LakeDir,
    },
    /// Compact small files into larger ones (OPTIMIZE), table by table. Readers keep
    /// working; the old files stay until `vacuum`. Committed positions are untouched.
    Optimize {
        #[command(flatten)]
        lake: LakeDir,
        /// Target size of the rewritten files, in MiB.
        #[arg(long, default_value_t = 128)]
        target_mib: u64,
    },
    /// Delete files that no table version younger than the retention uses.
    ///
    /// Guarded: a retention under 168 hours (7 days) could delete files a reader or a
    /// time-travel query still uses, and is refused unless --force.
    Vacuum {
        #[command(flatten)]
        lake: LakeDir,
        /// Keep files needed by versions younger than this many hours.
        #[arg(long, default_value_t = 168)]
        retention_hours: i64,
        /// List what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow a retention under 168 hours.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(command: LakeCommand) -> anyhow::Result<ExitCode> {
    match command {
        LakeCommand::Info { lake } => info(lake.location()),
        LakeCommand::Optimize { lake, target_mib } => optimize(lake.location(), target_mib),
        LakeCommand::Vacuum {
            lake,
            retention_hours,
            dry_run,
            force,
        } => vacuum(lake.location(), retention_hours, dry_run, force),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

/// A lake on disk must exist (a typo would otherwise make an empty one); a store's
/// prefix has no existence of its own.
fn existing(root: &Location) -> anyhow::Result<()> {
    if let Some(dir) = root.as_local() {
        anyhow::ensure!(
            dir.is_dir(),
            "no lake at {}: the directory does not exist",
            dir.display()
        );
    }
    Ok(())
}

fn optimize(root: Location, target_mib: u64) -> anyhow::Result<ExitCode> {
    existing(&root)?;
    let done = runtime()?.block_on(Lake::new(&root).optimize(target_mib.max(1) << 20))?;
    for c in &done {
        println!(
            "{:<20} {} files compacted into {}",
            c.table, c.files_removed, c.files_added
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn vacuum(
    root: Location,
    retention_hours: i64,
    dry_run: bool,
    force: bool,
) -> anyhow::Result<ExitCode> {
    existing(&root)?;
    let retention = chrono::Duration::hours(retention_hours.max(0));
    anyhow::ensure!(
        force || retention >= MIN_VACUUM_RETENTION,
        "a retention of {retention_hours} hours is under 168 (7 days): files a reader or a \
         time-travel query still uses could be deleted; pass --force to do it anyway"
    );
    let done = runtime()?.block_on(Lake::new(&root).vacuum(retention, dry_run, force))?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    for v in &done {
        println!("{:<20} {verb} {} files", v.table, v.files.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn info(root: Location) -> anyhow::Result<ExitCode> {
    existing(&root)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let tables = runtime.block_on(Lake::new(&root).info())?;
    println!("lake {root}");
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
    // By source: one line when every table holding the source agrees (the usual case
    // after a clean stop), else one line per table.
    let mut by_source: std::collections::BTreeMap<&str, Vec<(&str, i64)>> = Default::default();
    for t in &tables {
        for (app_id, position) in &t.positions {
            by_source
                .entry(app_id)
                .or_default()
                .push((t.table, *position));
        }
    }
    if !by_source.is_empty() {
        println!("\ncommitted positions (source → last offset or line committed):");
        let existing = tables.iter().filter(|t| t.version.is_some()).count();
        for (app_id, at) in &by_source {
            let first = at[0].1;
            if at.len() == existing && at.iter().all(|(_, p)| *p == first) {
                println!("  {app_id} → {first} (all tables)");
            } else {
                for (table, position) in at {
                    println!("  {app_id} → {position} ({table})");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
