//! Reference data as of a moment: which units are open, their residents, which
//! volunteers are registered. It is small (thousands of units, a few hundred thousand
//! volunteers at city scale), so it is read once per table version into memory and
//! asked per period end in Rust, where "as of" rules are plain code.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::SessionContext;

use crate::error::AnalyticsError;

/// A unit as the KPIs see it.
#[derive(Debug, Clone)]
pub struct Unit {
    pub id: String,
    /// Its latest name (from the station's own events: shown as text, never as markup).
    pub name: String,
    /// center / institute / station / point, from its latest registration.
    pub level: String,
    pub parent_id: Option<String>,
    pub area_code: String,
    /// First 6 digits of the area code.
    pub district: String,
    /// First 9 digits.
    pub street: String,
    /// Earliest registration (it exists from then on).
    pub registered_at: i64,
    /// Earliest closure, if any.
    pub closed_at: Option<i64>,
    /// Every `residents` it was given, as (occurred_at, event_id, residents), sorted:
    /// the value at a moment is the last entry strictly before it.
    pub residents: Vec<(i64, String, i64)>,
}

impl Unit {
    pub fn is_station(&self) -> bool {
        self.level == "station"
    }

    /// Registered before `t` and not closed before `t`.
    pub fn open_at(&self, t: i64) -> bool {
        self.registered_at < t && self.closed_at.is_none_or(|c| c >= t)
    }

    /// Open at some moment of `[start, end)`.
    pub fn open_during(&self, start: i64, end: i64) -> bool {
        self.registered_at < end
            && self
                .closed_at
                .is_none_or(|c| c >= start && c > self.registered_at)
    }

    /// Residents as of `t` (latest value set strictly before `t`); 0 when never given.
    pub fn residents_at(&self, t: i64) -> i64 {
        let n = self.residents.partition_point(|(at, _, _)| *at < t);
        if n == 0 { 0 } else { self.residents[n - 1].2 }
    }
}

/// A volunteer as the KPIs see it.
#[derive(Debug, Clone)]
pub struct Volunteer {
    pub id: String,
    /// Home unit of the latest registration.
    pub home_unit: String,
    /// Its index in `Reference::units`, when it is a known unit.
    pub home_index: Option<usize>,
    pub registered_at: i64,
    pub deregistered_at: Option<i64>,
}

impl Volunteer {
    /// `volunteer.registered` strictly before `t` and no `volunteer.deregistered` before `t`.
    pub fn registered_at_moment(&self, t: i64) -> bool {
        self.registered_at < t && self.deregistered_at.is_none_or(|d| d >= t)
    }
}

/// All units and volunteers of one snapshot.
#[derive(Debug, Default)]
pub struct Reference {
    pub units: Vec<Unit>,
    pub unit_index: HashMap<String, usize>,
    pub volunteers: Vec<Volunteer>,
    /// Names of districts and streets (see `area_name`).
    area_names: HashMap<String, String>,
}

impl Reference {
    pub fn unit(&self, id: &str) -> Option<&Unit> {
        self.unit_index.get(id).map(|i| &self.units[*i])
    }

    /// The name of an area as an office says it: `city` is 全市; a district is named by
    /// its centre (海曙区新时代文明实践中心 → 海曙区), a street by its institute
    /// (光秋街道新时代文明实践所 → 光秋街道), and the district centre's own pseudo-street
    /// (a street code ending in 000: the units directly under the centre) is
    /// "海曙区（中心直属）"; a unit is named by itself. `None` for an area no unit names.
    pub fn area_name(&self, area: &str) -> Option<String> {
        if area == "city" {
            return Some("全市".into());
        }
        self.area_names
            .get(area)
            .cloned()
            .or_else(|| self.unit(area).map(|u| u.name.clone()))
    }

    fn name_areas(units: &[Unit]) -> HashMap<String, String> {
        let trim = |name: &str, suffix: &str| name.strip_suffix(suffix).unwrap_or(name).to_string();
        let mut names = HashMap::new();
        for u in units.iter().filter(|u| !u.name.is_empty()) {
            match u.level.as_str() {
                "center" => {
                    names.insert(u.district.clone(), trim(&u.name, "新时代文明实践中心"));
                }
                "institute" => {
                    names.insert(u.street.clone(), trim(&u.name, "新时代文明实践所"));
                }
                _ => {}
            }
        }
        for u in units {
            if u.street.len() == 9
                && u.street.ends_with("000")
                && !names.contains_key(&u.street)
                && let Some(d) = names.get(&u.district).cloned()
            {
                names.insert(u.street.clone(), format!("{d}（中心直属）"));
            }
        }
        names
    }

    pub async fn load(ctx: &SessionContext) -> Result<Reference, AnalyticsError> {
        let mut units = Vec::new();
        let mut unit_index = HashMap::new();
        for batch in collect(
            ctx,
            "SELECT unit_id, level, parent_id, area_code, \
                    CAST(registered_at AS BIGINT), CAST(closed_at AS BIGINT), name \
             FROM units ORDER BY unit_id",
        )
        .await?
        {
            let id = strings(&batch, 0)?;
            let level = strings(&batch, 1)?;
            let parent = strings(&batch, 2)?;
            let area = strings(&batch, 3)?;
            let reg = ints(&batch, 4)?;
            let closed = ints(&batch, 5)?;
            let name = strings(&batch, 6)?;
            for i in 0..batch.num_rows() {
                let area_code = area[i].clone().unwrap_or_default();
                let unit = Unit {
                    id: id[i].clone().unwrap_or_default(),
                    name: name[i].clone().unwrap_or_default(),
                    level: level[i].clone().unwrap_or_default(),
                    parent_id: parent[i].clone(),
                    district: area_code.chars().take(6).collect(),
                    street: area_code.chars().take(9).collect(),
                    area_code,
                    registered_at: reg[i].unwrap_or(i64::MAX),
                    closed_at: closed[i],
                    residents: Vec::new(),
                };
                unit_index.insert(unit.id.clone(), units.len());
                units.push(unit);
            }
        }
        for batch in collect(
            ctx,
            "SELECT DISTINCT unit_id, CAST(occurred_at AS BIGINT), event_id, residents \
             FROM unit_events \
             WHERE \"type\" IN ('unit.registered', 'unit.updated') AND residents IS NOT NULL",
        )
        .await?
        {
            let id = strings(&batch, 0)?;
            let at = ints(&batch, 1)?;
            let event = strings(&batch, 2)?;
            let residents = ints(&batch, 3)?;
            for i in 0..batch.num_rows() {
                let Some(u) = id[i].as_deref().and_then(|id| unit_index.get(id)) else {
                    continue;
                };
                units[*u].residents.push((
                    at[i].unwrap_or_default(),
                    event[i].clone().unwrap_or_default(),
                    residents[i].unwrap_or_default(),
                ));
            }
        }
        for u in &mut units {
            u.residents.sort();
        }
        let mut volunteers = Vec::new();
        for batch in collect(
            ctx,
            "SELECT volunteer_id, home_unit_id, CAST(registered_at AS BIGINT), \
                    CAST(deregistered_at AS BIGINT) FROM volunteers",
        )
        .await?
        {
            let id = strings(&batch, 0)?;
            let home = strings(&batch, 1)?;
            let reg = ints(&batch, 2)?;
            let dereg = ints(&batch, 3)?;
            for i in 0..batch.num_rows() {
                let home_unit = home[i].clone().unwrap_or_default();
                volunteers.push(Volunteer {
                    id: id[i].clone().unwrap_or_default(),
                    home_index: unit_index.get(&home_unit).copied(),
                    home_unit,
                    registered_at: reg[i].unwrap_or(i64::MAX),
                    deregistered_at: dereg[i],
                });
            }
        }
        Ok(Reference {
            area_names: Reference::name_areas(&units),
            units,
            unit_index,
            volunteers,
        })
    }
}

/// Run a query and collect its batches.
pub(crate) async fn collect(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<RecordBatch>, AnalyticsError> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Column `i` as optional strings, whatever string type DataFusion chose.
pub(crate) fn strings(
    batch: &RecordBatch,
    i: usize,
) -> Result<Vec<Option<String>>, AnalyticsError> {
    let col = arrow::compute::cast(batch.column(i), &DataType::Utf8)?;
    let col = col.as_string::<i32>();
    Ok((0..col.len())
        .map(|r| (!col.is_null(r)).then(|| col.value(r).to_string()))
        .collect())
}

/// Column `i` as optional 64-bit integers.
pub(crate) fn ints(batch: &RecordBatch, i: usize) -> Result<Vec<Option<i64>>, AnalyticsError> {
    let col = arrow::compute::cast(batch.column(i), &DataType::Int64)?;
    let col = col.as_primitive::<Int64Type>();
    Ok((0..col.len())
        .map(|r| (!col.is_null(r)).then(|| col.value(r)))
        .collect())
}

/// Column `i` as optional floats.
pub(crate) fn floats(batch: &RecordBatch, i: usize) -> Result<Vec<Option<f64>>, AnalyticsError> {
    let col = arrow::compute::cast(batch.column(i), &DataType::Float64)?;
    let col = col.as_primitive::<arrow::datatypes::Float64Type>();
    Ok((0..col.len())
        .map(|r| (!col.is_null(r)).then(|| col.value(r)))
        .collect())
}
