//! Lines broken in each way the contract names, for `--invalid-rate`. The code a broken
//! line is counted under is the one the real decoder gives it, so the generator's
//! summary and `wenming validate` must agree.

use rand::Rng;
use serde_json::{Value, json};
use wenming_schemas::{EventType, FieldKind, MAX_EVENT_BYTES, decode};

use crate::rng::SimRng;

#[derive(Debug, Clone, Copy)]
enum Defect {
    NotJson,
    NotObject,
    TooLarge,
    MissingField,
    BadType,
    BadValue,
    UnknownType,
    UnsupportedVersion,
    UnitMismatch,
    MinutesOverInterval,
}

/// Relative weights: too_large lines are 1 MiB each, so they are kept rare.
const DEFECTS: &[(Defect, u32)] = &[
    (Defect::NotJson, 100),
    (Defect::NotObject, 60),
    (Defect::TooLarge, 1),
    (Defect::MissingField, 200),
    (Defect::BadType, 150),
    (Defect::BadValue, 200),
    (Defect::UnknownType, 60),
    (Defect::UnsupportedVersion, 60),
    (Defect::UnitMismatch, 80),
    (Defect::MinutesOverInterval, 80),
];

fn pick(rng: &mut SimRng) -> Defect {
    crate::rng::pick_from(rng, DEFECTS)
}

fn wrong_type(kind: FieldKind) -> Value {
    match kind {
        FieldKind::Int { .. } => json!("12"),
        FieldKind::Bool => json!("yes"),
        _ => json!(12345),
    }
}

fn bad_value(kind: FieldKind) -> Option<Value> {
    match kind {
        FieldKind::Id => Some(json!("")),
        FieldKind::Timestamp => Some(json!("2024-03-05 09:30")),
        FieldKind::AreaCode => Some(json!("3302")),
        FieldKind::Int { min, .. } => Some(json!(min - 1)),
        FieldKind::Enum(_) => Some(json!("unknown")),
        FieldKind::Text | FieldKind::Bool => None,
    }
}

const ENVELOPE_REQUIRED: &[&str] = &[
    "event_id",
    "type",
    "schema_version",
    "occurred_at",
    "unit_id",
    "data",
];

/// Applies one defect; `None` when it does not fit this event (try another).
fn apply(
    defect: Defect,
    line: &[u8],
    v: &mut Value,
    t: EventType,
    rng: &mut SimRng,
) -> Option<Vec<u8>> {
    let fields = t.fields();
    match defect {
        Defect::NotJson => {
            // Cut on an ASCII byte so the file stays valid UTF-8 for text readers.
            let mut cut = rng.random_range(1..line.len());
            while cut > 1 && line[cut] >= 0x80 {
                cut -= 1;
            }
            return Some(line[..cut].to_vec());
        }
        Defect::NotObject => {
            let mut out = b"[".to_vec();
            out.extend_from_slice(line);
            out.push(b']');
            return Some(out);
        }
        Defect::TooLarge => {
            v["data"]["attachment"] = json!("x".repeat(MAX_EVENT_BYTES));
        }
        Defect::MissingField => {
            let required: Vec<&str> = fields
                .iter()
                .filter(|f| f.required)
                .map(|f| f.name)
                .collect();
            let i = rng.random_range(0..ENVELOPE_REQUIRED.len() + required.len());
            match ENVELOPE_REQUIRED.get(i) {
                Some(name) => v.as_object_mut()?.remove(*name)?,
                None => v["data"]
                    .as_object_mut()?
                    .remove(required[i - ENVELOPE_REQUIRED.len()])?,
            };
        }
        Defect::BadType => {
            let f = fields[rng.random_range(0..fields.len())];
            v["data"][f.name] = wrong_type(f.kind);
        }
        Defect::BadValue => {
            if rng.random_bool(0.3) {
                v["event_id"] = json!("not-a-uuid");
            } else {
                let f = fields[rng.random_range(0..fields.len())];
                v["data"][f.name] = bad_value(f.kind)?;
            }
        }
        Defect::UnknownType => v["type"] = json!(format!("{}_v2", t.name())),
        Defect::UnsupportedVersion => v["schema_version"] = json!(2),
        Defect::UnitMismatch => {
            if !t.has_data_unit_id() {
                return None;
            }
            v["data"]["unit_id"] = json!("S000000000000");
        }
        Defect::MinutesOverInterval => {
            if t != EventType::ServiceRecorded {
                return None;
            }
            v["data"]["minutes"] = json!(1440);
        }
    }
    serde_json::to_vec(v).ok()
}

/// Breaks a valid line; returns the broken bytes and the decoder's rejection code.
pub fn break_line(line: &[u8], rng: &mut SimRng) -> (Vec<u8>, String) {
    let original: Value = serde_json::from_slice(line).expect("emitted lines are JSON");
    let t = original["type"]
        .as_str()
        .and_then(EventType::parse)
        .expect("emitted lines have a type");
    for _ in 0..16 {
        let mut v = original.clone();
        if let Some(broken) = apply(pick(rng), line, &mut v, t, rng)
            && let Err(rejection) = decode(&broken)
        {
            return (broken, rejection.reason());
        }
    }
    let broken = line[..line.len() / 2].to_vec();
    let code = decode(&broken)
        .err()
        .map(|r| r.reason())
        .unwrap_or_default();
    (broken, code)
}
