//! `wenming broker`: the embedded single-node Kafka-protocol broker (tansu) for
//! development, demos and tests. Not for production: one node, no replication.
//!
//! It is a separate process so that tests can kill ingest without killing the broker,
//! and so that a real Kafka can take its place by changing `--brokers` only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use url::Url;
use wenming_ingest::topics;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (host:port). Port 0 picks a free port; the address chosen
    /// is printed.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Partitions of the topics created at start.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Directory of the durable store (SQLite). Events accepted survive a restart.
    #[arg(
        long,
        env = "WENMING_BROKER__DATA",
        default_value = "./wenming-data/broker"
    )]
    data: PathBuf,
    /// Keep nothing: messages live in memory and are lost at exit (demos, tests,
    /// benchmarks). About 20 times faster to consume from than the durable store.
    #[arg(long, conflicts_with = "data")]
    memory: bool,
    /// Topics to create at start (besides nothing else: the broker creates no topic
    /// on demand).
    #[arg(long, default_values_t = [String::from("wenming.events"), String::from("wenming.events.dlq")])]
    topic: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.partitions < 1 {
        bail!("--partitions must be at least 1, not {}", args.partitions);
    }
    // Bind first to resolve port 0, then hand the port to the broker. The tiny window
    // in between is acceptable for a development broker.
    let addr = {
        let probe = std::net::TcpListener::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        probe.local_addr()?
    };
    // `--memory` is tansu's in-memory engine (dynostore over an in-memory object store):
    // a consumer reads ~20 x faster from it than from SQLite, whose engine stores
    // record by record. wenming carries a patched tansu-storage whose fetch starts at
    // the batch holding the offset asked (0.6.0 skipped the rest of a batch when a
    // consumer resumed mid-batch). The default is the durable SQLite engine.
    let (storage, store) = if args.memory {
        (
            Url::parse("memory://tansu/")?,
            String::from("in memory, lost at exit"),
        )
    } else {
        std::fs::create_dir_all(&args.data)
            .with_context(|| format!("cannot create {}", args.data.display()))?;
        let store = format!("durable, {}", std::path::absolute(&args.data)?.display());
        // tansu opens a `sqlite://` path relative to the working directory (and URLs
        // cannot carry `..`), so the broker process works inside its data directory.
        // Still single-threaded here: no other thread sees the change.
        std::env::set_current_dir(&args.data)
            .with_context(|| format!("cannot enter {}", args.data.display()))?;
        (Url::parse("sqlite:///broker.db")?, store)
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(addr, storage, store, args))
}

async fn serve(
    addr: SocketAddr,
    storage: Url,
    store: String,
    args: Args,
) -> anyhow::Result<ExitCode> {
    let task = start(addr, storage, &args.topic, args.partitions, OnSignal::Stop).await?;
    println!("wenming broker: single-node development broker (not for production), {store}");
    println!(
        "topics: {} ({} partitions)",
        args.topic.join(", "),
        args.partitions
    );
    println!("bootstrap: {addr}");
    match task.await {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => bail!("broker failed: {e}"),
        Err(e) => bail!("broker task failed: {e}"),
    }
}

/// The running broker: resolves when it stops.
pub type BrokerTask = tokio::task::JoinHandle<Result<(), String>>;

/// Whether the broker stops on SIGINT/SIGTERM itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnSignal {
    /// `wenming broker`, a process of its own: a signal stops it.
    Stop,
    /// In-process (`serve`, `demo`): it runs until the runtime ends, so that on a signal
    /// ingest can still commit its batch, commit its offsets and leave the group. When
    /// the broker stopped on the signal too, ingest's consumer waited on it for good.
    RunOn,
}

/// Starts the broker on the current runtime at `addr` with its store at `storage`, and
/// creates `topics` through the admin API once it answers. `wenming serve` and `demo`
/// run it in-process this way; `wenming broker` as its own process.
pub async fn start(
    addr: SocketAddr,
    storage: Url,
    topics_wanted: &[String],
    partitions: i32,
    on_signal: OnSignal,
) -> anyhow::Result<BrokerTask> {
    let listener = Url::parse(&format!("tcp://{addr}"))?;
    use tansu_broker::coordinator::group::administrator::Controller;
    use tansu_storage::StorageContainer;
    let broker =
        tansu_broker::broker::Broker::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(1)
            .cluster_id("wenming-dev")
            .incarnation_id(uuid::Uuid::now_v7())
            .advertised_listener(listener.clone())
            .storage(storage.clone())
            .listener(listener)
            .silent(true)
            .build()
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the broker: {e:?}"))?;
    let started = tokio::time::Instant::now();
    let mut task: BrokerTask = tokio::spawn(async move {
        let mut broker = broker;
        let ran = match on_signal {
            OnSignal::Stop => broker.main(started).await.map(|_| ()),
            OnSignal::RunOn => broker.serve(started).await,
        };
        ran.map_err(|e| format!("{e:?}"))
    });

    // Topics through the admin API, like any client would: the broker must be up.
    let bootstrap = addr.to_string();
    let mut created = false;
    for attempt in 0..50 {
        if task.is_finished() {
            break;
        }
        match topics::ensure(&bootstrap, topics_wanted, partitions).await {
            Ok(()) => {
                created = true;
                break;
            }
            Err(e) if attempt == 49 => return Err(e).context("cannot create the topics"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    if !created {
        let outcome = (&mut task).await;
        bail!("the broker stopped at start: {outcome:?}");
    }
    Ok(task)
}
