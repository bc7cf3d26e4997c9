//! Why an event was refused: one machine-readable code (exactly as the contract spells
//! it) and one sentence for people.

use std::fmt;

use crate::json::Json;

/// The contract's rejection codes. `<name>` is the field's name as the contract spells
/// it, whether it sits in the envelope or in `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectCode {
    NotJson,
    NotObject,
    TooLarge,
    MissingField(&'static str),
    BadType(&'static str),
    BadValue(&'static str),
    UnknownType,
    UnsupportedSchemaVersion,
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectCode::NotJson => f.write_str("not_json"),
            RejectCode::NotObject => f.write_str("not_object"),
            RejectCode::TooLarge => f.write_str("too_large"),
            RejectCode::MissingField(n) => write!(f, "missing_field:{n}"),
            RejectCode::BadType(n) => write!(f, "bad_type:{n}"),
            RejectCode::BadValue(n) => write!(f, "bad_value:{n}"),
            RejectCode::UnknownType => f.write_str("unknown_type"),
            RejectCode::UnsupportedSchemaVersion => f.write_str("unsupported_schema_version"),
        }
    }
}

/// A refused event: the code, for machines (DLQ header `wenming.reason`), and a message,
/// for people (`wenming.message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub code: RejectCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
        }
    }

    /// The code as the contract spells it, e.g. `missing_field:minutes`.
    pub fn reason(&self) -> String {
        self.code.to_string()
    }

    pub(crate) fn missing(name: &'static str) -> Self {
        Rejection::new(
            RejectCode::MissingField(name),
            format!("required field `{name}` is missing"),
        )
    }

    pub(crate) fn bad_type(name: &'static str, expected: &str, got: &Json<'_>) -> Self {
        Rejection::new(
            RejectCode::BadType(name),
            format!("field `{name}` must be {expected}, got {}", got.kind()),
        )
    }

    pub(crate) fn bad_value(name: &'static str, why: impl fmt::Display) -> Self {
        Rejection::new(RejectCode::BadValue(name), format!("field `{name}` {why}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_the_contract() {
        assert_eq!(RejectCode::NotJson.to_string(), "not_json");
        assert_eq!(RejectCode::NotObject.to_string(), "not_object");
        assert_eq!(RejectCode::TooLarge.to_string(), "too_large");
        assert_eq!(
            RejectCode::MissingField("minutes").to_string(),
            "missing_field:minutes"
        );
        assert_eq!(RejectCode::BadType("score").to_string(), "bad_type:score");
        assert_eq!(
            RejectCode::BadValue("unit_id").to_string(),
            "bad_value:unit_id"
        );
        assert_eq!(RejectCode::UnknownType.to_string(), "unknown_type");
        assert_eq!(
            RejectCode::UnsupportedSchemaVersion.to_string(),
            "unsupported_schema_version"
        );
    }
}
