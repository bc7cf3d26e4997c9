//! `POST /v1/session` (log in with a token or a one-time code), `GET /v1/session` (who
//! am I), `DELETE /v1/session` (log out): the dashboard's login (see `session`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{Caller, Permission, TokenEntry};
use crate::error::ApiError;
use crate::session::{COOKIE, IDLE, from_cookies};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    token: Option<String>,
    code: Option<String>,
}

/// What the page needs to know of its caller: never the token.
async fn me_json(state: &AppState, caller: &Caller) -> Value {
    let code = match &caller.scope {
        wenming_analytics::Scope::City => None,
        wenming_analytics::Scope::District(c)
        | wenming_analytics::Scope::Street(c)
        | wenming_analytics::Scope::Unit(c) => Some(c.clone()),
    };
    let scope_name = match &code {
        Some(c) => state.analytics.area_name(c).await.ok().flatten(),
        None => Some("全市".to_string()),
    };
    json!({
        "authenticated": true,
        "name": caller.name,
        "role": caller.role.name(),
        "scope": caller.scope.to_string(),
        "scope_name": scope_name,
        "can": {
            "sql": caller.role.allows(Permission::Sql),
            "run_exports": caller.role.allows(Permission::RunExports),
            "metrics": caller.role.allows(Permission::Metrics),
        },
    })
}

/// Who the caller is; `{"authenticated": false}` (200, not 401) when nobody is logged
/// in, so that the page can ask without a failed request in the browser's console.
pub async fn me(
    State(state): State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
) -> Result<Json<Value>, ApiError> {
    match caller {
        Ok(caller) => Ok(Json(me_json(&state, &caller).await)),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Ok(Json(json!({"authenticated": false}))),
        Err(e) => Err(e),
    }
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let login: Login = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"token\": \"...\"}} or {{\"code\": \"...\"}}: {e}"
        ))
    })?;
    let entry: TokenEntry = match (login.token, login.code) {
        (Some(token), None) => state.check_token(token.trim(), Some(client.ip()))?,
        (None, Some(code)) => state
            .sessions
            .redeem(code.trim())
            .ok_or_else(|| ApiError::unauthorized("the login code is unknown, used or expired"))?,
        _ => {
            return Err(ApiError::bad_request(
                "send either a token or a code, not both",
            ));
        }
    };
    let id = state.sessions.open(entry.clone());
    let caller = Caller::from(&entry);
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        IDLE.as_secs()
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(me_json(&state, &caller).await),
    )
        .into_response())
}

pub async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(id) = from_cookies(&headers) {
        state.sessions.close(&id);
    }
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
    )
        .into_response()
}
