//! `wenming bench postgres`: what an analyst's client gets from the Postgres wire,
//! beside `POST /v1/sql` on the same server in the same run:
//! - rows per second of a large result: Postgres binary (extended protocol, as
//!   psycopg and asyncpg read it), Postgres text (simple protocol, as psql reads it),
//!   and HTTP with an Arrow stream;
//! - round trips per second of `SELECT 1`: simple queries over Postgres against
//!   `POST /v1/sql` requests, on the same number of connections.
//!
//! The clients are `tokio-postgres` and `reqwest`, on one thread, so that they take
//! one core at most and leave the rest to the server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::TryStreamExt;

use super::bench_api::{TOKEN, ms, percentile, start_server};

#[derive(clap::Args)]
pub struct PostgresBenchArgs {
    /// The lake to serve; generated and imported first when it holds no events.
    #[arg(long, default_value = "./wenming-bench/district-lake")]
    lake: PathBuf,
    /// Scale of the data generated into an empty lake.
    #[arg(long, default_value = "district")]
    scale: String,
    /// The large result.
    #[arg(long, default_value = "SELECT * FROM service_events")]
    query: String,
    /// Times each large-result transfer is repeated (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections of the round-trip runs.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds each round-trip run lasts.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

/// Limits wide enough for the large result on both surfaces.
const SERVER_CONFIG: &str = "[postgres]\nlisten = \"127.0.0.1:0\"\n\
    [sql]\nmax_rows = 1000000000\nmax_result_mib = 16384\ntimeout_secs = 900\n\
    memory_mib = 4096\nmax_concurrent = 16\nper_token = 16\n";

pub fn run(args: PostgresBenchArgs) -> anyhow::Result<ExitCode> {
    if !args.lake.join("service_events").join("_delta_log").is_dir() {
        super::bench_kpi::prepare(&args.lake, &args.scale)?;
    }
    let server = start_server(&args.lake, SERVER_CONFIG)?;
    let pg = server.postgres.clone().context("no Postgres address")?;
    let (host, port) = pg.split_once(':').context("a host:port")?;
    let dsn = format!("host={host} port={port} dbname=wenming user=bench password={TOKEN}");
    let http = format!("http://{}/v1/sql", server.addr);
    println!(
        "wenming bench postgres: wenming serve at {} (Postgres {pg}) over {}",
        server.addr,
        args.lake.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let web = reqwest::Client::new();
        let pg_client = connect(&dsn).await?;
        // The first answer computes the views; not measured.
        let rows = http_arrow(&web, &http, &args.query).await?;
        println!(
            "\nlarge result: {:?}, {rows} rows; median of {} rounds",
            args.query, args.rounds
        );
        let mut runs: [(&str, Vec<Duration>); 3] = [
            ("Postgres binary (extended)", Vec::new()),
            ("Postgres text (simple)", Vec::new()),
            ("HTTP Arrow stream", Vec::new()),
        ];
        for _ in 0..args.rounds.max(1) {
            // Interleaved, so that a noisy moment falls on every surface alike.
            let t = Instant::now();
            check(rows, pg_binary(&pg_client, &args.query).await?, runs[0].0)?;
            runs[0].1.push(t.elapsed());
            let t = Instant::now();
            check(rows, pg_text(&pg_client, &args.query).await?, runs[1].0)?;
            runs[1].1.push(t.elapsed());
            let t = Instant::now();
            check(rows, http_arrow(&web, &http, &args.query).await?, runs[2].0)?;
            runs[2].1.push(t.elapsed());
        }
        let arrow = median(&mut runs[2].1);
        println!(
            "  {:<28} {:>12} {:>10} {:>14}",
            "surface", "rows/s", "seconds", "vs HTTP Arrow"
        );
        for (name, times) in runs.iter_mut() {
            let m = median(times);
            println!(
                "  {name:<28} {:>12.0} {:>10.2} {:>13.2}×",
                rows as f64 / m.as_secs_f64(),
                m.as_secs_f64(),
                arrow.as_secs_f64() / m.as_secs_f64()
            );
        }
        println!(
            "\nround trips of SELECT 1, {} connection(s) each, {} s per run",
            args.connections, args.seconds
        );
        let pg_trips = round_trips(args.connections, args.seconds, || {
            let dsn = dsn.clone();
            async move {
                let c = connect(&dsn).await?;
                anyhow::Ok(move || {
                    let c = c.clone();
                    async move {
                        c.simple_query("SELECT 1").await?;
                        anyhow::Ok(())
                    }
                })
            }
        })
        .await?;
        let http_trips = round_trips(args.connections, args.seconds, || {
            let (web, http) = (web.clone(), http.clone());
            async move {
                anyhow::Ok(move || {
                    let (web, http) = (web.clone(), http.clone());
                    async move {
                        let r = web
                            .post(&http)
                            .bearer_auth(TOKEN)
                            .json(&serde_json::json!({"sql": "SELECT 1"}))
                            .send()
                            .await?;
                        if !r.status().is_success() {
                            bail!("POST /v1/sql answered {}", r.status());
                        }
                        r.bytes().await?;
                        anyhow::Ok(())
                    }
                })
            }
        })
        .await?;
        for (name, run) in [
            ("Postgres simple query", &pg_trips),
            ("POST /v1/sql", &http_trips),
        ] {
            println!(
                "  {name:<22} {:>8.0}/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
                run.per_second(),
                ms(run.percentile(0.50)),
                ms(run.percentile(0.99))
            );
        }
        println!(
            "  Postgres / HTTP: {:.2}×",
            pg_trips.per_second() / http_trips.per_second()
        );
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

type Client = std::rc::Rc<tokio_postgres::Client>;

async fn connect(dsn: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .context("cannot connect to the Postgres wire")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(std::rc::Rc::new(client))
}

fn check(expected: usize, got: usize, surface: &str) -> anyhow::Result<()> {
    if got != expected {
        bail!("{surface} returned {got} rows, not {expected}");
    }
    Ok(())
}

/// Rows of `query` read over the extended protocol in binary, as they stream.
async fn pg_binary(c: &Client, query: &str) -> anyhow::Result<usize> {
    let rows = c
        .query_raw(query, std::iter::empty::<i32>())
        .await?
        .try_fold(0usize, |n, _| async move { Ok(n + 1) })
        .await?;
    Ok(rows)
}

/// Rows of `query` read over the simple protocol, in text.
async fn pg_text(c: &Client, query: &str) -> anyhow::Result<usize> {
    let messages = c.simple_query(query).await?;
    Ok(messages
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count())
}

/// Rows of `query` from `POST /v1/sql` as an Arrow stream, decoded.
async fn http_arrow(web: &reqwest::Client, url: &str, query: &str) -> anyhow::Result<usize> {
    let r = web
        .post(url)
        .bearer_auth(TOKEN)
        .header("Accept", "application/vnd.apache.arrow.stream")
        .json(&serde_json::json!({ "sql": query }))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("POST /v1/sql answered {}: {}", r.status(), r.text().await?);
    }
    let body = r.bytes().await?;
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)?;
    let mut rows = 0;
    for batch in reader {
        rows += batch?.num_rows();
    }
    Ok(rows)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

struct Trips {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Trips {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

/// `connections` closed loops, each opened by `open` and asking with the function it
/// returns, for `seconds`.
async fn round_trips<O, OF, A, AF>(
    connections: usize,
    seconds: u64,
    open: O,
) -> anyhow::Result<Trips>
where
    O: Fn() -> OF,
    OF: std::future::Future<Output = anyhow::Result<A>>,
    A: Fn() -> AF,
    AF: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut askers = Vec::new();
    for _ in 0..connections.max(1) {
        askers.push(open().await?);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let loops = askers.iter().map(|ask| async move {
        let mut latencies = Vec::new();
        while Instant::now() < deadline {
            let t = Instant::now();
            ask().await?;
            latencies.push(t.elapsed());
        }
        anyhow::Ok(latencies)
    });
    let mut latencies = Vec::new();
    for l in futures::future::join_all(loops).await {
        latencies.extend(l?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Trips { latencies, elapsed })
}
