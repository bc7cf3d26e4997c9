//! The HTTP door (axum), thin over `wenming-analytics`.
//!
//! ```text
//!  request ─► routes::count (metrics) ─► handler ─► Caller (auth: token hash → role, scope)
//!                                           │  require(permission)
//!                                           ▼
//!                      Analytics (kpi / sql / units / quality, scope applied inside)
//!                                           │
//!                                  encode (JSON / CSV / Arrow) ─► response
//! ```
//!
//! - `config`: `wenming.toml` + `WENMING_*` → `Config`, with defaults.
//! - `auth`: tokens (SHA-256 hashes), roles, scopes, the `Caller` extractor.
//! - `error`: `ApiError` → RFC 9457 problem details.
//! - `app`: `AppState`, the router, `Application` (bind, run until shutdown).
//! - `routes`: one module per resource; `openapi` builds /openapi.json.
//! - `slots`: caps on computations at once, in all and per token.
//! - `web`: the dashboard's files (embedded, compressed, hashed) and security headers;
//!   `session`: its logins (cookie sessions, the demo's one-time codes).
//! - `gateway`: `POST /v1/events` → Kafka.
//! - `exports`, `cron`: scheduled KPI workbooks.

pub mod app;
pub mod auth;
pub mod config;
pub mod cron;
pub mod error;
pub mod exports;
pub mod gateway;
pub mod metrics;
pub mod postgres;
pub mod restatement;
pub mod routes;
pub mod session;
pub mod slots;
pub mod web;

pub use app::{AppState, Application};
pub use config::Config;
