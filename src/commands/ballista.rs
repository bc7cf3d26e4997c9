//! `wenming ballista scheduler|executor`: the processes of a Ballista cluster that
//! KPI and SQL plans run on when `[analytics] engine = "ballista://…"`. They are
//! Ballista's own, started with wenming's plan codec and the lake's object store.

use std::net::SocketAddr;
use std::process::ExitCode;

use wenming_analytics::distributed::cluster::{self, ExecutorSettings};

use super::lake::LakeDir;

#[derive(clap::Subcommand)]
pub enum BallistaCommand {
    /// Run a scheduler: it takes plans from `wenming serve|kpi|sql --engine
    /// ballista://HOST:PORT` and hands their tasks to the executors.
    Scheduler(SchedulerArgs),
    /// Run an executor: it registers with the scheduler, runs tasks and serves their
    /// results; reads the lake's files by URL (give it the lake's store settings).
    Executor(ExecutorArgs),
}

#[derive(clap::Args)]
pub struct SchedulerArgs {
    /// The address to listen on (Ballista's gRPC).
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub lake: LakeDir,
}

#[derive(clap::Args)]
pub struct ExecutorArgs {
    /// The scheduler, host:port.
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub scheduler: String,
    /// The address to listen on for result and shuffle fetches (Arrow Flight).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub bind: SocketAddr,
    /// The port of its gRPC service (tasks from the scheduler), on the same host.
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// The host name the scheduler, clients and other executors reach it by (default:
    /// the --bind address).
    #[arg(long)]
    pub external_host: Option<String>,
    /// Tasks it runs at once (default: its cores).
    #[arg(long)]
    pub concurrent_tasks: Option<usize>,
    /// The memory its tasks may hold together, MiB (default: 70 % of the machine's);
    /// a task past its share spills or fails naming the operator.
    #[arg(long)]
    pub memory_mib: Option<u64>,
    #[command(flatten)]
    pub lake: LakeDir,
}

pub fn run(command: BallistaCommand) -> anyhow::Result<ExitCode> {
    // `main` lets SIGPIPE end a command whose output pipe closed (`| head`); a Ballista
    // process writes to sockets peers may close at any time, and must live on (the
    // write then fails with EPIPE, which it handles).
    // SAFETY: before the runtime, and so before any thread of ours, exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            BallistaCommand::Scheduler(args) => {
                println!(
                    "ballista scheduler: {}   (engine = \"ballista://{}\")",
                    args.bind, args.bind
                );
                cluster::run_scheduler(args.bind, Some(&args.lake.location())).await?
            }
            BallistaCommand::Executor(args) => {
                let (host, port) = args
                    .scheduler
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--scheduler {:?} is not host:port (e.g. 127.0.0.1:50050)",
                            args.scheduler
                        )
                    })?;
                println!(
                    "ballista executor: {} (gRPC port {}), scheduler {host}:{port}",
                    args.bind, args.grpc_port
                );
                let settings = ExecutorSettings {
                    scheduler_host: host,
                    scheduler_port: port,
                    bind: args.bind,
                    grpc_port: args.grpc_port,
                    external_host: args.external_host,
                    concurrent_tasks: args.concurrent_tasks,
                    memory_bytes: args.memory_mib.map(|m| m << 20),
                };
                cluster::run_executor(settings, Some(&args.lake.location())).await?
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
