//! `POST /v1/events`: a batch of events (a JSON array of event objects), validated one
//! by one; valid ones inside the token's scope are produced to Kafka. The answer lists
//! each event's fate; one bad event never stops the others.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use wenming_analytics::Scope;

use crate::app::AppState;
use crate::auth::{Caller, Permission};
use crate::error::ApiError;

/// At most this many events per request.
pub const MAX_BATCH: usize = 1000;

#[derive(Serialize)]
pub struct EventResult {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// `accepted` or `rejected`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

pub async fn publish(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::PublishEvents)?;
    let body = body?;
    let gateway = state.gateway.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the events gateway is off: this server has no Kafka ([ingest] brokers)",
        )
    })?;
    let items: Vec<Value> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the body must be a JSON array of events: {e}"))
    })?;
    if items.len() > MAX_BATCH {
        // 400, not 413: the batch breaks the documented `maxItems`, whatever its bytes.
        return Err(ApiError::bad_request(format!(
            "{} events in one request; send at most {MAX_BATCH}",
            items.len()
        )));
    }
    let units = state.analytics.units(&Scope::City, None).await?;
    let mut results = Vec::with_capacity(items.len());
    let (mut accepted, mut rejected) = (0usize, 0usize);
    for (index, item) in items.into_iter().enumerate() {
        let bytes = serde_json::to_vec(&item).expect("a Value serialises");
        let mut result = EventResult {
            index,
            event_id: None,
            status: "rejected",
            reason: None,
            message: None,
        };
        match wenming_schemas::decode(&bytes) {
            Err(rejection) => {
                result.reason = Some(rejection.reason());
                result.message = Some(rejection.message.clone());
            }
            Ok(event) => {
                result.event_id = Some(event.event_id.to_string());
                let unit = event.unit_id.as_str();
                // A unit registering itself names its area in the event; others must be
                // registered already for a district or street scope to vouch for them.
                let area_code = units
                    .iter()
                    .find(|u| u.unit_id == unit)
                    .map(|u| u.area_code.clone())
                    .or_else(|| item["data"]["area_code"].as_str().map(str::to_string));
                if !in_scope(&caller.scope, unit, area_code.as_deref()) {
                    result.reason = Some("out_of_scope".into());
                    result.message = Some(format!(
                        "the unit {unit:?} is outside the token's scope ({})",
                        caller.scope
                    ));
                } else {
                    match gateway.send(unit, &bytes).await {
                        Ok(()) => result.status = "accepted",
                        Err(message) => {
                            result.reason = Some("not_delivered".into());
                            result.message = Some(message);
                        }
                    }
                }
            }
        }
        if result.status == "accepted" {
            accepted += 1;
        } else {
            rejected += 1;
        }
        results.push(result);
    }
    Ok(
        Json(serde_json::json!({"accepted": accepted, "rejected": rejected, "results": results}))
            .into_response(),
    )
}

fn in_scope(scope: &Scope, unit: &str, area_code: Option<&str>) -> bool {
    match scope {
        Scope::City => true,
        Scope::Unit(id) => id == unit,
        Scope::District(d) => area_code.is_some_and(|a| a.starts_with(d.as_str())),
        Scope::Street(s) => area_code.is_some_and(|a| a.starts_with(s.as_str())),
    }
}
