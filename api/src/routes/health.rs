//! `GET /healthz` (the process answers), `GET /readyz` (the lake is readable and the
//! broker reachable), `GET /metrics` (Prometheus text).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    state.analytics.refresh().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the lake is not readable: {e}"),
        )
    })?;
    if let Some(brokers) = &state.brokers {
        let brokers = brokers.clone();
        let reachable = tokio::task::spawn_blocking(move || broker_reachable(&brokers))
            .await
            .unwrap_or(false);
        if !reachable {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the broker at {} does not answer",
                    state.brokers.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    Ok("ready\n".into_response())
}

fn broker_reachable(brokers: &str) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: Result<BaseConsumer, _> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("log_level", "0")
        .create();
    consumer.is_ok_and(|c| c.fetch_metadata(None, Duration::from_secs(3)).is_ok())
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
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
    let _ = writeln!(
        out,
        "wenming_sql_slots_free {}",
        state.sql_slots.available_permits()
    );
    if let Some(m) = &state.ingest_metrics {
        out.push_str(&m.render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
