//! Getting events into the lake.
//!
//! - [`ndjson`]: streaming reader of NDJSON event files (validate, import, produce).
//! - [`batch`]: decoded events → Arrow record batches, one per family table.
//! - [`dedup`]: the window of recent event ids that makes re-sends stored once.
//! - [`lake`]: Delta tables per family; commits that carry their source positions.
//! - [`location`]: where the lake is: a directory or an S3-compatible store.
//! - [`import`]: an NDJSON file into the lake (decode → dedup → route → commit).
//! - [`consumer`]: Kafka into the lake, exactly once (`wenming ingest`).
//! - [`fetched`]: the assigned partitions' messages, taken from librdkafka in batches.
//! - [`dlq`]: the dead-letter topic for messages the contract refuses.
//! - [`producer`]: NDJSON lines onto a topic (`wenming produce`, `generate --brokers`).
//! - [`topics`]: client settings and topic creation shared by all of the above.
//! - [`metrics`]: ingest counters as Prometheus text.

pub mod batch;
pub mod consumer;
pub mod dedup;
pub mod dlq;
pub mod fetched;
pub mod import;
pub mod lake;
pub mod location;
pub mod metrics;
pub mod ndjson;
pub mod producer;
pub mod runs;
pub mod topics;
