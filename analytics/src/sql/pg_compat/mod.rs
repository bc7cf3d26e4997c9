//! What Postgres clients ask of a server's catalog, beyond `datafusion-pg-catalog`'s
//! tables: `version()`, `to_regtype`, `json_build_object`, the constant answers of a
//! database without sequences or collations, and a `pg_index` whose key columns are
//! arrays (as Postgres' `int2vector` reads) so that SQLAlchemy's inspector can
//! `unnest` them; and `rewrite`, for what clients' catalog queries say in ways
//! DataFusion does not take. All are catalog plumbing: none reads a row of the lake.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, Int32Array, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider,
};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::TableType;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Query, SelectItem, SetExpr,
    Statement, TableFactor, Value, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::DATABASE;
use crate::error::AnalyticsError;

mod rewrite;
#[cfg(test)]
mod tests;

pub use rewrite::rewrite;

/// Register the catalog functions clients call (`datafusion-pg-catalog`'s and ours) in
/// `ctx`: done once, in the template every analyst's session starts from
/// (`sql::session`).
pub fn install_functions(ctx: &SessionContext) -> Result<(), AnalyticsError> {
    datafusion_pg_catalog::setup_pg_catalog(
        ctx,
        DATABASE,
        datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )
    .map_err(|e| AnalyticsError::Query(*e))?;
    ctx.register_udf(version_udf());
    ctx.register_udf(to_regtype_udf());
    ctx.register_udf(current_setting_udf());
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::default()));
    // Asked by SQLAlchemy's inspector of every column: no column has a sequence, and
    // every collation is visible.
    ctx.register_udf(constant_udf(
        "pg_get_serial_sequence",
        ScalarValue::Utf8(None),
    ));
    // psql's `\d` and SQLAlchemy ask for the definitions of a table's indexes; there
    // are none.
    ctx.register_udf(constant_udf("pg_get_indexdef", ScalarValue::Utf8(None)));
    // DBeaver shows a view's definition: the views are derived from the events in
    // Rust, not in SQL; docs/tables.md says how each is.
    ctx.register_udf(constant_udf(
        "pg_get_viewdef",
        ScalarValue::Utf8(Some(
            "-- derived from the event tables by wenming; docs/tables.md describes how".into(),
        )),
    ));
    ctx.register_udf(constant_udf(
        "pg_collation_is_visible",
        ScalarValue::Boolean(Some(true)),
    ));
    Ok(())
}

/// Give a session its own `pg_catalog`, describing what the session holds. Its static
/// tables (types, operators, keywords …, parsed from files built into the library)
/// are parsed once per process and shared.
/// A session's catalog list, seen from its own pg_catalog: gone with the session.
#[derive(Debug)]
struct WeakCatalogList(std::sync::Weak<dyn CatalogProviderList>);

impl CatalogProviderList for WeakCatalogList {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        self.0.upgrade()?.register_catalog(name, catalog)
    }

    fn catalog_names(&self) -> Vec<String> {
        self.0
            .upgrade()
            .map(|list| list.catalog_names())
            .unwrap_or_default()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.0.upgrade()?.catalog(name)
    }
}

pub fn install_catalog(ctx: &SessionContext) -> Result<(), AnalyticsError> {
    use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};
    static TABLES: OnceLock<std::result::Result<Arc<PgCatalogStaticTables>, String>> =
        OnceLock::new();
    let tables = TABLES
        .get_or_init(|| {
            PgCatalogStaticTables::try_new()
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| AnalyticsError::Query(DataFusionError::Internal(e)))?;
    // The catalog list holds pg_catalog, so pg_catalog holds it weakly: a strong
    // reference made a cycle that kept every session's tables alive after the session
    // (each snapshot's computed views among them: gigabytes as commits landed).
    let list: Arc<dyn CatalogProviderList> =
        Arc::new(WeakCatalogList(Arc::downgrade(ctx.state().catalog_list())));
    let provider = PgCatalogSchemaProvider::try_new(
        list,
        tables,
        datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
    )
    .map_err(AnalyticsError::Query)?;
    if let Some(catalog) = ctx.catalog(DATABASE) {
        catalog
            .register_schema(
                "pg_catalog",
                Arc::new(PgCatalog {
                    inner: Arc::new(provider),
                    numbered: Default::default(),
                }),
            )
            .map_err(AnalyticsError::Query)?;
    }
    Ok(())
}

/// `pg_catalog` with `pg_index` as this database has it (no indexes, and key columns
/// typed as arrays), and a `pg_attribute` that numbers relations as `pg_class` does.
#[derive(Debug)]
struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
    numbered: Arc<AtomicBool>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name == "pg_index" {
            return Ok(Some(pg_index()?));
        }
        let table = self.inner.table(name).await?;
        if name == "pg_attribute"
            && let Some(table) = table
        {
            return Ok(Some(Arc::new(NumberedFirst {
                table,
                catalog: self.inner.clone(),
                numbered: self.numbered.clone(),
            })));
        }
        Ok(table)
    }
    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// `pg_attribute`, read only after `pg_class` has numbered the catalog, its schemas
/// and its tables. Oids are handed out in the order they are first asked for, and
/// `pg_attribute` alone numbers the tables but not the catalog and schemas before
/// them. Each statement has a session of its own: psql's `\d t` finds t's oid in
/// `pg_class` in one statement and reads its columns from `pg_attribute` in the next,
/// which would otherwise count from another start and describe another table.
///
/// The numbering is done when the table is scanned, never when it is looked up:
/// building `pg_class` looks up every catalog table (this one too) while it holds the
/// numbering's lock.
#[derive(Debug)]
struct NumberedFirst {
    table: Arc<dyn TableProvider>,
    catalog: Arc<dyn SchemaProvider>,
    numbered: Arc<AtomicBool>,
}

#[async_trait]
impl TableProvider for NumberedFirst {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }
    fn table_type(&self) -> TableType {
        self.table.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.numbered.swap(true, Ordering::SeqCst)
            && let Some(pg_class) = self.catalog.table("pg_class").await?
        {
            let plan = pg_class.scan(state, Some(&vec![0]), &[], None).await?;
            collect(plan, state.task_ctx()).await?;
        }
        self.table.scan(state, projection, filters, limit).await
    }
}

fn pg_index() -> Result<Arc<dyn TableProvider>> {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
        let mut fields = vec![
            Field::new("indexrelid", DataType::Int32, false),
            Field::new("indrelid", DataType::Int32, false),
            Field::new("indnatts", DataType::Int16, false),
            Field::new("indnkeyatts", DataType::Int16, false),
        ];
        for flag in [
            "indisunique",
            "indnullsnotdistinct",
            "indisprimary",
            "indisexclusion",
            "indimmediate",
            "indisclustered",
            "indisvalid",
            "indcheckxmin",
            "indisready",
            "indislive",
            "indisreplident",
        ] {
            fields.push(Field::new(flag, DataType::Boolean, false));
        }
        fields.extend([
            Field::new("indkey", list(DataType::Int16), false),
            Field::new("indcollation", list(DataType::Int32), false),
            Field::new("indclass", list(DataType::Int32), false),
            Field::new("indoption", list(DataType::Int16), false),
            Field::new("indexprs", DataType::Utf8, true),
            Field::new("indpred", DataType::Utf8, true),
        ]);
        Arc::new(Schema::new(fields))
    });
    Ok(Arc::new(MemTable::try_new(
        schema.clone(),
        vec![vec![RecordBatch::new_empty(schema.clone())]],
    )?))
}

/// The server settings every connection shares, as `SHOW` and `current_setting` read
/// them (lower case, words joined by spaces or underscores). What a connection sets
/// (`statement_timeout`, `application_name`) is the Postgres wire's.
pub fn setting(name: &str) -> Option<&'static str> {
    Some(match name {
        "transaction isolation level"
        | "transaction_isolation"
        | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "server_version" => SERVER_VERSION,
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "search_path" => "public",
        "max_identifier_length" => "63",
        "lc_collate" | "lc_ctype" => "C.UTF-8",
        "is_superuser" => "off",
        "default_table_access_method" => "heap",
        _ => return None,
    })
}

/// The Postgres version clients are told (`version()`, `server_version`).
pub const SERVER_VERSION: &str = "16.6";

/// `current_setting(name)`: a shared server setting, an error naming an unknown one.
fn current_setting_udf() -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0]
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| DataFusionError::Plan("current_setting takes a name".into()))?;
            let mut out = StringBuilder::new();
            for i in 0..names.len() {
                if names.is_null(i) {
                    out.append_null();
                    continue;
                }
                let name = names.value(i);
                match setting(&name.to_lowercase()) {
                    Some(v) => out.append_value(v),
                    None => {
                        return Err(DataFusionError::Execution(format!(
                            "unrecognized configuration parameter \"{name}\""
                        )));
                    }
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// A catalog function that answers the same for any arguments on this server.
fn constant_udf(name: &str, value: ScalarValue) -> ScalarUDF {
    ScalarUDF::new_from_impl(Constant {
        name: name.to_string(),
        value,
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: String,
    value: ScalarValue,
    signature: Signature,
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// `to_regtype(name)`: the oid of a built-in type by name, NULL for a type this server
/// does not have (psycopg asks for `hstore` this way when SQLAlchemy connects).
fn to_regtype_udf() -> ScalarUDF {
    let oid = |name: &str| -> Option<i32> {
        Some(match name.trim().to_lowercase().as_str() {
            "bool" | "boolean" => 16,
            "int8" | "bigint" => 20,
            "int2" | "smallint" => 21,
            "int4" | "integer" | "int" => 23,
            "text" => 25,
            "json" => 114,
            "float4" | "real" => 700,
            "float8" | "double precision" => 701,
            "varchar" | "character varying" => 1043,
            "date" => 1082,
            "timestamp" | "timestamp without time zone" => 1114,
            "timestamptz" | "timestamp with time zone" => 1184,
            "interval" => 1186,
            "numeric" => 1700,
            "uuid" => 2950,
            "jsonb" => 3802,
            _ => return None,
        })
    };
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0]
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| DataFusionError::Plan("to_regtype takes a type name".into()))?;
            let oids: Int32Array = (0..names.len())
                .map(|i| (!names.is_null(i)).then(|| oid(names.value(i))).flatten())
                .collect();
            Ok(ColumnarValue::Array(Arc::new(oids)))
        }),
    )
}

/// `version()` as Postgres clients read it: SQLAlchemy and others parse "PostgreSQL
/// X.Y" out of it to choose their dialect.
fn version_udf() -> ScalarUDF {
    let text = format!(
        "PostgreSQL {SERVER_VERSION} (wenming {} on Apache DataFusion {})",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))
        }),
    )
}

/// `json_build_object(k1, v1, k2, v2, …)` as JSON text. SQLAlchemy's inspector builds
/// a column's identity options with it; analysts may use it too (its output is held by
/// the query's value budget, `bounded`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl Default for JsonBuildObject {
    fn default() -> Self {
        JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "json_build_object takes pairs of keys and values".into(),
            ));
        }
        let arrays: Vec<ArrayRef> = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = StringBuilder::new();
        for row in 0..args.number_rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                if key.is_null() {
                    return Err(DataFusionError::Execution(
                        "json_build_object: a key is NULL".into(),
                    ));
                }
                let key = match key {
                    ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s,
                    other => other.to_string(),
                };
                object.insert(key, json_of(ScalarValue::try_from_array(&pair[1], row)?));
            }
            out.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn json_of(v: ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if v.is_null() {
        return Value::Null;
    }
    match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(b),
        ScalarValue::Int8(Some(n)) => n.into(),
        ScalarValue::Int16(Some(n)) => n.into(),
        ScalarValue::Int32(Some(n)) => n.into(),
        ScalarValue::Int64(Some(n)) => n.into(),
        ScalarValue::UInt8(Some(n)) => n.into(),
        ScalarValue::UInt16(Some(n)) => n.into(),
        ScalarValue::UInt32(Some(n)) => n.into(),
        ScalarValue::UInt64(Some(n)) => n.into(),
        ScalarValue::Float32(Some(x)) => serde_json::Number::from_f64(x as f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ScalarValue::Float64(Some(x)) => serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => Value::String(s),
        other => Value::String(other.to_string()),
    }
}
