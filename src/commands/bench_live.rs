//! `wenming bench live`: uncached questions while events keep landing.
//!
//! The scale's year is generated once; all but its last `rate × seconds` lines are
//! imported into a fresh lake, and `wenming serve` (ingest on) is started; once it has
//! prepared every KPI rollup (`/readyz` says so), it consumes the rest from a
//! `wenming broker --memory`, produced at a steady rate, while clients ask questions
//! nobody asked before: a random KPI × granularity × level × range within the year,
//! with a comparison (mom or yoy). Measured:
//! - answer time of those questions: p50 / p95 / p99 / max;
//! - freshness: a produced `service.*` event until `POST /v1/sql` finds it in
//!   `service_events` (every 500th such event is followed), p50 / p95;
//! - the server's peak RSS;
//! - restart to first answer: the server stopped (SIGTERM: the rollups are saved) and
//!   started on the lake it left.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Datelike;
use wenming_analytics::Kpi;
use wenming_ingest::producer::LineProducer;

use super::bench_api::{TOKEN, ms, percentile, start_server};

#[derive(clap::Args)]
pub struct LiveBenchArgs {
    /// Where the generated year and the lake live.
    #[arg(long, default_value = "./wenming-bench/live")]
    dir: PathBuf,
    /// Scale of the generated year (district or city).
    #[arg(long, default_value = "district")]
    scale: String,
    /// Events per second produced while the questions are asked.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Seconds the live stream lasts.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Clients asking at once (closed loop).
    #[arg(long, default_value_t = 2)]
    connections: usize,
}

/// Every this many `service.*` events produced, one is followed until visible.
const FOLLOW_EVERY: u64 = 500;

pub fn run(args: LiveBenchArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the wenming binary")?;
    std::fs::create_dir_all(&args.dir)?;
    let year = args.dir.join(format!("{}.ndjson", args.scale));
    if !year.is_file() {
        eprintln!(
            "preparing: generating the {} year into {}",
            args.scale,
            year.display()
        );
        let status = std::process::Command::new(&exe)
            .args(["generate", "--scale", &args.scale, "--seed", "7", "--out"])
            .arg(&year)
            .status()?;
        if !status.success() {
            bail!("generate failed");
        }
    }
    let lines = count_lines(&year)?;
    let live = (args.rate * args.seconds).min(lines / 2);
    let head = args.dir.join("head.ndjson");
    split(&year, &head, lines - live)?;
    let lake = args.dir.join("lake");
    if lake.exists() {
        std::fs::remove_dir_all(&lake)?;
    }
    eprintln!("preparing: importing {} of {lines} lines", lines - live);
    let status = std::process::Command::new(&exe)
        .arg("import")
        .arg(&head)
        .arg("--lake")
        .arg(&lake)
        .status()?;
    if !status.success() {
        bail!("import failed");
    }

    let (mut broker, bootstrap) = super::bench::start_broker(&exe, 6, None)?;
    let ingest =
        format!("[ingest]\nenabled = true\nbrokers = \"{bootstrap}\"\ntopic = \"wenming.live\"\n");
    let server = start_server(&lake, &ingest)?;
    let web = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let base = format!("http://{}", server.addr);
    let first = first_answer(&web, &base)?;
    println!(
        "wenming bench live: {} scale, {} lines imported, {live} produced at {}/s; {} client(s)",
        args.scale,
        lines - live,
        args.rate,
        args.connections
    );
    println!(
        "start to first answer: {:.1} s (views computed)",
        first.as_secs_f64()
    );
    // The live phase measures a server in its day, not its start: every KPI rollup
    // prepared (a server is started before the offices ask).
    let prepared = first + prepared(&web, &base)?;
    println!(
        "start to every KPI rollup prepared: {:.1} s",
        prepared.as_secs_f64()
    );

    let done = Arc::new(AtomicBool::new(false));
    let followed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let rss = sample_rss(server.pid(), done.clone());
    let producer = {
        let (year, bootstrap, followed, done) = (
            year.clone(),
            bootstrap.clone(),
            followed.clone(),
            done.clone(),
        );
        let (skip, rate) = (lines - live, args.rate);
        std::thread::spawn(move || produce(&year, &bootstrap, skip, rate, &followed, &done))
    };
    let freshness = {
        let (web, base, followed, done) =
            (web.clone(), base.clone(), followed.clone(), done.clone());
        std::thread::spawn(move || follow(&web, &base, &followed, &done))
    };
    let askers: Vec<_> = (0..args.connections.max(1))
        .map(|i| {
            let (web, base, done) = (web.clone(), base.clone(), done.clone());
            std::thread::spawn(move || ask(&web, &base, i as u64, &done))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(args.seconds));
    done.store(true, Ordering::SeqCst);
    let produced = producer.join().expect("producer")?;
    let mut answers = Vec::new();
    let mut failures = 0;
    for a in askers {
        let (times, failed) = a.join().expect("asker")?;
        answers.extend(times);
        failures += failed;
    }
    let mut fresh = freshness.join().expect("follower")?;
    let peak = rss.join().expect("rss");

    answers.sort();
    fresh.sort();
    let slowest: Vec<(Duration, String)> = answers.iter().rev().take(5).cloned().collect();
    let answers: Vec<Duration> = answers.into_iter().map(|(d, _)| d).collect();
    println!(
        "\nuncached questions while ingest runs: {} answered ({failures} failed)",
        answers.len()
    );
    println!(
        "  p50 {:.0} ms   p95 {:.0} ms   p99 {:.0} ms   max {:.0} ms",
        ms(percentile(&answers, 0.50)),
        ms(percentile(&answers, 0.95)),
        ms(percentile(&answers, 0.99)),
        ms(answers.last().copied().unwrap_or_default())
    );
    println!("  slowest:");
    for (d, q) in &slowest {
        println!("    {:>7.0} ms  {q}", ms(*d));
    }
    println!(
        "freshness (produced → found by SQL), {} events followed of {produced} produced:",
        fresh.len()
    );
    println!(
        "  p50 {:.2} s   p95 {:.2} s   max {:.2} s",
        percentile(&fresh, 0.50).as_secs_f64(),
        percentile(&fresh, 0.95).as_secs_f64(),
        fresh.last().copied().unwrap_or_default().as_secs_f64()
    );
    println!("server peak RSS: {:.0} MiB", peak as f64 / 1024.0);

    let stopping = Instant::now();
    server.stop(Duration::from_secs(300))?;
    println!(
        "stop (last commit, rollups saved): {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let server = start_server(&lake, &ingest)?;
    let base = format!("http://{}", server.addr);
    first_answer(&web, &base)?;
    println!(
        "restart to first answer: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(server);
    let _ = broker.kill();
    let _ = broker.wait();
    Ok(ExitCode::SUCCESS)
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut n = 0;
    for line in BufReader::new(std::fs::File::open(path)?).lines() {
        line?;
        n += 1;
    }
    Ok(n)
}

/// The first `n` lines of `from` into `to`.
fn split(from: &Path, to: &Path, n: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
    for line in BufReader::new(std::fs::File::open(from)?)
        .lines()
        .take(n as usize)
    {
        writeln!(out, "{}", line?)?;
    }
    out.flush()?;
    Ok(())
}

/// The time until the server answers a KPI question.
fn first_answer(web: &reqwest::blocking::Client, base: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let url = format!(
        "{base}/v1/kpis/service_hours?from=2024-01-01&to=2024-12-31&granularity=month&level=district"
    );
    loop {
        match web.get(&url).bearer_auth(TOKEN).send() {
            Ok(r) if r.status().is_success() => return Ok(started.elapsed()),
            Ok(r) if started.elapsed() > Duration::from_secs(600) => {
                bail!("the first question answered {}", r.status())
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Wait until `/readyz` says every KPI rollup is prepared; how long that took.
fn prepared(web: &reqwest::blocking::Client, base: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let body = web.get(format!("{base}/readyz")).send()?.text()?;
        if body.trim() == "ready" {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(600) {
            // Measured anyway: the parts not prepared are built by the first questions.
            println!("note: not every KPI rollup was prepared in 10 minutes: {body}");
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Produce lines `skip..` of `year` at `rate` per second until done or the end,
/// noting when every `FOLLOW_EVERY`th service event was sent.
fn produce(
    year: &Path,
    bootstrap: &str,
    skip: u64,
    rate: u64,
    followed: &Mutex<HashMap<String, Instant>>,
    done: &AtomicBool,
) -> anyhow::Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut producer =
        runtime.block_on(LineProducer::connect(bootstrap, "wenming.live", 6, &[]))?;
    let started = Instant::now();
    let (mut sent, mut services) = (0u64, 0u64);
    for line in BufReader::new(std::fs::File::open(year)?)
        .lines()
        .skip(skip as usize)
    {
        if done.load(Ordering::SeqCst) {
            break;
        }
        let line = line?;
        producer.send(line.as_bytes())?;
        sent += 1;
        if line.contains("\"type\":\"service.") {
            services += 1;
            if services.is_multiple_of(FOLLOW_EVERY)
                && let Some(id) = event_id(&line)
            {
                followed
                    .lock()
                    .expect("not poisoned")
                    .insert(id, Instant::now());
            }
        }
        // Steady: never ahead of `rate` per second.
        let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    producer.finish()?;
    Ok(sent)
}

fn event_id(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(v["event_id"].as_str()?.to_lowercase())
}

/// Poll `service_events` for the followed events; the time from produced to found.
fn follow(
    web: &reqwest::blocking::Client,
    base: &str,
    followed: &Mutex<HashMap<String, Instant>>,
    done: &AtomicBool,
) -> anyhow::Result<Vec<Duration>> {
    let mut found = Vec::new();
    // After the stream ends, a last while for the events still on their way.
    let mut grace: Option<Instant> = None;
    loop {
        if done.load(Ordering::SeqCst) {
            let end = *grace.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
            if Instant::now() > end || followed.lock().expect("not poisoned").is_empty() {
                return Ok(found);
            }
        }
        let waiting: Vec<String> = followed
            .lock()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect();
        if !waiting.is_empty() {
            let list = waiting
                .iter()
                .map(|id| format!("'{id}'"))
                .collect::<Vec<_>>()
                .join(",");
            let sql = format!("SELECT event_id FROM service_events WHERE event_id IN ({list})");
            let r = web
                .post(format!("{base}/v1/sql"))
                .bearer_auth(TOKEN)
                .json(&serde_json::json!({ "sql": sql }))
                .send()?;
            let now = Instant::now();
            if r.status().is_success() {
                let rows: serde_json::Value = r.json()?;
                let mut f = followed.lock().expect("not poisoned");
                for row in rows.as_array().into_iter().flatten() {
                    if let Some(sent) = row["event_id"].as_str().and_then(|id| f.remove(id)) {
                        found.push(now - sent);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ask questions not asked before until done: (answer times, failures).
fn ask(
    web: &reqwest::blocking::Client,
    base: &str,
    client: u64,
    done: &AtomicBool,
) -> anyhow::Result<(Vec<(Duration, String)>, u64)> {
    const GRANULARITIES: [&str; 5] = ["day", "week", "month", "quarter", "year"];
    const LEVELS: [&str; 4] = ["city", "district", "street", "unit"];
    let mut rng = client.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = |n: u64| {
        // xorshift: the same questions for the same client on every run.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut times, mut failed) = (Vec::new(), 0);
    let year_start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date");
    while !done.load(Ordering::SeqCst) {
        let kpi = Kpi::ALL[next(Kpi::ALL.len() as u64) as usize];
        let granularity = GRANULARITIES[next(5) as usize];
        let level = LEVELS[next(4) as usize];
        let from = year_start + chrono::Days::new(next(330));
        let to = from + chrono::Days::new(1 + next(365 - from.ordinal0() as u64));
        let compare = if next(2) == 0 { "mom" } else { "yoy" };
        let url = format!(
            "{base}/v1/kpis/{}?from={from}&to={to}&granularity={granularity}&level={level}&compare={compare}",
            kpi.name()
        );
        let t = Instant::now();
        match web.get(&url).bearer_auth(TOKEN).send() {
            Ok(r) if r.status().is_success() => {
                r.bytes()?;
                times.push((t.elapsed(), url[base.len()..].to_string()));
            }
            // A question too wide for the cell cap (day × unit over a year) is refused
            // before computing, as for any user: not an answer time.
            Ok(r) if r.status() == 422 => {}
            _ => failed += 1,
        }
    }
    Ok((times, failed))
}

/// The peak RSS of `pid` (KiB), sampled every 250 ms until done.
fn sample_rss(pid: u32, done: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !done.load(Ordering::SeqCst) {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                && let Some(kib) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        peak
    })
}
