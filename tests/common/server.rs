//! A `wenming serve` process of a test's own, over a lake of its own, talked to over HTTP
//! through `reqwest`.
#![allow(dead_code)] // each test file uses its own part of this

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ok, wenming};

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
    _dir: tempfile::TempDir,
    client: reqwest::blocking::Client,
}

/// One answer: status, headers and body.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The problem's `detail`, or the body.
    pub fn detail(&self) -> String {
        self.json()["detail"]
            .as_str()
            .map_or_else(|| self.text(), str::to_string)
    }
}

/// `[[tokens]]` entries whose token is their name.
pub fn token_config(tokens: &[(&str, &str, &str)]) -> String {
    let mut out = String::new();
    for (name, role, scope) in tokens {
        out.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nrole = \"{role}\"\nscope = \"{scope}\"\n\n",
            wenming_api::auth::hash_hex(name)
        ));
    }
    out
}

impl Server {
    /// Import `events` (NDJSON) into a fresh lake and serve it with `config` (the
    /// `[lake]` section is added; ingest is off unless `config` turns it on).
    pub fn start(events: &str, config: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("events.ndjson"), events).unwrap();
        ok(&wenming(&[
            "import",
            path.join("events.ndjson").to_str().unwrap(),
            "--lake",
            path.join("lake").to_str().unwrap(),
        ]));
        let config = format!(
            "[lake]\npath = \"{}\"\n{config}",
            path.join("lake").display()
        );
        std::fs::write(path.join("wenming.toml"), &config).unwrap();
        Server::spawn(dir, path)
    }

    fn spawn(dir: tempfile::TempDir, path: PathBuf) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wenming"))
            .args([
                "serve",
                "--config",
                path.join("wenming.toml").to_str().unwrap(),
            ])
            .current_dir(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            assert!(Instant::now() < deadline, "serve did not print its address");
            let line = lines.next().expect("serve exited").unwrap();
            if let Some(rest) = line.strip_prefix("api: http://") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            dir: path,
            _dir: dir,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    pub fn lake(&self) -> PathBuf {
        self.dir.join("lake")
    }

    /// Whether the server process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method, format!("http://{}{path}", self.addr));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().expect("the server answers");
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().expect("a body").to_vec(),
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Answer {
        self.request(reqwest::Method::GET, path, Some(token), None)
    }

    pub fn get_open(&self, path: &str) -> Answer {
        self.request(reqwest::Method::GET, path, None, None)
    }

    pub fn post(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.request(
            reqwest::Method::POST,
            path,
            Some(token),
            Some(body.to_string().into_bytes()),
        )
    }

    pub fn sql(&self, token: &str, query: &str) -> Answer {
        self.post("/v1/sql", token, &serde_json::json!({ "sql": query }))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Events of a small network as NDJSON: `(type, occurred_at, unit, data)` each, with
/// ids numbered from `first_id`.
pub fn ndjson(events: &[(&str, &str, &str, Value)], first_id: u64) -> String {
    let mut out = String::new();
    for (i, (ty, at, unit, data)) in events.iter().enumerate() {
        let mut data = data.clone();
        data["unit_id"] = Value::from(*unit);
        let line = serde_json::json!({
            "event_id": format!("00000000-0000-7000-8000-{:012x}", first_id + i as u64),
            "type": ty, "schema_version": 1, "occurred_at": at, "unit_id": unit, "data": data,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
