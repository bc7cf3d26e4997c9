//! `/metrics`: the API's counters and answer-time histograms, and in-process ingest's,
//! in the OpenMetrics text format (`prometheus-client`).

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use wenming_ingest::metrics::seconds_histogram;

use crate::app::AppState;

pub use wenming_ingest::metrics::CONTENT_TYPE;

/// How long answers took, from the request to the body: KPI questions (cached or
/// computed) and analysts' SQL.
#[derive(Debug)]
pub struct AnswerTimes {
    pub kpi: Histogram,
    pub sql: Histogram,
}

impl Default for AnswerTimes {
    fn default() -> Self {
        AnswerTimes {
            kpi: seconds_histogram(),
            sql: seconds_histogram(),
        }
    }
}

/// Every metric of the process, as text (the counts are the whole city's).
pub fn render(state: &AppState) -> String {
    let mut registry = Registry::default();
    registry.register(
        "wenming_http_requests",
        "HTTP requests answered",
        ConstCounter::new(state.requests.load(Relaxed)),
    );
    registry.register(
        "wenming_http_server_errors",
        "HTTP requests answered with a 5xx",
        ConstCounter::new(state.errors.load(Relaxed)),
    );
    registry.register(
        "wenming_sql_slots_free",
        "Analyst queries that could start now",
        ConstGauge::new(state.sql_slots.free() as i64),
    );
    registry.register(
        "wenming_kpi_slots_free",
        "KPI computations that could start now",
        ConstGauge::new(state.kpi_slots.free() as i64),
    );
    registry.register_with_unit(
        "wenming_kpi_answer",
        "Time to answer a KPI question (cached or computed)",
        Unit::Seconds,
        state.answer_times.kpi.clone(),
    );
    registry.register_with_unit(
        "wenming_sql_answer",
        "Time to answer an analyst's SQL query over HTTP",
        Unit::Seconds,
        state.answer_times.sql.clone(),
    );
    if let Some(m) = &state.ingest_metrics {
        m.register(&mut registry);
    }
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String");
    out
}
