//! How wenming's parts of a plan cross the wire to a Ballista scheduler and its
//! executors: the scope wall (`ScopedTable`, `ScopedScanExec`) with the scope's units
//! written into it, a KPI question's frame (`q_area`, an in-memory table), and our
//! functions (`wm_bucket` with its period boundaries, the bounded copies of growing
//! functions with their budget). Everything else is Ballista's own codec.
//!
//! The client, the scheduler and the executors all run this codec (`wenming ballista
//! scheduler|executor`), so a plan means the same thing in each process. Our parts are
//! JSON behind a tag; anything without the tag is handed to Ballista's codec.

use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{
    AsExecutionPlan, PhysicalExtensionCodec, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::PhysicalPlanNode;
use prost::Message;
use serde::{Deserialize, Serialize};
use wenming_schemas::Family;

use crate::kpi::frame::Bucket;
use crate::sql::bounded;
use crate::wall::{ScopeUnits, ScopedScanExec, ScopedTable};

/// Marks our parts of a plan; anything else is Ballista's.
const TAG: &[u8] = b"wenming/1:";

/// A table provider of ours, as written into a logical plan.
#[derive(Serialize, Deserialize)]
enum TableWire {
    /// A raw table behind the wall: its files and the scope's units.
    Scoped {
        table: String,
        label: String,
        units: Vec<String>,
        files: Files,
    },
    /// A raw table's files, as a table (unscoped ones are Ballista's listing tables;
    /// this is the inside of `Scoped`).
    Files(Files),
    /// A small in-memory table (a KPI question's `q_area`), as Arrow IPC.
    Memory { ipc: Vec<u8> },
}

#[derive(Serialize, Deserialize)]
struct Files {
    /// Absolute URLs of the Parquet files of one table version.
    urls: Vec<String>,
    /// The table's schema, as Arrow IPC.
    schema: Vec<u8>,
}

/// An execution plan of ours.
#[derive(Serialize, Deserialize)]
enum PlanWire {
    Scoped {
        table: String,
        label: String,
        units: Vec<String>,
        unit_at: usize,
        keep: Vec<usize>,
        schema: Vec<u8>,
        /// The hidden scan, as a DataFusion protobuf plan (not a child: see `wall`).
        hidden: Vec<u8>,
    },
}

/// A function of ours.
#[derive(Serialize, Deserialize)]
enum FunctionWire {
    Bucket { boundaries: Vec<i64> },
    Bounded(bounded::Wire),
}

/// The codec, for logical plans (client → scheduler) and physical ones (scheduler →
/// executors).
#[derive(Debug, Default)]
pub struct Codec {
    logical: BallistaLogicalExtensionCodec,
    physical: BallistaPhysicalExtensionCodec,
}

fn wire_err(what: &str, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("wenming's plan codec, {what}: {e}"))
}

fn write<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(TAG);
    serde_json::to_writer(buf, value).map_err(|e| wire_err("writing", e))
}

/// Ours (`Some`) or Ballista's (`None`).
fn read<T: for<'de> Deserialize<'de>>(buf: &[u8]) -> Result<Option<T>> {
    match buf.strip_prefix(TAG) {
        Some(json) => serde_json::from_slice(json)
            .map(Some)
            .map_err(|e| wire_err("reading", e)),
        None => Ok(None),
    }
}

fn schema_bytes(schema: &Schema) -> Result<Vec<u8>> {
    batches_bytes(schema, &[])
}

fn batches_bytes(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, schema)?;
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
}

fn read_batches(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// The `&'static` name of a raw table, as the wall keeps it.
fn table_name(name: &str) -> Result<&'static str> {
    Family::ALL
        .iter()
        .map(|f| f.table_name())
        .find(|t| *t == name)
        .ok_or_else(|| wire_err("a scoped table", format!("{name} is not a raw table")))
}

/// A table of Parquet files, as the distributed engine reads a raw table's version.
pub fn files_table(urls: &[String], schema: SchemaRef) -> Result<ListingTable> {
    let paths = urls
        .iter()
        .map(ListingTableUrl::parse)
        .collect::<Result<Vec<_>>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(paths)
        .with_listing_options(options)
        .with_schema(schema);
    ListingTable::try_new(config)
}

fn files_of(table: &dyn TableProvider) -> Result<Files> {
    let listing = table.downcast_ref::<ListingTable>().ok_or_else(|| {
        wire_err(
            "a scoped table",
            "only a table of Parquet files can be sent behind the wall",
        )
    })?;
    Ok(Files {
        urls: listing
            .table_paths()
            .iter()
            .map(|u| u.as_str().to_string())
            .collect(),
        schema: schema_bytes(&listing.schema())?,
    })
}

fn table_of(files: &Files) -> Result<Arc<dyn TableProvider>> {
    let (schema, _) = read_batches(&files.schema)?;
    Ok(Arc::new(files_table(&files.urls, schema)?))
}

impl LogicalExtensionCodec for Codec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.logical.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.logical.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(wire) = read::<TableWire>(buf)? else {
            return self
                .logical
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        Ok(match wire {
            TableWire::Scoped {
                table,
                label,
                units,
                files,
            } => Arc::new(ScopedTable::new(
                table_name(&table)?,
                table_of(&files)?,
                Arc::new(ScopeUnits::new(label, units)),
            )?),
            TableWire::Files(files) => table_of(&files)?,
            TableWire::Memory { ipc } => {
                let (schema, batches) = read_batches(&ipc)?;
                Arc::new(MemTable::try_new(schema, vec![batches])?)
            }
        })
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(scoped) = node.downcast_ref::<ScopedTable>() {
            let units = scoped.units();
            return write(
                &TableWire::Scoped {
                    table: scoped.table().to_string(),
                    label: units.label().to_string(),
                    units: units.ids().cloned().collect(),
                    files: files_of(scoped.inner().as_ref())?,
                },
                buf,
            );
        }
        if let Some(memory) = node.downcast_ref::<MemTable>() {
            let batches: Vec<RecordBatch> = memory
                .batches
                .iter()
                .flat_map(|p| p.try_read().map(|b| b.clone()).unwrap_or_default())
                .collect();
            return write(
                &TableWire::Memory {
                    ipc: batches_bytes(&memory.schema(), &batches)?,
                },
                buf,
            );
        }
        self.logical
            .try_encode_table_provider(table_ref, node, buf)
            .map_err(|e| {
                wire_err(
                    "a table",
                    format!("{table_ref} cannot be read by the distributed engine ({e})"),
                )
            })
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.logical.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> Result<()> {
        self.logical.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_function(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_function(node, buf)
    }
}

impl PhysicalExtensionCodec for Codec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(wire) = read::<PlanWire>(buf)? else {
            return self.physical.try_decode(buf, inputs, ctx, converter);
        };
        match wire {
            PlanWire::Scoped {
                table,
                label,
                units,
                unit_at,
                keep,
                schema,
                hidden,
            } => {
                let node = PhysicalPlanNode::decode(hidden.as_slice())
                    .map_err(|e| wire_err("the scan behind the wall", e))?;
                let hidden = node.try_into_physical_plan(ctx, self)?;
                let (schema, _) = read_batches(&schema)?;
                Ok(Arc::new(ScopedScanExec::new(
                    table_name(&table)?,
                    hidden,
                    Arc::new(ScopeUnits::new(label, units)),
                    unit_at,
                    keep,
                    schema,
                )))
            }
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<ScopedScanExec>() else {
            return self.physical.try_encode(node, buf, converter);
        };
        let hidden = PhysicalPlanNode::try_from_physical_plan(scan.hidden().clone(), self)?;
        let units = scan.units();
        write(
            &PlanWire::Scoped {
                table: scan.table().to_string(),
                label: units.label().to_string(),
                units: units.ids().cloned().collect(),
                unit_at: scan.unit_at(),
                keep: scan.keep().to_vec(),
                schema: schema_bytes(&scan.schema())?,
                hidden: hidden.encode_to_vec(),
            },
            buf,
        )
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_function(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_function(node, buf)
    }
}

fn encode_function(udf: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
    if let Some(bucket) = udf.inner().downcast_ref::<Bucket>() {
        return write(
            &FunctionWire::Bucket {
                boundaries: bucket.boundaries().to_vec(),
            },
            buf,
        );
    }
    if let Some(wire) = bounded::to_wire(udf) {
        return write(&FunctionWire::Bounded(wire), buf);
    }
    // DataFusion's own functions travel by name.
    Ok(())
}

fn decode_function(name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
    match read::<FunctionWire>(buf)? {
        Some(FunctionWire::Bucket { boundaries }) => {
            Ok(Arc::new(ScalarUDF::new_from_impl(Bucket::new(boundaries))))
        }
        Some(FunctionWire::Bounded(wire)) => {
            Ok(Arc::new(bounded::from_wire(wire, builtin_functions())?))
        }
        None => builtin_functions().get(name).cloned().ok_or_else(|| {
            wire_err(
                "a function",
                format!("{name} is not known to the distributed engine"),
            )
        }),
    }
}

/// DataFusion's own scalar functions, by name.
fn builtin_functions() -> &'static std::collections::HashMap<String, Arc<ScalarUDF>> {
    static FUNCTIONS: OnceLock<std::collections::HashMap<String, Arc<ScalarUDF>>> = OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        SessionStateBuilder::new()
            .with_default_features()
            .build()
            .scalar_functions()
            .clone()
    })
}
