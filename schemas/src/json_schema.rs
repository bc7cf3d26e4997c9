//! JSON Schema (draft 2020-12) of every event type, for station integrators. Built from
//! the same catalog as the decoder. Rules that tie two fields together (a `data.unit_id`
//! equal to the envelope's, `minutes` within the service interval, an end not before its
//! start, a center's area code ending in 6 zeros) cannot be said in JSON Schema; they are
//! written in the descriptions and enforced by the decoder.

use serde_json::{Map, Value, json};

use crate::catalog::EventType;
use crate::field::{FieldKind, ID_MAX_CHARS};

pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const RFC3339_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$";

fn kind_schema(kind: FieldKind) -> Value {
    match kind {
        FieldKind::Id => json!({"type": "string", "minLength": 1, "maxLength": ID_MAX_CHARS}),
        FieldKind::Text => json!({"type": "string"}),
        FieldKind::Timestamp => json!({
            "type": "string", "format": "date-time", "pattern": RFC3339_PATTERN,
            "description": "RFC 3339 timestamp with offset, e.g. 2024-03-05T09:30:00+08:00"
        }),
        FieldKind::AreaCode => json!({"type": "string", "pattern": "^[0-9]{12}$"}),
        FieldKind::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        FieldKind::Bool => json!({"type": "boolean"}),
        FieldKind::Enum(names) => json!({"type": "string", "enum": names}),
    }
}

fn rules(t: EventType) -> Vec<&'static str> {
    let mut r = vec![
        "Where data carries a unit_id, it must equal the envelope's unit_id (else bad_value:unit_id).",
    ];
    match t {
        EventType::UnitRegistered => r.push(
            "A center's area_code ends in 6 zeros, an institute's in 3 (else bad_value:area_code).",
        ),
        EventType::ActivityPublished => {
            r.push("ends_at must not be before starts_at (else bad_value:ends_at).")
        }
        EventType::ServiceRecorded => {
            r.push("ended_at must not be before started_at (else bad_value:ended_at).");
            r.push(
                "minutes must be at most the minutes between started_at and ended_at \
                 (else bad_value:minutes).",
            );
        }
        _ => {}
    }
    r
}

/// The schema of one event type, standalone.
pub fn for_type(t: EventType) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in t.fields() {
        let mut s = kind_schema(f.kind);
        if f.required {
            required.push(f.name);
        } else {
            // The decoder reads an explicit null as "absent".
            s = json!({"anyOf": [s, {"type": "null"}]});
        }
        props.insert(f.name.to_owned(), s);
    }
    let mut description = format!(
        "A `{}` event of wenming event contract v1. Unknown extra fields are ignored. \
         The whole message must be at most 1 MiB.",
        t.name()
    );
    for rule in rules(t) {
        description.push(' ');
        description.push_str(rule);
    }
    json!({
        "$schema": DIALECT,
        "$id": format!("urn:wenming:event:v1:{}", t.name()),
        "title": t.name(),
        "description": description,
        "type": "object",
        "required": ["event_id", "type", "schema_version", "occurred_at", "unit_id", "data"],
        "properties": {
            "event_id": {"type": "string", "pattern": UUID_PATTERN,
                         "description": "UUID naming one logical event; re-sends carry the same id."},
            "type": {"const": t.name()},
            "schema_version": {"const": 1},
            "occurred_at": kind_schema(FieldKind::Timestamp),
            "unit_id": kind_schema(FieldKind::Id),
            "source": {"anyOf": [{"type": "string"}, {"type": "null"}],
                       "description": "The platform that recorded it (national, i-zhiyuan, ledger, app, ...)."},
            "data": {"type": "object", "required": required, "properties": props}
        }
    })
}

/// One schema for any event: `oneOf` the 25 types, each under `$defs` by its name.
pub fn catalog() -> Value {
    let mut defs = Map::new();
    let mut one_of = Vec::new();
    for t in EventType::ALL {
        let mut s = for_type(*t);
        if let Some(obj) = s.as_object_mut() {
            obj.remove("$schema");
            obj.remove("$id");
        }
        defs.insert(t.name().to_owned(), s);
        one_of.push(json!({"$ref": format!("#/$defs/{}", t.name())}));
    }
    json!({
        "$schema": DIALECT,
        "$id": "urn:wenming:event:v1",
        "title": "wenming event (contract v1)",
        "oneOf": one_of,
        "$defs": defs
    })
}
