//! A `wenming serve` process of a test's own, over a lake of its own, talked to over HTTP
//! through `reqwest`.
#![allow(dead_code)] // each test file uses its own part of this

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ok, wenming};

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    /// The Postgres wire's address, when the config has `[postgres]`.
    pub postgres: Option<String>,
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

    /// Serve with `config` as it is (its `[lake]` included), from a fresh directory.
    pub fn serve(config: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("wenming.toml"), config).unwrap();
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
        let wants_postgres = std::fs::read_to_string(path.join("wenming.toml"))
            .unwrap()
            .contains("[postgres]");
        let (mut addr, mut postgres) = (None, None);
        while addr.is_none() || (wants_postgres && postgres.is_none()) {
            assert!(Instant::now() < deadline, "serve did not print its address");
            let line = lines.next().expect("serve exited").unwrap();
            let word = |rest: &str| rest.split_whitespace().next().unwrap().to_string();
            if let Some(rest) = line.strip_prefix("api: http://") {
                addr = Some(word(rest));
            } else if let Some(rest) = line.strip_prefix("postgres: ") {
                postgres = Some(word(rest));
            }
        }
        let addr = addr.unwrap();
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            postgres,
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

pub const HOSTILE: &str = r#"<img src=x onerror="window.__xss=1">"#;

/// 鄞州区: a centre, a street institute, two stations (one named like an attack), each
/// with activities, check-ins and service in January and February 2024.
pub fn other_district() -> String {
    let reg = "2023-12-01T09:00:00+08:00";
    let mut ev = vec![
        (
            "unit.registered",
            reg.to_string(),
            "C330212".to_string(),
            json!({"level": "center", "name": "鄞州区新时代文明实践中心", "area_code": "330212000000"}),
        ),
        (
            "unit.registered",
            reg.to_string(),
            "I330212001".to_string(),
            json!({"level": "institute", "name": "东柳街道新时代文明实践所", "area_code": "330212001000", "parent_id": "C330212"}),
        ),
    ];
    for (i, (id, name)) in [
        ("S330212001001", HOSTILE),
        ("S330212001002", "东柳社区新时代文明实践站"),
    ]
    .into_iter()
    .enumerate()
    {
        ev.push((
            "unit.registered",
            reg.to_string(),
            id.to_string(),
            json!({"level": "station", "name": name, "area_code": format!("33021200100{}", i + 1), "parent_id": "I330212001", "residents": 3000}),
        ));
        ev.push((
            "volunteer.registered",
            reg.to_string(),
            id.to_string(),
            json!({"volunteer_id": format!("VB-{i}")}),
        ));
        for month in [1, 2] {
            let at =
                |day: u32, hour: u32| format!("2024-{month:02}-{day:02}T{hour:02}:00:00+08:00");
            let activity = format!("AB-{i}-{month}");
            ev.push((
                "activity.published",
                at(1, 9),
                id.to_string(),
                json!({"activity_id": activity, "category": "culture", "title": "讲座", "starts_at": at(10, 9), "ends_at": at(10, 11)}),
            ));
            ev.push((
                "attendance.checked_in",
                at(10, 9),
                id.to_string(),
                json!({"activity_id": activity, "person_id": format!("PB-{i}"), "role": "resident", "method": "scan"}),
            ));
            ev.push((
                "service.recorded",
                at(10, 12),
                id.to_string(),
                json!({"record_id": format!("RB-{i}-{month}"), "volunteer_id": format!("VB-{i}"), "started_at": at(10, 9), "ended_at": at(10, 11), "minutes": 120}),
            ));
        }
    }
    let events: Vec<(&str, &str, &str, serde_json::Value)> = ev
        .iter()
        .map(|(t, at, u, d)| (*t, at.as_str(), u.as_str(), d.clone()))
        .collect();
    ndjson(&events, 0xB000)
}
