//! `POST /v1/sql {"sql": "..."}`: analysts' read-only SQL, within the caller's scope.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use wenming_analytics::encode::{self, Format};

use super::{content_type, format_of};
use crate::app::AppState;
use crate::auth::{Caller, Permission};
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlBody {
    sql: String,
}

/// Aborts the query's task when the request goes away (client hung up, or the
/// server is shutting down): a dropped handler future drops this guard.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub async fn sql(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Sql)?;
    let body = body?;
    let body: SqlBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"sql\": \"SELECT ...\"}}: {e}"
        ))
    })?;
    let format = format_of(&headers, true)?;
    let _slot = state.sql_slots.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "every analyst query slot is busy; try again when one finishes",
        )
    })?;
    let analytics = state.analytics.clone();
    let limits = state.sql_limits.clone();
    let scope = caller.scope.clone();
    let task = state
        .sql_runtime
        .spawn(async move { analytics.sql(&body.sql, &scope, &limits).await });
    let _guard = AbortOnDrop(task.abort_handle());
    let result = task.await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the query task stopped: {e}"),
        )
    })??;
    let bytes = encode::batches(format, &result.schema, &result.batches)?;
    let mut resp = ([(header::CONTENT_TYPE, content_type(format))], bytes).into_response();
    if result.truncated {
        resp.headers_mut().insert(
            "wenming-truncated",
            axum::http::HeaderValue::from_str(&format!("rows capped at {}", limits_rows(&state)))
                .expect("ascii"),
        );
    }
    if format == Format::Json {
        resp.headers_mut()
            .insert("wenming-rows", result.num_rows().into());
    }
    Ok(resp)
}

fn limits_rows(state: &AppState) -> usize {
    state.sql_limits.max_rows
}
