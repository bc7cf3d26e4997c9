//! Statements in, rows out: the simple and the extended query protocol over the
//! analyst's session.
//!
//! Each statement gets a session of its own over the lake's current snapshot (as each
//! `POST /v1/sql` does), restricted to the caller's scope inside the engine. Its rows
//! are streamed: a batch is encoded and sent while the next is computed. The stream
//! holds one of the caller's SQL slots while it runs, and ends with an error at the
//! statement timeout or a CancelRequest; dropping it (a client gone) stops the engine.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{CopyLegacyOption, CopyOption, CopySource, Statement};
use futures::stream::{self, BoxStream, StreamExt};
use futures::{Sink, future::BoxFuture};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, METADATA_APPLICATION_NAME, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wenming_analytics::AnalyticsError;
use wenming_analytics::sql::{self, SqlLimits};

use super::Connection;
use super::login::connection_of;
use super::session::{self, Handled, error};
use crate::app::AppState;

pub struct Answers {
    state: Arc<AppState>,
    tz: String,
    parser: Arc<Parser>,
}

impl Answers {
    pub fn new(state: Arc<AppState>, tz: String) -> Answers {
        Answers {
            parser: Arc::new(Parser {
                state: state.clone(),
            }),
            state,
            tz,
        }
    }

    /// Answer one checked statement.
    async fn answer(
        &self,
        connection: Arc<Connection>,
        statement: DfStatement,
        params: Option<ParamValues>,
        format: &Format,
        options: Arc<FormatOptions>,
        application: Option<&str>,
    ) -> PgWireResult<Response> {
        if let DfStatement::Statement(s) = &statement {
            if let Some(handled) = session::handle(&connection, s, &self.tz, application) {
                return match handled? {
                    Handled::Tag(response) => Ok(response),
                    Handled::Setting { name, value } => {
                        let schema =
                            Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
                        let batch = RecordBatch::try_new(
                            schema.clone(),
                            vec![Arc::new(arrow::array::StringArray::from(vec![value]))],
                        )
                        .map_err(|e| error("XX000", e.to_string()))?;
                        let fields = Arc::new(arrow_schema_to_pg_fields(&schema, format, None)?);
                        Ok(Response::Query(QueryResponse::new(
                            fields.clone(),
                            stream::iter(encode_recordbatch(fields, batch)),
                        )))
                    }
                };
            }
            if let Statement::Copy {
                source: CopySource::Query(q),
                options: copy_options,
                legacy_options,
                ..
            } = s.as_ref()
            {
                let csv = copy_options.iter().any(
                    |o| matches!(o, CopyOption::Format(f) if f.value.eq_ignore_ascii_case("csv")),
                ) || legacy_options
                    .iter()
                    .any(|o| matches!(o, CopyLegacyOption::Csv(_)));
                let header = copy_options
                    .iter()
                    .any(|o| matches!(o, CopyOption::Header(true)));
                let query = DfStatement::Statement(Box::new(Statement::Query(q.clone())));
                let (schema, batches) = self.run(connection, query, None).await?;
                return Ok(Response::CopyOut(copy_out(schema, batches, csv, header)));
            }
        }
        let (schema, batches) = self.run(connection, statement, params).await?;
        let fields = Arc::new(arrow_schema_to_pg_fields(&schema, format, Some(options))?);
        let encode = fields.clone();
        let rows = batches.flat_map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(b) => encode_recordbatch(encode.clone(), b),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            stream::iter(rows)
        });
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }

    /// Plan `statement` in a fresh session of the caller's scope and return its schema
    /// and its batches, to be computed as they are read.
    async fn run(
        &self,
        connection: Arc<Connection>,
        statement: DfStatement,
        params: Option<ParamValues>,
    ) -> PgWireResult<(SchemaRef, BoxStream<'static, PgWireResult<RecordBatch>>)> {
        let cancel = connection.start_query();
        let timeout = *connection.timeout.lock().expect("not poisoned");
        let deadline = Instant::now() + timeout;
        let limits = SqlLimits {
            timeout,
            ..self.state.sql_limits.clone()
        };
        let ctx = guarded(
            self.state
                .analytics
                .sql_session(&connection.caller.scope, &limits),
            &cancel,
            deadline,
            timeout,
        )
        .await?
        .map_err(to_pg)?;
        let mut plan = sql::plan(&ctx, statement).await.map_err(to_pg)?;
        if let Some(params) = params {
            plan = plan
                .with_param_values(params)
                .map_err(|e| error("22023", format!("the parameters do not fit: {e}")))?;
        }
        let schema: SchemaRef = plan.schema().as_arrow().clone().into();
        let state = self.state.clone();
        let name = connection.caller.name.clone();
        let start: BoxFuture<'static, PgWireResult<Running>> = Box::pin(async move {
            let slot = state
                .sql_slots
                .acquire(&name)
                .await
                .map_err(|e| error("53000", e.detail))?;
            let mut stream = sql::execute(&ctx, plan).await.map_err(to_pg)?;
            // The engine's work runs in a task of its own, feeding a channel: waiting on
            // the channel always yields, so the timeout and a cancel answer at once even
            // while an operator computes for long between batches; the task holds the
            // slot and is aborted when the answer is dropped.
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let task = tokio::spawn(async move {
                let _slot = slot;
                let _ctx = ctx;
                while let Some(batch) = stream.next().await {
                    if tx.send(batch).await.is_err() {
                        break;
                    }
                }
            });
            Ok(Running {
                task: task.abort_handle(),
                batches: rx,
            })
        });
        let run = Run {
            start: Some(start),
            running: None,
            cancel,
            deadline,
            timeout,
            done: false,
        };
        let batches = stream::unfold(run, |mut run| async move {
            if run.done {
                return None;
            }
            if let Some(start) = run.start.take() {
                match guarded(start, &run.cancel, run.deadline, run.timeout).await {
                    Ok(Ok(running)) => run.running = Some(running),
                    Ok(Err(e)) | Err(e) => {
                        run.done = true;
                        return Some((Err(e), run));
                    }
                }
            }
            let next = {
                let running = run.running.as_mut()?;
                guarded(
                    running.batches.recv(),
                    &run.cancel,
                    run.deadline,
                    run.timeout,
                )
                .await
            };
            match next {
                Ok(Some(Ok(batch))) => Some((Ok(batch), run)),
                Ok(None) => None,
                Ok(Some(Err(e))) => {
                    run.done = true;
                    run.running = None;
                    Some((Err(to_pg(sql::limit_error(AnalyticsError::Query(e)))), run))
                }
                Err(e) => {
                    // Dropping the stream stops the engine's work at once.
                    run.done = true;
                    run.running = None;
                    Some((Err(e), run))
                }
            }
        });
        Ok((schema, batches.boxed()))
    }
}

/// A statement's engine work once it holds a slot: a task sending batches.
struct Running {
    task: tokio::task::AbortHandle,
    batches: tokio::sync::mpsc::Receiver<datafusion::error::Result<RecordBatch>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Run {
    start: Option<BoxFuture<'static, PgWireResult<Running>>>,
    running: Option<Running>,
    cancel: CancellationToken,
    deadline: Instant,
    timeout: std::time::Duration,
    done: bool,
}

/// `work`, unless the statement is cancelled or its time is up first.
async fn guarded<T>(
    work: impl std::future::Future<Output = T>,
    cancel: &CancellationToken,
    deadline: Instant,
    timeout: std::time::Duration,
) -> PgWireResult<T> {
    tokio::select! {
        out = work => Ok(out),
        _ = cancel.cancelled() => Err(error("57014", "canceling statement due to user request")),
        _ = tokio::time::sleep_until(deadline) => Err(error(
            "57014",
            format!(
                "canceling statement due to statement timeout ({} ms)",
                timeout.as_millis()
            ),
        )),
    }
}

/// An engine error as Postgres names its kind (SQLSTATE).
fn to_pg(e: AnalyticsError) -> PgWireError {
    let text = e.to_string();
    let code = match &e {
        AnalyticsError::Refused(_) => "42501",
        AnalyticsError::Limit(_) => "53200",
        AnalyticsError::Cancelled(_) => "57014",
        AnalyticsError::NotFound(_) => "42704",
        AnalyticsError::Unavailable(_) => "08006",
        AnalyticsError::BadRequest(m) => {
            if m.starts_with("cannot parse") || m.starts_with("cannot read") {
                "42601"
            } else if m.contains("table '") && m.contains("not found") {
                "42P01"
            } else if m.contains("No field named") || m.contains("Schema error") {
                "42703"
            } else if m.contains("Divide by zero") || m.contains("divide by zero") {
                "22012"
            } else {
                "42000"
            }
        }
        _ => {
            tracing::error!("postgres: the query failed: {text}");
            return error("XX000", "the query failed; the server log has the details");
        }
    };
    error(code, text)
}

/// `COPY (query) TO STDOUT`: the rows in Postgres' text format (tab-separated, `\N`
/// for NULL) or as CSV.
fn copy_out(
    schema: SchemaRef,
    batches: BoxStream<'static, PgWireResult<RecordBatch>>,
    csv: bool,
    header: bool,
) -> CopyResponse {
    let columns = schema.fields().len();
    let head = (csv && header).then(|| {
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        Ok(CopyData::new(
            csv_line(&names.iter().map(|n| Some(n.as_str())).collect::<Vec<_>>()).into(),
        ))
    });
    let body = batches.map(move |batch| {
        let batch = batch?;
        let options = arrow::util::display::FormatOptions::default();
        let formatters = batch
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error("XX000", e.to_string()))?;
        let mut out = Vec::new();
        for row in 0..batch.num_rows() {
            let cells: Vec<Option<String>> = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(c, f)| (!c.is_null(row)).then(|| f.value(row).to_string()))
                .collect();
            if csv {
                out.extend(csv_line(
                    &cells.iter().map(|c| c.as_deref()).collect::<Vec<_>>(),
                ));
            } else {
                let line: Vec<String> = cells
                    .iter()
                    .map(|c| match c {
                        None => "\\N".to_string(),
                        Some(v) => v
                            .replace('\\', "\\\\")
                            .replace('\t', "\\t")
                            .replace('\n', "\\n")
                            .replace('\r', "\\r"),
                    })
                    .collect();
                out.extend(line.join("\t").into_bytes());
                out.push(b'\n');
            }
        }
        Ok(CopyData::new(out.into()))
    });
    CopyResponse::new(0, columns, stream::iter(head).chain(body))
}

fn csv_line(cells: &[Option<&str>]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let record: Vec<&str> = cells.iter().map(|c| c.unwrap_or("")).collect();
    let _ = w.write_record(&record);
    w.into_inner().unwrap_or_default()
}

fn format_options<C: ClientInfo>(client: &C) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
}

#[async_trait]
impl SimpleQueryHandler for Answers {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = connection_of(client)?;
        let statements = sql::check_postgres(query).map_err(to_pg)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let options = format_options(client);
        let application = client.metadata().get(METADATA_APPLICATION_NAME).cloned();
        let mut responses = Vec::new();
        for statement in statements {
            match self
                .answer(
                    connection.clone(),
                    statement,
                    None,
                    &Format::UnifiedText,
                    options.clone(),
                    application.as_deref(),
                )
                .await
            {
                Ok(r) => responses.push(r),
                Err(e) => {
                    // Postgres stops a multi-statement query at its first error.
                    responses.push(Response::Error(Box::new(e.into())));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// A parsed statement of the extended protocol, with what `Describe` answers.
#[derive(Clone)]
pub struct Prepared {
    statement: DfStatement,
    /// The result's schema (None: a session command, which returns no rows to describe).
    schema: Option<SchemaRef>,
    params: Vec<(Type, Option<DataType>)>,
}

pub struct Parser {
    state: Arc<AppState>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        query: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let connection = connection_of(client)?;
        let mut statements = sql::check_postgres(query).map_err(to_pg)?;
        if statements.len() > 1 {
            return Err(error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let is_engine_query = match &statement {
            DfStatement::Statement(s) => {
                !(sql::check::is_session_command(s) || matches!(s.as_ref(), Statement::Copy { .. }))
            }
            _ => true,
        };
        if !is_engine_query {
            return Ok(Some(Prepared {
                statement,
                schema: None,
                params: Vec::new(),
            }));
        }
        let ctx = self
            .state
            .analytics
            .sql_session(&connection.caller.scope, &self.state.sql_limits)
            .await
            .map_err(to_pg)?;
        let plan = sql::plan(&ctx, statement.clone()).await.map_err(to_pg)?;
        Ok(Some(Prepared {
            statement,
            schema: Some(plan.schema().as_arrow().clone().into()),
            params: parameters(&plan)?,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.iter().map(|(t, _)| t.clone()).collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.schema {
            Some(schema) => arrow_schema_to_pg_fields(
                schema,
                column_format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            None => Ok(Vec::new()),
        }
    }
}

/// The plan's `$n` parameters in order, with the types the engine inferred.
fn parameters(plan: &LogicalPlan) -> PgWireResult<Vec<(Type, Option<DataType>)>> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| error("42P18", format!("cannot tell the parameters' types: {e}")))?;
    let ids: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(id, t)| Some((id.trim_start_matches('$').parse().ok()?, t)))
        .collect();
    // By position: a client numbers its parameters $1..$n, and a catalog rewrite
    // (`sql::check_postgres`) may leave one unused; it keeps its place, untyped.
    let count = ids.iter().map(|(n, _)| *n).max().unwrap_or(0);
    if count > u16::MAX as usize {
        // The protocol carries at most 65,535 parameters.
        return Err(error(
            "54023",
            format!("${count}: a statement takes at most 65535 parameters"),
        ));
    }
    let mut by_position: Vec<Option<DataType>> = vec![None; count];
    for (n, t) in ids {
        if n >= 1 {
            by_position[n - 1] = t;
        }
    }
    by_position
        .into_iter()
        .map(|t| {
            let pg = match &t {
                Some(t) => into_pg_type(t)?,
                None => Type::UNKNOWN,
            };
            Ok((pg, t))
        })
        .collect()
}

#[async_trait]
impl ExtendedQueryHandler for Answers {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let connection = connection_of(client)?;
        let prepared = &portal.statement.statement;
        let params = if prepared.params.is_empty() {
            None
        } else {
            let types: Vec<Option<&DataType>> =
                prepared.params.iter().map(|(_, t)| t.as_ref()).collect();
            Some(deserialize_parameters(portal, &types)?)
        };
        let application = client.metadata().get(METADATA_APPLICATION_NAME).cloned();
        self.answer(
            connection,
            prepared.statement.clone(),
            params,
            &portal.result_column_format,
            format_options(client),
            application.as_deref(),
        )
        .await
    }
}
