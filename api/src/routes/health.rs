//! `GET /healthz` (the process answers), `GET /readyz` (the lake was readable at the last
//! look and ingest runs), `GET /metrics` (OpenMetrics text, admin tokens only).

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

/// The metrics (OpenMetrics text), for admins: the counts are the whole city's.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Permission::Metrics)?;
    let body = crate::metrics::render(&state);
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response())
}
