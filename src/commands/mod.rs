//! One module per subcommand: parse → call the crates → print.

pub mod bench;
pub mod bench_kpi;
pub mod broker;
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
