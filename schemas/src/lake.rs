//! Arrow schemas of the lake tables: one table per event family, with the envelope
//! columns, the union of the family's typed `data` columns, and where the event came from.

use std::sync::Arc;

use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};

use crate::catalog::Family;
use crate::field::FieldKind;

/// Timestamps are stored as UTC instants with microsecond precision.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Arrow type a field of this kind is stored as.
pub fn arrow_type(kind: FieldKind) -> DataType {
    match kind {
        FieldKind::Id | FieldKind::Text | FieldKind::AreaCode | FieldKind::Enum(_) => {
            DataType::Utf8
        }
        FieldKind::Timestamp => timestamp_type(),
        FieldKind::Int { .. } => DataType::Int64,
        FieldKind::Bool => DataType::Boolean,
    }
}

/// Envelope columns, first in every table. `unit_id` is the envelope's; a `data.unit_id`
/// always equals it, so it is not stored twice.
pub const ENVELOPE_COLUMNS: &[&str] = &[
    "event_id",
    "type",
    "schema_version",
    "occurred_at",
    "unit_id",
    "source",
];

/// Provenance columns, last in every table. `kafka_partition` and `kafka_offset` are null
/// for events imported from files.
pub const PROVENANCE_COLUMNS: &[&str] = &["kafka_partition", "kafka_offset", "ingested_at"];

/// The typed data columns of a family: the union of its event types' fields in catalog
/// order, each nullable (a column belongs to only some of the family's types).
pub fn data_columns(family: Family) -> Vec<(&'static str, FieldKind)> {
    let mut cols: Vec<(&'static str, FieldKind)> = Vec::new();
    for t in family.event_types() {
        for f in t.fields() {
            if f.name == "unit_id" || cols.iter().any(|(n, _)| *n == f.name) {
                continue;
            }
            cols.push((f.name, f.kind));
        }
    }
    cols
}

/// The Arrow schema of a family's lake table.
pub fn table_schema(family: Family) -> SchemaRef {
    let mut fields = vec![
        ArrowField::new("event_id", DataType::Utf8, false),
        ArrowField::new("type", DataType::Utf8, false),
        ArrowField::new("schema_version", DataType::Int32, false),
        ArrowField::new("occurred_at", timestamp_type(), false),
        ArrowField::new("unit_id", DataType::Utf8, false),
        ArrowField::new("source", DataType::Utf8, true),
    ];
    for (name, kind) in data_columns(family) {
        fields.push(ArrowField::new(name, arrow_type(kind), true));
    }
    fields.push(ArrowField::new("kafka_partition", DataType::Int32, true));
    fields.push(ArrowField::new("kafka_offset", DataType::Int64, true));
    fields.push(ArrowField::new("ingested_at", timestamp_type(), false));
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::EventType;

    #[test]
    fn every_field_of_every_type_has_a_column_of_its_type() {
        for t in EventType::ALL {
            let schema = table_schema(t.family());
            for f in t.fields() {
                let col = schema
                    .field_with_name(f.name)
                    .unwrap_or_else(|_| panic!("{} has no column {}", t.name(), f.name));
                assert_eq!(
                    col.data_type(),
                    &arrow_type(f.kind),
                    "{}.{}",
                    t.name(),
                    f.name
                );
            }
        }
    }

    #[test]
    fn column_names_are_unique_and_timestamps_are_utc_micros() {
        for family in Family::ALL {
            let schema = table_schema(*family);
            let mut names: Vec<_> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), n, "{}", family.table_name());
            assert_eq!(
                schema.field_with_name("occurred_at").unwrap().data_type(),
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            );
        }
        let service = table_schema(Family::Service);
        let names: Vec<_> = service.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "event_id",
                "type",
                "schema_version",
                "occurred_at",
                "unit_id",
                "source",
                "record_id",
                "volunteer_id",
                "activity_id",
                "team_id",
                "started_at",
                "ended_at",
                "minutes",
                "verifier_id",
                "reason",
                "kafka_partition",
                "kafka_offset",
                "ingested_at"
            ]
        );
    }
}
