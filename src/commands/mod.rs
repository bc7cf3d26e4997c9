//! One module per subcommand: parse → call the crates → print.

pub mod ballista;
pub mod bench;
pub mod bench_api;
pub mod bench_kpi;
pub mod bench_live;
pub mod bench_postgres;
pub mod broker;
pub mod demo;
pub mod generate;
pub mod import;
pub mod ingest;
pub mod kafka;
pub mod kpi;
pub mod lake;
pub mod produce;
pub mod progress;
pub mod schema;
pub mod serve;
pub mod validate;

/// Resolves on SIGTERM or Ctrl-C: how long-running commands (`ingest`, `serve`) learn
/// to commit what they hold and stop.
pub async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
