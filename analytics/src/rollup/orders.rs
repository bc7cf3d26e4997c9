//! The orders rollup: every order (they are few: tens of thousands a year at city scale)
//! with the local day it was placed, its unit and what its events made of it. Answers
//! orders_placed, order_completion_rate, order_response_minutes_p50 and
//! order_satisfaction.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use chrono_tz::Tz;

use super::days::LocalDays;
use super::grid::{Grid, OUTSIDE};
use super::{Interner, PerDay, bool_column, float_column, int_column, str_column};
use crate::error::AnalyticsError;
use crate::kpi::Kpi;
use crate::kpi::measure::{Cells, Key};

#[derive(Debug, Clone, Copy)]
struct Order {
    unit: u32,
    completed: bool,
    /// Minutes to its earliest acceptance, when accepted.
    response: Option<f64>,
    score: Option<f64>,
}

pub struct Orders {
    pub units: Vec<Arc<str>>,
    days: PerDay<Vec<Order>>,
}

pub const SQL: &str = "SELECT unit_id, CAST(placed_at AS BIGINT), completed, \
       CASE WHEN accepted_at IS NOT NULL THEN response_minutes END, score \
     FROM orders WHERE placed_at IS NOT NULL";

impl Orders {
    pub fn from_batches(batches: &[RecordBatch], tz: Tz) -> Result<Orders, AnalyticsError> {
        let mut local = LocalDays::new(tz);
        let mut units = Interner::default();
        let mut by_day: HashMap<i32, Vec<Order>> = HashMap::new();
        for batch in batches {
            let unit = str_column(batch, 0)?;
            let placed = int_column(batch, 1)?;
            let completed = bool_column(batch, 2)?;
            let response = float_column(batch, 3)?;
            let score = float_column(batch, 4)?;
            for i in 0..batch.num_rows() {
                let Some(placed) = placed.get(i) else {
                    continue;
                };
                by_day.entry(local.day(placed)).or_default().push(Order {
                    unit: units.intern(unit.value_or_empty(i)),
                    completed: completed.is_true(i),
                    response: response.get(i),
                    score: score.get(i),
                });
            }
        }
        Ok(Orders {
            units: units.into_ids(),
            days: PerDay::from_map(by_day, |orders| orders),
        })
    }

    pub fn measure(&self, kpi: Kpi, grid: &Grid<'_>) -> Cells {
        let area = grid.areas_of(&self.units);
        let (first, end) = grid.days();
        let mut num = vec![0.0; grid.cells()];
        let mut den = vec![0.0; grid.cells()];
        let mut medians: HashMap<usize, Vec<f64>> = HashMap::new();
        for (day, orders) in self.days.range(first, end) {
            let b = grid.bucket(day) as usize;
            for o in orders {
                let a = area[o.unit as usize];
                if a == OUTSIDE {
                    continue;
                }
                let c = grid.cell(b, a);
                match kpi {
                    Kpi::OrdersPlaced => num[c] += 1.0,
                    Kpi::OrderCompletionRate => {
                        num[c] += o.completed as i64 as f64;
                        den[c] += 1.0;
                    }
                    Kpi::OrderResponseMinutesP50 => {
                        if let Some(m) = o.response {
                            medians.entry(c).or_default().push(m);
                        }
                    }
                    _ => {
                        if let Some(s) = o.score {
                            num[c] += s;
                            den[c] += 1.0;
                        }
                    }
                }
            }
        }
        if kpi == Kpi::OrderResponseMinutesP50 {
            let cells: HashMap<Key, Vec<f64>> =
                medians.into_iter().map(|(c, v)| (grid.key(c), v)).collect();
            return Cells::Median(cells);
        }
        Cells::Plain(grid.plain(&num, Some(&den)))
    }
}
