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

mod measure;

use measure::{bound, size_of};

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

/// A bounded function as the distributed engine sends it (`distributed::codec`): its
/// name and its budget's limits. Each process that runs it keeps a budget of its own,
/// so a query on a cluster may build up to the limit on each executor task.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Wire {
    Bounded {
        name: String,
        per_call: u64,
        limit: u64,
    },
    Concat {
        per_call: u64,
        limit: u64,
    },
}

/// `udf` on the wire, when it is one of the bounded functions.
pub fn to_wire(udf: &ScalarUDF) -> Option<Wire> {
    let inner = udf.inner();
    if let Some(b) = inner.downcast_ref::<Bounded>() {
        return Some(Wire::Bounded {
            name: b.inner.name().to_string(),
            per_call: b.budget.0.per_call,
            limit: b.budget.0.limit,
        });
    }
    inner.downcast_ref::<StrictConcat>().map(|c| Wire::Concat {
        per_call: c.budget.0.per_call,
        limit: c.budget.0.limit,
    })
}

/// The bounded function `wire` names, over the library's own of that name in
/// `functions`.
pub fn from_wire(
    wire: Wire,
    functions: &std::collections::HashMap<String, Arc<ScalarUDF>>,
) -> Result<ScalarUDF> {
    Ok(match wire {
        Wire::Bounded {
            name,
            per_call,
            limit,
        } => {
            let growth = GROWING
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, g)| *g)
                .ok_or_else(|| {
                    DataFusionError::Plan(format!("{name} is not a bounded function"))
                })?;
            let inner = functions.get(&name).ok_or_else(|| {
                DataFusionError::Plan(format!("{name} is not known to this process"))
            })?;
            ScalarUDF::new_from_impl(Bounded {
                inner: inner.as_ref().clone(),
                growth,
                budget: BudgetRef(Budget::new(per_call, limit)),
            })
        }
        Wire::Concat { per_call, limit } => ScalarUDF::new_from_impl(StrictConcat {
            signature: Signature::any(2, Volatility::Immutable),
            budget: BudgetRef(Budget::new(per_call, limit)),
        }),
    })
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
