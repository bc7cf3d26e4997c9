//! Who may connect: user name = a token's `name`, password = the token, database
//! `wenming`; only roles that may run SQL over HTTP (analyst, admin) get in.
//!
//! The password arrives in clear (the protocol's cleartext method; TLS protects it on the
//! wire), is hashed and looked up as an HTTP bearer token is: in constant time, with
//! failures counted against the client's address. A wrong password, an unknown user and
//! a user whose name does not match the token get the same answer.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, METADATA_DATABASE, METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::{Connection, Registry};
use crate::app::AppState;
use crate::auth::{Caller, Permission};
use wenming_analytics::sql::DATABASE;

pub struct Login {
    pub state: Arc<AppState>,
    pub registry: Arc<Registry>,
    pub parameters: DefaultServerParameterProvider,
    pub keys: RandomPidSecretKeyGenerator,
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

impl Login {
    /// The caller behind `user` and `password`, or the error to end the connection with.
    fn check(&self, client: &dyn ClientInfo, password: &str) -> PgWireResult<Caller> {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        let database = client.metadata().get(METADATA_DATABASE);
        if let Some(db) = database
            && db != DATABASE
            && db != &user
        {
            return Err(fatal(
                "3D000",
                format!("database \"{db}\" does not exist (it is \"{DATABASE}\")"),
            ));
        }
        let failed = || {
            fatal(
                "28P01",
                format!("password authentication failed for user \"{user}\""),
            )
        };
        let entry = match self
            .state
            .check_token(password, Some(client.socket_addr().ip()))
        {
            Ok(entry) => entry,
            Err(e) if e.status == axum::http::StatusCode::TOO_MANY_REQUESTS => {
                return Err(fatal("28P01", e.detail));
            }
            Err(_) => return Err(failed()),
        };
        // A right password under another name is refused like a wrong one, and counted.
        if entry.name != user {
            self.state.attempts.fail(client.socket_addr().ip());
            return Err(failed());
        }
        let caller = Caller::from(&entry);
        if caller.require(Permission::Sql).is_err() {
            return Err(fatal(
                "28000",
                format!(
                    "the role of \"{user}\" ({}) may not run SQL: only analyst and admin tokens connect",
                    caller.role.name()
                ),
            ));
        }
        Ok(caller)
    }
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let caller = self.check(client, &pwd.password)?;
                let (pid, key) = self.keys.generate(client);
                client.set_pid_and_secret_key(pid, key.clone());
                let connection =
                    self.registry
                        .open(pid, key, caller, self.state.sql_limits.timeout);
                client.session_extensions().insert(connection);
                finish_authentication(client, &self.parameters).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The connection's state, set at login.
pub fn connection_of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Connection>> {
    client
        .session_extensions()
        .get::<Arc<Connection>>()
        .map(|c| (*c).clone())
        .ok_or_else(|| fatal("28000", "not logged in".into()))
}
