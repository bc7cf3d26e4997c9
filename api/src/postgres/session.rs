//! The session commands Postgres clients send on their own (psycopg's `BEGIN`,
//! SQLAlchemy's `SHOW standard_conforming_strings`, JDBC's `SET extra_float_digits`),
//! answered here so that the engine never sees a `SET`:
//! - `SET statement_timeout` lowers the connection's timeout (never above the server's);
//! - `SET` of a client-side display setting is accepted and changes nothing;
//! - every other `SET` (the engine's options among them) is refused;
//! - `BEGIN` / `COMMIT` / `ROLLBACK` (and savepoints) are accepted: every statement reads one snapshot
//!   of the lake and nothing writes, so a transaction has nothing to hold;
//! - `SHOW` of the usual client settings answers as Postgres would.

use std::time::Duration;

use datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};
use pgwire::api::results::{Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError};

use wenming_analytics::sql::pg_compat;

use super::Connection;

/// What `version()` and `server_version` say: a Postgres version clients accept.
pub use wenming_analytics::sql::pg_compat::SERVER_VERSION;

/// A session command's answer: a tag, or one setting's value as a one-cell table.
pub enum Handled {
    Tag(Response),
    Setting { name: String, value: String },
}

pub fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// Settings a client may set that change nothing the engine computes (display and
/// client bookkeeping).
const HARMLESS: [&str; 9] = [
    "application_name",
    "extra_float_digits",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "client_min_messages",
    "search_path",
    "bytea_output",
    "lock_timeout",
];

/// `Some` when `statement` is a session command (answered or refused here), `None`
/// when it is for the engine.
pub fn handle(
    connection: &Connection,
    statement: &Statement,
    tz: &str,
    application: Option<&str>,
) -> Option<Result<Handled, PgWireError>> {
    match statement {
        Statement::StartTransaction { .. } => Some(Ok(Handled::Tag(Response::TransactionStart(
            Tag::new("BEGIN"),
        )))),
        Statement::Commit { .. } => Some(Ok(Handled::Tag(Response::TransactionEnd(Tag::new(
            "COMMIT",
        ))))),
        Statement::Rollback { .. } => Some(Ok(Handled::Tag(Response::TransactionEnd(Tag::new(
            "ROLLBACK",
        ))))),
        Statement::Savepoint { .. } => {
            Some(Ok(Handled::Tag(Response::Execution(Tag::new("SAVEPOINT")))))
        }
        Statement::ReleaseSavepoint { .. } => {
            Some(Ok(Handled::Tag(Response::Execution(Tag::new("RELEASE")))))
        }
        // Drivers and pools tidy up their prepared statements; those live in the
        // connection's portal store, not in the engine.
        Statement::Deallocate { .. } => Some(Ok(Handled::Tag(Response::Execution(Tag::new(
            "DEALLOCATE",
        ))))),
        Statement::Discard { .. } => Some(Ok(Handled::Tag(Response::Execution(Tag::new(
            "DISCARD ALL",
        ))))),
        Statement::Set(set) => Some(set_variable(connection, set)),
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            show(connection, &name, tz, application).map(|value| {
                Ok(Handled::Setting {
                    name: name.replace(' ', "_"),
                    value,
                })
            })
        }
        _ => None,
    }
}

fn set_variable(connection: &Connection, set: &Set) -> Result<Handled, PgWireError> {
    let (name, values) = match set {
        Set::SingleAssignment {
            variable, values, ..
        } => (variable.to_string().to_lowercase(), values),
        Set::SetTimeZone { .. } => {
            return Err(error(
                "0A000",
                "SET TIME ZONE is not supported: calendar periods use the server's zone, and local dates are columns of the views",
            ));
        }
        other => {
            return Err(error(
                "42501",
                format!("{other} is not allowed: only SET statement_timeout changes anything here"),
            ));
        }
    };
    if name == "statement_timeout" {
        let asked = values.first().and_then(duration_of).ok_or_else(|| {
            error(
                "22023",
                "statement_timeout takes milliseconds or a duration such as '5s' or '2min'",
            )
        })?;
        // 0 means "no timeout" in Postgres: here, the server's own limit.
        let timeout = if asked.is_zero() {
            connection.max_timeout
        } else {
            asked.min(connection.max_timeout)
        };
        *connection.timeout.lock().expect("not poisoned") = timeout;
        return Ok(Handled::Tag(Response::Execution(Tag::new("SET"))));
    }
    if HARMLESS.contains(&name.as_str()) {
        return Ok(Handled::Tag(Response::Execution(Tag::new("SET"))));
    }
    Err(error(
        "42501",
        format!(
            "SET {name} is not allowed: the engine's settings are the server's; only statement_timeout may be lowered"
        ),
    ))
}

/// `5000`, `'5000'`, `'5s'`, `'250ms'`, `'2min'`, `'1h'`.
fn duration_of(e: &Expr) -> Option<Duration> {
    let text = match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.clone(),
            Value::SingleQuotedString(s) => s.clone(),
            _ => return None,
        },
        Expr::Identifier(i) => i.value.clone(),
        _ => return None,
    };
    let text = text.trim().to_lowercase();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1e3,
        "min" => n * 60e3,
        "h" => n * 3_600e3,
        _ => return None,
    };
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_millis(ms as u64))
}

/// The value Postgres would show for `name` (lower case, words joined by spaces).
fn show(
    connection: &Connection,
    name: &str,
    tz: &str,
    application: Option<&str>,
) -> Option<String> {
    if let Some(shared) = pg_compat::setting(name) {
        return Some(shared.into());
    }
    let value = match name {
        "timezone" | "time zone" => tz.into(),
        "application_name" => application.unwrap_or("").into(),
        "statement_timeout" => {
            let t = *connection.timeout.lock().expect("not poisoned");
            format!("{}ms", t.as_millis())
        }
        _ => return None,
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_postgres_reads_them() {
        let d = |s: &str| duration_of(&Expr::value(Value::SingleQuotedString(s.into())));
        assert_eq!(d("5000"), Some(Duration::from_secs(5)));
        assert_eq!(d("5s"), Some(Duration::from_secs(5)));
        assert_eq!(d("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(d("2min"), Some(Duration::from_secs(120)));
        assert_eq!(d("0"), Some(Duration::ZERO));
        assert_eq!(d("soon"), None);
        assert_eq!(d("-1"), None);
    }
}
