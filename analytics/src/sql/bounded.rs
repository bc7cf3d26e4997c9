//! Values an analyst's query may build: held by a budget per query.
//!
//! DataFusion's memory pool counts what operators hold (hash tables, sorts, aggregate
//! state) but not the values a function returns: `repeat('x', 1500000000)` builds 1.5 GB
//! outside any pool, and a chain of `concat` or `||` through CTEs doubles a value at every
//! step. So, in an analyst's session, every function that can return more bytes than it
//! was given is replaced by a `Bounded` copy of itself that, before it runs, works out
//! the most its output could take (from its arguments: `repeat`'s count times its
//! string's bytes, `lpad`'s length, `range`'s steps, the sum of `concat`'s inputs …)
//! and takes that from the query's `Budget`; after it ran, the budget keeps what the
//! output really holds. A call that would overdraw the budget is refused before it
//! allocates, with the limit named. The `||` operator on strings becomes the bounded
//! `wm_concat_strict`, and the list- and string-building aggregates (`array_agg`,
//! `string_agg`) may not be window functions, where their output grows with the square
//! of the rows (as aggregates their state is in the memory pool).

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, IntervalMonthDayNanoType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::{ScalarFunction, WindowFunctionDefinition};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, ExprSchemable, LogicalPlan, Operator,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

/// How much a query's functions may build: `per_call` in one call (one batch of rows),
/// `limit` in all calls together.
#[derive(Debug)]
pub struct Budget {
    per_call: u64,
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(per_call: u64, limit: u64) -> Arc<Budget> {
        Arc::new(Budget {
            per_call,
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Take `bytes` for a call of `function`, or refuse it.
    fn take(&self, bytes: u64, function: &str) -> Result<()> {
        if bytes > self.per_call {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{function} could build {} of values in one step, and a query's functions may \
                 build at most {} at once (the query's memory limit): ask for shorter values",
                mib(bytes),
                mib(self.per_call)
            )));
        }
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{function} could build {} of values here, and a query's functions may build \
                 at most {} in all (repeat, lpad, rpad, replace, concat, ||, range, \
                 array_repeat …): ask for shorter values or fewer rows",
                mib(bytes),
                mib(self.limit)
            )));
        }
        Ok(())
    }

    /// Keep what a call's output really holds instead of what was taken for it.
    fn settle(&self, taken: u64, actual: u64) {
        if actual > taken {
            self.used.fetch_add(actual - taken, Ordering::Relaxed);
        } else {
            self.used.fetch_sub(taken - actual, Ordering::Relaxed);
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// How a function's output can grow from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// At most `n` times the bytes of all arguments together.
    Sum(u8),
    /// `repeat(s, n)`: s × n.
    Repeat,
    /// `lpad(s, n [, fill])`: n characters.
    PadTo,
    /// `replace(s, from, to)`: every `from` in s becomes `to`.
    Replace,
    /// `regexp_replace(s, pattern, replacement …)`: every match (and each back reference).
    RegexpReplace,
    /// `array_repeat(x, n)`: n copies of x.
    ArrayRepeat,
    /// `array_resize(list, n [, value])`: n elements.
    ArrayResize,
    /// `range(start, stop [, step])`: its steps.
    Range,
    /// `array_replace_all(list, from, to)`: every element may become `to`.
    ReplaceAll,
    /// `array_to_string(list, sep [, null])`: a separator per element.
    Join,
}

/// The functions that can return more than they are given, by name (aliases follow the
/// function: registering a function registers its aliases).
const GROWING: &[(&str, Growth)] = &[
    ("repeat", Growth::Repeat),
    ("lpad", Growth::PadTo),
    ("rpad", Growth::PadTo),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::RegexpReplace),
    ("overlay", Growth::Sum(1)),
    ("concat", Growth::Sum(1)),
    ("concat_ws", Growth::Join),
    ("translate", Growth::Sum(4)),
    ("upper", Growth::Sum(3)),
    ("lower", Growth::Sum(3)),
    ("initcap", Growth::Sum(3)),
    ("encode", Growth::Sum(2)),
    ("to_hex", Growth::Sum(4)),
    ("array_repeat", Growth::ArrayRepeat),
    ("array_resize", Growth::ArrayResize),
    ("range", Growth::Range),
    ("generate_series", Growth::Range),
    ("array_concat", Growth::Sum(1)),
    ("array_append", Growth::Sum(1)),
    ("array_prepend", Growth::Sum(1)),
    ("make_array", Growth::Sum(1)),
    ("array_union", Growth::Sum(1)),
    ("array_replace", Growth::Sum(1)),
    ("array_replace_n", Growth::ReplaceAll),
    ("array_replace_all", Growth::ReplaceAll),
    ("array_to_string", Growth::Join),
    ("string_to_array", Growth::Sum(17)),
    ("json_build_object", Growth::Sum(6)),
    ("struct", Growth::Sum(1)),
    ("named_struct", Growth::Sum(1)),
    ("map", Growth::Sum(1)),
    ("make_map", Growth::Sum(1)),
    ("arrays_zip", Growth::Sum(1)),
];

/// Aggregates whose output is a list or a string as long as their input: refused as
/// window functions.
const GROWING_AGGREGATES: &[&str] = &["array_agg", "string_agg", "listagg"];

/// Replace, in `ctx`, every growing function with its bounded copy, and add the rule
/// that bounds `||` and refuses growing window aggregates. Returns the bounded copies
/// by name, which the rule also puts in place of the planner's own instances.
pub fn install(ctx: &SessionContext, budget: Arc<Budget>) -> Result<()> {
    let state = ctx.state();
    let mut bounded = Vec::new();
    for (name, growth) in GROWING {
        let Some(inner) = state.scalar_functions().get(*name) else {
            continue;
        };
        let udf = Arc::new(ScalarUDF::new_from_impl(Bounded {
            inner: inner.as_ref().clone(),
            growth: *growth,
            budget: BudgetRef(budget.clone()),
        }));
        ctx.register_udf(udf.as_ref().clone());
        bounded.push(udf);
    }
    let concat = Arc::new(ScalarUDF::new_from_impl(StrictConcat {
        signature: Signature::any(2, Volatility::Immutable),
        budget: BudgetRef(budget),
    }));
    ctx.add_analyzer_rule(Arc::new(BoundValues { bounded, concat }));
    Ok(())
}

/// The budget, compared by identity (functions must be `Eq` and `Hash`).
#[derive(Debug, Clone)]
struct BudgetRef(Arc<Budget>);

impl PartialEq for BudgetRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for BudgetRef {}
impl std::hash::Hash for BudgetRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(state)
    }
}

/// A growing function, held to the budget.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: ScalarUDF,
    growth: Growth,
    budget: BudgetRef,
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }
    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    // `simplify` is not passed on: a simplification returns the library's own,
    // unbounded instance of the function.
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bound = bound(self.growth, &args.args, args.number_rows)?;
        self.budget.0.take(bound, self.name())?;
        let out = self.inner.invoke_with_args(args);
        let actual = out.as_ref().map_or(0, size_of);
        self.budget.0.settle(bound, actual);
        out
    }
}

/// `a || b` on strings (null when either is), held to the budget.
#[derive(Debug, PartialEq, Eq, Hash)]
struct StrictConcat {
    signature: Signature,
    budget: BudgetRef,
}

impl ScalarUDFImpl for StrictConcat {
    fn name(&self) -> &str {
        "wm_concat_strict"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(concat_type(arg_types))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let bound = bound(Growth::Sum(1), &args.args, rows)?;
        self.budget.0.take(bound, "||")?;
        let out_type = args.return_type().clone();
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let left = arrow::compute::cast(&arrays[0], &out_type)?;
        let right = arrow::compute::cast(&arrays[1], &out_type)?;
        let out = arrow::compute::kernels::concat_elements::concat_elements_dyn(&left, &right)?;
        self.budget
            .0
            .settle(bound, out.get_array_memory_size() as u64);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// The type `||` gives two strings (or binaries).
fn concat_type(args: &[DataType]) -> DataType {
    let has = |t: &DataType| args.contains(t);
    if args.iter().any(|t| {
        matches!(
            t,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        )
    }) {
        if has(&DataType::BinaryView) {
            DataType::BinaryView
        } else if has(&DataType::LargeBinary) {
            DataType::LargeBinary
        } else {
            DataType::Binary
        }
    } else if has(&DataType::Utf8View) {
        DataType::Utf8View
    } else if has(&DataType::LargeUtf8) {
        DataType::LargeUtf8
    } else {
        DataType::Utf8
    }
}

fn size_of(v: &ColumnarValue) -> u64 {
    match v {
        ColumnarValue::Array(a) => a.get_array_memory_size() as u64,
        ColumnarValue::Scalar(s) => s.size() as u64,
    }
}

/// The most bytes a call's output can take.
fn bound(growth: Growth, args: &[ColumnarValue], rows: usize) -> Result<u64> {
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
fn row_bytes(v: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
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

fn lengths<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> Vec<u64> {
    offsets
        .windows(2)
        .map(|w| (w[1].as_usize() - w[0].as_usize()) as u64)
        .collect()
}

/// The elements of each row of a list argument.
fn row_elements(v: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
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
fn row_counts(v: &ColumnarValue, rows: usize) -> Result<Vec<u64>> {
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
fn range_steps(args: &[ColumnarValue], rows: usize) -> Result<Vec<u64>> {
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

fn as_array(v: &ColumnarValue) -> Result<(ArrayRef, bool)> {
    Ok(match v {
        ColumnarValue::Array(a) => (a.clone(), false),
        ColumnarValue::Scalar(s) => (s.to_array()?, true),
    })
}

/// One value per row: a scalar's one value repeated.
fn spread<T: Clone>(values: Vec<T>, broadcast: bool, rows: usize) -> Vec<T> {
    if broadcast {
        vec![values[0].clone(); rows]
    } else {
        values
    }
}

/// The analyzer rule: the bounded functions in place of the planner's own instances,
/// `||` bounded, growing window aggregates refused.
#[derive(Debug)]
struct BoundValues {
    bounded: Vec<Arc<ScalarUDF>>,
    concat: Arc<ScalarUDF>,
}

impl AnalyzerRule for BoundValues {
    fn name(&self) -> &str {
        "wenming_bound_values"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let schema = DFSchema::empty().join(&merge_inputs(&plan))?;
            let names = NamePreserver::new(&plan);
            plan.map_expressions(|expr| {
                let name = names.save(&expr);
                expr.transform_up(|e| self.rewrite(e, &schema))
                    .map(|t| t.update_data(|e| name.restore(e)))
            })?
            .map_data(|p| p.recompute_schema())
        })
        .map(|t| t.data)
    }
}

fn merge_inputs(plan: &LogicalPlan) -> DFSchema {
    let mut schema = DFSchema::empty();
    for input in plan.inputs() {
        schema.merge(input.schema());
    }
    schema
}

impl BoundValues {
    fn rewrite(&self, e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        match e {
            Expr::ScalarFunction(f) => {
                match self.bounded.iter().find(|b| {
                    b.name() == f.func.name()
                        && !(f.func.inner().as_ref() as &dyn Any).is::<Bounded>()
                }) {
                    Some(b) => Ok(Transformed::yes(Expr::ScalarFunction(
                        ScalarFunction::new_udf(b.clone(), f.args),
                    ))),
                    None => Ok(Transformed::no(Expr::ScalarFunction(f))),
                }
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::StringConcat,
                right,
            }) => {
                let stringy = |x: &Expr| {
                    x.get_type(schema).is_ok_and(|t| {
                        matches!(
                            t,
                            DataType::Utf8
                                | DataType::LargeUtf8
                                | DataType::Utf8View
                                | DataType::Binary
                                | DataType::LargeBinary
                                | DataType::BinaryView
                                | DataType::Null
                        )
                    })
                };
                if stringy(&left) && stringy(&right) {
                    Ok(Transformed::yes(Expr::ScalarFunction(
                        ScalarFunction::new_udf(self.concat.clone(), vec![*left, *right]),
                    )))
                } else {
                    Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::StringConcat,
                        right,
                    })))
                }
            }
            Expr::WindowFunction(w) => {
                if let WindowFunctionDefinition::AggregateUDF(f) = &w.fun
                    && GROWING_AGGREGATES.contains(&f.name())
                {
                    return plan_err!(
                        "{} is not allowed as a window function (OVER …): its output grows \
                         with the square of the rows; aggregate with GROUP BY instead",
                        f.name()
                    );
                }
                Ok(Transformed::no(Expr::WindowFunction(w)))
            }
            other => Ok(Transformed::no(other)),
        }
    }
}
