//! `Application`: the router and its shared state, built from settings and an
//! `Analytics`, bound to a port (0 in tests) and run until `shutdown`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use wenming_analytics::Analytics;
use wenming_analytics::sql::SqlLimits;

use crate::auth::{Attempts, Tokens};
use crate::routes;
use crate::slots::Slots;

/// Everything a handler may need, shared.
pub struct AppState {
    pub analytics: Arc<Analytics>,
    pub tokens: Tokens,
    /// Failed token checks per client address (rate limit).
    pub attempts: Attempts,
    /// The dashboard's browser sessions and the demo's one-time codes.
    pub sessions: crate::session::Sessions,
    /// The dashboard's files.
    pub web: crate::web::Web,
    /// Turns true when the server is stopping: long-lived answers (the freshness stream)
    /// end then, so that the graceful shutdown does not wait on them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    pub sql_limits: SqlLimits,
    /// Analyst queries running at once, in all and per token; a request finding none
    /// free gets 429.
    pub sql_slots: Slots,
    /// KPI questions being computed at once (cached answers need none), in all and per
    /// token; a question waits a little for one, then gets 429.
    pub kpi_slots: Slots,
    /// Analyst SQL and KPI computations run here, not on the runtime that serves
    /// requests, so that heavy questions cannot starve health checks and cached answers
    /// of threads.
    pub query_runtime: tokio::runtime::Handle,
    /// Where `POST /v1/events` publishes (None: the gateway is off).
    pub gateway: Option<crate::gateway::Gateway>,
    /// Ingest counters when ingest runs in this process (for /metrics).
    pub ingest_metrics: Option<Arc<wenming_ingest::metrics::Metrics>>,
    /// Whether in-process ingest still runs (None: not in this process); /readyz reads it.
    pub ingest_running: Option<Arc<std::sync::atomic::AtomicBool>>,
    pub exports: Arc<crate::exports::Exports>,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Answer-time histograms for /metrics.
    pub answer_times: crate::metrics::AnswerTimes,
}

impl AppState {
    pub fn count(&self, ok: bool) {
        self.requests.fetch_add(1, Relaxed);
        if !ok {
            self.errors.fetch_add(1, Relaxed);
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for view in crate::web::VIEWS {
        router = router.route(view, get(crate::web::page));
    }
    router
        .route("/stations/{id}", get(crate::web::page))
        .route("/assets/{file}", get(crate::web::asset))
        .route(
            "/v1/session",
            get(routes::session::me)
                .post(routes::session::login)
                .delete(routes::session::logout),
        )
        .route("/v1/overview", get(routes::kpis::overview))
        .route("/v1/freshness", get(routes::freshness::now))
        .route("/v1/freshness/stream", get(routes::freshness::stream))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route("/openapi.json", get(routes::openapi::openapi))
        .route("/v1/kpis", get(routes::kpis::catalog))
        .route("/v1/kpis/{name}", get(routes::kpis::kpi))
        .route("/v1/kpis/{name}/changes", get(routes::kpis::changes))
        .route("/v1/units", get(routes::kpis::units))
        .route("/v1/quality", get(routes::kpis::quality))
        .route("/v1/sql", post(routes::sql::sql))
        .route("/v1/events", post(routes::events::publish))
        .route("/v1/exports", get(routes::exports::list))
        .route("/v1/exports/{name}/run", post(routes::exports::run))
        .route(
            "/v1/exports/{name}/files/{period}/{file}",
            get(routes::exports::file),
        )
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(8 << 20))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            crate::error::panicked,
        ))
        .layer(axum::middleware::from_fn(crate::web::secure))
        .layer(axum::middleware::from_fn(routes::request_id))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::count,
        ))
        .with_state(state)
}

/// A bound, ready-to-run API.
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    pub async fn build(listen: &str, state: Arc<AppState>) -> std::io::Result<Application> {
        let listener = TcpListener::bind(listen).await?;
        Ok(Application {
            listener,
            router: router(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The client's address reaches the token check (its rate limit).
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panic_in_a_handler_is_a_500_with_the_request_id_and_the_server_goes_on() {
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                crate::error::panicked,
            ))
            .layer(axum::middleware::from_fn(crate::web::secure))
            .layer(axum::middleware::from_fn(routes::request_id));
        let resp = app
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["request_id"], id.as_str());
        assert!(
            !problem["detail"].as_str().unwrap().contains("boom"),
            "{problem}"
        );
        let fine = app
            .oneshot(Request::get("/fine").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(fine.status(), 200);
    }
}
