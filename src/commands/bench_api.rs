//! `wenming bench api`: requests per second and latency percentiles of the KPI endpoint,
//! cached (the same question over and over) and cold (every request a question not
//! asked before), against a real `wenming serve` process over real sockets.
//!
//! The load generator is in-repo so the benchmark needs nothing installed: keep-alive
//! HTTP/1.1 connections, each sending its next request when the previous answer is
//! read (closed loop, like wrk), on a single-threaded runtime so that it takes one
//! core at most and leaves the rest to the server.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wenming_analytics::Kpi;

#[derive(clap::Args)]
pub struct ApiBenchArgs {
    /// The lake to serve; generated and imported first when it holds no events.
    #[arg(long, default_value = "./wenming-bench/city-lake")]
    lake: PathBuf,
    /// Scale of the data generated into an empty lake.
    #[arg(long, default_value = "city")]
    scale: String,
    /// Connections of the cached run.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Connections of the cold run.
    #[arg(long, default_value_t = 4)]
    cold_connections: usize,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The KPI of the cached run.
    #[arg(long, default_value = "service_hours")]
    kpi: String,
}

/// The child `wenming serve`, stopped when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    /// The Postgres wire's address, when `extra` configured one.
    pub postgres: Option<String>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop the server as an operator does (SIGTERM: ingest commits the batch in hand,
    /// the rollups are saved), waiting up to `grace` before killing it.
    pub fn stop(mut self, grace: std::time::Duration) -> anyhow::Result<()> {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "the server stopped with {status}");
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        anyhow::bail!("the server did not stop within {grace:?}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The city admin token of the benchmark servers (its name is `bench`).
pub const TOKEN: &str = "bench-token";

/// `wenming serve` over `lake` with a city admin token, exports off, ingest off unless
/// `extra` configures it, and `extra` configuration (e.g. `[postgres]`, `[sql]`).
pub fn start_server(lake: &std::path::Path, extra: &str) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("wenming.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[lake]\npath = {:?}\n{}\
             [exports_settings]\nenabled = false\n\
             [[tokens]]\nname = \"bench\"\nsha256 = \"{}\"\nrole = \"admin\"\nscope = \"city\"\n{extra}",
            std::path::absolute(lake)?.display().to_string(),
            if extra.contains("[ingest]") {
                ""
            } else {
                "[ingest]\nenabled = false\n"
            },
            wenming_api::auth::hash_hex(TOKEN)
        ),
    )?;
    let exe = std::env::current_exe().context("cannot find the wenming binary")?;
    let mut command = Command::new(exe);
    // Our own settings (from a ./wenming.toml where the bench was started) are in the
    // environment, where they would win over the benchmark's file: not for the child.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WENMING_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start wenming serve")?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let wants_postgres = extra.contains("[postgres]");
    let word = |rest: &str| {
        rest.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let (mut addr, mut postgres) = (None, None);
    while addr.is_none() || (wants_postgres && postgres.is_none()) {
        let Some(line) = lines.next() else {
            let _ = child.wait();
            bail!("wenming serve ended before it listened");
        };
        let line = line?;
        if let Some(rest) = line.strip_prefix("api: http://") {
            addr = Some(word(rest));
        } else if let Some(rest) = line.strip_prefix("postgres: ") {
            postgres = Some(word(rest));
        }
    }
    let addr = addr.unwrap_or_default();
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Server {
        child,
        addr,
        postgres,
        _dir: dir,
    })
}

/// One keep-alive connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(64 << 10),
            host: addr.to_string(),
        })
    }

    /// GET `path`; the status code once the whole answer is read.
    async fn get(&mut self, path: &str) -> anyhow::Result<u16> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n",
            self.host
        );
        self.stream.write_all(req.as_bytes()).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("header not UTF-8")?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status code")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .context("the answer has no Content-Length")?;
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        Ok(status)
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// What a run measured.
struct Run {
    requests: usize,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<8} {:>9.0} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>9.3} ms  ({} requests, {} errors, {:.1} s)",
            self.requests as f64 / self.elapsed.as_secs_f64(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.requests,
            self.errors,
            self.elapsed.as_secs_f64(),
        );
    }
}

/// The `p` quantile (nearest rank) of `sorted` latencies; zero when there are none.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[i - 1]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `connections` closed loops for `seconds`, each asking `path(n)` with a shared,
/// increasing `n`.
async fn load(
    addr: &str,
    connections: usize,
    seconds: u64,
    path: Arc<dyn Fn(u64) -> String + Send + Sync>,
) -> anyhow::Result<Run> {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let mut conn = Conn::open(addr).await?;
        let (next, errors, path) = (next.clone(), errors.clone(), path.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let p = path(next.fetch_add(1, Ordering::Relaxed));
                let t = Instant::now();
                let status = conn.get(&p).await?;
                latencies.push(t.elapsed());
                if status != 200 {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Run {
        requests: latencies.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies,
    })
}

pub fn run(args: ApiBenchArgs) -> anyhow::Result<ExitCode> {
    let Some(kpi) = Kpi::parse(&args.kpi) else {
        bail!("no KPI named {:?} (see `wenming kpi --list`)", args.kpi);
    };
    if !args.lake.join("service_events").join("_delta_log").is_dir() {
        super::bench_kpi::prepare(&args.lake, &args.scale)?;
    }
    let server = start_server(&args.lake, "")?;
    println!(
        "wenming bench api: wenming serve at {} over {}; {} s per run",
        server.addr,
        args.lake.display(),
        args.seconds
    );
    let addr = server.addr.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        // The first question computes the views it reads; every other KPI is asked
        // once too, so that the cold run measures answers, not view computation.
        let mut conn = Conn::open(&addr).await?;
        let started = Instant::now();
        // A year at month × district, the question of `bench kpi`.
        let year = |k: Kpi| {
            format!(
                "/v1/kpis/{}?from=2024-01-01&to=2024-12-31&granularity=month&level=district",
                k.name()
            )
        };
        let cached_path = year(kpi);
        let status = conn.get(&cached_path).await?;
        if status != 200 {
            bail!("GET {cached_path} answered {status}");
        }
        println!("first request (views computed): {:.1} ms", ms(started.elapsed()));
        let started = Instant::now();
        for k in Kpi::ALL {
            conn.get(&year(*k)).await?;
        }
        println!("all 18 KPIs once (the rest of the views): {:.1} ms", ms(started.elapsed()));

        let path = cached_path.clone();
        let cached = load(&addr, args.connections, args.seconds, Arc::new(move |_| path.clone())).await?;
        cached.print("cached");
        println!("         GET {cached_path} with {} connections", args.connections);

        // Every request a new question: another KPI and another range each time.
        let cold = load(
            &addr,
            args.cold_connections,
            args.seconds,
            Arc::new(|n| {
                let k = Kpi::ALL[n as usize % Kpi::ALL.len()];
                let from = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date")
                    + chrono::Days::new(n / Kpi::ALL.len() as u64 % 300);
                let to = from + chrono::Days::new(30 + n / (Kpi::ALL.len() as u64 * 300));
                format!(
                    "/v1/kpis/{}?from={from}&to={to}&granularity=week&level=district",
                    k.name()
                )
            }),
        )
        .await?;
        cold.print("cold");
        println!(
            "         every request a question not asked before (18 KPIs × ranges, week × district), {} connections",
            args.cold_connections
        );
        anyhow::Ok(())
    })?;
    drop(server);
    Ok(ExitCode::SUCCESS)
}
