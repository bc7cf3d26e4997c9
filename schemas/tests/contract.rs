//! Contract v1, executable: the spec's examples decode and round-trip; every rejection
//! code comes out of at least one input; the JSON Schema agrees with the decoder;
//! proptest for "valid always decodes" and "no bytes panic".

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{Value, json};
use wenming_schemas::{EventType, FieldKind, MAX_EVENT_BYTES, RejectCode, decode, json_schema};

const EXAMPLES: &str = include_str!("fixtures/examples.ndjson");

fn examples() -> Vec<Value> {
    EXAMPLES
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn reason(v: &Value) -> String {
    match decode(&serde_json::to_vec(v).unwrap()) {
        Ok(e) => panic!("expected a rejection, decoded {e:?} from {v}"),
        Err(r) => r.reason(),
    }
}

#[test]
fn spec_examples_cover_every_type_and_decode() {
    let mut seen = BTreeSet::new();
    for line in EXAMPLES.lines() {
        let e = decode(line.as_bytes()).unwrap_or_else(|r| panic!("{r} in {line}"));
        seen.insert(e.event_type());
    }
    assert_eq!(seen.len(), EventType::ALL.len());
}

#[test]
fn every_type_round_trips_through_json() {
    for line in EXAMPLES.lines() {
        let e = decode(line.as_bytes()).unwrap();
        let again = decode(&e.to_json()).unwrap();
        assert_eq!(e, again);
        // Same JSON value, apart from key order and the offsets' spelling.
        let original: Value = serde_json::from_str(line).unwrap();
        let encoded: Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(
            original["data"].as_object().unwrap().len(),
            encoded["data"].as_object().unwrap().len(),
            "{line}"
        );
        assert_eq!(original["event_id"], encoded["event_id"]);
        assert_eq!(original["type"], encoded["type"]);
    }
}

/// A value of the wrong JSON type for a field of this kind.
fn wrong_type(kind: FieldKind) -> Value {
    match kind {
        FieldKind::Int { .. } => json!("12"),
        FieldKind::Bool => json!("yes"),
        _ => json!(12345),
    }
}

/// Values of the right JSON type that break the field's rule.
fn bad_values(kind: FieldKind) -> Vec<Value> {
    match kind {
        FieldKind::Id => vec![json!(""), json!("x".repeat(65))],
        FieldKind::Text | FieldKind::Bool => vec![],
        FieldKind::Timestamp => vec![
            json!("2024-03-05T09:30:00"),
            json!("2024-03-05"),
            json!("2024-13-05T09:30:00+08:00"),
        ],
        FieldKind::AreaCode => vec![json!("33020300100"), json!("33020300100X")],
        FieldKind::Int { min, max } => {
            let mut v = vec![];
            if min > i64::MIN {
                v.push(json!(min - 1));
            }
            if max < i64::MAX {
                v.push(json!(max + 1));
            }
            v
        }
        FieldKind::Enum(_) => vec![json!("not-a-member"), json!("")],
    }
}

/// Every field of every type: removed (when required), of the wrong type, and of a bad
/// value, each gives exactly the contract's code for that field.
#[test]
fn every_field_rule_rejects_with_its_code() {
    let mut codes = BTreeSet::new();
    for base in examples() {
        let t = EventType::parse(base["type"].as_str().unwrap()).unwrap();
        for f in t.fields() {
            if f.required {
                let mut v = base.clone();
                v["data"].as_object_mut().unwrap().remove(f.name);
                assert_eq!(reason(&v), format!("missing_field:{}", f.name), "{}", t);
                let mut v = base.clone();
                v["data"][f.name] = Value::Null;
                assert_eq!(
                    reason(&v),
                    format!("missing_field:{}", f.name),
                    "{} null",
                    t
                );
            }
            let mut v = base.clone();
            v["data"][f.name] = wrong_type(f.kind);
            assert_eq!(reason(&v), format!("bad_type:{}", f.name), "{}", t);
            if matches!(f.kind, FieldKind::Int { .. }) {
                // 1.5 is a number but not an integer: the wrong type.
                v["data"][f.name] = json!(1.5);
                assert_eq!(reason(&v), format!("bad_type:{}", f.name), "{} 1.5", t);
            }
            for bad in bad_values(f.kind) {
                let mut v = base.clone();
                v["data"][f.name] = bad.clone();
                assert_eq!(reason(&v), format!("bad_value:{}", f.name), "{t} {bad}");
                codes.insert(format!("bad_value:{}", f.name));
            }
            codes.insert(format!("bad_type:{}", f.name));
        }
    }
    assert!(codes.len() > 40, "{codes:?}");
}

#[test]
fn envelope_rules_reject_with_their_codes() {
    let base = examples().remove(10); // service.recorded
    let cases: Vec<(&str, Value, &str)> = vec![
        ("event_id", Value::Null, "missing_field:event_id"),
        ("event_id", json!(7), "bad_type:event_id"),
        ("event_id", json!("not-a-uuid"), "bad_value:event_id"),
        (
            "event_id",
            json!("15562a8d295b49d58f036c53cb87a2e8"),
            "bad_value:event_id",
        ),
        ("type", Value::Null, "missing_field:type"),
        ("type", json!(["service.recorded"]), "bad_type:type"),
        ("type", json!("service.deleted"), "unknown_type"),
        (
            "schema_version",
            Value::Null,
            "missing_field:schema_version",
        ),
        ("schema_version", json!("1"), "bad_type:schema_version"),
        ("schema_version", json!(2), "unsupported_schema_version"),
        ("occurred_at", Value::Null, "missing_field:occurred_at"),
        ("occurred_at", json!(1700000000), "bad_type:occurred_at"),
        (
            "occurred_at",
            json!("2024-12-11 23:44:25"),
            "bad_value:occurred_at",
        ),
        ("unit_id", Value::Null, "missing_field:unit_id"),
        ("unit_id", json!(42), "bad_type:unit_id"),
        ("source", json!(42), "bad_type:source"),
        ("data", Value::Null, "missing_field:data"),
        ("data", json!("{}"), "bad_type:data"),
    ];
    for (field, value, code) in cases {
        let mut v = base.clone();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = value;
        }
        assert_eq!(reason(&v), code, "{field}");
    }
    // Upper-case UUIDs are accepted and stored in lower case.
    let mut v = base.clone();
    v["event_id"] = json!("15562A8D-295B-49D5-8F03-6C53CB87A2E8");
    let e = decode(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(
        e.event_id.to_string(),
        "15562a8d-295b-49d5-8f03-6c53cb87a2e8"
    );
}

#[test]
fn message_level_rules() {
    assert_eq!(decode(b"not json").unwrap_err().reason(), "not_json");
    assert_eq!(decode(b"").unwrap_err().reason(), "not_json");
    assert_eq!(
        decode(b"{\"a\":1} trailing").unwrap_err().reason(),
        "not_json"
    );
    assert_eq!(
        decode(&[0xff, 0xfe, b'{', b'}']).unwrap_err().reason(),
        "not_json"
    );
    assert_eq!(decode(b"[1,2]").unwrap_err().reason(), "not_object");
    assert_eq!(decode(b"\"event\"").unwrap_err().reason(), "not_object");
    assert_eq!(decode(b"null").unwrap_err().reason(), "not_object");
    // Exactly 1 MiB passes the size rule (then fails on content); one byte more does not.
    let mut big = examples()[0].clone();
    big["data"]["padding"] = json!("");
    let base_len = serde_json::to_vec(&big).unwrap().len();
    big["data"]["padding"] = json!("x".repeat(MAX_EVENT_BYTES - base_len));
    let exact = serde_json::to_vec(&big).unwrap();
    assert_eq!(exact.len(), MAX_EVENT_BYTES);
    assert!(
        decode(&exact).is_ok(),
        "an event of exactly 1 MiB is accepted"
    );
    let mut over = exact.clone();
    over.insert(1, b' ');
    assert_eq!(decode(&over).unwrap_err().reason(), "too_large");
}

#[test]
fn cross_field_rules() {
    let ex = examples();
    // data.unit_id must equal the envelope's.
    let mut v = ex[0].clone();
    v["data"]["unit_id"] = json!("C999999");
    assert_eq!(reason(&v), "bad_value:unit_id");
    // ... also where the type does not define data.unit_id: the contract says "where
    // data carries a unit_id", and an event must not name two owners.
    let mut v = ex[14].clone(); // order.dispatched
    assert_eq!(v["type"], "order.dispatched");
    v["data"]["unit_id"] = json!("S999");
    assert_eq!(reason(&v), "bad_value:unit_id");
    v["data"]["unit_id"] = v["unit_id"].clone();
    assert!(
        decode(&serde_json::to_vec(&v).unwrap()).is_ok(),
        "an equal one is fine"
    );
    // minutes within the service interval (example: 900 minutes between start and end).
    let mut v = ex[10].clone();
    v["data"]["minutes"] = json!(901);
    assert_eq!(reason(&v), "bad_value:minutes");
    v["data"]["minutes"] = json!(900);
    assert!(decode(&serde_json::to_vec(&v).unwrap()).is_ok());
    let mut v = ex[10].clone();
    v["data"]["ended_at"] = json!("2024-12-10T14:00:00Z");
    assert_eq!(reason(&v), "bad_value:ended_at");
    // A center's code ends in 6 zeros, an institute's in 3.
    let mut v = ex[0].clone();
    v["data"]["area_code"] = json!("440306001000");
    assert_eq!(reason(&v), "bad_value:area_code");
    v["data"]["level"] = json!("institute");
    assert!(decode(&serde_json::to_vec(&v).unwrap()).is_ok());
    v["data"]["area_code"] = json!("440306001001");
    assert_eq!(reason(&v), "bad_value:area_code");
    // An activity cannot end before it starts.
    let mut v = ex[6].clone();
    v["data"]["ends_at"] = json!("2025-01-31T16:00:00Z");
    assert_eq!(reason(&v), "bad_value:ends_at");
    // Unknown extra fields are ignored, in the envelope and in data.
    let mut v = ex[6].clone();
    v["extra"] = json!({"x": 1});
    v["data"]["colour"] = json!("red");
    let e = decode(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(!String::from_utf8(e.to_json()).unwrap().contains("colour"));
}

#[test]
fn messages_name_the_field_and_the_value() {
    let mut v = examples()[10].clone();
    v["data"]["minutes"] = json!(2000);
    let r = decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert_eq!(r.code, RejectCode::BadValue("minutes"));
    assert!(
        r.message.contains("minutes") && r.message.contains("2000"),
        "{}",
        r.message
    );
}

#[test]
fn json_schema_agrees_with_the_decoder() {
    let catalog = json_schema::catalog();
    let validator = jsonschema::validator_for(&catalog).expect("the catalog is a valid schema");
    for base in examples() {
        assert!(validator.is_valid(&base), "{base}");
        let t = EventType::parse(base["type"].as_str().unwrap()).unwrap();
        let single = jsonschema::validator_for(&json_schema::for_type(t)).unwrap();
        assert!(single.is_valid(&base));
        // Each field-level defect the decoder refuses, the schema refuses too.
        for f in t.fields() {
            let mut v = base.clone();
            v["data"][f.name] = wrong_type(f.kind);
            assert!(!validator.is_valid(&v), "{t}.{} wrong type", f.name);
            for bad in bad_values(f.kind) {
                // Timestamps that look right but name no real day are for the decoder.
                if f.kind == FieldKind::Timestamp && bad == json!("2024-13-05T09:30:00+08:00") {
                    continue;
                }
                let mut v = base.clone();
                v["data"][f.name] = bad.clone();
                assert!(!validator.is_valid(&v), "{t}.{} = {bad}", f.name);
            }
            if f.required {
                let mut v = base.clone();
                v["data"].as_object_mut().unwrap().remove(f.name);
                assert!(!validator.is_valid(&v), "{t}.{} missing", f.name);
            }
        }
    }
}

// --- property tests -------------------------------------------------------------------

fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9站点-]{1,64}"
}

fn timestamp() -> impl Strategy<Value = (i64, i32)> {
    // Seconds since epoch in 2000..2100 and an offset in whole quarter hours.
    (946_684_800i64..4_102_444_800, -48i32..=56).prop_map(|(s, q)| (s, q * 15 * 60))
}

fn fmt_ts((secs, offset): (i64, i32)) -> String {
    let off = chrono::FixedOffset::east_opt(offset).unwrap();
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .with_timezone(&off)
        .to_rfc3339()
}

fn field_value(kind: FieldKind) -> BoxedStrategy<Value> {
    match kind {
        FieldKind::Id => id().prop_map(Value::from).boxed(),
        FieldKind::Text => ".{0,40}".prop_map(Value::from).boxed(),
        FieldKind::Timestamp => timestamp().prop_map(|t| Value::from(fmt_ts(t))).boxed(),
        FieldKind::AreaCode => "[0-9]{12}".prop_map(Value::from).boxed(),
        FieldKind::Int { min, max } => (min..=max).prop_map(Value::from).boxed(),
        FieldKind::Bool => any::<bool>().prop_map(Value::from).boxed(),
        FieldKind::Enum(names) => proptest::sample::select(names)
            .prop_map(Value::from)
            .boxed(),
    }
}

/// Any valid event: a type, every required field, each optional field or not, then the
/// cross-field rules made true.
fn valid_event() -> impl Strategy<Value = Value> {
    proptest::sample::select(EventType::ALL)
        .prop_flat_map(|t| {
            let fields: Vec<BoxedStrategy<Option<Value>>> = t
                .fields()
                .iter()
                .map(|f| {
                    if f.required {
                        field_value(f.kind).prop_map(Some).boxed()
                    } else {
                        proptest::option::of(field_value(f.kind)).boxed()
                    }
                })
                .collect();
            (
                Just(t),
                fields,
                any::<[u8; 16]>(),
                timestamp(),
                id(),
                0u32..10_000,
            )
        })
        .prop_map(|(t, values, uuid, at, unit, extra_minutes)| {
            let mut data = serde_json::Map::new();
            for (f, v) in t.fields().iter().zip(values) {
                if let Some(v) = v {
                    data.insert(f.name.to_owned(), v);
                }
            }
            if t.has_data_unit_id() {
                data.insert("unit_id".into(), json!(unit));
            }
            match t {
                EventType::UnitRegistered => {
                    let code = data["area_code"].as_str().unwrap().to_owned();
                    let fixed = match data["level"].as_str().unwrap() {
                        "center" => format!("{}000000", &code[..6]),
                        "institute" => format!("{}000", &code[..9]),
                        _ => code,
                    };
                    data.insert("area_code".into(), json!(fixed));
                }
                EventType::ActivityPublished | EventType::ServiceRecorded => {
                    let (start, end) = if t == EventType::ServiceRecorded {
                        ("started_at", "ended_at")
                    } else {
                        ("starts_at", "ends_at")
                    };
                    let s = chrono::DateTime::parse_from_rfc3339(data[start].as_str().unwrap())
                        .unwrap();
                    let minutes = data.get("minutes").and_then(Value::as_i64).unwrap_or(0);
                    let e = s + chrono::Duration::minutes(minutes + i64::from(extra_minutes));
                    data.insert(end.into(), json!(e.to_rfc3339()));
                }
                _ => {}
            }
            json!({
                "event_id": uuid::Uuid::from_bytes(uuid).to_string(),
                "type": t.name(),
                "schema_version": 1,
                "occurred_at": fmt_ts(at),
                "unit_id": unit,
                "data": data,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn valid_events_always_decode_and_round_trip(v in valid_event()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let e = decode(&bytes).map_err(|r| TestCaseError::fail(format!("{r} for {v}")))?;
        prop_assert_eq!(e.event_type().name(), v["type"].as_str().unwrap());
        let again = decode(&e.to_json()).unwrap();
        prop_assert_eq!(e, again);
    }

    #[test]
    fn arbitrary_bytes_decode_or_get_a_contract_reason(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_outcome(&bytes)?;
    }

    #[test]
    fn mangled_valid_events_decode_or_get_a_contract_reason(
        v in valid_event(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = serde_json::to_vec(&v).unwrap();
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        check_outcome(&bytes)?;
    }
}

/// Whatever the bytes: an event that survives its own round trip, or a rejection with one
/// of the contract's reason codes and a sentence.
fn check_outcome(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Ok(e) => prop_assert_eq!(decode(&e.to_json()).unwrap(), e),
        Err(r) => {
            let reason = r.reason();
            let known = [
                "not_json",
                "not_object",
                "too_large",
                "unknown_type",
                "unsupported_schema_version",
            ]
            .contains(&reason.as_str())
                || ["missing_field:", "bad_type:", "bad_value:"]
                    .iter()
                    .any(|p| reason.strip_prefix(p).is_some_and(|f| !f.is_empty()));
            prop_assert!(known, "unknown reason {reason}");
            prop_assert!(!r.message.is_empty(), "{reason} without a sentence");
        }
    }
    Ok(())
}
