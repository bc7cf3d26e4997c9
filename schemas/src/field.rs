//! The value types of the contract's fields. Each type knows three things: how to decode
//! itself from JSON (refusing with the contract's code), what it looks like in Arrow,
//! and what it looks like in JSON Schema. The catalog is written in these types, so the
//! decoder, the lake schema and the published JSON Schema cannot drift apart.

use std::fmt;

use crate::json::Json;
use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};
use serde::{Serialize, Serializer};

use crate::rejection::Rejection;

/// What kind of value a field holds; read by the Arrow and JSON Schema builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// An opaque id, 1..=64 characters.
    Id,
    /// Free text.
    Text,
    /// RFC 3339 timestamp with an offset.
    Timestamp,
    /// 12-digit administrative area code.
    AreaCode,
    /// Integer within inclusive bounds.
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
}

/// A field's value as the lake stores it, borrowed: what Arrow builders are fed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    Null,
    Str(&'a str),
    Int(i64),
    Bool(bool),
    /// Microseconds since the Unix epoch (UTC).
    Timestamp(i64),
}

/// A field of the contract: decoded from `data` (or the envelope) by name.
pub trait Field: Sized {
    const KIND: FieldKind;
    const REQUIRED: bool = true;

    /// Decode from the JSON value found under `name`, `None` when the key is absent.
    /// A JSON `null` counts as absent: for a required field that is `missing_field`.
    fn decode_field(value: Option<&Json<'_>>, name: &'static str) -> Result<Self, Rejection>;

    /// Used by serde's `skip_serializing_if`: optional fields that are absent are left
    /// out of the JSON rather than written as `null`.
    fn is_absent(&self) -> bool {
        false
    }

    /// The value as the lake stores it.
    fn value(&self) -> FieldValue<'_>;
}

fn present<'v, 'a>(
    value: Option<&'v Json<'a>>,
    name: &'static str,
) -> Result<&'v Json<'a>, Rejection> {
    match value {
        None | Some(Json::Null) => Err(Rejection::missing(name)),
        Some(v) => Ok(v),
    }
}

fn string<'v>(value: Option<&'v Json<'_>>, name: &'static str) -> Result<&'v str, Rejection> {
    match present(value, name)? {
        Json::String(s) => Ok(s),
        other => Err(Rejection::bad_type(name, "a string", other)),
    }
}

impl<T: Field> Field for Option<T> {
    const KIND: FieldKind = T::KIND;
    const REQUIRED: bool = false;

    fn decode_field(value: Option<&Json<'_>>, name: &'static str) -> Result<Self, Rejection> {
        match value {
            None | Some(Json::Null) => Ok(None),
            some => T::decode_field(some, name).map(Some),
        }
    }

    fn is_absent(&self) -> bool {
        self.is_none()
    }

    fn value(&self) -> FieldValue<'_> {
        self.as_ref().map_or(FieldValue::Null, Field::value)
    }
}

pub const ID_MAX_CHARS: usize = 64;

/// An opaque id (`*_id`, envelope `unit_id`): 1..=64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Id(pub String);

impl Id {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id(s.to_owned())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id(s)
    }
}

impl Field for Id {
    const KIND: FieldKind = FieldKind::Id;

    fn decode_field(value: Option<&Json<'_>>, name: &'static str) -> Result<Self, Rejection> {
        let s = string(value, name)?;
        // A character is 1 to 4 bytes: up to 64 bytes there is nothing to count.
        let chars = if s.len() <= ID_MAX_CHARS {
            s.len()
        } else {
            s.chars().count()
        };
        if s.is_empty() || chars > ID_MAX_CHARS {
            return Err(Rejection::bad_value(
                name,
                format_args!("must be 1 to {ID_MAX_CHARS} characters long, got {chars}"),
            ));
        }
        Ok(Id(s.to_owned()))
    }

    fn value(&self) -> FieldValue<'_> {
        FieldValue::Str(&self.0)
    }
}

/// Free text (names, titles, reasons).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Text(pub String);

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(s.to_owned())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(s)
    }
}

impl Field for Text {
    const KIND: FieldKind = FieldKind::Text;

    fn decode_field(value: Option<&Json<'_>>, name: &'static str) -> Result<Self, Rejection> {
        string(value, name).map(|s| Text(s.to_owned()))
    }

    fn value(&self) -> FieldValue<'_> {
        FieldValue::Str(&self.0)
    }
}

/// A 12-digit administrative area code: first 6 digits the district, first 9 the street.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AreaCode(pub String);

impl AreaCode {
    /// The district code (first 6 digits).
    pub fn district(&self) -> &str {
        &self.0[..6]
    }
    /// The street code (first 9 digits).
    pub fn street(&self) -> &str {
        &self.0[..9]
    }
}

impl Field for AreaCode {
    const KIND: FieldKind = FieldKind::AreaCode;

    fn decode_field(value: Option<&Json<'_>>, name: &'static str) -> Result<Self, Rejection> {
        let s = string(value, name)?;
        if s.len() != 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Rejection::bad_value(
                name,
                format_args!("must be a 12-digit administrative area code, got {s:?}"),
            ));
        }
        Ok(AreaCode(s.to_owned()))
    }

    fn value(&self) -> FieldValue<'_> {
        FieldValue::Str(&self.0)
    }
}

/// An RFC 3339 timestamp with an offset. The offset the sender used is kept (so an event
/// re-encodes as it came); comparisons and the lake use the UTC instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<FixedOffset>);

impl Timestamp {
    pub fn utc(&self) -> DateTime<Utc> {
        self.0.with_timezone(&Utc)
    }

    /// Microseconds since the Unix epoch, as stored in the lake.
    pub fn micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// Writes RFC 3339 (`2024-03-05T09:30:00+08:00`, fraction only when non-zero)
    /// without allocating: the generator writes tens of millions of these.
    pub fn write_rfc3339(&self, out: &mut Vec<u8>) {
        let t = &self.0;
        let two = |out: &mut Vec<u8>, v: u32| {
            out.push(b'0' + (v / 10) as u8);
            out.push(b'0' + (v % 10) as u8);
        };
        let year = t.year();
        if (0..=9999).contains(&year) {
            let y = year as u32;
            two(out, y / 100);
            two(out, y % 100);
        } else {
            out.extend_from_slice(format!("{year:+05}").as_bytes());
        }
        out.push(b'-');
        two(out, t.month());
        out.push(b'-');
        two(out, t.day());
        out.push(b'T');
        two(out, t.hour());
        out.push(b':');
        two(out, t.minute());
        out.push(b':');
        two(out, t.second());
        let nanos = t.nanosecond() % 1_000_000_000;
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            out.push(b'.');
            out.extend_from_slice(frac.trim_end_matches('0').as_bytes());
        }
        let offset = t.offset().local_minus_utc();
        if offset == 0 {
            out.push(b'Z');
        } else {
            out.push(if offset < 0 { b'-' } else { b'+' });
            let mins = offset.unsigned_abs() / 60;
            two(out, mins / 60);
            out.push(b':');
            two(out, mins % 60);
        }
    }

    pub fn to_rfc3339(&self) -> String {
        let mut out = Vec::with_capacity(32);
        self.write_rfc3339(&mut out);
        String::from_utf8(out).expect("RFC 3339 text is ASCII")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Vec::with_capacity(32);
        self.write_rfc3339(&mut buf);
        // ASCII by construction.
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

impl Field for Timestamp {
    const KIND: FieldKind = FieldKind::Timestamp;

    fn decode_field(value: Option<&Json<'_>>, name: &'static str) -> Result<Self, Rejection> {
        let s = string(value, name)?;
        // chrono's RFC 3339 parser requires the offset (`Z` or `±hh:mm`): a local time
        // without one is refused, as the contract asks.
        DateTime::parse_from_rfc3339(s).map(Timestamp).map_err(|e| {
            Rejection::bad_value(
                name,
                format_args!(
                    "must be an RFC 3339 timestamp with offset such as \
                     2024-03-05T09:30:00+08:00, got {s:?} ({e})"
                ),
            )
        })
    }

    fn value(&self) -> FieldValue<'_> {
        FieldValue::Timestamp(self.micros())
    }
}

/// An integer within inclusive bounds `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Bounded<const MIN: i64, const MAX: i64>(pub i64);

impl<const MIN: i64, const MAX: i64> Bounded<MIN, MAX> {
    pub fn get(self) -> i64 {
        self.0
    }
}

/// Reads a JSON number as an integer. As in JSON Schema, `60.0` is the integer 60 and
/// `60.5` is not an integer at all.
/// `Err(true)`: a whole number beyond i64 (a value error: out of bounds);
/// `Err(false)`: not a whole number (a type error).
fn as_integer(v: &Json<'_>) -> Result<i64, bool> {
    match v {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64() {
                if f.fract() != 0.0 || !f.is_finite() {
                    Err(false)
                } else if f >= i64::MIN as f64 && f <= i64::MAX as f64 {
                    Ok(f as i64)
                } else {
                    Err(true)
                }
            } else {
                Err(true)
            }
        }
        _ => Err(false),
    }
}

impl<const MIN: i64, const MAX: i64> Field for Bounded<MIN, MAX> {
    const KIND: FieldKind = FieldKind::Int { min: MIN, max: MAX };

    fn decode_field(value: Option<&Json<'_>>, name: &'static str) -> Result<Self, Rejection> {
        let v = present(value, name)?;
        match as_integer(v) {
            Ok(i) if (MIN..=MAX).contains(&i) => Ok(Bounded(i)),
            Ok(i) => Err(Rejection::bad_value(
                name,
                format_args!("must be between {MIN} and {MAX}, got {i}"),
            )),
            Err(true) => Err(Rejection::bad_value(
                name,
                format_args!("must be between {MIN} and {MAX}, got {v}"),
            )),
            Err(false) => Err(Rejection::bad_type(name, "a whole number (integer)", v)),
        }
    }

    fn value(&self) -> FieldValue<'_> {
        FieldValue::Int(self.0)
    }
}

impl Field for bool {
    const KIND: FieldKind = FieldKind::Bool;

    fn decode_field(value: Option<&Json<'_>>, name: &'static str) -> Result<Self, Rejection> {
        match present(value, name)? {
            Json::Bool(b) => Ok(*b),
            other => Err(Rejection::bad_type(name, "true or false", other)),
        }
    }

    fn value(&self) -> FieldValue<'_> {
        FieldValue::Bool(*self)
    }
}

/// Declares a closed set of strings as a Rust enum that decodes as a contract field.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::field::Field for $name {
            const KIND: $crate::field::FieldKind = $crate::field::FieldKind::Enum(Self::NAMES);

            fn decode_field(
                value: Option<&$crate::json::Json<'_>>,
                name: &'static str,
            ) -> Result<Self, $crate::rejection::Rejection> {
                let s = string(value, name)?;
                Self::parse(s).ok_or_else(|| {
                    $crate::rejection::Rejection::bad_value(
                        name,
                        format_args!("must be one of {}, got {s:?}", Self::NAMES.join(", ")),
                    )
                })
            }

            fn value(&self) -> $crate::field::FieldValue<'_> {
                $crate::field::FieldValue::Str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// The four levels of the practice network.
    Level { Center = "center", Institute = "institute", Station = "station", Point = "point" }
}

string_enum! {
    /// Activity and order categories.
    Category {
        Theory = "theory", Culture = "culture", Convenience = "convenience",
        Education = "education", Health = "health", Law = "law",
        Environment = "environment", ElderlyChild = "elderly_child",
        Festival = "festival", Other = "other",
    }
}

string_enum! {
    Role { Resident = "resident", Volunteer = "volunteer" }
}

string_enum! {
    CheckInMethod { Scan = "scan", Gps = "gps", Manual = "manual" }
}

string_enum! {
    Channel { App = "app", Hotline = "hotline", Visit = "visit", Screen = "screen" }
}

string_enum! {
    Gender { F = "f", M = "m", X = "x" }
}

string_enum! {
    FeedbackKind { Suggestion = "suggestion", Complaint = "complaint", Help = "help" }
}

impl Category {
    /// The Chinese name used by offices.
    pub fn title_zh(self) -> &'static str {
        match self {
            Category::Theory => "理论宣讲",
            Category::Culture => "文化服务",
            Category::Convenience => "便民服务",
            Category::Education => "教育培训",
            Category::Health => "卫生健康",
            Category::Law => "法律服务",
            Category::Environment => "生态环保",
            Category::ElderlyChild => "一老一小",
            Category::Festival => "节日民俗",
            Category::Other => "其他",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The decoder's view of a test value.
    fn j(v: &Value) -> Json<'_> {
        Json::from(v)
    }

    #[test]
    fn integers_accept_integral_floats_and_call_fractions_a_type_error() {
        type Minutes = Bounded<1, 1440>;
        assert_eq!(
            Minutes::decode_field(Some(&j(&json!(60.0))), "minutes").unwrap(),
            Bounded(60)
        );
        // A fraction is not an integer: a type error, as JSON Schema's "integer" says.
        let e = Minutes::decode_field(Some(&j(&json!(60.5))), "minutes").unwrap_err();
        assert_eq!(e.reason(), "bad_type:minutes");
        let e = Minutes::decode_field(Some(&j(&json!("60"))), "minutes").unwrap_err();
        assert_eq!(e.reason(), "bad_type:minutes");
        let e = Minutes::decode_field(Some(&j(&json!(1441))), "minutes").unwrap_err();
        assert_eq!(e.reason(), "bad_value:minutes");
        let e = Minutes::decode_field(Some(&j(&json!(1e300))), "minutes").unwrap_err();
        assert_eq!(e.reason(), "bad_value:minutes");
        let e = Minutes::decode_field(Some(&Json::Null), "minutes").unwrap_err();
        assert_eq!(e.reason(), "missing_field:minutes");
    }

    #[test]
    fn ids_count_characters_not_bytes() {
        let ascii = |n: usize| Id::decode_field(Some(&j(&json!("a".repeat(n)))), "unit_id");
        assert!(ascii(1).is_ok());
        assert!(ascii(64).is_ok());
        assert_eq!(ascii(65).unwrap_err().reason(), "bad_value:unit_id");
        assert_eq!(ascii(0).unwrap_err().reason(), "bad_value:unit_id");
        let s: String = "站".repeat(64);
        assert!(Id::decode_field(Some(&j(&json!(s))), "unit_id").is_ok());
        let s: String = "站".repeat(65);
        assert_eq!(
            Id::decode_field(Some(&j(&json!(s))), "unit_id")
                .unwrap_err()
                .reason(),
            "bad_value:unit_id"
        );
    }

    #[test]
    fn timestamps_need_an_offset_and_keep_it() {
        let t =
            Timestamp::decode_field(Some(&j(&json!("2024-03-05T09:30:00+08:00"))), "x").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-05T09:30:00+08:00");
        assert_eq!(t.utc().to_rfc3339(), "2024-03-05T01:30:00+00:00");
        let t = Timestamp::decode_field(Some(&j(&json!("2024-03-05T09:30:00.250Z"))), "x").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-05T09:30:00.25Z");
        for bad in [
            "2024-03-05T09:30:00",
            "2024-03-05",
            "yesterday",
            "2024-02-30T00:00:00Z",
        ] {
            let e = Timestamp::decode_field(Some(&j(&json!(bad))), "occurred_at").unwrap_err();
            assert_eq!(e.reason(), "bad_value:occurred_at", "{bad}");
        }
    }

    #[test]
    fn enums_are_case_sensitive() {
        assert_eq!(
            Level::decode_field(Some(&j(&json!("station"))), "level").unwrap(),
            Level::Station
        );
        assert_eq!(
            Level::decode_field(Some(&j(&json!("Station"))), "level")
                .unwrap_err()
                .reason(),
            "bad_value:level"
        );
    }

    /// The JSON Schema's timestamp pattern allows `T`, `t` or a space between date and
    /// time (RFC 3339 §5.6 note); the decoder must agree with it.
    #[test]
    fn timestamp_separators_match_the_json_schema() {
        for ok in [
            "2024-03-05T09:30:00+08:00",
            "2024-03-05t09:30:00z",
            "2024-03-05 09:30:00+08:00",
        ] {
            assert!(
                Timestamp::decode_field(Some(&j(&json!(ok))), "x").is_ok(),
                "{ok}"
            );
        }
    }
}
