//! Handlers, thin: extract, check the caller's role, call `analytics`, encode.

pub mod events;
pub mod exports;
pub mod freshness;
pub mod health;
pub mod kpis;
pub mod openapi;
pub mod session;
pub mod sql;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use wenming_analytics::encode::Format;

use crate::app::AppState;
use crate::error::ApiError;

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; GET /openapi.json lists them")
}

/// Counts requests and failures for /metrics.
pub async fn count(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    state.count(!resp.status().is_server_error());
    resp
}

/// Gives every request an id (`error::REQUEST_ID`, for the handler's whole future) and
/// answers it in the header `x-request-id`.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let mut resp = crate::error::REQUEST_ID
        .scope(id.clone(), next.run(req))
        .await;
    resp.headers_mut().insert(
        "x-request-id",
        axum::http::HeaderValue::from_str(&id).expect("hex digits"),
    );
    resp
}

/// Runs a computation on the query runtime and waits for it; aborts it when the request
/// goes away (client hung up, server shutting down): a dropped handler future drops the
/// guard.
pub async fn on_query_runtime<T: Send + 'static>(
    state: &AppState,
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let task = state.query_runtime.spawn(work);
    let _guard = AbortOnDrop(task.abort_handle());
    task.await.map_err(|e| {
        if e.is_panic() {
            crate::error::panicked(e.into_panic());
        }
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the computation stopped; the server log has the details",
        )
    })?
}

/// Content negotiation, once: `Accept` → `Format` (JSON unless CSV or Arrow is asked).
pub fn format_of(headers: &HeaderMap, arrow_allowed: bool) -> Result<Format, ApiError> {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    for part in accept.split(',') {
        let media = part.split(';').next().unwrap_or("").trim();
        match media {
            "application/json" | "application/*" | "*/*" | "" => return Ok(Format::Json),
            "text/csv" => return Ok(Format::Csv),
            "application/vnd.apache.arrow.stream" if arrow_allowed => return Ok(Format::Arrow),
            _ => {}
        }
    }
    Err(ApiError::new(
        axum::http::StatusCode::NOT_ACCEPTABLE,
        format!(
            "cannot answer in {accept:?}: ask for application/json or text/csv{}",
            if arrow_allowed {
                " or application/vnd.apache.arrow.stream"
            } else {
                ""
            }
        ),
    ))
}

pub fn content_type(f: Format) -> &'static str {
    match f {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Arrow => "application/vnd.apache.arrow.stream",
        Format::Table => "text/plain; charset=utf-8",
    }
}
