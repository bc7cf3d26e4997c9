//! `GET /v1/kpis`, `GET /v1/kpis/{name}`, `GET /v1/units`, `GET /v1/quality`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::Deserialize;
use wenming_analytics::encode;
use wenming_analytics::lineage::{At, Lineage};
use wenming_analytics::{Compare, Granularity, Kpi, KpiRequest, Level};

use super::{content_type, format_of};
use crate::app::AppState;
use crate::auth::{Caller, Permission};
use crate::error::ApiError;

pub async fn catalog(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadKpis)?;
    Ok(Json(state.analytics.catalog()).into_response())
}

#[derive(Deserialize, Default, Debug, Clone)]
pub struct KpiParams {
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
    level: Option<String>,
    area: Option<String>,
    compare: Option<String>,
    top: Option<String>,
    /// `csv`, `xlsx` or `json`: a link a browser can download (over `Accept`).
    format: Option<String>,
    /// A lineage's snapshot id, or an instant (RFC 3339): answer from those versions.
    snapshot: Option<String>,
    as_of: Option<String>,
}

impl KpiParams {
    /// The versions asked about (`snapshot` or `as_of`; neither: the newest).
    pub fn at(&self) -> Result<At, ApiError> {
        At::from_params(self.snapshot.as_deref(), self.as_of.as_deref())
            .map_err(ApiError::bad_request)
    }
}

/// `wenming-snapshot` (the answer's snapshot id) and `wenming-lineage` (its lineage as
/// compact JSON): where an answer without a JSON body of its own says where it comes from.
pub fn lineage_headers(resp: &mut Response, lineage: Option<&Lineage>) {
    let Some(lineage) = lineage else {
        return;
    };
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&lineage.snapshot) {
        headers.insert("wenming-snapshot", v);
    }
    let json = serde_json::to_string(lineage).expect("a lineage serialises");
    if let Ok(v) = HeaderValue::from_str(&json) {
        headers.insert("wenming-lineage", v);
    }
}

fn date(name: &str, v: Option<String>) -> Result<NaiveDate, ApiError> {
    let v = v.ok_or_else(|| ApiError::bad_request(format!("`{name}` is required (YYYY-MM-DD)")))?;
    let bad = || ApiError::bad_request(format!("`{name}` must be a date YYYY-MM-DD, not {v:?}"));
    if v.len() != 10 {
        return Err(bad());
    }
    v.parse().map_err(|_| bad())
}

/// A KPI question from the path's name and the query's parameters: every value checked,
/// every mistake a 4xx naming the parameter.
pub fn request(name: &str, p: KpiParams) -> Result<KpiRequest, ApiError> {
    let kpi = Kpi::parse(name).ok_or_else(|| {
        ApiError::not_found(format!("no KPI named {name:?}; GET /v1/kpis lists them"))
    })?;
    Ok(KpiRequest {
        kpi,
        from: date("from", p.from)?,
        to: date("to", p.to)?,
        granularity: p
            .granularity
            .as_deref()
            .unwrap_or("month")
            .parse::<Granularity>()
            .map_err(ApiError::bad_request)?,
        level: p
            .level
            .as_deref()
            .unwrap_or("city")
            .parse::<Level>()
            .map_err(ApiError::bad_request)?,
        area: p.area.filter(|a| !a.is_empty()),
        compare: p
            .compare
            .filter(|c| !c.is_empty())
            .map(|c| c.parse::<Compare>())
            .transpose()
            .map_err(ApiError::bad_request)?,
        top: p
            .top
            .map(|t| {
                t.parse::<usize>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "`top` must be a positive whole number, not {t:?}"
                    ))
                })
            })
            .transpose()?,
    })
}

pub async fn kpi(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<KpiParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadKpis)?;
    let started = std::time::Instant::now();
    let Query(p) = query?;
    let asked_format = p.format.clone();
    let at = p.at()?;
    let req = request(&name, p)?;
    let kpi = req.kpi;
    let format = match asked_format.as_deref().filter(|f| !f.is_empty()) {
        None => Some(format_of(&headers, false)?),
        Some("json") => Some(encode::Format::Json),
        Some("csv") => Some(encode::Format::Csv),
        Some("xlsx") => None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`format` must be json, csv or xlsx, not {other:?}"
            )));
        }
    };
    let cached = match at {
        At::Latest => state.analytics.cached_kpi(&req, &caller.scope).await?,
        _ => None,
    };
    let answer = match cached {
        Some(hit) => hit,
        None => {
            let _slot = state.kpi_slots.acquire(&caller.name).await?;
            let (analytics, scope) = (state.analytics.clone(), caller.scope.clone());
            super::on_query_runtime(&state, async move {
                Ok(analytics.kpi_at(&req, &scope, &at).await?)
            })
            .await?
        }
    };
    state
        .answer_times
        .kpi
        .observe(started.elapsed().as_secs_f64());
    let name = format!("{}_{}_{}", answer.kpi, answer.from, answer.to);
    let Some(format) = format else {
        let (bytes, _) = crate::exports::xlsx(&[(kpi, answer.clone())])
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        let mut resp = (
            [
                (header::CONTENT_TYPE, XLSX.to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.xlsx\""),
                ),
            ],
            bytes,
        )
            .into_response();
        lineage_headers(&mut resp, answer.lineage.as_ref());
        return Ok(resp);
    };
    let body = encode::kpi(format, &answer)?;
    let mut resp = ([(header::CONTENT_TYPE, content_type(format))], body).into_response();
    lineage_headers(&mut resp, answer.lineage.as_ref());
    if format == encode::Format::Csv {
        resp.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}.csv\"")
                .parse()
                .expect("ascii"),
        );
    }
    Ok(resp)
}

#[derive(Deserialize, Default, Debug)]
pub struct ChangesParams {
    #[serde(flatten)]
    question: KpiParams,
    since: Option<String>,
    until: Option<String>,
}

/// A snapshot id, or an instant (RFC 3339) naming the versions current then.
fn snapshot_or_instant(name: &str, v: &str) -> Result<At, ApiError> {
    let v = v.trim();
    let at = if v.starts_with("s") {
        At::from_params(Some(v), None)
    } else {
        At::from_params(None, Some(v))
    };
    at.map_err(|e| ApiError::bad_request(format!("`{name}`: {e}")))
}

/// `GET /v1/kpis/{name}/changes?since=SNAPSHOT[&until=SNAPSHOT]&…`: the cells of the
/// question's answer that differ between the two snapshots (`until`: the newest), each
/// with the new events that explain it (数据修订说明).
pub async fn changes(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<ChangesParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadKpis)?;
    let Query(p) = query?;
    if p.question.snapshot.is_some() || p.question.as_of.is_some() {
        return Err(ApiError::bad_request(
            "a restatement compares `since` with `until`, not `snapshot` or `as_of`",
        ));
    }
    let since = p.since.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::bad_request("`since` is required: the snapshot of the earlier answer (its lineage's `snapshot`)")
    })?;
    let since = snapshot_or_instant("since", since)?;
    let until = match p.until.as_deref().filter(|s| !s.is_empty()) {
        Some(u) => snapshot_or_instant("until", u)?,
        None => At::Latest,
    };
    let req = request(&name, p.question)?;
    let _slot = state.kpi_slots.acquire(&caller.name).await?;
    let (analytics, scope) = (state.analytics.clone(), caller.scope.clone());
    let restated = super::on_query_runtime(&state, async move {
        Ok(analytics.changes(&req, &scope, &since, &until).await?)
    })
    .await?;
    Ok(Json(restated).into_response())
}

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

#[derive(Deserialize)]
pub struct OverviewParams {
    period: Option<String>,
    area: Option<String>,
}

/// `GET /v1/overview?period=YYYY-MM&area=`: the headline KPIs of a month as cards.
pub async fn overview(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<OverviewParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadKpis)?;
    let Query(p) = query?;
    let period = p
        .period
        .ok_or_else(|| ApiError::bad_request("`period` is required: a month YYYY-MM"))?;
    let area = p.area.filter(|a| !a.is_empty());
    let _slot = state.kpi_slots.acquire(&caller.name).await?;
    let (analytics, scope) = (state.analytics.clone(), caller.scope.clone());
    let overview = super::on_query_runtime(&state, async move {
        Ok(analytics.overview(&period, area, &scope).await?)
    })
    .await?;
    Ok(Json(overview).into_response())
}

#[derive(Deserialize)]
pub struct UnitParams {
    date: Option<String>,
}

pub async fn units(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<UnitParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadKpis)?;
    let Query(p) = query?;
    // An empty `date=` is refused like any other non-date, as the schema says.
    let date = p.date.map(|d| date("date", Some(d))).transpose()?;
    let units = state.analytics.units(&caller.scope, date).await?;
    let areas = state.analytics.areas(&caller.scope).await?;
    Ok(Json(serde_json::json!({
        "date": date, "scope": caller.scope.to_string(), "units": units, "areas": areas,
    }))
    .into_response())
}

pub async fn quality(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadKpis)?;
    let report = state.analytics.quality(&caller.scope).await?;
    Ok(Json(report).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(prop_oneof![
            "\\PC{0,16}",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}",
            "(day|week|month|quarter|year|total|city|district|street|unit|mom|yoy|[0-9]{1,25})",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever the parameters: a question whose fields are the ones given, or a 4xx
        /// that names what was wrong.
        #[test]
        fn any_parameters_make_a_question_or_a_clear_refusal(
            name in "(service_hours|volunteer_ranking|\\PC{0,12})",
            from in text(), to in text(), granularity in text(), level in text(),
            area in text(), compare in text(), top in text(),
        ) {
            let p = KpiParams { from, to, granularity, level, area, compare, top, format: None, ..Default::default() };
            match request(&name, p.clone()) {
                Ok(req) => {
                    prop_assert_eq!(req.kpi.name(), name.as_str());
                    prop_assert_eq!(Some(req.from.to_string()), p.from);
                    prop_assert_eq!(Some(req.to.to_string()), p.to);
                    prop_assert_eq!(req.area.clone(), p.area.clone().filter(|a| !a.is_empty()));
                    // And the query layer takes it or refuses it in words.
                    if let Err(e) = req.validate() {
                        prop_assert!(!e.to_string().is_empty());
                    }
                }
                Err(e) => {
                    prop_assert!(e.status.is_client_error(), "{:?}", e);
                    let names = ["KPI", "from", "to", "granularity", "level", "comparison", "compare", "top"];
                    prop_assert!(names.iter().any(|n| e.detail.contains(n)), "{}", e.detail);
                }
            }
        }
    }
}
