//! `POST /v1/sql {"sql": "..."}`: analysts' read-only SQL, within the caller's scope.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use wenming_analytics::encode::{self, Format};
use wenming_analytics::lineage::At;

use super::{content_type, format_of};
use crate::app::AppState;
use crate::auth::{Caller, Permission};
use crate::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlBody {
    sql: String,
    /// A lineage's snapshot id, or an instant (RFC 3339): query those versions.
    #[serde(default)]
    snapshot: Option<String>,
    #[serde(default)]
    as_of: Option<String>,
}

pub async fn sql(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Sql)?;
    let started = std::time::Instant::now();
    let body = body?;
    let body: SqlBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"sql\": \"SELECT ...\"}}: {e}"
        ))
    })?;
    let at = At::from_params(body.snapshot.as_deref(), body.as_of.as_deref())
        .map_err(ApiError::bad_request)?;
    let format = format_of(&headers, true)?;
    let _slot = state.sql_slots.acquire(&caller.name).await?;
    let analytics = state.analytics.clone();
    let limits = state.sql_limits.clone();
    let scope = caller.scope.clone();
    let result = super::on_query_runtime(&state, async move {
        Ok(analytics.sql_at(&body.sql, &scope, &limits, &at).await?)
    })
    .await?;
    let bytes = encode::batches(format, &result.schema, &result.batches)?;
    state
        .answer_times
        .sql
        .observe(started.elapsed().as_secs_f64());
    let mut resp = ([(header::CONTENT_TYPE, content_type(format))], bytes).into_response();
    super::kpis::lineage_headers(&mut resp, result.lineage.as_ref());
    if let Some(cut) = result.truncated {
        resp.headers_mut().insert(
            "wenming-truncated",
            axum::http::HeaderValue::from_str(&cut.to_string()).expect("ascii"),
        );
    }
    if format == Format::Json {
        resp.headers_mut()
            .insert("wenming-rows", result.num_rows().into());
    }
    Ok(resp)
}
