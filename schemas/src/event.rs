//! The envelope and the one decode entry point: bytes → [`Event`] or [`Rejection`].

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::{EventData, EventType};
use crate::field::{Field, Id, Text, Timestamp};
use crate::json::{Json, Object};
use crate::rejection::{RejectCode, Rejection};

/// Messages larger than this (1 MiB) are refused with `too_large`.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// The only schema version this build reads.
pub const SCHEMA_VERSION: i64 = 1;

/// One valid event of contract v1.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Names one logical event: re-sends carry the same id and are stored once.
    pub event_id: Uuid,
    pub occurred_at: Timestamp,
    /// The practice unit that owns the event.
    pub unit_id: Id,
    pub source: Option<Text>,
    pub data: EventData,
}

impl Event {
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    /// The contract's JSON, as one line (no trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("events always serialize")
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        m.serialize_entry("event_id", self.event_id.hyphenated().encode_lower(&mut id))?;
        m.serialize_entry("type", self.event_type().name())?;
        m.serialize_entry("schema_version", &SCHEMA_VERSION)?;
        m.serialize_entry("occurred_at", &self.occurred_at)?;
        m.serialize_entry("unit_id", &self.unit_id)?;
        if let Some(source) = &self.source {
            m.serialize_entry("source", source)?;
        }
        m.serialize_entry("data", &self.data)?;
        m.end()
    }
}

/// Decodes one message (a Kafka value or an NDJSON line) against contract v1.
///
/// Every rule of the contract is checked; the first broken one names the rejection.
/// Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Event, Rejection> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(Rejection::new(
            RejectCode::TooLarge,
            format!(
                "message is {} bytes; the limit is {MAX_EVENT_BYTES} bytes (1 MiB)",
                bytes.len()
            ),
        ));
    }
    let json = Json::parse(bytes).map_err(|e| {
        Rejection::new(
            RejectCode::NotJson,
            format!("message is not valid JSON: {e}"),
        )
    })?;
    decode_json(&json)
}

/// Decodes an already parsed JSON value (the size rule is the caller's).
pub fn decode_value(value: &Value) -> Result<Event, Rejection> {
    decode_json(&Json::from(value))
}

fn decode_json(value: &Json<'_>) -> Result<Event, Rejection> {
    let Json::Object(obj) = value else {
        return Err(Rejection::new(
            RejectCode::NotObject,
            format!("an event must be a JSON object, got {}", value.kind()),
        ));
    };

    // The version first: a later version may shape everything else differently.
    check_schema_version(obj.get("schema_version"))?;
    let event_id = decode_event_id(obj.get("event_id"))?;
    let event_type = decode_type(obj.get("type"))?;
    let occurred_at = Timestamp::decode_field(obj.get("occurred_at"), "occurred_at")?;
    let unit_id = Id::decode_field(obj.get("unit_id"), "unit_id")?;
    let source = Option::<Text>::decode_field(obj.get("source"), "source")?;
    let data = match obj.get("data") {
        None | Some(Json::Null) => return Err(Rejection::missing("data")),
        Some(Json::Object(data)) => data,
        Some(other) => return Err(Rejection::bad_type("data", "an object", other)),
    };

    let typed = event_type.decode_data(data)?;
    let event = Event {
        event_id,
        occurred_at,
        unit_id,
        source,
        data: typed,
    };
    check_rules(&event, data)?;
    Ok(event)
}

fn check_schema_version(value: Option<&Json<'_>>) -> Result<(), Rejection> {
    match value {
        None | Some(Json::Null) => Err(Rejection::missing("schema_version")),
        Some(Json::Number(n)) => {
            if n.as_i64() == Some(SCHEMA_VERSION) || n.as_f64() == Some(SCHEMA_VERSION as f64) {
                Ok(())
            } else {
                Err(Rejection::new(
                    RejectCode::UnsupportedSchemaVersion,
                    format!("schema_version {n} is not supported; this build reads version 1"),
                ))
            }
        }
        Some(other) => Err(Rejection::bad_type(
            "schema_version",
            "the integer 1",
            other,
        )),
    }
}

/// Event ids are UUIDs in their standard hyphenated text form (any version, any case),
/// kept in lower case so a re-send in other letters is still the same event.
fn decode_event_id(value: Option<&Json<'_>>) -> Result<Uuid, Rejection> {
    let s = match value {
        None | Some(Json::Null) => return Err(Rejection::missing("event_id")),
        Some(Json::String(s)) => s,
        Some(other) => return Err(Rejection::bad_type("event_id", "a string", other)),
    };
    match Uuid::try_parse(s) {
        Ok(id) if s.len() == uuid::fmt::Hyphenated::LENGTH => Ok(id),
        _ => Err(Rejection::bad_value(
            "event_id",
            format_args!("must be a UUID such as 0190f5e2-7c4a-7b3e-9a51-2f0c8d1e4b6a, got {s:?}"),
        )),
    }
}

fn decode_type(value: Option<&Json<'_>>) -> Result<EventType, Rejection> {
    let s = match value {
        None | Some(Json::Null) => return Err(Rejection::missing("type")),
        Some(Json::String(s)) => s,
        Some(other) => return Err(Rejection::bad_type("type", "a string", other)),
    };
    EventType::parse(s).ok_or_else(|| {
        Rejection::new(
            RejectCode::UnknownType,
            format!("{s:?} is not an event type of contract v1"),
        )
    })
}

/// The rules that tie two fields together.
fn check_rules(event: &Event, data: &Object<'_>) -> Result<(), Rejection> {
    // "Where data carries a unit_id, it must equal the envelope's": for every type, not
    // only those that define the field. An event must not claim two owners.
    match data.get("unit_id") {
        None | Some(Json::Null) => {}
        Some(inner) if inner.as_str() == Some(event.unit_id.as_str()) => {}
        Some(inner) => {
            return Err(Rejection::bad_value(
                "unit_id",
                format_args!(
                    "in data ({inner}) must equal the envelope's unit_id ({:?})",
                    event.unit_id.as_str()
                ),
            ));
        }
    }
    match &event.data {
        EventData::UnitRegistered(u) => {
            use crate::field::Level;
            let code = &u.area_code.0;
            let (suffix, what) = match u.level {
                Level::Center => ("000000", "a center's (district) code ends in 6 zeros"),
                Level::Institute => ("000", "an institute's (street) code ends in 3 zeros"),
                Level::Station | Level::Point => ("", ""),
            };
            if !code.ends_with(suffix) {
                return Err(Rejection::bad_value(
                    "area_code",
                    format_args!("{code:?} does not fit level {}: {what}", u.level),
                ));
            }
        }
        EventData::ActivityPublished(a) if a.ends_at < a.starts_at => {
            return Err(Rejection::bad_value(
                "ends_at",
                format_args!("({}) is before starts_at ({})", a.ends_at, a.starts_at),
            ));
        }
        EventData::ServiceRecorded(r) => {
            if r.ended_at < r.started_at {
                return Err(Rejection::bad_value(
                    "ended_at",
                    format_args!("({}) is before started_at ({})", r.ended_at, r.started_at),
                ));
            }
            let span_seconds = (r.ended_at.utc() - r.started_at.utc()).num_seconds();
            if r.minutes.get() * 60 > span_seconds {
                return Err(Rejection::bad_value(
                    "minutes",
                    format_args!(
                        "({}) is more than the {} whole minutes between started_at and ended_at",
                        r.minutes.get(),
                        span_seconds / 60
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}
