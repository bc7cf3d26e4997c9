//! `POST /v1/events`: a batch of events (a JSON array of event objects), validated one
//! by one; valid ones inside the token's scope are produced to Kafka. The answer lists
//! each event's fate; one bad event never stops the others.
//!
//! A token writes only inside its scope (`may_write`): the unit must be one of its units
//! as the lake knows them, a registration may not place a unit (or hang it under a
//! parent) outside the scope, and a station token may not move, re-parent or first
//! register its own unit (its district or street does that). A unit outside the scope
//! and a unit that does not exist are refused in the same words.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::HashMap;

use serde_json::Value;
use wenming_analytics::Scope;
use wenming_analytics::engine::UnitView;
use wenming_schemas::EventType;

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
    let all = state.analytics.units(&Scope::City, None).await?;
    let units: HashMap<&str, &UnitView> = all.iter().map(|u| (u.unit_id.as_str(), u)).collect();
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
                let registers = event.event_type() == EventType::UnitRegistered;
                if let Err(message) =
                    may_write(&caller.scope, unit, registers, &item["data"], &units)
                {
                    result.reason = Some("out_of_scope".into());
                    result.message = Some(message);
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

/// Whether a token of `scope` may send an event of `unit` (a `unit.registered` when
/// `registers`, with its `data`), given the units the lake knows.
fn may_write(
    scope: &Scope,
    unit: &str,
    registers: bool,
    data: &Value,
    units: &HashMap<&str, &UnitView>,
) -> Result<(), String> {
    if *scope == Scope::City {
        return Ok(());
    }
    let not_yours = || {
        format!(
            "the unit {unit:?} is not in your scope ({scope}); a unit outside it and a unit that does not exist are refused alike"
        )
    };
    let inside = |area: &str| match scope {
        Scope::City => true,
        Scope::District(d) => area.starts_with(d.as_str()),
        Scope::Street(s) => area.starts_with(s.as_str()),
        Scope::Unit(_) => false,
    };
    let known = units.get(unit);
    // The unit itself: one of the scope's, as the lake knows it.
    let owned = match (scope, known) {
        (Scope::Unit(id), _) => id == unit,
        (_, Some(u)) => inside(&u.area_code),
        // Not registered yet: only its own registration, inside the scope, may name it.
        (_, None) => registers,
    };
    if !owned {
        return Err(not_yours());
    }
    if !registers {
        return Ok(());
    }
    let area = data["area_code"].as_str().unwrap_or_default();
    let parent = data["parent_id"].as_str();
    match scope {
        Scope::Unit(_) => {
            // A station renames or repopulates itself; where it is in the tree is its
            // district's to say.
            let Some(u) = known else {
                return Err(format!(
                    "a station token cannot register its unit {unit:?}: its district or street registers it first"
                ));
            };
            if area != u.area_code || parent != u.parent_id.as_deref() {
                return Err(format!(
                    "a station token cannot move its unit {unit:?} (area_code {} and parent {:?} stay as registered)",
                    u.area_code, u.parent_id
                ));
            }
        }
        _ => {
            if !inside(area) {
                return Err(format!(
                    "the area_code {area:?} is not in your scope ({scope}): a unit cannot be placed outside it"
                ));
            }
            if let Some(p) = parent {
                let same_district = units
                    .get(p)
                    .is_some_and(|pu| pu.district_code == area.get(..6).unwrap_or_default());
                if !same_district {
                    return Err(format!(
                        "the parent {p:?} is not a unit of the district of area_code {area:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn unit(id: &str, area: &str, parent: Option<&str>) -> UnitView {
        UnitView {
            unit_id: id.into(),
            name: id.into(),
            level: "station".into(),
            parent_id: parent.map(str::to_string),
            area_code: area.into(),
            district_code: area[..6].into(),
            street_code: area[..9].into(),
            open: true,
            residents: 0,
        }
    }

    #[test]
    fn tokens_write_only_inside_their_scope() {
        let all = [
            unit("C3", "330203000000", None),
            unit("I31", "330203001000", Some("C3")),
            unit("S1", "330203001001", Some("I31")),
            unit("C5", "330205000000", None),
            unit("S4", "330205001001", Some("C5")),
        ];
        let units: HashMap<&str, &UnitView> = all.iter().map(|u| (u.unit_id.as_str(), u)).collect();
        let d3 = Scope::District("330203".into());
        let st = Scope::Street("330203001".into());
        let s1 = Scope::Unit("S1".into());
        let reg =
            |area: &str, parent: Option<&str>| json!({"area_code": area, "parent_id": parent});
        let ok = |scope: &Scope, unit: &str, registers: bool, data: Value| {
            may_write(scope, unit, registers, &data, &units)
        };
        // Ordinary events of one's own units pass; of another district's, or of a unit
        // nobody registered, are refused in the same words.
        assert!(ok(&d3, "S1", false, json!({})).is_ok());
        assert!(ok(&s1, "S1", false, json!({})).is_ok());
        let other = ok(&d3, "S4", false, json!({})).unwrap_err();
        let nowhere = ok(&d3, "S9", false, json!({})).unwrap_err();
        assert_eq!(other.replace("S4", "?"), nowhere.replace("S9", "?"));
        assert!(ok(&s1, "S4", false, json!({})).is_err());
        // A station renames itself but cannot move, re-parent or first register itself.
        assert!(ok(&s1, "S1", true, reg("330203001001", Some("I31"))).is_ok());
        assert!(ok(&s1, "S1", true, reg("330205001001", Some("I31"))).is_err());
        assert!(ok(&s1, "S1", true, reg("330203001001", Some("C5"))).is_err());
        assert!(
            ok(
                &Scope::Unit("S7".into()),
                "S7",
                true,
                reg("330203001007", Some("I31"))
            )
            .is_err()
        );
        // A district registers inside itself, under its own tree, and takes no unit of
        // another district.
        assert!(ok(&d3, "S7", true, reg("330203001007", Some("I31"))).is_ok());
        assert!(ok(&d3, "S7", true, reg("330205001007", Some("C5"))).is_err());
        assert!(ok(&d3, "S7", true, reg("330203001007", Some("C5"))).is_err());
        assert!(ok(&d3, "S4", true, reg("330203001004", Some("I31"))).is_err());
        assert!(ok(&d3, "S1", true, reg("330205001001", Some("C5"))).is_err());
        // A street stays in its street.
        assert!(ok(&st, "S8", true, reg("330203001008", Some("I31"))).is_ok());
        assert!(ok(&st, "S8", true, reg("330203002008", Some("I31"))).is_err());
        // The city may do anything.
        assert!(ok(&Scope::City, "S4", true, reg("330203001004", None)).is_ok());
    }
}
