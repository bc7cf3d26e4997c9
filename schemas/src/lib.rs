//! Event contract v1 of wenming, executable. No I/O happens here.
//!
//! - [`field`]: the value types of the contract (ids, timestamps, bounded integers,
//!   enums); each decodes itself with the contract's rejection code.
//! - [`catalog`]: the 25 event types, declared once; typed `data` structs, [`EventType`],
//!   and the lake [`Family`] each type lands in.
//! - [`event`]: the envelope and [`decode`], the one entry point: bytes → [`Event`] or
//!   [`Rejection`].
//! - [`json`]: the borrowed JSON tree the decoder reads a message through.
//! - [`rejection`]: the contract's codes (`missing_field:minutes`, ...) and messages.
//! - [`lake`]: Arrow schemas of the lake tables, one per family.
//! - [`json_schema`]: JSON Schema (draft 2020-12) per event type, for integrators.
//!
//! Data flows one way: bytes → `decode` → `Event` (typed) → ingest builds Arrow batches
//! in the shapes `lake` gives.

pub mod catalog;
pub mod event;
pub mod field;
pub mod json;
pub mod json_schema;
pub mod lake;
pub mod rejection;
pub mod runs;

pub use catalog::{EventData, EventType, Family, FieldSpec};
pub use event::{Event, MAX_EVENT_BYTES, SCHEMA_VERSION, decode, decode_value};
pub use field::{FieldKind, FieldValue, Id, Text, Timestamp};
pub use rejection::{RejectCode, Rejection};
