//! Where the lake lives: a local directory, or a prefix of an S3-compatible object store
//! (AWS S3, MinIO, Alibaba OSS, Huawei OBS, Ceph).
//!
//! Every reader and writer of the lake goes through a `Location`: the Delta tables by
//! URL (deltalake's own S3 support, whose commits are made with the store's conditional
//! put, so two writers racing for one version cannot both win), and the lake's few
//! files of its own (run records, export leases) through the same `object_store` the
//! tables use. Settings left unset come from the standard `AWS_*` environment
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_ALLOW_HTTP`, …), which deltalake reads itself.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("lake location `{0}`: {1}")]
    Invalid(String, String),
    #[error("lake at {location}: {source}")]
    Store {
        location: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("lake at {location}: {source}")]
    Delta {
        location: String,
        #[source]
        source: Box<DeltaTableError>,
    },
}

/// The `[lake]` settings of an object store, each optional: what is unset comes from
/// the `AWS_*` environment, or the store's default.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// The store's URL, e.g. `http://minio:9000` or `https://oss-cn-shanghai.aliyuncs.com`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Address buckets as `endpoint/bucket/key` (MinIO, most self-hosted stores) rather
    /// than `bucket.endpoint/key` (AWS, OSS, OBS).
    pub path_style: Option<bool>,
    /// Allow a plain-HTTP endpoint (a store on a private network, a test server).
    pub allow_http: Option<bool>,
}

impl StoreSettings {
    /// The object_store / deltalake option names these settings become.
    fn options(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                out.insert(key.to_owned(), v);
            }
        };
        put("aws_endpoint", self.endpoint.clone());
        put("aws_region", self.region.clone());
        put("aws_access_key_id", self.access_key_id.clone());
        put("aws_secret_access_key", self.secret_access_key.clone());
        put(
            "aws_virtual_hosted_style_request",
            self.path_style.map(|p| (!p).to_string()),
        );
        put("aws_allow_http", self.allow_http.map(|a| a.to_string()));
        out
    }
}

/// A lake's root: a directory or an object-store prefix, with the options to reach it.
#[derive(Clone, PartialEq)]
pub struct Location {
    /// Ends in `/`, so that a table's URL is a join.
    url: Url,
    /// The directory, for a lake on local disk.
    local: Option<PathBuf>,
    options: HashMap<String, String>,
}

impl Location {
    /// A lake in a local directory (need not exist yet).
    pub fn local(dir: impl AsRef<Path>) -> Location {
        let dir = dir.as_ref();
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut url = Url::from_directory_path(&absolute)
            .unwrap_or_else(|_| Url::parse("file:///").expect("a valid URL"));
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Location {
            url,
            local: Some(dir.to_path_buf()),
            options: HashMap::new(),
        }
    }

    /// `s3://bucket/prefix` (or `s3a://`), `file:///dir`, or a directory path.
    pub fn parse(text: &str) -> Result<Location, LocationError> {
        let invalid = |why: &str| LocationError::Invalid(text.to_owned(), why.to_owned());
        let Some((scheme, _)) = text.split_once("://") else {
            if text.is_empty() {
                return Err(invalid("empty"));
            }
            return Ok(Location::local(text));
        };
        match scheme {
            "file" => {
                let url = Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
                let dir = url
                    .to_file_path()
                    .map_err(|_| invalid("not a local directory"))?;
                Ok(Location::local(dir))
            }
            "s3" | "s3a" => {
                let mut url = Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(invalid("no bucket: expected s3://bucket/prefix"));
                }
                if !url.path().ends_with('/') {
                    url.set_path(&format!("{}/", url.path()));
                }
                Ok(Location {
                    url,
                    local: None,
                    options: HashMap::new(),
                })
            }
            other => Err(invalid(&format!(
                "`{other}://` is not a supported store (a directory, file://, s3:// or s3a://)"
            ))),
        }
    }

    /// The same location reached with `settings` (unset ones stay with the environment).
    pub fn with_settings(mut self, settings: &StoreSettings) -> Location {
        self.options.extend(settings.options());
        self
    }

    /// The directory of a lake on local disk; `None` on an object store.
    pub fn as_local(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Options handed to deltalake and object_store (endpoint, credentials, …).
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The URL of the table (or folder) `name` under the lake.
    pub fn join(&self, name: &str) -> Url {
        self.url.join(name).expect("a relative name joins")
    }

    /// A builder for the Delta table `name`, with the lake's options.
    pub fn table_builder(&self, name: &str) -> Result<DeltaTableBuilder, DeltaTableError> {
        Ok(
            DeltaTableBuilder::from_url(self.join(name))?
                .with_storage_options(self.options.clone()),
        )
    }

    /// The Delta table `name` at its latest version; `None` when it has no commit yet.
    pub async fn open_table(&self, name: &str) -> Result<Option<DeltaTable>, LocationError> {
        if !self.has_commits(name).await? {
            return Ok(None);
        }
        let delta = |source| LocationError::Delta {
            location: self.to_string(),
            source: Box::new(source),
        };
        match self.table_builder(name).map_err(delta)?.load().await {
            Ok(table) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(delta(e)),
        }
    }

    /// The store, rooted at the lake: paths are relative to it (`service_events/...`).
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>, LocationError> {
        if let Some(dir) = &self.local {
            std::fs::create_dir_all(dir).map_err(|e| {
                self.store_error(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                })
            })?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|source| self.store_error(source))?;
            return Ok(Arc::new(fs));
        }
        Ok(self.log_store()?.object_store(None))
    }

    /// The store the lake's files are read from by absolute URL (`s3://bucket/…`), and
    /// the URL it answers for (`s3://bucket`; `file:///` for a local lake): what a
    /// query engine registers to read a table's Parquet files by their URLs.
    pub fn root_store(&self) -> Result<(Url, Arc<dyn ObjectStore>), LocationError> {
        if self.local.is_some() {
            let root = Url::parse("file:///").expect("a valid URL");
            return Ok((root, Arc::new(object_store::local::LocalFileSystem::new())));
        }
        let storage = self.log_store()?;
        let mut root = self.url.clone();
        root.set_path("");
        Ok((root, storage.root_object_store(None)))
    }

    /// deltalake's stores for the lake on an object store, with its options.
    fn log_store(&self) -> Result<deltalake::logstore::LogStoreRef, LocationError> {
        DeltaTableBuilder::from_url(self.url.clone())
            .and_then(|b| b.with_storage_options(self.options.clone()).build_storage())
            .map_err(|source| LocationError::Delta {
                location: self.to_string(),
                source: Box::new(source),
            })
    }

    pub fn store_error(&self, source: object_store::Error) -> LocationError {
        LocationError::Store {
            location: self.to_string(),
            source: Box::new(source),
        }
    }

    /// The versions of the commits in a table's log, from the names of its files (no
    /// log is parsed); empty for a table without commits.
    pub async fn commit_versions(&self, table: &str) -> Result<Vec<i64>, LocationError> {
        let names = self.list(&format!("{table}/_delta_log")).await?;
        Ok(names
            .iter()
            .filter_map(|n| n.strip_suffix(".json")?.parse::<i64>().ok())
            .collect())
    }

    /// Whether a table has a Delta log with at least one commit or checkpoint.
    pub async fn has_commits(&self, table: &str) -> Result<bool, LocationError> {
        let names = self.list(&format!("{table}/_delta_log")).await?;
        Ok(names
            .iter()
            .any(|n| n.ends_with(".json") || n.ends_with(".checkpoint.parquet")))
    }

    /// The names of the files directly in a folder of the lake (none if it is absent).
    pub async fn list(&self, folder: &str) -> Result<Vec<String>, LocationError> {
        if let Some(dir) = &self.local {
            // A plain directory read: the store would walk the folder's subfolders too.
            let Ok(entries) = std::fs::read_dir(dir.join(folder)) else {
                return Ok(Vec::new());
            };
            return Ok(entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect());
        }
        let store = self.store()?;
        let listed = store
            .list_with_delimiter(Some(&StorePath::from(folder)))
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(listed
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect())
    }

    /// Every file under a folder of the lake whose name ends in `suffix`, with its bytes.
    pub async fn read_all(
        &self,
        folder: &str,
        suffix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, LocationError> {
        let store = self.store()?;
        let metas: Vec<_> = store
            .list(Some(&StorePath::from(folder)))
            .try_collect()
            .await
            .map_err(|e| self.store_error(e))?;
        let mut out = Vec::with_capacity(metas.len());
        for meta in metas
            .into_iter()
            .filter(|m| m.location.as_ref().ends_with(suffix))
        {
            use object_store::ObjectStoreExt;
            let got = store
                .get(&meta.location)
                .await
                .map_err(|e| self.store_error(e))?;
            let bytes = got.bytes().await.map_err(|e| self.store_error(e))?;
            out.push((meta.location.to_string(), bytes.to_vec()));
        }
        Ok(out)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.local {
            Some(dir) => write!(f, "{}", dir.display()),
            None => write!(f, "{}", self.url.as_str().trim_end_matches('/')),
        }
    }
}

/// Credentials are never printed.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

impl std::str::FromStr for Location {
    type Err = LocationError;
    fn from_str(s: &str) -> Result<Location, LocationError> {
        Location::parse(s)
    }
}

impl From<&Path> for Location {
    fn from(dir: &Path) -> Location {
        Location::local(dir)
    }
}

impl From<PathBuf> for Location {
    fn from(dir: PathBuf) -> Location {
        Location::local(dir)
    }
}

impl From<&PathBuf> for Location {
    fn from(dir: &PathBuf) -> Location {
        Location::local(dir)
    }
}

impl From<&Location> for Location {
    fn from(l: &Location) -> Location {
        l.clone()
    }
}

impl<'de> serde::Deserialize<'de> for Location {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Location, D::Error> {
        let text = String::deserialize(d)?;
        Location::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls_name_their_store() {
        let local = Location::parse("./lake").unwrap();
        assert_eq!(local.as_local(), Some(Path::new("./lake")));
        assert!(
            local
                .join("service_events")
                .as_str()
                .ends_with("/lake/service_events")
        );
        let s3 = Location::parse("s3://bucket/city/lake").unwrap();
        assert_eq!(s3.as_local(), None);
        assert_eq!(s3.join("orders").as_str(), "s3://bucket/city/lake/orders");
        assert_eq!(s3.to_string(), "s3://bucket/city/lake");
        let e = Location::parse("gs://b/x").unwrap_err().to_string();
        assert!(e.contains("`gs://` is not a supported store"), "{e}");
        let e = Location::parse("s3:///x").unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
    }

    #[test]
    fn settings_become_store_options_and_are_never_printed() {
        let s = StoreSettings {
            endpoint: Some("http://127.0.0.1:9000".into()),
            secret_access_key: Some("sekrit".into()),
            path_style: Some(true),
            allow_http: Some(true),
            ..Default::default()
        };
        let l = Location::parse("s3://b/lake").unwrap().with_settings(&s);
        assert_eq!(l.options()["aws_virtual_hosted_style_request"], "false");
        assert_eq!(l.options()["aws_allow_http"], "true");
        assert!(!format!("{l:?} {l}").contains("sekrit"));
    }
}
