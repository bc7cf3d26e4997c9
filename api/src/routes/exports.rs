//! `GET /v1/exports`, `POST /v1/exports/{name}/run?period=2024-03`,
//! `GET /v1/exports/{name}/files/{period}/{file}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use wenming_analytics::lineage::At;

use crate::app::AppState;
use crate::auth::{Caller, Permission};
use crate::error::ApiError;
use crate::exports::ExportError;

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> ApiError {
        match e {
            ExportError::Unknown(_) => ApiError::not_found(e.to_string()),
            ExportError::Period(_) | ExportError::Config { .. } => {
                ApiError::bad_request(e.to_string())
            }
            ExportError::Query(q) => q.into(),
            ExportError::Write { .. } => {
                tracing::error!(error = %e, "export failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the export could not be written; the server log has the details",
                )
            }
        }
    }
}

/// Exports visible to the caller (those whose scope meets the caller's), each with the
/// scope its runs cover for the caller and the periods run for that scope.
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadKpis)?;
    let list: Vec<_> = state
        .exports
        .visible(&caller.scope)
        .into_iter()
        .map(|(e, scope)| {
            serde_json::json!({
                "name": e.name, "schedule": e.schedule_text, "tz": e.tz.name(),
                "kpis": e.kpis.iter().map(|k| k.name()).collect::<Vec<_>>(),
                "level": e.level, "granularity": e.granularity, "period": e.period,
                "scope": scope.to_string(), "formats": e.formats,
                "runs": state.exports.runs(e, &scope),
            })
        })
        .collect();
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
pub struct RunParams {
    period: Option<String>,
    /// A manifest's `lineage.snapshot`, or an instant: run from those versions.
    snapshot: Option<String>,
    as_of: Option<String>,
}

pub async fn run(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<RunParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::RunExports)?;
    let Query(p) = query?;
    let period = p
        .period
        .ok_or_else(|| ApiError::bad_request("`period` is required: YYYY-MM, YYYY-Qn or YYYY"))?;
    let at = At::from_params(p.snapshot.as_deref(), p.as_of.as_deref())
        .map_err(ApiError::bad_request)?;
    let manifest = state
        .exports
        .run(&name, &period, &caller.scope, &at)
        .await?;
    Ok(Json(manifest).into_response())
}

pub async fn file(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((name, period, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadKpis)?;
    let path = state
        .exports
        .file(&name, &caller.scope, &period, &file)?
        .ok_or_else(|| ApiError::not_found(format!("no file {file:?} for {name} {period}")))?;
    let bytes = tokio::fs::read(&path).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the file: {e}"),
        )
    })?;
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => "text/csv; charset=utf-8",
        Some("json") => "application/json",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/vnd.apache.parquet",
    };
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}
