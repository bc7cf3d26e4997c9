//! The configuration file: `wenming.toml` in the working directory, or the file named by
//! `--config FILE` or `WENMING_CONFIG`. Every `key = value` of a `[section]` becomes the
//! environment variable `WENMING_<SECTION>__<KEY>` unless that is already set, so the
//! order of precedence is: command-line flag, environment, file, built-in default.
//!
//! ```toml
//! [kafka]
//! brokers = "kafka-1:9092,kafka-2:9092"
//! group = "wenming-ingest"
//!
//! [lake]
//! path = "/srv/wenming/lake"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The file to read, if any: `--config FILE` (or `--config=FILE`) anywhere on the
/// command line, else `WENMING_CONFIG`, else `./wenming.toml` when it exists.
fn path_from(args: &[String]) -> Option<(PathBuf, bool)> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().map(|p| (PathBuf::from(p), true));
        }
        if let Some(p) = arg.strip_prefix("--config=") {
            return Some((PathBuf::from(p), true));
        }
    }
    if let Some(p) = std::env::var_os("WENMING_CONFIG") {
        return Some((PathBuf::from(p), true));
    }
    let default = Path::new("wenming.toml");
    default.exists().then(|| (default.to_path_buf(), false))
}

/// Reads the configuration file into environment variables. Must run before any
/// thread starts (it sets environment variables).
pub fn load(args: &[String]) -> anyhow::Result<Option<PathBuf>> {
    let Some((path, named)) = path_from(args) else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    for (name, value) in variables(&text).with_context(|| format!("in {}", path.display()))? {
        if std::env::var_os(&name).is_none() {
            // SAFETY: called from `main` before the runtime or any thread exists.
            unsafe { std::env::set_var(&name, value) };
        }
    }
    Ok(Some(path))
}

/// `[section] key = value` → (`WENMING_SECTION__KEY`, value).
fn variables(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    let mut out = Vec::new();
    for (section, entries) in &table {
        // [[tokens]] and [[exports]] are lists; `serve` reads them from the file itself.
        if entries
            .as_array()
            .is_some_and(|a| a.iter().all(|v| v.is_table()))
        {
            continue;
        }
        let Some(entries) = entries.as_table() else {
            bail!("`{section}` must be a [section] of settings, e.g. [kafka] or [lake]");
        };
        for (key, value) in entries {
            let value = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => bail!(
                    "[{section}] {key}: expected a string, number or boolean, not {}",
                    other.type_str()
                ),
            };
            let name = format!(
                "WENMING_{}__{}",
                section.to_uppercase().replace('-', "_"),
                key.to_uppercase().replace('-', "_")
            );
            out.push((name, value));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_keys_become_variables() {
        let vars = variables(
            "[kafka]\nbrokers = \"k:9092\"\ndlq-topic = \"x.dlq\"\n[ingest]\nflush_ms = 500\n",
        )
        .unwrap();
        assert!(vars.contains(&("WENMING_KAFKA__BROKERS".into(), "k:9092".into())));
        assert!(vars.contains(&("WENMING_KAFKA__DLQ_TOPIC".into(), "x.dlq".into())));
        assert!(vars.contains(&("WENMING_INGEST__FLUSH_MS".into(), "500".into())));
    }

    #[test]
    fn a_setting_outside_a_section_is_refused_by_name() {
        let err = variables("brokers = \"k:9092\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("`brokers` must be a [section]"),
            "{err:#}"
        );
        assert!(variables("[kafka\n").is_err());
    }

    #[test]
    fn the_config_flag_wins_over_the_default_file() {
        let args: Vec<String> = ["wenming", "ingest", "--config", "a.toml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(path_from(&args), Some((PathBuf::from("a.toml"), true)));
        let args: Vec<String> = ["wenming", "--config=b.toml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(path_from(&args), Some((PathBuf::from("b.toml"), true)));
    }
}
