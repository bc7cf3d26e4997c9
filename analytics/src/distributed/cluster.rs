//! A Ballista scheduler and executors that understand wenming's plans: Ballista's own
//! processes, started with our codec (`codec`) and with the lake's object store
//! registered, so that an executor reads a table's Parquet files by their URLs.
//! `wenming ballista scheduler` and `wenming ballista executor` run these.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use object_store::ObjectStore;
use url::Url;
use wenming_ingest::location::Location;

use super::codec::Codec;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the lake at {location}: {source}")]
    Lake {
        location: String,
        source: Box<wenming_ingest::location::LocationError>,
    },
    #[error("the Ballista {role}: {message}")]
    Ballista { role: &'static str, message: String },
}

/// A store and the URL its files are named under.
type Store = (Url, Arc<dyn ObjectStore>);

/// The lake's store, by the URL its files are named under (`None`: no lake given; the
/// local file system is always there).
fn lake_store(lake: Option<&Location>) -> Result<Option<Store>, ClusterError> {
    lake.map(|l| {
        l.root_store().map_err(|source| ClusterError::Lake {
            location: l.to_string(),
            source: Box::new(source),
        })
    })
    .transpose()
}

fn register(runtime: &RuntimeEnv, store: &Option<Store>) {
    if let Some((url, store)) = store {
        runtime.register_object_store(url, store.clone());
    }
}

/// Run a scheduler on `bind` until the process is stopped.
pub async fn run_scheduler(bind: SocketAddr, lake: Option<&Location>) -> Result<(), ClusterError> {
    let store = lake_store(lake)?;
    let codec = Arc::new(Codec::default());
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: bind.ip().to_string(),
        override_logical_codec: Some(codec.clone()),
        override_physical_codec: Some(codec),
        override_session_builder: Some(Arc::new(move |config| {
            let state = default_session_builder(config)?;
            register(state.runtime_env(), &store);
            Ok(state)
        })),
        ..SchedulerConfig::default()
    };
    let failed = |e: ballista_core::error::BallistaError| ClusterError::Ballista {
        role: "scheduler",
        message: e.to_string(),
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(failed)?;
    start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(failed)
}

/// Where an executor listens and whom it works for.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// The address it listens on for result and shuffle fetches (Arrow Flight).
    pub bind: SocketAddr,
    /// Its gRPC port (tasks from the scheduler).
    pub grpc_port: u16,
    /// The host name clients and other executors reach it by (default: the bind
    /// address).
    pub external_host: Option<String>,
    /// Tasks it runs at once (default: its cores).
    pub concurrent_tasks: Option<usize>,
    /// The memory its tasks may hold together, in bytes, shared out by task (default:
    /// Ballista's, 70 % of the machine's or the container's memory).
    pub memory_bytes: Option<u64>,
}

/// Run an executor until the process is stopped.
pub async fn run_executor(
    settings: ExecutorSettings,
    lake: Option<&Location>,
) -> Result<(), ClusterError> {
    let store = lake_store(lake)?;
    let codec = Arc::new(Codec::default());
    let defaults = ExecutorProcessConfig::default();
    let config = ExecutorProcessConfig {
        bind_host: settings.bind.ip().to_string(),
        port: settings.bind.port(),
        grpc_port: settings.grpc_port,
        external_host: Some(
            settings
                .external_host
                .unwrap_or_else(|| settings.bind.ip().to_string()),
        ),
        scheduler_host: settings.scheduler_host,
        scheduler_port: settings.scheduler_port,
        // A scheduler started at the same time (or restarting) is waited for.
        scheduler_connect_timeout_seconds: 60,
        vcores: settings.concurrent_tasks.unwrap_or(defaults.vcores),
        memory_pool_size: settings.memory_bytes,
        override_logical_codec: Some(codec.clone()),
        override_physical_codec: Some(codec),
        override_runtime_producer: Some(Arc::new(move |_config| {
            let runtime = RuntimeEnvBuilder::new().build()?;
            register(&runtime, &store);
            Ok(Arc::new(runtime))
        })),
        ..defaults
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| ClusterError::Ballista {
            role: "executor",
            message: e.to_string(),
        })
}
