//! Browser sessions of the dashboard. A token is typed once into the login form and
//! exchanged for a session: a random id in an `HttpOnly`, `SameSite=Strict` cookie, so
//! the token itself never sits in a URL, the history, a log line or the page's script.
//! `wenming demo` prints a one-time code instead of a token URL: the page exchanges it
//! for a session at once and removes it from the address bar.
//!
//! A request authenticated by the cookie that changes something (any method but GET and
//! HEAD) must also carry the header `x-wenming`, which a page of another origin cannot
//! send without this server's consent (CORS): together with `SameSite=Strict`, no
//! cross-site request rides on a session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::auth::TokenEntry;

pub const COOKIE: &str = "wenming_session";
/// How long a session lasts without use.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// How long a one-time code may wait to be used.
pub const CODE_TTL: Duration = Duration::from_secs(3600);

/// Sessions and one-time codes, both kept by the SHA-256 of their secret (a memory dump
/// holds no usable id).
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<[u8; 32], (TokenEntry, Instant)>>,
    codes: Mutex<HashMap<[u8; 32], (TokenEntry, Instant)>>,
}

fn secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Sessions {
    /// A new session for `entry`; returns its id (the cookie's value).
    pub fn open(&self, entry: TokenEntry) -> String {
        let id = secret();
        let mut sessions = self.sessions.lock().expect("not poisoned");
        sessions.retain(|_, (_, used)| used.elapsed() < IDLE);
        sessions.insert(key(&id), (entry, Instant::now()));
        id
    }

    /// The caller of a live session (its idle clock restarts).
    pub fn find(&self, id: &str) -> Option<TokenEntry> {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        let (entry, used) = sessions.get_mut(&key(id))?;
        if used.elapsed() >= IDLE {
            return None;
        }
        *used = Instant::now();
        Some(entry.clone())
    }

    pub fn close(&self, id: &str) {
        self.sessions.lock().expect("not poisoned").remove(&key(id));
    }

    /// A one-time code that opens a session for `entry` (the demo's link).
    pub fn code(&self, entry: TokenEntry) -> String {
        let code = secret();
        self.codes
            .lock()
            .expect("not poisoned")
            .insert(key(&code), (entry, Instant::now()));
        code
    }

    /// Use a code: it works once, within `CODE_TTL`.
    pub fn redeem(&self, code: &str) -> Option<TokenEntry> {
        let (entry, made) = self
            .codes
            .lock()
            .expect("not poisoned")
            .remove(&key(code))?;
        (made.elapsed() < CODE_TTL).then_some(entry)
    }
}

/// The session id in a request's cookies.
pub fn from_cookies(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wenming_analytics::Scope;

    fn entry() -> TokenEntry {
        TokenEntry {
            name: "office".into(),
            role: crate::auth::Role::Viewer,
            scope: Scope::City,
        }
    }

    #[test]
    fn sessions_open_close_and_codes_work_once() {
        let s = Sessions::default();
        let id = s.open(entry());
        assert_eq!(id.len(), 64);
        assert_eq!(s.find(&id).unwrap().name, "office");
        assert!(s.find("not-a-session").is_none());
        s.close(&id);
        assert!(s.find(&id).is_none());
        let code = s.code(entry());
        assert!(s.redeem(&code).is_some());
        assert!(s.redeem(&code).is_none(), "a code works once");
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "cookie",
            format!("a=1; {COOKIE}={id}; b=2").parse().unwrap(),
        );
        assert_eq!(from_cookies(&h).as_deref(), Some(id.as_str()));
    }
}
