//! `wenming bench kpi`: every KPI at month × district over a year of a city-scale lake,
//! cold and cached, beside DuckDB computing all of them with plain SQL over the same
//! Parquet files (`tests/interop/kpis_duckdb.py`).
//!
//! Cold is measured two ways. By default one engine is opened and asked the 18 KPIs in
//! turn: each first answer is cold (no cached answer), and the views a KPI reads are
//! computed by the first KPI that needs them, which is what the DuckDB script does too
//! (it builds its tables once, then answers all 18), so the two totals compare. With
//! `--fresh-engine` every KPI gets a newly opened engine: the worst case, a question
//! right after a restart.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::NaiveDate;
use wenming_analytics::{Analytics, Granularity, Kpi, KpiRequest, Level, Scope, Settings};

#[derive(clap::Args)]
pub struct KpiBenchArgs {
    /// The lake to query; generated and imported first when it holds no events.
    #[arg(long, default_value = "./wenming-bench/city-lake")]
    lake: PathBuf,
    /// Scale of the data generated into an empty lake (city ≈ 30 M events).
    #[arg(long, default_value = "city")]
    scale: String,
    #[arg(long, default_value = "2024-01-01")]
    from: NaiveDate,
    #[arg(long, default_value = "2024-12-31")]
    to: NaiveDate,
    /// How many times each cached question is asked (the median is reported).
    #[arg(long, default_value_t = 50)]
    repeat: usize,
    /// Open a new engine for every KPI (cold includes computing its views).
    #[arg(long)]
    fresh_engine: bool,
    /// Ask a Ballista cluster (`ballista://HOST:PORT`, see `wenming ballista`) instead,
    /// beside this process computing the same SQL measures (`kpi --exact-recompute`).
    #[arg(long)]
    engine: Option<String>,
    /// The DuckDB script (needs python3 with duckdb and deltalake); skipped if absent.
    #[arg(long, default_value = "tests/interop/kpis_duckdb.py")]
    duckdb_script: PathBuf,
}

/// Every KPI on the cluster, and the same SQL measures in this process, one after the
/// other per KPI (so that both meet the machine in the same state): times and ratios,
/// and the answers compared.
async fn on_cluster(args: &KpiBenchArgs, engine: &str) -> anyhow::Result<ExitCode> {
    let settings = Settings {
        engine: engine.parse().map_err(anyhow::Error::msg)?,
        ..Settings::default()
    };
    let cluster = Analytics::open(&args.lake, settings).await?;
    let here = Analytics::open(&args.lake, Settings::default()).await?;
    println!(
        "wenming bench kpi: {} .. {}, month × district, lake {}: on {engine} and in this process \
         (the same SQL measures)",
        args.from,
        args.to,
        args.lake.display()
    );
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "kpi", "cluster ms", "embedded ms", "ratio"
    );
    let (mut total_cluster, mut total_here, mut differ) = (Duration::ZERO, Duration::ZERO, 0);
    for kpi in Kpi::ALL {
        let req = question(args, *kpi);
        let t = Instant::now();
        let far = cluster.kpi(&req, &Scope::City).await?;
        let far_time = t.elapsed();
        let t = Instant::now();
        let near = here.kpi_exact(&req, &Scope::City).await?;
        let near_time = t.elapsed();
        if far.rows != near.rows {
            differ += 1;
        }
        total_cluster += far_time;
        total_here += near_time;
        println!(
            "{:<28} {:>12.1} {:>12.1} {:>8.2}",
            kpi.name(),
            ms(far_time),
            ms(near_time),
            far_time.as_secs_f64() / near_time.as_secs_f64()
        );
    }
    println!(
        "{:<28} {:>12.1} {:>12.1} {:>8.2}",
        "all 18",
        ms(total_cluster),
        ms(total_here),
        total_cluster.as_secs_f64() / total_here.as_secs_f64()
    );
    if differ > 0 {
        println!("{differ} answers differ between the cluster and this process");
        return Ok(ExitCode::FAILURE);
    }
    println!("every answer the same");
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: KpiBenchArgs) -> anyhow::Result<ExitCode> {
    if !args.lake.join("service_events").join("_delta_log").is_dir() {
        prepare(&args.lake, &args.scale)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(engine) = &args.engine {
        return runtime.block_on(on_cluster(&args, engine));
    }
    let mut cold_total = Duration::ZERO;
    let mut failed = 0;
    println!(
        "wenming bench kpi: {} .. {}, month × district, lake {}{}",
        args.from,
        args.to,
        args.lake.display(),
        if args.fresh_engine {
            ", a fresh engine per KPI"
        } else {
            ", one engine"
        }
    );
    let started = Instant::now();
    let mut engine = Some(runtime.block_on(Analytics::open(&args.lake, Settings::default()))?);
    let opened = started.elapsed();
    cold_total += opened;
    println!("engine opened (Delta logs read) in {:.1} ms", ms(opened));
    println!(
        "{:<28} {:>10} {:>12} {:>7}",
        "kpi", "cold ms", "cached ms", "rows"
    );
    for kpi in Kpi::ALL {
        let req = question(&args, *kpi);
        let result = runtime.block_on(async {
            let started = Instant::now();
            if args.fresh_engine {
                engine = None; // its memory back before the next one loads
                engine = Some(Analytics::open(&args.lake, Settings::default()).await?);
            }
            let analytics = engine.as_ref().expect("opened above");
            let answer = analytics.kpi(&req, &Scope::City).await?;
            let cold = started.elapsed();
            let mut times = Vec::with_capacity(args.repeat);
            for _ in 0..args.repeat.max(1) {
                let t = Instant::now();
                let again = analytics.kpi(&req, &Scope::City).await?;
                times.push(t.elapsed());
                assert_eq!(again.rows.len(), answer.rows.len());
            }
            times.sort();
            anyhow::Ok((cold, times[times.len() / 2], answer.rows.len()))
        });
        // A KPI that fails (e.g. over the engine's memory limit) is reported and the
        // run goes on, so one failure does not hide the other figures.
        let (cold, cached, rows) = match result {
            Ok(r) => r,
            Err(e) => {
                failed += 1;
                println!("{:<28} failed: {e:#}", kpi.name());
                continue;
            }
        };
        cold_total += cold;
        println!(
            "{:<28} {:>10.1} {:>12.4} {:>7}",
            kpi.name(),
            ms(cold),
            ms(cached),
            rows
        );
    }
    println!(
        "{:<28} {:>10.1}",
        format!("all {}, cold (with open)", Kpi::ALL.len() - failed),
        ms(cold_total)
    );
    match duckdb(&args)? {
        Some(t) => println!(
            "DuckDB, all 18 KPIs in one process: {:.1} ms → wenming cold / DuckDB = {:.2}",
            ms(t),
            cold_total.as_secs_f64() / t.as_secs_f64()
        ),
        None => println!(
            "DuckDB: not run (python3 with duckdb and deltalake, and the script, are needed)"
        ),
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The question the bench asks of each KPI: month × district over the range.
fn question(args: &KpiBenchArgs, kpi: Kpi) -> KpiRequest {
    KpiRequest {
        kpi,
        from: args.from,
        to: args.to,
        granularity: Granularity::Month,
        level: Level::District,
        area: None,
        compare: None,
        top: None,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn duckdb(args: &KpiBenchArgs) -> anyhow::Result<Option<Duration>> {
    let ready = Command::new("python3")
        .args(["-c", "import duckdb, deltalake"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready || !args.duckdb_script.is_file() {
        return Ok(None);
    }
    let started = Instant::now();
    let out = Command::new("python3")
        .arg(&args.duckdb_script)
        .arg(&args.lake)
        .args([
            &args.from.to_string(),
            &args.to.to_string(),
            "month",
            "district",
        ])
        .output()
        .context("cannot run python3")?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "the DuckDB script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(Some(took))
}

/// Generate the scale's stream and import it into `lake`: the benchmark's data.
pub(crate) fn prepare(lake: &Path, scale: &str) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the wenming binary")?;
    let parent = lake.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let file = parent.join(format!("{scale}.ndjson"));
    eprintln!("preparing: generating {scale} into {}", file.display());
    let status = Command::new(&exe)
        .args(["generate", "--scale", scale, "--seed", "7", "--out"])
        .arg(&file)
        .status()?;
    if !status.success() {
        bail!("generate failed");
    }
    eprintln!("preparing: importing into {}", lake.display());
    let status = Command::new(&exe)
        .arg("import")
        .arg(&file)
        .arg("--lake")
        .arg(lake)
        .status()?;
    if !status.success() {
        bail!("import failed");
    }
    Ok(())
}
