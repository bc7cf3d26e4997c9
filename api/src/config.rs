//! `wenming serve`'s settings: a typed view of `wenming.toml`, each scalar overridable
//! by `WENMING_<SECTION>__<KEY>` (environment wins over the file), defaults for all of
//! it, so `wenming serve` with no file at all runs on embedded defaults. Every setting is
//! documented in README.md ("Configuration").

use std::path::PathBuf;

use serde::Deserialize;
use wenming_ingest::location::{Location, StoreSettings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub lake: Lake,
    pub ingest: Ingest,
    pub broker: Broker,
    pub analytics: AnalyticsConfig,
    pub sql: Sql,
    pub postgres: Postgres,
    pub kpi: KpiConfig,
    pub exports_settings: ExportsSettings,
    pub tokens: Vec<TokenConfig>,
    pub exports: Vec<ExportConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// host:port of the API and the dashboard. Port 0 picks a free port (printed at
    /// start).
    pub listen: String,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lake {
    /// A directory, or `s3://bucket/prefix` on an S3-compatible store.
    pub path: Location,
    /// The object store's settings; unset ones come from the `AWS_*` environment.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub path_style: Option<bool>,
    pub allow_http: Option<bool>,
}

impl Lake {
    /// The lake's location with its store settings.
    pub fn location(&self) -> Location {
        self.path.clone().with_settings(&StoreSettings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            path_style: self.path_style,
            allow_http: self.allow_http,
        })
    }
}

impl Default for Lake {
    fn default() -> Self {
        Lake {
            path: Location::local("./wenming-data/lake"),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            path_style: None,
            allow_http: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ingest {
    /// Consume the topic into the lake in this process.
    pub enabled: bool,
    /// Kafka bootstrap servers. Empty: start the embedded broker (see `[broker]`).
    pub brokers: String,
    pub topic: String,
    pub group: String,
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest {
            enabled: true,
            brokers: String::new(),
            topic: "wenming.events".into(),
            group: "wenming-ingest".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Broker {
    /// Where the embedded broker listens when `[ingest] brokers` is empty.
    pub listen: String,
    /// Its durable store.
    pub data: PathBuf,
    pub partitions: i32,
}

impl Default for Broker {
    fn default() -> Self {
        Broker {
            listen: "127.0.0.1:9092".into(),
            data: "./wenming-data/broker".into(),
            partitions: 6,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    pub tz: String,
    pub registration_target: f64,
    pub late_after_hours: i64,
    /// Seconds between saves of the KPI rollups beside the lake (and one when the
    /// server stops); 0: never saved, every start counts them from the views.
    pub save_rollups_secs: u64,
    /// Build every KPI rollup part in the background when the server starts, so that
    /// the first question on each does not wait for it to be counted.
    pub prepare_at_start: bool,
    /// Where KPI and SQL plans run: "embedded" (this process), or
    /// "ballista://host:port", a Ballista cluster's scheduler (`wenming ballista`).
    pub engine: String,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            tz: "Asia/Shanghai".into(),
            registration_target: 0.13,
            late_after_hours: 72,
            save_rollups_secs: 60,
            prepare_at_start: true,
            engine: "embedded".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sql {
    pub timeout_secs: u64,
    pub max_rows: usize,
    pub memory_mib: usize,
    /// The most bytes of Arrow data a result holds; more is cut off, as at `max_rows`.
    pub max_result_mib: usize,
    /// Analyst queries running at once; more are refused with 429.
    pub max_concurrent: usize,
    /// Of those, how many one token may run.
    pub per_token: usize,
}

impl Default for Sql {
    fn default() -> Self {
        Sql {
            timeout_secs: 30,
            max_rows: 100_000,
            max_result_mib: 64,
            memory_mib: 512,
            max_concurrent: 4,
            per_token: 2,
        }
    }
}

/// The Postgres wire (`docs/postgres.md`): off unless `listen` is set.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Postgres {
    /// host:port, e.g. "127.0.0.1:5433"; absent: no Postgres listener.
    pub listen: Option<String>,
    /// PEM certificate chain and private key: with both, clients connect with TLS
    /// (sslmode=require).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Listen beyond loopback without TLS (tokens cross the network in clear): refused
    /// at start unless this is true.
    pub allow_plaintext: bool,
}

/// The limits of KPI questions (cached answers cost nothing and are not counted).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KpiConfig {
    /// The most rows an answer may have (periods × areas × rows per area); a question
    /// over it is refused before anything is computed.
    pub max_cells: usize,
    pub timeout_secs: u64,
    pub memory_mib: usize,
    /// Questions computed at once, in all and per token.
    pub max_concurrent: usize,
    pub per_token: usize,
    /// How long a question waits for a free slot before it gets 429.
    pub queue_secs: u64,
}

impl Default for KpiConfig {
    fn default() -> Self {
        KpiConfig {
            max_cells: 200_000,
            timeout_secs: 60,
            memory_mib: 4096,
            max_concurrent: 4,
            per_token: 2,
            queue_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportsSettings {
    /// Run the export scheduler in this process.
    pub enabled: bool,
}

impl Default for ExportsSettings {
    fn default() -> Self {
        ExportsSettings { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    /// Hex SHA-256 of the bearer token.
    pub sha256: String,
    pub role: String,
    #[serde(default = "city")]
    pub scope: String,
}

fn city() -> String {
    "city".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    pub name: String,
    /// Cron expression (sec min hour day-of-month month day-of-week), e.g.
    /// `0 0 6 1 * *` = 06:00 on the 1st of every month.
    pub schedule: String,
    /// Time zone of the schedule (default: `[analytics] tz`).
    #[serde(default)]
    pub tz: Option<String>,
    pub kpis: Vec<String>,
    #[serde(default = "district")]
    pub level: String,
    #[serde(default = "month")]
    pub granularity: String,
    /// Which period a scheduled run covers: previous_month, previous_quarter,
    /// previous_year.
    #[serde(default = "previous_month")]
    pub period: String,
    #[serde(default = "city")]
    pub scope: String,
    /// csv, xlsx, parquet.
    #[serde(default = "csv")]
    pub formats: Vec<String>,
    pub output: PathBuf,
}

fn district() -> String {
    "district".into()
}
fn month() -> String {
    "month".into()
}
fn previous_month() -> String {
    "previous_month".into()
}
fn csv() -> Vec<String> {
    vec!["csv".into()]
}

impl Config {
    /// Read `path` (absent: defaults) and lay the environment over it.
    pub fn load(path: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid {
                        path: p.display().to_string(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        overlay_env(&mut table, std::env::vars());
        let where_ = path.map_or("settings".to_string(), |p| p.display().to_string());
        Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
            path: where_,
            message: e.to_string(),
        })
    }
}

/// Sections whose keys the environment may set.
const SECTIONS: &[&str] = &[
    "server",
    "lake",
    "ingest",
    "broker",
    "analytics",
    "sql",
    "kpi",
    "exports_settings",
];

/// `WENMING_SECTION__KEY=value` → `[section] key = value` (numbers and booleans typed).
fn overlay_env(table: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("WENMING_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let section = section.to_lowercase();
        if !SECTIONS.contains(&section.as_str()) {
            continue;
        }
        let value = if let Ok(b) = value.parse::<bool>() {
            toml::Value::Boolean(b)
        } else if let Ok(i) = value.parse::<i64>() {
            toml::Value::Integer(i)
        } else if let Ok(f) = value.parse::<f64>()
            && value.contains('.')
        {
            toml::Value::Float(f)
        } else {
            toml::Value::String(value)
        };
        let entry = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(t) = entry.as_table_mut() {
            t.insert(key.to_lowercase(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_environment_layer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wenming.toml");
        std::fs::write(
            &path,
            r#"
[server]
listen = "0.0.0.0:9000"
[ingest]
enabled = false
[[tokens]]
name = "haishu-office"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
role = "viewer"
scope = "district:330203"
"#,
        )
        .unwrap();
        let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        overlay_env(
            &mut table,
            vec![
                ("WENMING_SQL__TIMEOUT_SECS".to_string(), "5".to_string()),
                (
                    "WENMING_SERVER__LISTEN".to_string(),
                    "127.0.0.1:0".to_string(),
                ),
                ("WENMING_CONFIG".to_string(), "x".to_string()),
            ]
            .into_iter(),
        );
        let c = Config::deserialize(toml::Value::Table(table)).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:0");
        assert!(!c.ingest.enabled);
        assert_eq!(c.sql.timeout_secs, 5);
        assert_eq!(c.sql.max_rows, 100_000);
        assert_eq!(c.tokens[0].scope, "district:330203");
        assert_eq!(c.lake.path, Location::local("./wenming-data/lake"));
        let bad: Result<Config, _> = Config::deserialize(toml::Value::Table(
            "[server]\nlisten_on = 1".parse::<toml::Table>().unwrap(),
        ));
        assert!(bad.unwrap_err().to_string().contains("listen_on"));
    }
}
