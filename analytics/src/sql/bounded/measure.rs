//! How much a call of a growing function would build, row by row, before it builds it.

use super::*;

pub(super) fn size_of(v: &ColumnarValue) -> u64 {
    match v {
        ColumnarValue::Array(a) => a.get_array_memory_size() as u64,
        ColumnarValue::Scalar(s) => s.size() as u64,
    }
}

/// The most bytes a call's output can take.
pub(super) fn bound(growth: Growth, args: &[ColumnarValue], rows: usize) -> Result<u64> {
    let bytes = |i: usize| -> Result<Vec<u64>> {
        args.get(i)
            .map_or(Ok(vec![0; rows]), |a| row_bytes(a, rows))
    };
    let counts = |i: usize| -> Result<Vec<u64>> {
        args.get(i)
            .map_or(Ok(vec![1; rows]), |a| row_counts(a, rows))
    };
    let per_row = |f: &dyn Fn(usize) -> u64| -> u64 {
        (0..rows).fold(0u64, |acc, r| acc.saturating_add(f(r)))
    };
    let overhead = (rows as u64).saturating_mul(16);
    let total = match growth {
        Growth::Sum(factor) => {
            let mut sum = 0u64;
            for i in 0..args.len() {
                sum = sum.saturating_add(bytes(i)?.iter().sum());
            }
            sum.saturating_mul(factor as u64)
        }
        Growth::Repeat => {
            let (s, n) = (bytes(0)?, counts(1)?);
            per_row(&|r| s[r].saturating_mul(n[r]))
        }
        Growth::PadTo => {
            let (s, n) = (bytes(0)?, counts(1)?);
            per_row(&|r| s[r].saturating_add(n[r].saturating_mul(4)))
        }
        Growth::Replace => {
            let (s, from, to) = (bytes(0)?, bytes(1)?, bytes(2)?);
            per_row(&|r| {
                let hits = s[r] / from[r].max(1) + 1;
                s[r].saturating_add(hits.saturating_mul(to[r]))
            })
        }
        Growth::RegexpReplace => {
            // Every position may match, and a back reference may copy the whole input.
            let (s, to) = (bytes(0)?, bytes(2)?);
            per_row(&|r| {
                (s[r] + 1)
                    .saturating_mul(to[r] + 1)
                    .saturating_mul(s[r] + 1)
            })
        }
        Growth::ArrayRepeat => {
            let (x, n) = (bytes(0)?, counts(1)?);
            per_row(&|r| n[r].saturating_mul(x[r] + 8))
        }
        Growth::ArrayResize => {
            let (list, n, value) = (bytes(0)?, counts(1)?, bytes(2)?);
            per_row(&|r| list[r].saturating_add(n[r].saturating_mul(value[r] + 16)))
        }
        Growth::Range => {
            let steps = range_steps(args, rows)?;
            per_row(&|r| steps[r].saturating_mul(16))
        }
        Growth::ReplaceAll => {
            let (list, elements, to) = (bytes(0)?, row_elements(&args[0], rows)?, bytes(2)?);
            per_row(&|r| list[r].saturating_add(elements[r].saturating_mul(to[r] + 8)))
        }
        Growth::Join => {
            // array_to_string(list, sep [, null]): a separator (or the null text) per
            // element; concat_ws(sep, a, b, …): a separator per argument.
            let mut all = vec![0u64; rows];
            for i in 0..args.len() {
                for (r, b) in bytes(i)?.into_iter().enumerate() {
                    all[r] = all[r].saturating_add(b);
                }
            }
            let list_first = args.first().is_some_and(|a| {
                matches!(a.data_type(), DataType::List(_) | DataType::LargeList(_))
            });
            let (pieces, seps) = if list_first {
                let (sep, null) = (bytes(1)?, bytes(2)?);
                let seps = sep.iter().zip(&null).map(|(a, b)| a + b).collect();
                (row_elements(&args[0], rows)?, seps)
            } else {
                (vec![args.len() as u64; rows], bytes(0)?)
            };
            per_row(&|r| all[r].saturating_add(pieces[r].saturating_mul(seps[r] + 8)))
        }
    };
    Ok(total.saturating_add(overhead))
}

/// The bytes of each row of an argument (strings and binaries exactly; other values by
/// their array's average).
pub(super) fn row_bytes(v: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    let (array, broadcast) = as_array(v)?;
    let out: Vec<u64> = match array.data_type() {
        DataType::Utf8 => lengths(array.as_string::<i32>().offsets()),
        DataType::LargeUtf8 => lengths(array.as_string::<i64>().offsets()),
        DataType::Binary => lengths(array.as_binary::<i32>().offsets()),
        DataType::LargeBinary => lengths(array.as_binary::<i64>().offsets()),
        DataType::Utf8View => array
            .as_string_view()
            .views()
            .iter()
            .map(|v| (*v as u32) as u64)
            .collect(),
        DataType::BinaryView => array
            .as_binary_view()
            .views()
            .iter()
            .map(|v| (*v as u32) as u64)
            .collect(),
        _ => {
            let n = array.len().max(1) as u64;
            vec![(array.get_array_memory_size() as u64).div_ceil(n); array.len()]
        }
    };
    Ok(spread(out, broadcast, rows))
}

pub(super) fn lengths<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> Vec<u64> {
    offsets
        .windows(2)
        .map(|w| (w[1].as_usize() - w[0].as_usize()) as u64)
        .collect()
}

/// The elements of each row of a list argument.
pub(super) fn row_elements(v: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    let (array, broadcast) = as_array(v)?;
    let out = match array.data_type() {
        DataType::List(_) => lengths(array.as_list::<i32>().offsets()),
        DataType::LargeList(_) => lengths(array.as_list::<i64>().offsets()),
        DataType::FixedSizeList(_, n) => vec![*n as u64; array.len()],
        _ => vec![1; array.len()],
    };
    Ok(spread(out, broadcast, rows))
}

/// A count argument of each row (nulls and negatives count nothing).
pub(super) fn row_counts(v: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
    let (array, broadcast) = as_array(v)?;
    let ints = arrow::compute::cast(&array, &DataType::Int64)?;
    let out = ints
        .as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .map(|n| n.map_or(0, |n| n.max(0) as u64))
        .collect();
    Ok(spread(out, broadcast, rows))
}

/// The steps of `range` / `generate_series` per row: integers, or dates and timestamps
/// with an interval step.
pub(super) fn range_steps(args: &[ColumnarValue], rows: usize) -> Result<Vec<u64>> {
    let (start, stop, step) = match args.len() {
        1 => (None, &args[0], None),
        2 => (Some(&args[0]), &args[1], None),
        _ => (Some(&args[0]), &args[1], Some(&args[2])),
    };
    // Instants in the unit of the step: days for dates, the timestamp's unit otherwise.
    let (unit_per_day, ints_type) = match stop.data_type() {
        DataType::Date32 | DataType::Date64 => (1i128, DataType::Date32),
        DataType::Timestamp(u, _) => (
            86_400
                * match u {
                    TimeUnit::Second => 1,
                    TimeUnit::Millisecond => 1_000,
                    TimeUnit::Microsecond => 1_000_000,
                    TimeUnit::Nanosecond => 1_000_000_000,
                },
            stop.data_type(),
        ),
        _ => (0, DataType::Int64),
    };
    let points = |v: &ColumnarValue| -> Result<Vec<Option<i128>>> {
        let (a, broadcast) = as_array(v)?;
        let a = arrow::compute::cast(&a, &ints_type)?;
        let ints = arrow::compute::cast(&a, &DataType::Int64)?;
        let out: Vec<Option<i128>> = ints
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .map(|v| v.map(i128::from))
            .collect();
        Ok(spread(out, broadcast, rows))
    };
    let stops = points(stop)?;
    let starts = match start {
        Some(s) => points(s)?,
        None => vec![Some(0); rows],
    };
    let steps: Vec<Option<i128>> = match step {
        None => vec![Some(unit_per_day.max(1)); rows],
        Some(s) if matches!(s.data_type(), DataType::Interval(_)) => {
            let (a, broadcast) = as_array(s)?;
            let a = arrow::compute::cast(
                &a,
                &DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
            )?;
            let out = a
                .as_primitive::<IntervalMonthDayNanoType>()
                .iter()
                .map(|v| {
                    v.map(|v| {
                        // The shortest month (28 days) overstates the steps: a bound.
                        let days = v.months as i128 * 28 + v.days as i128;
                        let nanos_per_unit = 86_400_000_000_000i128 / unit_per_day.max(1);
                        days * unit_per_day + v.nanoseconds as i128 / nanos_per_unit.max(1)
                    })
                })
                .collect();
            spread(out, broadcast, rows)
        }
        Some(s) => points(s)?,
    };
    Ok((0..rows)
        .map(|r| match (starts[r], stops[r], steps[r]) {
            (Some(a), Some(b), Some(step)) if step != 0 => {
                let span = (b - a).unsigned_abs() / step.unsigned_abs().max(1) + 1;
                u64::try_from(span).unwrap_or(u64::MAX)
            }
            _ => 0,
        })
        .collect())
}

pub(super) fn as_array(v: &ColumnarValue) -> Result<(ArrayRef, bool)> {
    Ok(match v {
        ColumnarValue::Array(a) => (a.clone(), false),
        ColumnarValue::Scalar(s) => (s.to_array()?, true),
    })
}

/// One value per row: a scalar's one value repeated.
pub(super) fn spread<T: Clone>(values: Vec<T>, broadcast: bool, rows: usize) -> Vec<T> {
    if broadcast {
        vec![values[0].clone(); rows]
    } else {
        values
    }
}
