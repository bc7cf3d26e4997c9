//! The Postgres wire (protocol v3): analysts' own clients (psql, DBeaver, psycopg,
//! SQLAlchemy, BI tools) on the same engine, sandbox and scope as `POST /v1/sql`.
//!
//! The protocol is `pgwire`'s; Arrow → Postgres encoding is `arrow-pg`'s; the
//! `pg_catalog` clients list tables with lives in the analyst's session
//! (`wenming_analytics::sql::session`), so HTTP and Postgres share every wall:
//! - `login`: user = token name, password = token, analyst and admin only;
//! - `answer`: each statement checked (`sql::check_postgres`), planned and run in a
//!   session holding only the caller's scope, under the SQL slots, memory pool and a
//!   statement timeout; results streamed batch by batch;
//! - `session`: the few session commands clients send (`SET statement_timeout`, `SHOW`,
//!   `BEGIN` …), answered here and never by the engine.
//!
//! Connections are served on the query runtime, like HTTP's computations. A
//! CancelRequest, a timeout or a client hanging up drops the query's stream, which
//! stops the engine's work.

mod answer;
mod login;
mod session;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use pgwire::api::auth::DefaultServerParameterProvider;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, ErrorHandler, PgWireServerHandlers, RandomPidSecretKeyGenerator};
use pgwire::error::PgWireError;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::auth::Caller;

/// Why the Postgres listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("cannot listen for Postgres on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot read the TLS {what} {path}: {reason}")]
    Tls {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error(
        "[postgres] listen = {0} is reachable from other machines and has no TLS: tokens would cross the network in clear. Set tls_cert and tls_key, listen on 127.0.0.1, or set allow_plaintext = true if the network is trusted"
    )]
    Plaintext(String),
}

/// One logged-in connection: who, its statement timeout, and the running query's
/// cancel token.
pub struct Connection {
    pub caller: Caller,
    /// The server's limit, which `SET statement_timeout` may lower, never raise.
    pub max_timeout: Duration,
    pub timeout: Mutex<Duration>,
    current: Mutex<CancellationToken>,
    registry: Weak<Registry>,
    key: CancelKey,
}

/// A connection's process id and secret key, as a CancelRequest names it.
type CancelKey = (i32, Vec<u8>);

impl Connection {
    /// A fresh cancel token for the statement about to run.
    pub fn start_query(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.current.lock().expect("not poisoned") = token.clone();
        token
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(r) = self.registry.upgrade() {
            r.by_key.lock().expect("not poisoned").remove(&self.key);
        }
    }
}

/// The open connections by (process id, secret key), for CancelRequests (which arrive
/// on a connection of their own).
#[derive(Default)]
pub struct Registry {
    by_key: Mutex<HashMap<CancelKey, Weak<Connection>>>,
}

impl Registry {
    fn open(
        self: &Arc<Self>,
        pid: i32,
        key: SecretKey,
        caller: Caller,
        timeout: Duration,
    ) -> Arc<Connection> {
        let key = (pid, key.to_bytes().to_vec());
        let connection = Arc::new(Connection {
            caller,
            max_timeout: timeout,
            timeout: Mutex::new(timeout),
            current: Mutex::new(CancellationToken::new()),
            registry: Arc::downgrade(self),
            key: key.clone(),
        });
        self.by_key
            .lock()
            .expect("not poisoned")
            .insert(key, Arc::downgrade(&connection));
        connection
    }
}

#[async_trait]
impl CancelHandler for Registry {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes().to_vec());
        let connection = self
            .by_key
            .lock()
            .expect("not poisoned")
            .get(&key)
            .and_then(Weak::upgrade);
        if let Some(c) = connection {
            tracing::info!(user = %c.caller.name, "postgres: query cancelled by request");
            c.current.lock().expect("not poisoned").cancel();
        }
    }
}

/// Every handler of a connection.
struct Handlers {
    login: Arc<login::Login>,
    answers: Arc<answer::Answers>,
    registry: Arc<Registry>,
}

struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        tracing::debug!(client = %client.socket_addr(), "postgres: {error}");
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.answers.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.answers.clone()
    }
    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.login.clone()
    }
    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.registry.clone()
    }
    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }
}

/// What `[postgres]` configures.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    pub allow_plaintext: bool,
    /// The calendar zone, reported to clients as `TimeZone`.
    pub tz: String,
}

/// A bound Postgres listener, ready to serve.
pub struct Listener {
    listener: TcpListener,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    pub addr: SocketAddr,
}

impl Listener {
    /// Bind `settings.listen`, refusing a non-loopback address without TLS unless
    /// plaintext is allowed.
    pub async fn bind(settings: &Settings) -> Result<Listener, PostgresError> {
        let listener = TcpListener::bind(&settings.listen)
            .await
            .map_err(|source| PostgresError::Listen {
                addr: settings.listen.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| PostgresError::Listen {
                addr: settings.listen.clone(),
                source,
            })?;
        let tls = match &settings.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None if !addr.ip().is_loopback() && !settings.allow_plaintext => {
                return Err(PostgresError::Plaintext(settings.listen.clone()));
            }
            None => None,
        };
        Ok(Listener {
            listener,
            tls,
            addr,
        })
    }

    /// Accept connections until the process ends, each served on the query runtime.
    pub async fn serve(self, state: Arc<AppState>, settings: Settings) {
        let registry = Arc::new(Registry::default());
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = session::SERVER_VERSION.into();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        parameters.time_zone = settings.tz.clone();
        let handlers = Arc::new(Handlers {
            login: Arc::new(login::Login {
                state: state.clone(),
                registry: registry.clone(),
                parameters,
                keys: RandomPidSecretKeyGenerator::default(),
            }),
            answers: Arc::new(answer::Answers::new(state.clone(), settings.tz.clone())),
            registry,
        });
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("postgres: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let handlers = handlers.clone();
            let tls = self.tls.clone();
            state.query_runtime.spawn(async move {
                if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                    tracing::debug!(%peer, "postgres: connection ended: {e}");
                }
            });
        }
    }
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<pgwire::tokio::TlsAcceptor, PostgresError> {
    use tokio_rustls::rustls;
    let err = |what: &'static str, path: &std::path::Path| {
        let path = path.display().to_string();
        move |reason: String| PostgresError::Tls { what, path, reason }
    };
    let read = |what: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| err(what, path)(e.to_string()))
    };
    let certs = rustls_pemfile::certs(&mut read("certificate", cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("certificate", cert)(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut read("key", key)?.as_slice())
        .map_err(|e| err("key", key)(e.to_string()))?
        .ok_or_else(|| err("key", key)("no private key in the file".into()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| err("certificate", cert)(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| err("certificate", cert)(e.to_string()))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}
