//! The frame of one KPI question: its periods, the units of its scope and the area each
//! counts toward at the asked level, and the grid of (period, area) rows the answer must
//! have. Registers into the query's session the two things every KPI's SQL joins to:
//! `q_area(unit_id, area)`, holding only the units in scope (the scope is enforced by
//! this inner join, inside the query), and `wm_bucket(ts)`, the period index of an
//! instant (see `Periods::bucket`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{AsArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use datafusion::catalog::MemTable;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::calendar::{Periods, bucket_of};
use crate::error::AnalyticsError;
use crate::reference::{Reference, Unit, Volunteer};
use crate::scope::{Level, Scope};

pub struct Frame<'a> {
    pub refd: &'a Reference,
    pub periods: Periods,
    pub level: Level,
    /// Per unit (index into `refd.units`): its area at `level` when in scope.
    pub area: Vec<Option<String>>,
    /// Per period: the areas with a unit of the scope open at some time during it.
    pub grid: Vec<BTreeSet<String>>,
}

impl<'a> Frame<'a> {
    pub fn new(refd: &'a Reference, periods: Periods, level: Level, scopes: &[Scope]) -> Self {
        let area = unit_areas(refd, level, scopes);
        let grid = periods
            .periods
            .iter()
            .map(|p| {
                refd.units
                    .iter()
                    .zip(&area)
                    .filter(|(u, a)| a.is_some() && u.open_during(p.start_us, p.end_us))
                    .map(|(_, a)| a.clone().expect("filtered"))
                    .collect()
            })
            .collect();
        Frame {
            refd,
            periods,
            level,
            area,
            grid,
        }
    }

    pub fn n(&self) -> i32 {
        self.periods.len() as i32
    }

    /// The area a unit counts toward, if it is in scope.
    pub fn area_of_unit(&self, id: &str) -> Option<&str> {
        self.refd
            .unit_index
            .get(id)
            .and_then(|i| self.area[*i].as_deref())
    }

    /// Residents of each area at the end of period `p`: open stations only.
    pub fn residents(&self, p: usize) -> HashMap<String, i64> {
        self.sum_over_open_stations(p, |u, end| u.residents_at(end))
    }

    /// Open stations of each area at the end of period `p`.
    pub fn open_stations(&self, p: usize) -> HashMap<String, i64> {
        self.sum_over_open_stations(p, |_, _| 1)
    }

    /// Per area, the sum of `f(station, end)` over the stations in scope open at the
    /// end of period `p`.
    fn sum_over_open_stations(
        &self,
        p: usize,
        f: impl Fn(&Unit, i64) -> i64,
    ) -> HashMap<String, i64> {
        let end = self.periods.periods[p].end_us;
        let mut out = HashMap::new();
        for (u, a) in self.refd.units.iter().zip(&self.area) {
            if let Some(a) = a
                && u.is_station()
                && u.open_at(end)
            {
                *out.entry(a.clone()).or_default() += f(u, end);
            }
        }
        out
    }

    /// Volunteers registered at the end of period `p` whose home unit is in scope, with
    /// the area of their home unit.
    pub fn registered_volunteers(&self, p: usize) -> impl Iterator<Item = (&Volunteer, &str)> {
        let end = self.periods.periods[p].end_us;
        self.refd.volunteers.iter().filter_map(move |v| {
            if !v.registered_at_moment(end) {
                return None;
            }
            self.area_of_unit(&v.home_unit).map(|a| (v, a))
        })
    }

    /// Count of `registered_volunteers(p)` per area.
    pub fn volunteer_counts(&self, p: usize) -> HashMap<String, i64> {
        let mut out = HashMap::new();
        for (_, a) in self.registered_volunteers(p) {
            *out.entry(a.to_string()).or_default() += 1;
        }
        out
    }

    /// Register `q_area` and `wm_bucket` in the query's session.
    pub fn register(&self, ctx: &SessionContext) -> Result<(), AnalyticsError> {
        register_areas(ctx, self.refd, &self.area)?;
        ctx.register_udf(bucket_udf(self.periods.boundaries()));
        Ok(())
    }
}

/// The area of each unit at `level` when it is inside every scope.
pub fn unit_areas(refd: &Reference, level: Level, scopes: &[Scope]) -> Vec<Option<String>> {
    refd.units
        .iter()
        .map(|u| {
            scopes
                .iter()
                .all(|s| s.contains(u))
                .then(|| level.area_of(u))
        })
        .collect()
}

/// Register `q_area(unit_id, area)`: the units that have an area (those in scope).
pub fn register_areas(
    ctx: &SessionContext,
    refd: &Reference,
    area: &[Option<String>],
) -> Result<(), AnalyticsError> {
    let (ids, areas): (Vec<&str>, Vec<&str>) = refd
        .units
        .iter()
        .zip(area)
        .filter_map(|(u, a)| a.as_deref().map(|a| (u.id.as_str(), a)))
        .unzip();
    let schema = Arc::new(Schema::new(vec![
        Field::new("unit_id", DataType::Utf8, false),
        Field::new("area", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(areas)),
        ],
    )?;
    let _ = ctx.deregister_table("q_area");
    ctx.register_table(
        "q_area",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    Ok(())
}

/// `wm_bucket(ts)`: the index of the period holding `ts` (−1 before, n after).
fn bucket_udf(boundaries: Vec<i64>) -> ScalarUDF {
    ScalarUDF::new_from_impl(Bucket::new(boundaries))
}

/// The function behind `wm_bucket`, with the question's period boundaries (which the
/// distributed engine sends with the plan: `distributed::codec`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    boundaries: Vec<i64>,
    signature: Signature,
}

impl Bucket {
    pub fn new(boundaries: Vec<i64>) -> Bucket {
        Bucket {
            boundaries,
            signature: Signature::exact(
                vec![DataType::Timestamp(
                    TimeUnit::Microsecond,
                    Some("UTC".into()),
                )],
                Volatility::Immutable,
            ),
        }
    }

    pub fn boundaries(&self) -> &[i64] {
        &self.boundaries
    }
}

impl ScalarUDFImpl for Bucket {
    fn name(&self) -> &str {
        "wm_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let ts = arrays[0].as_primitive::<TimestampMicrosecondType>();
        let out: Int32Array = ts
            .iter()
            .map(|v| v.map(|us| bucket_of(&self.boundaries, us)))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
