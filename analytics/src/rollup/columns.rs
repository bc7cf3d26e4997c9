//! Arrow columns read as the rollups need them, whatever types DataFusion chose.

use arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::error::AnalyticsError;

/// A string column, whatever string type DataFusion chose.
pub struct StrColumn(StringArray);

impl StrColumn {
    pub fn get(&self, i: usize) -> Option<&str> {
        (!self.0.is_null(i)).then(|| self.0.value(i))
    }

    /// The value, or "" for null (no unit id is empty: it then matches no unit).
    pub fn value_or_empty(&self, i: usize) -> &str {
        self.get(i).unwrap_or("")
    }
}

pub fn str_column(batch: &RecordBatch, i: usize) -> Result<StrColumn, AnalyticsError> {
    let col = arrow::compute::cast(batch.column(i), &DataType::Utf8)?;
    Ok(StrColumn(col.as_string::<i32>().clone()))
}

pub struct IntColumn(Int64Array);

impl IntColumn {
    pub fn get(&self, i: usize) -> Option<i64> {
        (!self.0.is_null(i)).then(|| self.0.value(i))
    }
}

pub fn int_column(batch: &RecordBatch, i: usize) -> Result<IntColumn, AnalyticsError> {
    let col = arrow::compute::cast(batch.column(i), &DataType::Int64)?;
    Ok(IntColumn(col.as_primitive::<Int64Type>().clone()))
}

pub struct FloatColumn(Float64Array);

impl FloatColumn {
    pub fn get(&self, i: usize) -> Option<f64> {
        (!self.0.is_null(i)).then(|| self.0.value(i))
    }
}

pub fn float_column(batch: &RecordBatch, i: usize) -> Result<FloatColumn, AnalyticsError> {
    let col = arrow::compute::cast(batch.column(i), &DataType::Float64)?;
    Ok(FloatColumn(col.as_primitive::<Float64Type>().clone()))
}

pub struct BoolColumn(BooleanArray);

impl BoolColumn {
    /// True only when set and true (SQL's `WHERE b`).
    pub fn is_true(&self, i: usize) -> bool {
        !self.0.is_null(i) && self.0.value(i)
    }
}

pub fn bool_column(batch: &RecordBatch, i: usize) -> Result<BoolColumn, AnalyticsError> {
    let col = arrow::compute::cast(batch.column(i), &DataType::Boolean)?;
    Ok(BoolColumn(col.as_boolean().clone()))
}
