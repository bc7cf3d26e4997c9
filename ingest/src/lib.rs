//! Getting events into the lake.
//!
//! - [`ndjson`]: streaming reader of NDJSON event files (validate, import, produce).
//! - [`batch`]: decoded events → Arrow record batches, one per family table.
//! - [`dedup`]: the window of recent event ids that makes re-sends stored once.
//! - [`lake`]: Delta tables per family; commits that carry their source positions.
//! - [`import`]: an NDJSON file into the lake (decode → dedup → route → commit).
//!
//! Still to come: the Kafka consumer (rdkafka is already in the build), the dead-letter
//! topic, the producer and the embedded broker; they will share `batch`, `dedup` and
//! `lake` with `import`.

pub mod batch;
pub mod dedup;
pub mod import;
pub mod lake;
pub mod ndjson;
