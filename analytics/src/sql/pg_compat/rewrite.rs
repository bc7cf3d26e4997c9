//! Statements rewritten before planning: what Postgres clients send that DataFusion
//! reads otherwise, or cannot plan.

use super::*;

/// Rewrite what clients' catalog queries say in ways DataFusion does not take, into
/// what it does (after `datafusion-pg-catalog`'s own rewrites):
/// - `generate_subscripts(a, 1)`, listed beside `unnest(a)` to number its elements,
///   becomes `unnest(generate_series(1, cardinality(a)))`, which unnests in step;
/// - a subquery over catalog tables of things this database never has (defaults,
///   sequences, indexes …) is NULL, and `pg_class.reloptions` is NULL;
/// - a correlated scalar subquery over `pg_catalog` tables that picks one value per row
///   (SQLAlchemy's column defaults and identities) is wrapped in `max(…)`, as DataFusion
///   asks of a correlated subquery; Postgres itself would fail on a second row, and the
///   catalog has at most one.
pub fn rewrite(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |e| {
        match e {
            Expr::Function(f)
                if f.name
                    .to_string()
                    .eq_ignore_ascii_case("generate_subscripts") =>
            {
                if let FunctionArguments::List(list) = &f.args
                    && let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array)), _] =
                        list.args.as_slice()
                    && let Some(new) =
                        parse_expr(&format!("unnest(generate_series(1, cardinality({array})))"))
                {
                    *e = new;
                }
            }
            // A relation's storage options: none are set here, which Postgres shows
            // as NULL (`datafusion-pg-catalog`'s `pg_class` has no such column).
            Expr::CompoundIdentifier(parts)
                if parts.len() >= 2
                    && parts
                        .last()
                        .is_some_and(|p| p.value.eq_ignore_ascii_case("reloptions")) =>
            {
                *e = Expr::value(Value::Null);
            }
            Expr::Subquery(query) if reads_only_never_held(query) => {
                *e = Expr::value(Value::Null);
            }
            Expr::Subquery(query) => aggregate_catalog_lookup(query),
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Catalog tables of things this database never has: column defaults, sequences,
/// indexes, inheritance, triggers, partitions, extended statistics, row policies.
pub(super) const NEVER_HELD: [&str; 8] = [
    "pg_attrdef",
    "pg_sequence",
    "pg_index",
    "pg_inherits",
    "pg_trigger",
    "pg_partitioned_table",
    "pg_statistic_ext",
    "pg_policy",
];

/// A subquery whose rows come only from `NEVER_HELD` tables (joined or not) has no
/// rows: as a scalar it is NULL. DataFusion cannot plan some of these (a correlated
/// subquery inside `CASE`, SQLAlchemy's column defaults), so they are answered here.
fn reads_only_never_held(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty());
    !grouped
        && !select.from.is_empty()
        && select.from.iter().all(|t| {
            t.joins.is_empty()
                && matches!(&t.relation, TableFactor::Table { name, .. }
                if NEVER_HELD.iter().any(|n| {
                    let name = name.to_string().to_lowercase();
                    name == *n || name == format!("pg_catalog.{n}")
                }))
        })
}

fn aggregate_catalog_lookup(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty());
    let over_catalog = !select.from.is_empty()
        && select.from.iter().all(|t| {
            std::iter::once(&t.relation)
                .chain(t.joins.iter().map(|j| &j.relation))
                .all(|r| {
                    matches!(r, TableFactor::Table { name, .. }
                        if name.to_string().to_lowercase().starts_with("pg_catalog."))
                })
        });
    if grouped || !over_catalog || select.projection.len() != 1 {
        return;
    }
    let expr = match &mut select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return,
    };
    let aggregated = matches!(&*expr, Expr::Function(f) if ["count", "sum", "min", "max", "avg", "array_agg", "string_agg", "bool_and", "bool_or"]
        .contains(&f.name.to_string().to_lowercase().as_str()));
    if !aggregated && let Some(new) = parse_expr(&format!("max({expr})")) {
        *expr = new;
    }
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}
