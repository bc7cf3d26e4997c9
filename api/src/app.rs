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

use crate::auth::Tokens;
use crate::routes;

/// Everything a handler may need, shared.
pub struct AppState {
    pub analytics: Arc<Analytics>,
    pub tokens: Tokens,
    /// Accept `?access_token=` besides the Authorization header (demo only).
    pub query_token: bool,
    pub sql_limits: SqlLimits,
    /// Analyst queries running at once; a request finding none free gets 429.
    pub sql_slots: tokio::sync::Semaphore,
    /// Analyst SQL runs here, not on the runtime that serves requests, so that a heavy
    /// query cannot starve KPI and health requests of threads.
    pub sql_runtime: tokio::runtime::Handle,
    /// Where `POST /v1/events` publishes (None: the gateway is off).
    pub gateway: Option<crate::gateway::Gateway>,
    /// Ingest counters when ingest runs in this process (for /metrics).
    pub ingest_metrics: Option<Arc<wenming_ingest::metrics::Metrics>>,
    /// Brokers /readyz checks (None: no Kafka in use).
    pub brokers: Option<String>,
    pub exports: Arc<crate::exports::Exports>,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
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
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route("/openapi.json", get(routes::openapi::openapi))
        .route("/v1/kpis", get(routes::kpis::catalog))
        .route("/v1/kpis/{name}", get(routes::kpis::kpi))
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
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
