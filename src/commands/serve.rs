//! `wenming serve`: the API, and (unless turned off) the ingest loop, the embedded
//! broker and the export scheduler, in one process. `wenming demo`: serve on embedded
//! defaults with a generated district streamed through the embedded broker.
//! `wenming export NAME --period P`: one export run by hand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, bail};
use wenming_analytics::lineage::At;
use wenming_analytics::sql::SqlLimits;
use wenming_analytics::{Analytics, KpiLimits, Scope, Settings};
use wenming_api::auth::Tokens;
use wenming_api::config::{Config, TokenConfig};
use wenming_api::slots::Slots;
use wenming_api::{AppState, Application};
use wenming_ingest::consumer::{self, IngestOptions};
use wenming_ingest::lake::Lake;
use wenming_ingest::location::Location;
use wenming_ingest::metrics::Metrics;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Listen address of the API (overrides [server] listen).
    #[arg(long)]
    listen: Option<String>,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its broker store and lake.
    #[arg(long, default_value = "./wenming-data")]
    data: PathBuf,
    /// Listen address of the API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Listen address of the embedded broker.
    #[arg(long, default_value = "127.0.0.1:9092")]
    broker: String,
    /// Scale of the generated network streamed in (tiny, district, city).
    #[arg(long, default_value = "district")]
    scale: String,
    /// Listen address of the Postgres wire (psql, DBeaver, Python).
    #[arg(long, default_value = "127.0.0.1:5433")]
    postgres: String,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The export's name (an [[exports]] entry of the settings file).
    name: String,
    /// The period: YYYY-MM, YYYY-Qn or YYYY.
    #[arg(long)]
    period: String,
    /// Answer from this snapshot (a manifest's `lineage.snapshot`): the files of that
    /// run again, byte for byte.
    #[arg(long, conflicts_with = "as_of")]
    snapshot: Option<String>,
    /// Answer from the table versions current at this instant (RFC 3339).
    #[arg(long)]
    as_of: Option<String>,
}

fn config_path() -> Option<PathBuf> {
    // `main` has read --config / WENMING_CONFIG / ./wenming.toml into the environment
    // for scalar settings; `serve` needs the file itself for [[tokens]] and [[exports]].
    if let Some(p) = std::env::var_os("WENMING_CONFIG") {
        return Some(p.into());
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--config") {
        return args.get(i + 1).map(PathBuf::from);
    }
    if let Some(a) = args.iter().find_map(|a| a.strip_prefix("--config=")) {
        return Some(a.into());
    }
    Path::new("wenming.toml")
        .exists()
        .then(|| "wenming.toml".into())
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(config_path().as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    run(config, None)
}

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::default();
    config.server.listen = args.listen;
    config.lake.path = Location::local(args.data.join("lake"));
    config.broker.data = args.data.join("broker");
    config.broker.listen = args.broker;
    config.postgres.listen = Some(args.postgres);
    config.ingest.brokers = String::new();
    config.ingest.enabled = true;
    // A fresh admin token for this run, printed once.
    let token = format!("demo-{}", uuid::Uuid::now_v7().simple());
    config.tokens.push(TokenConfig {
        name: "demo".into(),
        sha256: wenming_api::auth::hash_hex(&token),
        role: "admin".into(),
        scope: "city".into(),
    });
    // The year that ends today, in the calendar's time zone.
    let tz =
        wenming_analytics::calendar::parse_tz(&config.analytics.tz).map_err(anyhow::Error::msg)?;
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    std::fs::create_dir_all(&args.data)?;
    let plan = super::demo::Plan::load_or_new(&args.data, &args.scale, today);
    let data = std::fs::canonicalize(&args.data)?;
    run(config, Some(Demo { token, plan, data }))
}

struct Demo {
    token: String,
    plan: super::demo::Plan,
    /// Where the demo keeps its data (absolute: the process changes directory).
    data: PathBuf,
}

pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path().as_deref())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let analytics = Arc::new(open_analytics(&config).await?);
        let tz = wenming_analytics::calendar::parse_tz(&config.analytics.tz)
            .map_err(anyhow::Error::msg)?;
        let exports = wenming_api::exports::Exports::new(&config.exports, tz, analytics)?;
        // The operator holds the settings file: name what it configures. (The HTTP
        // API does not: a caller sees only the exports within their scope.)
        let (export, scope) = exports.get(&args.name, &Scope::City).map_err(|e| {
            let names: Vec<&str> = exports.exports.iter().map(|x| x.name.as_str()).collect();
            if names.is_empty() {
                anyhow::anyhow!(
                    "{e}: the settings configure no [[exports]] (docs/api.md, \"Configuration\")"
                )
            } else {
                anyhow::anyhow!("{e}; the settings configure: {}", names.join(", "))
            }
        })?;
        let at = At::from_params(args.snapshot.as_deref(), args.as_of.as_deref())
            .map_err(anyhow::Error::msg)?;
        let manifest = exports
            .run(&args.name, &args.period, &Scope::City, &at)
            .await?;
        for f in &manifest.files {
            println!(
                "{} ({} rows, {} bytes, sha256 {})",
                f.name, f.rows, f.bytes, f.sha256
            );
        }
        let dir = exports.folder(export, &scope, &args.period);
        println!("manifest: {}", dir.join("manifest.json").display());
        println!("snapshot: {}", manifest.lineage.snapshot);
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// How often a server starting tries to prepare every KPI rollup part.
const PREPARE_ATTEMPTS: u64 = 4;

async fn open_analytics(config: &Config) -> anyhow::Result<Analytics> {
    if let Some(dir) = config.lake.path.as_local() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the lake directory {}", dir.display()))?;
    }
    let settings = Settings {
        tz: wenming_analytics::calendar::parse_tz(&config.analytics.tz)
            .map_err(anyhow::Error::msg)?,
        registration_target: config.analytics.registration_target,
        late_after_hours: config.analytics.late_after_hours,
        kpi_limits: KpiLimits {
            max_cells: config.kpi.max_cells.max(1),
            memory_bytes: config.kpi.memory_mib.max(16) << 20,
            timeout: std::time::Duration::from_secs(config.kpi.timeout_secs.max(1)),
        },
        save_rollups_every: (config.analytics.save_rollups_secs > 0)
            .then(|| std::time::Duration::from_secs(config.analytics.save_rollups_secs)),
        engine: config
            .analytics
            .engine
            .parse()
            .map_err(|e: String| anyhow::anyhow!("[analytics] engine: {e}"))?,
        ..Settings::default()
    };
    Analytics::open(config.lake.location(), settings)
        .await
        .with_context(|| format!("cannot open the lake at {}", config.lake.path))
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(p)?)
}

fn run(mut config: Config, demo: Option<Demo>) -> anyhow::Result<ExitCode> {
    let tokens = Tokens::from_config(&config.tokens).map_err(anyhow::Error::msg)?;
    // Paths become absolute before anything else: the embedded broker works inside its
    // data directory (tansu opens its SQLite path relative to the working directory).
    if let Some(dir) = config.lake.path.as_local() {
        config.lake.path = Location::local(absolute(dir)?);
    }
    config.broker.data = absolute(&config.broker.data)?;
    for e in &mut config.exports {
        e.output = absolute(&e.output)?;
    }
    let embedded =
        config.ingest.brokers.trim().is_empty() && (config.ingest.enabled || demo.is_some());
    let broker_addr: Option<SocketAddr> = if embedded {
        let wanted: SocketAddr = config.broker.listen.parse().with_context(|| {
            format!(
                "[broker] listen must be host:port, not {:?}",
                config.broker.listen
            )
        })?;
        let probe = std::net::TcpListener::bind(wanted)
            .with_context(|| format!("cannot listen on {wanted} for the embedded broker"))?;
        let addr = probe.local_addr()?;
        drop(probe);
        std::fs::create_dir_all(&config.broker.data)?;
        std::env::set_current_dir(&config.broker.data)?;
        config.ingest.brokers = addr.to_string();
        Some(addr)
    } else {
        None
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // Analyst SQL and KPI computations get threads of their own (see
    // AppState::query_runtime), with stacks for expressions as deep as
    // `wenming_analytics::sql::check::MAX_DEPTH` (a debug build's frames included).
    let query_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("wenming-query")
        .thread_stack_size(wenming_analytics::sql::QUERY_STACK_BYTES)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    runtime.block_on(async {
        let _broker = match broker_addr {
            Some(addr) => {
                let topics = vec![config.ingest.topic.clone(), format!("{}.dlq", config.ingest.topic)];
                let task = super::broker::start(addr, url::Url::parse("sqlite:///broker.db")?, &topics, config.broker.partitions, super::broker::OnSignal::RunOn).await?;
                println!("broker: embedded (single node, for development), durable in {}", config.broker.data.display());
                println!("bootstrap: {addr}   (stations produce here: topic {})", config.ingest.topic);
                Some(task)
            }
            None => None,
        };
        let analytics = Arc::new(open_analytics(&config).await?);
        // On a cluster, KPI questions are not answered from rollups of this process.
        if config.analytics.prepare_at_start && !analytics.settings().engine.is_distributed() {
            let analytics = analytics.clone();
            tokio::spawn(async move {
                // A build can fail for want of memory while the first questions compute
                // their own: tried again a little later, the parts built so far kept.
                for attempt in 1..=PREPARE_ATTEMPTS {
                    match analytics.prepare().await {
                        Ok(took) => {
                            tracing::info!(?took, resumed = analytics.rollups_resumed(), "KPI rollups prepared");
                            break;
                        }
                        Err(e) if attempt < PREPARE_ATTEMPTS => {
                            tracing::warn!(attempt, "preparing the KPI rollups, trying again: {e}");
                            tokio::time::sleep(std::time::Duration::from_secs(5 * attempt)).await;
                        }
                        Err(e) => tracing::warn!("preparing the KPI rollups (questions will build them): {e}"),
                    }
                }
            });
        }
        let brokers = (!config.ingest.brokers.trim().is_empty()).then(|| config.ingest.brokers.clone());
        let ingest_metrics = Arc::new(Metrics::default());
        let ingest_thread = if config.ingest.enabled {
            let brokers = brokers.clone().context("[ingest] enabled needs brokers")?;
            let mut options = IngestOptions::new(&brokers, &config.ingest.topic, &config.ingest.group);
            options.partitions = config.broker.partitions;
            let lake = Lake::new(config.lake.location());
            let (stop, metrics) = (stop.clone(), ingest_metrics.clone());
            // Cleared when ingest ends, whatever the reason: /readyz reads it.
            let running = Arc::new(AtomicBool::new(true));
            let still = running.clone();
            println!("ingest: {} → {} (group {})", config.ingest.topic, config.lake.path, config.ingest.group);
            let thread = std::thread::Builder::new().name("wenming-ingest".into()).spawn(move || {
                struct Ended(Arc<AtomicBool>);
                impl Drop for Ended {
                    fn drop(&mut self) {
                        self.0.store(false, Ordering::Relaxed);
                    }
                }
                let _ended = Ended(still);
                // The bounded runtime of `wenming ingest` (one arena, short decay), so
                // that ingest's memory is the same in-process; the API keeps its own.
                // Built here: a runtime must not be dropped on an async thread.
                let runtime = match crate::memory::bounded_runtime() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        eprintln!("error: ingest stopped: cannot start its async runtime: {e}");
                        return false;
                    }
                };
                let result = consumer::run(&options, &lake, runtime.handle().clone(), stop, metrics);
                if let Err(e) = &result {
                    tracing::error!(error = %e, "ingest stopped");
                    eprintln!("error: ingest stopped: {e}");
                }
                runtime.shutdown_timeout(std::time::Duration::from_secs(5));
                result.is_ok()
            })?;
            Some((thread, running))
        } else {
            None
        };
        let gateway = match &brokers {
            Some(b) => Some(wenming_api::gateway::Gateway::new(b, &config.ingest.topic)?),
            None => None,
        };
        let tz = wenming_analytics::calendar::parse_tz(&config.analytics.tz).map_err(anyhow::Error::msg)?;
        let claims = wenming_api::exports::claims::Claims::new(&config.lake.location())
            .context("cannot reach the lake to claim scheduled exports")?;
        let exports = Arc::new(
            wenming_api::exports::Exports::new(&config.exports, tz, analytics.clone())?
                .with_claims(claims),
        );
        if config.exports_settings.enabled && !exports.exports.is_empty() {
            tokio::spawn(exports.clone().schedule(shutdown_rx.clone()));
            println!("exports: {} scheduled", exports.exports.len());
        }
        let state = Arc::new(AppState {
            analytics: analytics.clone(),
            tokens,
            attempts: Default::default(),
            sessions: Default::default(),
            web: wenming_api::web::Web::new(),
            stopping: shutdown_rx.clone(),
            sql_limits: SqlLimits {
                timeout: std::time::Duration::from_secs(config.sql.timeout_secs.max(1)),
                max_rows: config.sql.max_rows.max(1),
                max_bytes: config.sql.max_result_mib.max(1) << 20,
                memory_bytes: config.sql.memory_mib.max(16) << 20,
            },
            sql_slots: Slots::new("analyst queries", config.sql.max_concurrent, config.sql.per_token, std::time::Duration::ZERO),
            kpi_slots: Slots::new(
                "KPI questions",
                config.kpi.max_concurrent,
                config.kpi.per_token,
                std::time::Duration::from_secs(config.kpi.queue_secs),
            ),
            query_runtime: query_runtime.handle().clone(),
            gateway,
            ingest_metrics: config.ingest.enabled.then(|| ingest_metrics.clone()),
            ingest_running: ingest_thread.as_ref().map(|(_, running)| running.clone()),
            exports,
            requests: AtomicU64::new(0),
            answer_times: Default::default(),
            errors: AtomicU64::new(0),
        });
        let no_tokens = state.tokens.is_empty();
        let app = Application::build(&config.server.listen, state.clone())
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let addr = app.local_addr()?;
        println!("api: http://{addr}   (GET /openapi.json lists the endpoints)");
        let postgres = match &config.postgres.listen {
            Some(listen) => {
                let settings = wenming_api::postgres::Settings {
                    listen: listen.clone(),
                    tls: config.postgres.tls_cert.clone().zip(config.postgres.tls_key.clone()),
                    allow_plaintext: config.postgres.allow_plaintext,
                    tz: config.analytics.tz.clone(),
                };
                if config.postgres.tls_cert.is_some() != config.postgres.tls_key.is_some() {
                    anyhow::bail!("[postgres] tls_cert and tls_key go together: set both, or neither");
                }
                let listener = wenming_api::postgres::Listener::bind(&settings).await?;
                let pg = listener.addr;
                println!("postgres: {pg}   (psql \"host={} port={} dbname=wenming user=NAME password=TOKEN\")", pg.ip(), pg.port());
                tokio::spawn(listener.serve(state.clone(), settings));
                Some(pg)
            }
            None => None,
        };
        if no_tokens {
            println!("note: no [[tokens]] configured, so every /v1 endpoint answers 401; see docs/api.md (Configuration)");
        }
        if let Some(demo) = &demo {
            // A one-time code opens the dashboard logged in; the token itself never goes
            // into a URL.
            let entry = state.tokens.find(&demo.token).context("the demo's token")?.clone();
            let code = state.sessions.code(entry);
            println!("open:  http://{addr}/?code={code}   (the dashboard, logged in; the link works once)");
            println!("token: {}   (admin, city; valid for this run: log in with it, or use it with curl)", demo.token);
            println!(
                "or:    curl -H 'Authorization: Bearer {}' 'http://{addr}/v1/kpis/participation_rate?from={}&to={}&level=district'",
                demo.token, demo.plan.from, demo.plan.to
            );
            if let Some(pg) = postgres {
                println!(
                    "or:    psql \"host={} port={} dbname=wenming user=demo password={}\"",
                    pg.ip(),
                    pg.port(),
                    demo.token
                );
            }
            super::demo::stream(
                demo.data.clone(),
                config.lake.location(),
                demo.plan.clone(),
                config.ingest.brokers.clone(),
                config.ingest.topic.clone(),
                ingest_metrics.clone(),
                stop.clone(),
            );
        }
        let shutdown = {
            let stop = stop.clone();
            async move {
                super::terminated().await;
                eprintln!("stopping: committing the batch in hand");
                stop.store(true, Ordering::Relaxed);
                let _ = shutdown_tx.send(true);
            }
        };
        app.run(shutdown).await?;
        if let Some((t, _)) = ingest_thread {
            let ok = tokio::task::spawn_blocking(move || t.join().unwrap_or(false)).await.unwrap_or(false);
            if !ok {
                bail!("ingest ended with an error");
            }
        }
        if config.analytics.save_rollups_secs > 0 {
            // The next start resumes from these instead of counting the year again.
            let started = std::time::Instant::now();
            match analytics.save_rollups().await {
                Ok(0) => {}
                Ok(n) => eprintln!("stopping: {n} KPI rollup part(s) saved in {:.1} s", started.elapsed().as_secs_f64()),
                Err(e) => eprintln!("warning: the KPI rollups were not saved ({e}); the next start counts them again"),
            }
        }
        anyhow::Ok(())
    })?;
    query_runtime.shutdown_background();
    // The embedded broker's store runs blocking tasks that never end on their own;
    // everything that matters (ingest's last commit) is done by now.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(ExitCode::SUCCESS)
}
