//! Getting events into the lake.
//!
//! - [`ndjson`]: streaming reader of NDJSON event files (validate, import, produce).
//! - [`batch`]: decoded events → Arrow record batches, one per family table.
//!
//! The Kafka consumer, the Delta Lake writer and the offsets kept with the data arrive
//! with the ingest issue; this crate already builds against rdkafka and deltalake so the
//! version set is proven together.

pub mod batch;
pub mod lake;
pub mod ndjson;
