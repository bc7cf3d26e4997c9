//! The query layer: KPIs, SQL and data quality over the lake, with DataFusion.
//!
//! ```text
//!  Delta tables ──► lakehouse (Snapshot: raw tables + views) ──► engine (Analytics)
//!                        │                                          │  cache by versions
//!                  views (current state)                             ├─► kpi::answer
//!                        │ changes (Delta)                           │     frame → rollup → rows
//!                        └──────────────► rollup (per-day facts) ────┤
//!                  reference (units, volunteers as of a moment) ◄────┤
//!                                                                    ├─► sql (read-only, scoped)
//!                                                                    └─► quality
//! ```
//!
//! - `calendar`: periods in the configured time zone, comparisons.
//! - `scope`: levels and scopes; a scope is applied inside every query.
//! - `lakehouse`: the Delta tables and views, refreshed when versions change.
//! - `views`: the current-state views' SQL; `materialized`: each view computed once per
//!   version of its raw table, on first use.
//! - `reference`: units and volunteers in memory, asked "as of" a moment.
//! - `kpi`: the catalog, the frame of a question, the measures (the reference SQL), the
//!   answer's rows.
//! - `rollup`: per-day facts with dense ids that KPI questions are counted from,
//!   updated from each commit's changes.
//! - `overview`: a month's headline KPIs with their changes, for the dashboard.
//! - `quality`: the data-quality report; `runs`: what ingest counted.
//! - `sql`: analysts' read-only SQL; `wall`: the scope wall their tables are seen through.
//! - `engine`: `Analytics`, which the CLI and the API share.
//! - `distributed`: KPI and SQL plans on a Ballista cluster (`[analytics] engine`), with
//!   the scope in the plan before it leaves; the codec the cluster's processes share.
//!
//! Never imports axum: the API is a thin layer over `Analytics`.

pub mod calendar;
pub mod distributed;
pub mod encode;
pub mod engine;
pub mod error;
pub mod history;
pub mod kpi;
pub mod lakehouse;
pub mod lineage;
pub mod materialized;
pub mod overview;
mod past;
pub mod quality;
pub mod reference;
pub mod restatement;
pub mod rollup;
pub mod runs;
pub mod scope;
pub mod sql;
pub mod views;
pub mod wall;

pub use calendar::{Compare, Granularity};
pub use engine::{Analytics, Freshness, KpiLimits, Settings};
pub use error::AnalyticsError;
pub use kpi::{Kpi, KpiInfo, KpiRequest, KpiResponse, Num, Row};
pub use scope::{Level, Scope};
