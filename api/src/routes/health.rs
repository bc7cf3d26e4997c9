//! `GET /healthz` (the process answers), `GET /readyz` (the lake was readable at the last
//! look and ingest runs), `GET /metrics` (Prometheus text, admin tokens only).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::{Caller, Permission};
use crate::error::ApiError;

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the lake could be read at the last look and in-process ingest still runs:
/// from state the server keeps, with no I/O, so a probe (or a flood of them) costs nothing.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    state.analytics.health().map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the lake is not readable: {e}"),
        )
    })?;
    if let Some(running) = &state.ingest_running
        && !running.load(Relaxed)
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ingest has stopped; the server log says why",
        ));
    }
    // Ready either way (an unprepared KPI is answered, only slower); said so that an
    // operator, or a benchmark, can tell the start is over.
    let prepared = wenming_analytics::Kpi::ALL
        .iter()
        .all(|k| state.analytics.prepared(*k));
    Ok(if prepared {
        "ready\n"
    } else {
        "ready (KPI rollups being prepared)\n"
    }
    .into_response())
}

/// Prometheus text, for admins: the counts are the whole city's.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Permission::Metrics)?;
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE wenming_http_requests_total counter");
    let _ = writeln!(
        out,
        "wenming_http_requests_total {}",
        state.requests.load(Relaxed)
    );
    let _ = writeln!(out, "# TYPE wenming_http_server_errors_total counter");
    let _ = writeln!(
        out,
        "wenming_http_server_errors_total {}",
        state.errors.load(Relaxed)
    );
    let _ = writeln!(out, "# TYPE wenming_sql_slots_free gauge");
    let _ = writeln!(out, "wenming_sql_slots_free {}", state.sql_slots.free());
    let _ = writeln!(out, "# TYPE wenming_kpi_slots_free gauge");
    let _ = writeln!(out, "wenming_kpi_slots_free {}", state.kpi_slots.free());
    if let Some(m) = &state.ingest_metrics {
        out.push_str(&m.render());
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
