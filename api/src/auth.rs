//! Bearer tokens: configured as SHA-256 hashes (the token itself is never stored), each
//! with a role and a scope. A request's caller is resolved once, by the `Caller`
//! extractor; handlers ask it for the permission they need and pass its scope down to
//! the query layer, which applies it inside every query.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use sha2::{Digest, Sha256};
use wenming_analytics::Scope;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// KPIs, units, quality, exports (read).
    Viewer,
    /// A viewer who may also run SQL.
    Analyst,
    /// Publishes events for the units of its scope.
    Station,
    /// Everything, including running exports.
    Admin,
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadKpis,
    Sql,
    PublishEvents,
    RunExports,
    /// /metrics: counts of the whole city.
    Metrics,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "analyst" => Some(Role::Analyst),
            "station" => Some(Role::Station),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Station => "station",
            Role::Admin => "admin",
        }
    }

    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Viewer => p == ReadKpis,
            Role::Analyst => matches!(p, ReadKpis | Sql),
            Role::Station => p == PublishEvents,
        }
    }
}

/// A configured token, without the token.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    pub scope: Scope,
}

/// Token hashes → who they are. Looked up by comparing the presented token's hash with
/// every configured hash in constant time, so that the time of a refusal says nothing of
/// how close a guess came.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], TokenEntry)>,
}

impl Tokens {
    pub fn from_config(configs: &[crate::config::TokenConfig]) -> Result<Tokens, String> {
        let mut entries: Vec<([u8; 32], TokenEntry)> = Vec::new();
        for t in configs {
            let hash = parse_hex32(&t.sha256).ok_or_else(|| {
                format!(
                    "token {:?}: sha256 must be 64 hex digits (the SHA-256 of the token)",
                    t.name
                )
            })?;
            let role = Role::parse(&t.role).ok_or_else(|| {
                format!(
                    "token {:?}: role must be viewer, analyst, station or admin, not {:?}",
                    t.name, t.role
                )
            })?;
            let scope: Scope = t
                .scope
                .parse()
                .map_err(|e| format!("token {:?}: {e}", t.name))?;
            if entries.iter().any(|(h, _)| *h == hash) {
                return Err(format!(
                    "token {:?}: the same hash is configured twice",
                    t.name
                ));
            }
            entries.push((
                hash,
                TokenEntry {
                    name: t.name.clone(),
                    role,
                    scope,
                },
            ));
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn find(&self, token: &str) -> Option<&TokenEntry> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every entry is compared, all 32 bytes of each, whatever matched before.
        let mut found = None;
        for (hash, entry) in &self.entries {
            let diff = hash
                .iter()
                .zip(&digest)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if std::hint::black_box(diff) == 0 {
                found = Some(entry);
            }
        }
        found
    }
}

/// Failed token checks per client address: after `MAX_FAILURES` within `WINDOW`, the
/// address gets 429 for any token until the window has passed (a valid token too, or
/// the refusal would tell a right guess from a wrong one).
#[derive(Debug, Default)]
pub struct Attempts {
    by_client: std::sync::Mutex<HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
}

impl Attempts {
    pub const MAX_FAILURES: u32 = 20;
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

    fn blocked(&self, client: std::net::IpAddr) -> Option<std::time::Duration> {
        let map = self.by_client.lock().expect("not poisoned");
        let (since, n) = map.get(&client)?;
        let left = Self::WINDOW.checked_sub(since.elapsed())?;
        (*n >= Self::MAX_FAILURES).then_some(left)
    }

    pub fn fail(&self, client: std::net::IpAddr) {
        let mut map = self.by_client.lock().expect("not poisoned");
        if map.len() > 100_000 {
            map.retain(|_, (since, _)| since.elapsed() < Self::WINDOW);
        }
        let entry = map.entry(client).or_insert((std::time::Instant::now(), 0));
        if entry.0.elapsed() >= Self::WINDOW {
            *entry = (std::time::Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

/// The hex SHA-256 of a token, for writing configuration (`wenming token hash`).
pub fn hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub scope: Scope,
}

impl Caller {
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.role.allows(p) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the token {:?} has the role {}, which may not {}",
                self.name,
                self.role.name(),
                match p {
                    Permission::ReadKpis => "read KPIs",
                    Permission::Sql => "run SQL (analyst or admin)",
                    Permission::PublishEvents => "publish events (station or admin)",
                    Permission::RunExports => "run exports (admin)",
                    Permission::Metrics => "read the server's metrics (admin)",
                }
            )))
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<crate::app::AppState>: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::FromRef;
        let app = Arc::<crate::app::AppState>::from_ref(state);
        let Some(header) = parts.headers.get(header::AUTHORIZATION) else {
            // No token: the dashboard's session cookie, if any.
            let Some(entry) =
                crate::session::from_cookies(&parts.headers).and_then(|id| app.sessions.find(&id))
            else {
                return Err(ApiError::unauthorized(
                    "send a bearer token (`Authorization: Bearer <token>`) or log in on the dashboard",
                ));
            };
            let reads = matches!(parts.method, Method::GET | Method::HEAD);
            if !reads && !parts.headers.contains_key("x-wenming") {
                return Err(ApiError::forbidden(
                    "a change through a browser session needs the header x-wenming (the dashboard sends it)",
                ));
            }
            return Ok(Caller::from(&entry));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let client = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        app.check_token(token, client).map(|e| Caller::from(&e))
    }
}

impl From<&TokenEntry> for Caller {
    fn from(e: &TokenEntry) -> Caller {
        Caller {
            name: e.name.clone(),
            role: e.role,
            scope: e.scope.clone(),
        }
    }
}

impl crate::app::AppState {
    /// The entry of `token`, counting a failure against `client`'s address (and refusing
    /// an address that failed too often: see `Attempts`).
    pub fn check_token(
        &self,
        token: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<TokenEntry, ApiError> {
        if let Some(left) = client.and_then(|c| self.attempts.blocked(c)) {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many unknown tokens from this address; try again in {} s",
                    left.as_secs() + 1
                ),
            ));
        }
        match self.tokens.find(token) {
            Some(entry) => Ok(entry.clone()),
            None => {
                if let Some(c) = client {
                    self.attempts.fail(c);
                }
                Err(ApiError::unauthorized("unknown token"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    #[test]
    fn tokens_are_found_by_hash_only() {
        let cfg = vec![TokenConfig {
            name: "haishu".into(),
            sha256: hash_hex("s3cret"),
            role: "viewer".into(),
            scope: "district:330203".into(),
        }];
        let tokens = Tokens::from_config(&cfg).unwrap();
        let t = tokens.find("s3cret").unwrap();
        assert_eq!(t.role, Role::Viewer);
        assert_eq!(t.scope, Scope::District("330203".into()));
        assert!(tokens.find("s3cret ").is_none());
        assert!(
            tokens.find(&hash_hex("s3cret")).is_none(),
            "the hash is not a token"
        );
        // test vector: SHA-256("test")
        assert_eq!(
            hash_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        let mut bad = cfg.clone();
        bad[0].role = "boss".into();
        assert!(Tokens::from_config(&bad).unwrap_err().contains("role"));
        bad[0].role = "viewer".into();
        bad[0].sha256 = "abc".into();
        assert!(Tokens::from_config(&bad).unwrap_err().contains("64 hex"));
    }

    #[test]
    fn roles_grant_what_the_issue_says() {
        use Permission::*;
        assert!(Role::Viewer.allows(ReadKpis) && !Role::Viewer.allows(Sql));
        assert!(Role::Analyst.allows(Sql) && !Role::Analyst.allows(PublishEvents));
        assert!(Role::Station.allows(PublishEvents) && !Role::Station.allows(ReadKpis));
        assert!(Role::Admin.allows(RunExports));
    }
}
