//! The first wall: an analyst's text must be one read-only query of bounded size and
//! depth before anything plans it.
//!
//! Depth is bounded twice, because the planner and the executor recurse over expressions
//! and a stack overflow aborts the whole process (API, ingest and scheduler alike):
//! 1. Before parsing, the tokens are counted. Every level of nesting in the syntax tree
//!    takes at least one token that is not a literal, a name or a comma (an operator, a
//!    keyword, a bracket), so their count bounds the tree's depth. That bound makes the
//!    parse, the depth count and the tree's drop safe on the checking thread's stack.
//! 2. After parsing, the real depth of expressions and of set operations is measured and
//!    held to `MAX_DEPTH`, which planning and execution on ordinary threads stand.
//!
//! The parser's own recursion limit (`PARSER_RECURSION_LIMIT`) stops nested brackets and
//! subqueries early; long chains (`a OR b OR …`, `x UNION y UNION …`) are parsed in a loop
//! and caught by the depth.

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    CopySource, CopyTarget, Expr, Query, Statement, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::error::AnalyticsError;

/// The longest SQL text taken (an `IN` list of some 50,000 ids fits).
pub const MAX_SQL_BYTES: usize = 1 << 20;
/// Operators, keywords and brackets a statement may hold.
pub const MAX_STRUCTURE_TOKENS: usize = 20_000;
/// How deep expressions (and chains of set operations) may nest.
pub const MAX_DEPTH: usize = 1_000;
/// Nested brackets and subqueries the parser follows.
pub const PARSER_RECURSION_LIMIT: usize = 100;
/// The checking thread's stack: enough to parse, measure and drop a tree as deep as
/// `MAX_STRUCTURE_TOKENS` allows (a debug build's frames included).
const CHECK_STACK_BYTES: usize = 256 << 20;

/// Check `sql` and return its one statement, parsed.
pub fn check(sql: &str) -> Result<DfStatement, AnalyticsError> {
    on_check_thread(sql, parse_and_check)
}

/// Check a Postgres client's query text, which may hold several statements (the simple
/// query protocol sends them in one message): each is parsed in Postgres' dialect, with
/// the rewrites that let DataFusion answer clients' catalog queries (psql's `\d`,
/// drivers' type lookups), and held to the same walls as `check`.
pub fn check_postgres(sql: &str) -> Result<Vec<DfStatement>, AnalyticsError> {
    on_check_thread(sql, |sql| {
        count_structure(&GenericDialect {}, sql)?;
        static PARSER: std::sync::LazyLock<PostgresCompatibilityParser> =
            std::sync::LazyLock::new(PostgresCompatibilityParser::new);
        let statements = PARSER
            .parse(sql)
            .map_err(|e| AnalyticsError::BadRequest(parse_error(&e.to_string())))?;
        statements
            .into_iter()
            .map(|mut s| {
                super::pg_compat::rewrite(&mut s);
                // What the Postgres wire answers itself, never the engine (see the
                // wire's `session`): session commands, and `COPY (query) TO STDOUT`,
                // whose query is checked as any.
                let own = match &s {
                    s if is_session_command(s) => true,
                    Statement::Copy {
                        source: CopySource::Query(q),
                        to: true,
                        target: CopyTarget::Stdout,
                        ..
                    } => {
                        check_parsed(&DfStatement::Statement(Box::new(Statement::Query(
                            q.clone(),
                        ))))?;
                        true
                    }
                    _ => false,
                };
                let s = DfStatement::Statement(Box::new(s));
                if !own {
                    check_parsed(&s)?;
                }
                Ok(s)
            })
            .collect()
    })
}

/// A session command a Postgres client sends on its own, which the wire answers and the
/// engine never sees: `SET`, transactions and savepoints, `DEALLOCATE`, `DISCARD`.
pub fn is_session_command(s: &Statement) -> bool {
    matches!(
        s,
        Statement::Set(_)
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Deallocate { .. }
            | Statement::Discard { .. }
    )
}

/// Run `work` on a thread with a stack of its own, so that the stack a parse needs does
/// not depend on the caller's thread.
fn on_check_thread<T: Send + 'static>(
    sql: &str,
    work: impl FnOnce(&str) -> Result<T, AnalyticsError> + Send + 'static,
) -> Result<T, AnalyticsError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(AnalyticsError::Refused(format!(
            "the SQL is {} bytes long; the limit is {MAX_SQL_BYTES} (1 MiB)",
            sql.len()
        )));
    }
    let sql = sql.to_string();
    std::thread::Builder::new()
        .name("wenming-sql-check".into())
        .stack_size(CHECK_STACK_BYTES)
        .spawn(move || work(&sql))
        .map_err(|e| AnalyticsError::BadRequest(format!("cannot check the SQL: {e}")))?
        .join()
        .unwrap_or_else(|_| {
            Err(AnalyticsError::BadRequest(
                "the SQL could not be checked (the checker stopped)".into(),
            ))
        })
}

/// The tokens of `sql`, refused when they hold too many operators, keywords and brackets.
fn count_structure(
    dialect: &dyn datafusion::sql::sqlparser::dialect::Dialect,
    sql: &str,
) -> Result<Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan>, AnalyticsError> {
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize_with_location()
        .map_err(|e| AnalyticsError::BadRequest(format!("cannot read the SQL: {e}")))?;
    let structure = tokens.iter().filter(|t| is_structure(&t.token)).count();
    if structure > MAX_STRUCTURE_TOKENS {
        return Err(AnalyticsError::Refused(format!(
            "the SQL holds {structure} operators, keywords and brackets; the limit is \
             {MAX_STRUCTURE_TOKENS}: shorten it (a long OR chain of equalities is an IN (...) list)"
        )));
    }
    Ok(tokens)
}

fn parse_and_check(sql: &str) -> Result<DfStatement, AnalyticsError> {
    let tokens = count_structure(&GenericDialect {}, sql)?;
    let mut statements = DFParserBuilder::new(tokens)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| AnalyticsError::BadRequest(parse_error(&e.to_string())))?;
    if statements.len() != 1 {
        return Err(AnalyticsError::Refused(format!(
            "send exactly one statement (got {})",
            statements.len()
        )));
    }
    let statement = statements.pop_front().expect("one statement");
    check_parsed(&statement)?;
    Ok(statement)
}

/// A parsed statement must read only, and nest no deeper than `MAX_DEPTH`.
fn check_parsed(statement: &DfStatement) -> Result<(), AnalyticsError> {
    check_statement(statement)?;
    let depth = depth_of(statement);
    if depth > MAX_DEPTH {
        return Err(AnalyticsError::Refused(format!(
            "expressions in the SQL nest or chain {depth} deep; the limit is {MAX_DEPTH}: \
             split the query (a long OR chain of equalities is an IN (...) list)"
        )));
    }
    Ok(())
}

/// The parser's errors as a sentence: `sqlparser` writes "sql parser error: Expected: …".
fn parse_error(raw: &str) -> String {
    let text = raw
        .trim_start_matches("SQL error: ")
        .trim_start_matches("ParserError(\"")
        .trim_end_matches("\")")
        .trim_start_matches("sql parser error: ");
    if text.contains("RecursionLimitExceeded") || text.contains("recursion limit") {
        format!(
            "cannot parse the SQL: brackets or subqueries nest deeper than {PARSER_RECURSION_LIMIT} levels"
        )
    } else {
        format!("cannot parse the SQL: {text}")
    }
}

/// A token that can open a level of the syntax tree: not a literal, a name, a comma, a
/// dot or white space.
fn is_structure(t: &Token) -> bool {
    match t {
        Token::Word(w) => w.keyword != Keyword::NoKeyword,
        Token::Whitespace(_)
        | Token::Number(..)
        | Token::Comma
        | Token::Period
        | Token::EOF
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::DollarQuotedString(_)
        | Token::Placeholder(_) => false,
        _ => true,
    }
}

/// The deepest nesting of expressions, counting each query inside an expression and
/// each set operation (`UNION`, …) as a level too.
fn depth_of(statement: &DfStatement) -> usize {
    struct Depth {
        now: usize,
        max: usize,
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now += 1;
            self.max = self.max.max(self.now);
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            self.now += 1 + set_chain(&q.body);
            self.max = self.max.max(self.now);
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            self.now -= 1 + set_chain(&q.body);
            ControlFlow::Continue(())
        }
    }
    /// How many set operations are chained at the top of a query body.
    fn set_chain(body: &datafusion::sql::sqlparser::ast::SetExpr) -> usize {
        use datafusion::sql::sqlparser::ast::SetExpr;
        let mut n = 0;
        let mut at = body;
        while let SetExpr::SetOperation { left, .. } = at {
            n += 1;
            at = left;
        }
        n
    }
    let mut d = Depth { now: 0, max: 0 };
    let _ = match statement {
        DfStatement::Statement(s) => s.visit(&mut d),
        DfStatement::Explain(e) => return depth_of(&e.statement),
        _ => ControlFlow::Continue(()),
    };
    d.max
}

/// Refuse anything but a read-only query.
fn check_statement(s: &DfStatement) -> Result<(), AnalyticsError> {
    let refuse = |what: &str| {
        Err(AnalyticsError::Refused(format!(
            "{what} is not allowed: only read-only queries (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE) over the published tables"
        )))
    };
    match s {
        DfStatement::Statement(st) => match st.as_ref() {
            // Reading the catalog: the tables, their columns, the engine's settings.
            Statement::Query(_)
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ExplainTable { .. }
            | Statement::ShowVariable { .. } => Ok(()),
            Statement::Explain { statement, .. } => match statement.as_ref() {
                Statement::Query(_) => Ok(()),
                _ => refuse("EXPLAIN of a statement other than a query"),
            },
            Statement::Insert(_) | Statement::Update { .. } | Statement::Delete(_) => {
                refuse("changing data (INSERT, UPDATE, DELETE)")
            }
            Statement::Copy { .. } => refuse("COPY"),
            Statement::Set(_) => refuse("SET"),
            other => {
                let text = other.to_string();
                let word = text
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                refuse(&format!("the statement {word:?}"))
            }
        },
        DfStatement::CreateExternalTable(_) => refuse("CREATE EXTERNAL TABLE"),
        DfStatement::CopyTo(_) => refuse("COPY"),
        DfStatement::Explain(e) => check_statement(&e.statement),
        DfStatement::Reset(_) => refuse("RESET"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queries_pass() {
        for ok in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "EXPLAIN SELECT * FROM units",
        ] {
            check(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "CREATE TABLE t (x INT)",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc'",
            "INSERT INTO units VALUES (1)",
            "DELETE FROM units",
            "UPDATE units SET level = 'x'",
            "DROP TABLE units",
            "COPY units TO '/tmp/x.parquet'",
            "SET datafusion.execution.batch_size = 1",
            "CREATE VIEW v AS SELECT 1",
            "SELECT 1; SELECT 2",
            "EXPLAIN COPY units TO '/tmp/x'",
        ] {
            assert!(
                matches!(check(bad), Err(AnalyticsError::Refused(_))),
                "{bad} passed"
            );
        }
    }

    fn or_chain(n: usize) -> String {
        let terms: Vec<String> = (0..n).map(|i| format!("x = {i}")).collect();
        format!("SELECT 1 AS x WHERE {}", terms.join(" OR "))
    }

    #[test]
    fn depth_is_measured_on_chains_brackets_and_set_operations() {
        let depth = |sql: &str| depth_of(&check(sql).unwrap());
        // A chain of n terms is left-deep: n − 1 `OR`s, then the `=` and its operand,
        // under the query: n + 2 levels.
        assert_eq!(depth(&or_chain(10)), 12);
        let unions = vec!["SELECT 1"; 30].join(" UNION ALL ");
        assert!(depth(&unions) >= 29, "{}", depth(&unions));
        assert!(depth("SELECT ((((1))))") >= 5);
    }

    #[test]
    fn long_chains_and_deep_brackets_are_refused_with_the_limit_named() {
        let chained = check(&or_chain(MAX_DEPTH)).unwrap_err().to_string();
        assert!(chained.contains("limit is 1000"), "{chained}");
        // 30,000 terms: refused by the token count, before any parse.
        let long = check(&or_chain(30_000)).unwrap_err().to_string();
        assert!(long.contains("limit is 20000"), "{long}");
        let nested = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        let nested = check(&nested).unwrap_err().to_string();
        assert!(nested.contains("deeper than 100 levels"), "{nested}");
        let unions = vec!["SELECT 1"; 2000].join(" UNION ALL ");
        assert!(check(&unions).unwrap_err().to_string().contains("deep"));
        let big = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
        assert!(check(&big).unwrap_err().to_string().contains("1 MiB"));
        // Just under the limits passes.
        check(&or_chain(MAX_DEPTH - 2)).unwrap();
    }

    #[test]
    fn parser_errors_read_as_sentences() {
        let e = check("SELEC nonsense").unwrap_err().to_string();
        assert!(e.starts_with("cannot parse the SQL: "), "{e}");
        assert!(!e.contains("ParserError"), "{e}");
    }
}
