//! Rollups saved beside the lake, so that a restart resumes from them instead of
//! counting the year again.
//!
//! A part at one set of table versions is a directory `<lake>/_rollups/<part>@<versions>/`
//! holding one Parquet file per kind of fact and per kind of dense id (ids in dense
//! order, so that facts keep their meaning), and a `manifest.json` naming the part, the
//! versions, the time zone its days are local to and the format. It is written under a
//! temporary name and renamed when complete, so a directory under its final name is
//! whole; only the newest of each part is kept. A saved part is used only for exactly
//! the versions and time zone it names: anything else (or a file that cannot be read) is
//! reported and the part is counted from the views, as if nothing had been saved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::store::Interner;
use super::{Participation, Service, str_column};
use crate::error::AnalyticsError;

/// Bumped when the files of a part change meaning; other formats are not read.
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A part's files: (name, rows).
pub type Files = Vec<(&'static str, RecordBatch)>;

/// A saved part's files, read back by name.
pub struct Loaded {
    dir: PathBuf,
    files: HashMap<String, Vec<RecordBatch>>,
}

impl Loaded {
    /// The rows of the file `name`.
    pub fn take(&mut self, name: &str) -> Result<Vec<RecordBatch>, SavedError> {
        self.files.remove(name).ok_or_else(|| SavedError::Invalid {
            path: self.dir.clone(),
            message: format!("no {name}.parquet"),
        })
    }

    /// The ids of the file `name`, interned in their saved order.
    pub(crate) fn ids(&mut self, name: &str) -> Result<Interner, SavedError> {
        let path = self.dir.join(format!("{name}.parquet"));
        let invalid = |message: String| SavedError::Invalid {
            path: path.clone(),
            message,
        };
        let mut interner = Interner::default();
        for batch in self.take(name)? {
            let ids = str_column(&batch, 0).map_err(|e| invalid(e.to_string()))?;
            for i in 0..batch.num_rows() {
                let id = ids.get(i).ok_or_else(|| invalid("a null id".into()))?;
                let next = interner.len();
                if interner.intern(id) as usize != next {
                    return Err(invalid(format!("the id {id:?} twice")));
                }
            }
        }
        Ok(interner)
    }

    /// An error about this part's files.
    pub fn invalid(&self, message: impl Into<String>) -> SavedError {
        SavedError::Invalid {
            path: self.dir.clone(),
            message: message.into(),
        }
    }
}

/// One file of ids, in dense order.
pub fn ids_file(ids: &[Arc<str>]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let ids: StringArray = ids.iter().map(|s| Some(&**s)).collect();
    RecordBatch::try_from_iter([("id", Arc::new(ids) as ArrayRef)])
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    part: String,
    versions: String,
    tz: String,
}

/// Where parts are saved, and when each was saved last.
pub struct Saved {
    dir: PathBuf,
    /// Saved at most this often (the newest version then), and when the server stops;
    /// `None`: only read, never written.
    every: Option<Duration>,
    /// Per part: when it was last saved, at which versions, and whether a save is under way.
    state: Mutex<HashMap<&'static str, Progress>>,
}

#[derive(Default)]
struct Progress {
    last: Option<(Instant, String)>,
    saving: bool,
}

impl Saved {
    pub fn new(dir: PathBuf, every: Option<Duration>) -> Saved {
        Saved {
            dir,
            every,
            state: Mutex::default(),
        }
    }

    /// Whether `part` at `versions` is to be saved now: not saved at these versions, the
    /// last save `every` ago or more, no save under way. When true, the caller saves and
    /// then calls `finished`.
    pub fn due(&self, part: &'static str, versions: &str, forced: bool) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        let mut state = self.state.lock().expect("not poisoned");
        let p = state.entry(part).or_default();
        let due = !p.saving
            && match &p.last {
                None => true,
                Some((_, v)) if v == versions => false,
                Some((at, _)) => forced || at.elapsed() >= every,
            };
        p.saving |= due;
        due
    }

    /// A save of `part` ended (`versions`: saved at those, or `None`: failed).
    pub fn finished(&self, part: &'static str, versions: Option<&str>) {
        let mut state = self.state.lock().expect("not poisoned");
        let p = state.entry(part).or_default();
        p.saving = false;
        if let Some(v) = versions {
            p.last = Some((Instant::now(), v.to_string()));
        }
    }

    /// Whether `part` at `versions` was the last saved.
    pub fn is_saved(&self, part: &'static str, versions: &str) -> bool {
        let state = self.state.lock().expect("not poisoned");
        state
            .get(part)
            .and_then(|p| p.last.as_ref())
            .is_some_and(|(_, v)| v == versions)
    }

    /// Note that `part` at `versions` is on disk already (it was loaded from there).
    pub fn loaded(&self, part: &'static str, versions: &str) {
        self.finished(part, Some(versions));
    }

    fn part_dir(&self, part: &str, versions: &str) -> PathBuf {
        self.dir.join(format!("{part}@{versions}"))
    }

    /// Write `files` as `part` at `versions`, then remove the part's older directories.
    pub fn write(
        &self,
        part: &'static str,
        versions: &str,
        tz: &str,
        files: Files,
    ) -> Result<(), SavedError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SavedError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let tmp = self
            .dir
            .join(format!(".{part}@{versions}.{}.tmp", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        for (name, batch) in files {
            let path = tmp.join(format!("{name}.parquet"));
            let parquet = |e: datafusion::parquet::errors::ParquetError| SavedError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            };
            let file = std::fs::File::create(&path).map_err(io(&path))?;
            let mut writer =
                ArrowWriter::try_new(file, batch.schema(), Some(props.clone())).map_err(parquet)?;
            writer.write(&batch).map_err(parquet)?;
            writer.close().map_err(parquet)?;
        }
        let manifest = Manifest {
            format: FORMAT,
            part: part.to_string(),
            versions: versions.to_string(),
            tz: tz.to_string(),
        };
        let path = tmp.join("manifest.json");
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        std::fs::write(&path, json).map_err(io(&path))?;
        let done = self.part_dir(part, versions);
        if done.exists() {
            std::fs::remove_dir_all(&done).map_err(io(&done))?;
        }
        std::fs::rename(&tmp, &done).map_err(io(&tmp))?;
        // Older versions of the part, and what a process stopped mid-write left.
        for entry in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            let older = name.starts_with(&format!("{part}@"))
                || (name.starts_with(&format!(".{part}@")) && entry.path() != tmp);
            if older && entry.path() != done {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// `part` as saved at exactly `versions` in time zone `tz`; `Ok(None)` when it was
    /// not saved at those.
    pub fn read(&self, part: &str, versions: &str, tz: &str) -> Result<Option<Loaded>, SavedError> {
        let dir = self.part_dir(part, versions);
        let path = dir.join("manifest.json");
        let json = match std::fs::read(&path) {
            Ok(json) => json,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SavedError::Io { path, source }),
        };
        let invalid = |message: String| SavedError::Invalid {
            path: path.clone(),
            message,
        };
        let manifest: Manifest =
            serde_json::from_slice(&json).map_err(|e| invalid(e.to_string()))?;
        if manifest.format != FORMAT || manifest.part != part || manifest.versions != versions {
            return Err(invalid(format!(
                "format {} of {}@{}, not format {FORMAT} of {part}@{versions}",
                manifest.format, manifest.part, manifest.versions
            )));
        }
        if manifest.tz != tz {
            return Err(invalid(format!(
                "days local to {}, not to the configured {tz}",
                manifest.tz
            )));
        }
        let mut files = HashMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|source| SavedError::Io {
            path: dir.clone(),
            source,
        })? {
            let path = entry
                .map_err(|source| SavedError::Io {
                    path: dir.clone(),
                    source,
                })?
                .path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".parquet"))
            else {
                continue;
            };
            let invalid = |e: &dyn std::fmt::Display| SavedError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            };
            let file = std::fs::File::open(&path).map_err(|source| SavedError::Io {
                path: path.clone(),
                source,
            })?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| invalid(&e))?
                .with_batch_size(64 * 1024)
                .build()
                .map_err(|e| invalid(&e))?;
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(&e))?;
            files.insert(name.to_string(), batches);
        }
        Ok(Some(Loaded { dir, files }))
    }
}

/// A part that can be saved beside the lake.
pub trait SavedPart: Sized + Send + Sync + 'static {
    /// Its name in `saved`'s directories.
    const NAME: &'static str;
    /// The views it follows the changes of: computed at the versions it is resumed at,
    /// so that the next versions are updates of them.
    const VIEWS: &'static [&'static str];
    type Versions: Send + 'static;
    fn to_files(&self) -> Result<Files, AnalyticsError>;
    fn from_files(files: Loaded, versions: Self::Versions) -> Result<Self, SavedError>;
}

impl SavedPart for Participation {
    const NAME: &'static str = "participation";
    const VIEWS: &'static [&'static str] = &["activities", "attendance"];
    type Versions = (Option<u64>, Option<u64>);
    fn to_files(&self) -> Result<Files, AnalyticsError> {
        Participation::to_files(self)
    }
    fn from_files(files: Loaded, versions: Self::Versions) -> Result<Self, SavedError> {
        Participation::from_files(files, versions)
    }
}

impl SavedPart for Service {
    const NAME: &'static str = "service";
    const VIEWS: &'static [&'static str] = &["service_records"];
    type Versions = Option<u64>;
    fn to_files(&self) -> Result<Files, AnalyticsError> {
        Service::to_files(self)
    }
    fn from_files(files: Loaded, version: Self::Versions) -> Result<Self, SavedError> {
        Service::from_files(files, version)
    }
}
