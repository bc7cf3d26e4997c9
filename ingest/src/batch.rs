//! Decoded events → Arrow record batches, one builder per family table. Columns are
//! filled from the typed event (`EventData::visit`), never by going back through JSON.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use wenming_schemas::lake::table_schema;
use wenming_schemas::{Event, EventType, Family, FieldValue, SCHEMA_VERSION};

/// Where an event came from, stored beside it.
#[derive(Debug, Clone, Copy)]
pub struct Provenance {
    /// Kafka partition and offset; `None` for events imported from files.
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// When wenming stored it (µs since the epoch, UTC).
    pub ingested_at_us: i64,
}

enum Column {
    Str(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Column {
    fn for_type(t: &DataType) -> Column {
        match t {
            DataType::Utf8 => Column::Str(StringBuilder::new()),
            DataType::Int32 => Column::Int32(Int32Builder::new()),
            DataType::Int64 => Column::Int64(Int64Builder::new()),
            DataType::Boolean => Column::Bool(BooleanBuilder::new()),
            DataType::Timestamp(_, tz) => {
                Column::Timestamp(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone()))
            }
            other => unreachable!("the lake schema has no {other} columns"),
        }
    }

    fn append(&mut self, v: FieldValue<'_>) {
        match (self, v) {
            (Column::Str(b), FieldValue::Str(s)) => b.append_value(s),
            (Column::Int64(b), FieldValue::Int(i)) => b.append_value(i),
            (Column::Int32(b), FieldValue::Int(i)) => b.append_option(i32::try_from(i).ok()),
            (Column::Bool(b), FieldValue::Bool(x)) => b.append_value(x),
            (Column::Timestamp(b), FieldValue::Timestamp(t)) => b.append_value(t),
            (c, _) => c.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::Str(b) => b.append_null(),
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Str(b) => b.len(),
            Column::Int32(b) => b.len(),
            Column::Int64(b) => b.len(),
            Column::Bool(b) => b.len(),
            Column::Timestamp(b) => b.len(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Str(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// Rows of one family's table, being built.
pub struct FamilyBatch {
    family: Family,
    schema: SchemaRef,
    columns: Vec<Column>,
    /// For each event type of the family, the column of each of its data fields in the
    /// order `EventData::visit` gives them (`None`: not a column, e.g. `unit_id`, which
    /// the envelope's column holds). Looking fields up by name per row was a string
    /// comparison per field and column, 4 % of ingest's CPU.
    slots: Vec<(EventType, Vec<Option<usize>>)>,
    /// How many data columns the family has.
    data_columns: usize,
    rows: usize,
    /// Bytes of the source messages: a flush policy measures batches by it.
    source_bytes: usize,
}

/// Columns before the data columns: event_id, type, schema_version, occurred_at,
/// unit_id, source.
const ENVELOPE: usize = 6;

impl FamilyBatch {
    pub fn new(family: Family) -> Self {
        let schema = table_schema(family);
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column::for_type(f.data_type()))
            .collect();
        let names: Vec<&'static str> = wenming_schemas::lake::data_columns(family)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let slots = family
            .event_types()
            .map(|t| {
                let columns = t
                    .fields()
                    .iter()
                    .map(|f| {
                        names
                            .iter()
                            .position(|n| *n == f.name)
                            .map(|i| ENVELOPE + i)
                    })
                    .collect();
                (t, columns)
            })
            .collect();
        FamilyBatch {
            family,
            schema,
            columns,
            slots,
            data_columns: names.len(),
            rows: 0,
            source_bytes: 0,
        }
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn source_bytes(&self) -> usize {
        self.source_bytes
    }

    /// Appends one event of this family.
    pub fn push(&mut self, event: &Event, provenance: Provenance, source_bytes: usize) {
        debug_assert_eq!(event.event_type().family(), self.family);
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let c = &mut self.columns;
        c[0].append(FieldValue::Str(
            event.event_id.hyphenated().encode_lower(&mut id),
        ));
        c[1].append(FieldValue::Str(event.event_type().name()));
        c[2].append(FieldValue::Int(SCHEMA_VERSION));
        c[3].append(FieldValue::Timestamp(event.occurred_at.micros()));
        c[4].append(FieldValue::Str(event.unit_id.as_str()));
        c[5].append(
            event
                .source
                .as_ref()
                .map_or(FieldValue::Null, |s| FieldValue::Str(&s.0)),
        );
        let event_type = event.event_type();
        let slots = self
            .slots
            .iter()
            .find(|(t, _)| *t == event_type)
            .map(|(_, slots)| slots.as_slice())
            .unwrap_or_default();
        let mut field = 0;
        event.data.visit(&mut |_, value| {
            if let Some(Some(i)) = slots.get(field) {
                c[*i].append(value);
            }
            field += 1;
        });
        // Columns of the family this type does not have: null.
        let row = self.rows + 1;
        for col in &mut c[ENVELOPE..ENVELOPE + self.data_columns] {
            if col.len() < row {
                col.append_null();
            }
        }
        let n = c.len();
        c[n - 3].append(
            provenance
                .partition
                .map_or(FieldValue::Null, |p| FieldValue::Int(p.into())),
        );
        c[n - 2].append(provenance.offset.map_or(FieldValue::Null, FieldValue::Int));
        c[n - 1].append(FieldValue::Timestamp(provenance.ingested_at_us));
        self.rows = row;
        self.source_bytes += source_bytes;
    }

    /// The rows so far as a record batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let arrays = self.columns.iter_mut().map(Column::finish).collect();
        self.rows = 0;
        self.source_bytes = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    const EXAMPLES: &str = include_str!("../../schemas/tests/fixtures/examples.ndjson");

    fn events() -> Vec<Event> {
        EXAMPLES
            .lines()
            .map(|l| wenming_schemas::decode(l.as_bytes()).unwrap())
            .collect()
    }

    #[test]
    fn every_family_builds_a_batch_of_its_lake_schema() {
        let events = events();
        for family in Family::ALL {
            let mut batch = FamilyBatch::new(*family);
            for (i, e) in events
                .iter()
                .filter(|e| e.event_type().family() == *family)
                .enumerate()
            {
                let p = Provenance {
                    partition: Some(2),
                    offset: Some(i as i64),
                    ingested_at_us: 42,
                };
                batch.push(e, p, 100);
            }
            let n = batch.len();
            let rb = batch.finish().unwrap();
            assert_eq!(rb.num_rows(), n);
            assert_eq!(rb.schema(), table_schema(*family));
            assert!(batch.is_empty(), "finish starts a new batch");
        }
    }

    /// `FamilyBatch` places a type's fields by their position in `visit`: it must give
    /// them in the order of the type's `fields()`, every one of them, for every type.
    #[test]
    fn visit_gives_every_field_in_the_order_of_the_types_fields() {
        let events = events();
        for t in EventType::ALL {
            let e = events
                .iter()
                .find(|e| e.event_type() == *t)
                .unwrap_or_else(|| panic!("the examples have a {}", t.name()));
            let mut visited = Vec::new();
            e.data.visit(&mut |name, _| visited.push(name));
            let fields: Vec<&str> = t.fields().iter().map(|f| f.name).collect();
            assert_eq!(visited, fields, "{}", t.name());
        }
    }

    #[test]
    fn values_land_in_their_columns_and_absent_fields_are_null() {
        let service: Vec<Event> = events()
            .into_iter()
            .filter(|e| e.event_type().family() == Family::Service)
            .collect();
        let mut batch = FamilyBatch::new(Family::Service);
        for e in &service {
            batch.push(
                e,
                Provenance {
                    partition: None,
                    offset: None,
                    ingested_at_us: 7,
                },
                1,
            );
        }
        let rb = batch.finish().unwrap();
        let col = |name: &str| rb.column(rb.schema().index_of(name).unwrap()).clone();
        // Examples: service.recorded (870 min), service.amended (360 min), service.revoked.
        let minutes = col("minutes");
        let minutes = minutes.as_primitive::<Int64Type>();
        assert_eq!(minutes.value(0), 870);
        assert_eq!(minutes.value(1), 360);
        assert!(minutes.is_null(2));
        assert_eq!(col("reason").as_string::<i32>().value(1), "核减");
        assert!(col("volunteer_id").is_null(1));
        assert!(col("kafka_partition").is_null(0));
        // 2024-12-10T14:48:25.394363+00:00, to the microsecond.
        let started = col("started_at");
        assert_eq!(
            started.as_primitive::<TimestampMicrosecondType>().value(0),
            1_733_842_105_394_363
        );
        assert_eq!(col("unit_id").as_string::<i32>().value(0), "S440305001001");
    }
}
