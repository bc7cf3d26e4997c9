//! `GET /openapi.json`: the OpenAPI 3.1 document, built from the routes' table below and
//! the KPI catalog (so the `name` parameter lists exactly the KPIs there are).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::app::AppState;

/// (method, path, summary, auth, parameters, success response schema).
struct Route {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: bool,
    params: &'static [(&'static str, &'static str, bool, &'static str)],
    ok: &'static str,
    body: Option<&'static str>,
}

const Q: &str = "query";
const P: &str = "path";

const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/healthz",
        summary: "The process answers",
        auth: false,
        params: &[],
        ok: "text",
        body: None,
    },
    Route {
        method: "get",
        path: "/readyz",
        summary: "The lake was readable at the last look and ingest runs (no I/O)",
        auth: false,
        params: &[],
        ok: "text",
        body: None,
    },
    Route {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (admin tokens)",
        auth: true,
        params: &[],
        ok: "metrics",
        body: None,
    },
    Route {
        method: "get",
        path: "/openapi.json",
        summary: "This document",
        auth: false,
        params: &[],
        ok: "object",
        body: None,
    },
    Route {
        method: "get",
        path: "/v1/kpis",
        summary: "The KPI catalog",
        auth: true,
        params: &[],
        ok: "Catalog",
        body: None,
    },
    Route {
        method: "get",
        path: "/v1/kpis/{name}",
        summary: "A KPI over periods and areas, in the caller's scope",
        auth: true,
        params: &[
            ("name", P, true, "kpi"),
            ("from", Q, true, "date"),
            ("to", Q, true, "date"),
            ("granularity", Q, false, "granularity"),
            ("level", Q, false, "level"),
            ("area", Q, false, "string"),
            ("compare", Q, false, "compare"),
            ("top", Q, false, "integer"),
            ("format", Q, false, "format"),
            ("snapshot", Q, false, "snapshot"),
            ("as_of", Q, false, "instant"),
        ],
        ok: "KpiResponse",
        body: None,
    },
    Route {
        method: "get",
        path: "/v1/kpis/{name}/changes",
        summary: "Restatement (数据修订说明): the cells of the answer that differ between two snapshots, each with the events that explain it",
        auth: true,
        params: &[
            ("name", P, true, "kpi"),
            ("from", Q, true, "date"),
            ("to", Q, true, "date"),
            ("granularity", Q, false, "granularity"),
            ("level", Q, false, "level"),
            ("area", Q, false, "string"),
            ("top", Q, false, "integer"),
            ("since", Q, true, "snapshot"),
            ("until", Q, false, "snapshot"),
        ],
        ok: "Restatement",
        body: None,
    },
    Route {
        method: "get",
        path: "/v1/overview",
        summary: "A month's headline KPIs as cards, with month-on-month and year-on-year changes",
        auth: true,
        params: &[("period", Q, true, "month"), ("area", Q, false, "string")],
        ok: "object",
        body: None,
    },
    Route {
        method: "get",
        path: "/v1/freshness",
        summary: "The span of events the lake holds and its last commit",
        auth: true,
        params: &[],
        ok: "object",
        body: None,
    },
    Route {
        method: "get",
        path: "/v1/freshness/stream",
        summary: "The same as server-sent events: one `lake` event now and one each time the lake moves",
        auth: true,
        params: &[],
        ok: "events",
        body: None,
    },
    Route {
        method: "get",
        path: "/v1/session",
        summary: "Who the caller is (the dashboard's login); {\"authenticated\": false} when nobody is",
        auth: false,
        params: &[],
        ok: "object",
        body: None,
    },
    Route {
        method: "post",
        path: "/v1/session",
        summary: "Log in with a token (or the demo's one-time code): a session cookie",
        auth: false,
        params: &[],
        ok: "object",
        body: Some("Login"),
    },
    Route {
        method: "delete",
        path: "/v1/session",
        summary: "Log out",
        auth: false,
        params: &[],
        ok: "none",
        body: None,
    },
    Route {
        method: "get",
        path: "/v1/units",
        summary: "The unit tree as of a date",
        auth: true,
        params: &[("date", Q, false, "date")],
        ok: "object",
        body: None,
    },
    Route {
        method: "get",
        path: "/v1/quality",
        summary: "The data-quality report",
        auth: true,
        params: &[],
        ok: "object",
        body: None,
    },
    Route {
        method: "post",
        path: "/v1/sql",
        summary: "Read-only SQL over the published tables (JSON, CSV or Arrow IPC by Accept)",
        auth: true,
        params: &[],
        ok: "array",
        body: Some("SqlRequest"),
    },
    Route {
        method: "post",
        path: "/v1/events",
        summary: "Publish a batch of events (station apps)",
        auth: true,
        params: &[],
        ok: "EventResults",
        body: Some("EventBatch"),
    },
    Route {
        method: "get",
        path: "/v1/exports",
        summary: "Configured exports and their runs",
        auth: true,
        params: &[],
        ok: "array",
        body: None,
    },
    Route {
        method: "post",
        path: "/v1/exports/{name}/run",
        summary: "Run an export for a period",
        auth: true,
        params: &[
            ("name", P, true, "string"),
            ("period", Q, true, "string"),
            ("snapshot", Q, false, "snapshot"),
            ("as_of", Q, false, "instant"),
        ],
        ok: "object",
        body: None,
    },
    Route {
        method: "get",
        path: "/v1/exports/{name}/files/{period}/{file}",
        summary: "A file of an export run",
        auth: true,
        params: &[
            ("name", P, true, "string"),
            ("period", P, true, "string"),
            ("file", P, true, "string"),
        ],
        ok: "binary",
        body: None,
    },
];

fn schema_of(kind: &str, kpis: &[String]) -> Value {
    match kind {
        "date" => json!({"type": "string", "format": "date"}),
        "integer" => json!({"type": "integer", "minimum": 1}),
        "kpi" => json!({"type": "string", "enum": kpis}),
        "granularity" => {
            json!({"type": "string", "enum": ["day", "week", "month", "quarter", "year", "total"]})
        }
        "level" => json!({"type": "string", "enum": ["city", "district", "street", "unit"]}),
        "compare" => json!({"type": "string", "enum": ["mom", "yoy"]}),
        "format" => json!({"type": "string", "enum": ["json", "csv", "xlsx"]}),
        "snapshot" => json!({"type": "string", "pattern": "^s1(\\.([0-9]+|_))+$",
            "description": "a snapshot id: an answer's lineage.snapshot (or, for since/until, an instant)"}),
        "instant" => json!({"type": "string", "format": "date-time",
            "description": "answer from the table versions current at this instant"}),
        "month" => json!({"type": "string", "pattern": "^[1-9][0-9]{3}-(0[1-9]|1[0-2])$"}),
        "text" | "metrics" => json!({"type": "string"}),
        "binary" => json!({"type": "string", "format": "binary"}),
        "object" => json!({"type": "object"}),
        "array" => json!({"type": "array"}),
        "string" => json!({"type": "string"}),
        name => json!({"$ref": format!("#/components/schemas/{name}")}),
    }
}

pub fn document(kpis: &[String]) -> Value {
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let params: Vec<Value> = r
            .params
            .iter()
            .map(|(name, inn, required, kind)| json!({"name": name, "in": inn, "required": required, "schema": schema_of(kind, kpis)}))
            .collect();
        let ok_type = match r.ok {
            "text" => "text/plain",
            "metrics" => "application/openmetrics-text",
            "binary" => "application/octet-stream",
            "events" => "text/event-stream",
            _ => "application/json",
        };
        let mut responses = serde_json::Map::new();
        let ok_schema = match r.ok {
            "events" => json!({"type": "string"}),
            other => schema_of(other, kpis),
        };
        let mut content = json!({ok_type: {"schema": ok_schema}});
        // KPI rows and SQL results also come as CSV, SQL results as Arrow IPC (by Accept).
        if matches!(r.path, "/v1/kpis/{name}" | "/v1/sql") {
            content["text/csv"] = json!({"schema": {"type": "string"}});
        }
        if r.path == "/v1/sql" {
            content["application/vnd.apache.arrow.stream"] =
                json!({"schema": {"type": "string", "format": "binary"}});
        }
        if r.path == "/v1/kpis/{name}" {
            content["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"] =
                json!({"schema": {"type": "string", "format": "binary"}});
        }
        if r.ok == "none" {
            responses.insert("204".into(), json!({"description": "Done"}));
        } else {
            responses.insert(
                "200".into(),
                json!({"description": "OK", "content": content}),
            );
        }
        let problem = json!({"description": "A problem (RFC 9457)", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
        for code in ["400", "404", "500"] {
            responses.insert(code.into(), problem.clone());
        }
        if r.auth {
            // 429: too many unknown tokens from the caller's address.
            for code in ["401", "403", "429"] {
                responses.insert(code.into(), problem.clone());
            }
        }
        if r.path == "/readyz" {
            responses.insert("503".into(), problem.clone());
        }
        // Bodies over the size limit; the events gateway without a broker.
        let extra: &[&str] = match r.path {
            "/v1/sql" => &["406", "408", "410", "413", "422"],
            "/v1/events" => &["413", "503"],
            "/v1/kpis/{name}" => &["406", "408", "410", "422"],
            "/v1/kpis/{name}/changes" => &["408", "410", "422"],
            "/v1/exports/{name}/run" => &["408", "410", "422"],
            "/v1/overview" => &["408", "422", "429"],
            "/v1/session" => &["401", "403", "429"],
            _ => &[],
        };
        for code in extra {
            responses.insert((*code).into(), problem.clone());
        }
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": responses,
        });
        if r.auth {
            op["security"] = json!([{"bearer": []}, {"session": []}]);
        }
        if let Some(body) = r.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_of(body, kpis)}}});
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    let nullable_number = json!({"type": ["number", "null"]});
    let history = history_schemas(&nullable_number);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "wenming", "version": env!("CARGO_PKG_VERSION"),
                 "description": "KPIs, SQL and exports of the New Era Civilization Practice network"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "wenming_session",
                    "description": "the dashboard's login (POST /v1/session); changes also need the header x-wenming"}},
            "schemas": {
                "Problem": {"type": "object", "required": ["title", "status", "detail"], "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"},
                    "status": {"type": "integer"}, "detail": {"type": "string"},
                    "request_id": {"type": "string", "description": "in server errors: the id the server log has the details under"}}},
                "Catalog": {"type": "array", "items": {"type": "object", "required": ["name", "title_zh", "title_en", "unit", "definition"],
                    "properties": {"name": {"type": "string"}, "title_zh": {"type": "string"}, "title_en": {"type": "string"},
                                   "group": {"type": "string"}, "unit": {"type": "string"}, "shape": {"type": "string"},
                                   "definition": {"type": "string"}, "target": {"type": "number"}}}},
                "KpiResponse": {"type": "object", "required": ["kpi", "from", "to", "granularity", "level", "rows"], "properties": {
                    "kpi": {"type": "string"}, "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                    "granularity": {"type": "string"}, "level": {"type": "string"}, "area": {"type": ["string", "null"]},
                    "compare": {"type": "string"},
                    "data_from": {"type": ["string", "null"], "format": "date-time"},
                    "data_through": {"type": ["string", "null"], "format": "date-time"},
                    "rows": {"type": "array", "items": {"type": "object", "required": ["period", "area", "value", "numerator", "denominator"],
                        "properties": {"period": {"type": "string", "format": "date"}, "area": {"type": "string"},
                            "area_name": {"type": "string"}, "small_base": {"type": "boolean"},
                            "star": {"type": "integer"}, "rank": {"type": "integer"}, "volunteer_id": {"type": "string"},
                            "value": nullable_number, "numerator": nullable_number, "denominator": nullable_number,
                            "previous": nullable_number, "change": nullable_number}}}}},
                "Login": {"type": "object", "properties": {"token": {"type": "string"}, "code": {"type": "string"}}, "additionalProperties": false,
                    "description": "either a token or a one-time code"},
                "EventBatch": {"type": "array", "maxItems": crate::routes::events::MAX_BATCH,
                    "description": "Events of the contract. Each is judged on its own: an item that is not a valid event (not even an object) is rejected in its result, and the others still go through.",
                    "items": {"description": "an event object"}},
                "EventResults": {"type": "object", "required": ["accepted", "rejected", "results"], "properties": {
                    "accepted": {"type": "integer"}, "rejected": {"type": "integer"},
                    "results": {"type": "array", "items": {"type": "object", "required": ["index", "status"], "properties": {
                        "index": {"type": "integer"}, "event_id": {"type": "string"},
                        "status": {"type": "string", "enum": ["accepted", "rejected"]},
                        "reason": {"type": "string"}, "message": {"type": "string"}}}}}},
            }
        }
    });
    for (name, schema) in history {
        doc["components"]["schemas"][name] = schema;
    }
    doc["components"]["schemas"]["KpiResponse"]["properties"]["lineage"] =
        json!({"$ref": "#/components/schemas/Lineage"});
    doc
}

/// The schemas of lineage and restatements (kept apart: one `json!` this large exceeds
/// the macro's recursion limit).
fn history_schemas(nullable_number: &Value) -> Vec<(&'static str, Value)> {
    vec![
        (
            "SqlRequest",
            json!({"type": "object", "required": ["sql"], "properties": {"sql": {"type": "string"},
                    "snapshot": {"type": "string", "description": "query the versions of this snapshot id"},
                    "as_of": {"type": "string", "format": "date-time", "description": "query the versions current at this instant"}},
                    "additionalProperties": false,
                    "description": "the answer's snapshot comes back in the headers wenming-snapshot and wenming-lineage"}),
        ),
        (
            "Lineage",
            json!({"type": "object", "required": ["snapshot", "tables", "kpi_catalog", "tz"], "properties": {
                    "snapshot": {"type": "string", "description": "names every table version at once; ask again with ?snapshot= for the identical answer"},
                    "tables": {"type": "object", "additionalProperties": {"type": "object", "required": ["version", "committed_at"],
                        "properties": {"version": {"type": "integer"}, "committed_at": {"type": "string", "format": "date-time"}}}},
                    "kpi_catalog": {"type": "string"}, "tz": {"type": "string"}}}),
        ),
        (
            "Restatement",
            json!({"type": "object", "required": ["kpi", "since", "until", "events", "changes"], "properties": {
                    "kpi": {"type": "string"}, "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                    "granularity": {"type": "string"}, "level": {"type": "string"}, "area": {"type": ["string", "null"]},
                    "since": {"$ref": "#/components/schemas/Lineage"}, "until": {"$ref": "#/components/schemas/Lineage"},
                    "events": {"$ref": "#/components/schemas/Causes"},
                    "changes": {"type": "array", "items": {"type": "object", "required": ["period", "area", "old", "new", "causes"], "properties": {
                        "period": {"type": "string", "format": "date"}, "area": {"type": "string"}, "area_name": {"type": "string"},
                        "star": {"type": "integer"}, "rank": {"type": "integer"},
                        "old": nullable_number.clone(), "new": nullable_number.clone(),
                        "old_numerator": nullable_number.clone(), "new_numerator": nullable_number.clone(),
                        "old_denominator": nullable_number.clone(), "new_denominator": nullable_number.clone(),
                        "old_volunteer_id": {"type": "string"}, "new_volunteer_id": {"type": "string"},
                        "causes": {"$ref": "#/components/schemas/Causes"}}}}}}),
        ),
        (
            "Causes",
            json!({"type": "object", "description": "the new events feeding a cell, by kind; they add up to all of them",
                    "properties": {"late": {"type": "integer"}, "new": {"type": "integer"}, "amended": {"type": "integer"},
                        "revoked": {"type": "integer"}, "duplicates": {"type": "integer"}, "updated": {"type": "integer"},
                        "units": {"type": "integer"}, "volunteers": {"type": "integer"}}}),
        ),
    ]
}

pub async fn openapi(State(state): State<Arc<AppState>>) -> Json<Value> {
    let kpis: Vec<String> = state
        .analytics
        .catalog()
        .into_iter()
        .map(|k| k.name.to_string())
        .collect();
    Json(document(&kpis))
}
