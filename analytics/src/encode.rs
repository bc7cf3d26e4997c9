//! Result encodings, one enum and one function each way, shared by the CLI and the API
//! (which only maps HTTP `Accept` headers onto `Format`).

use std::str::FromStr;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::AnalyticsError;
use crate::kpi::{KpiResponse, Num};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A text table for people.
    Table,
    /// JSON: an array of row objects for SQL, the contract's shape for KPIs.
    Json,
    /// CSV with a header line.
    Csv,
    /// Arrow IPC stream.
    Arrow,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "arrow" => Ok(Format::Arrow),
            _ => Err(format!(
                "unknown format {s:?}: expected table, json, csv or arrow"
            )),
        }
    }
}

/// Encode query results.
pub fn batches(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, AnalyticsError> {
    let mut out = Vec::new();
    match format {
        Format::Table => {
            let text = arrow::util::pretty::pretty_format_batches(batches)?.to_string();
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            if batches.iter().all(|b| b.num_rows() == 0) {
                out.clear();
                out.extend_from_slice(b"[]");
            }
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if batches.is_empty() {
                let empty = RecordBatch::new_empty(schema.clone());
                w.write(&empty)?;
            }
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Arrow => {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(out)
}

/// The columns of a KPI answer as a table or CSV shows them.
fn kpi_columns(r: &KpiResponse) -> Vec<&'static str> {
    let mut cols = vec!["period", "area", "area_name"];
    if r.rows.iter().any(|x| x.star.is_some()) {
        cols.push("star");
    }
    if r.rows.iter().any(|x| x.rank.is_some()) {
        cols.extend(["rank", "volunteer_id"]);
    }
    cols.extend(["value", "numerator", "denominator"]);
    if r.compare.is_some() {
        cols.extend(["previous", "change"]);
    }
    cols
}

fn num(n: Option<Num>) -> String {
    match n {
        None => String::new(),
        Some(Num::Int(i)) => i.to_string(),
        Some(Num::Real(f)) => format!("{f}"),
    }
}

fn kpi_cells(r: &KpiResponse) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let cols = kpi_columns(r);
    let rows = r
        .rows
        .iter()
        .map(|row| {
            cols.iter()
                .map(|c| match *c {
                    "period" => row.period.to_string(),
                    "area" => row.area.clone(),
                    "area_name" => row.area_name.clone().unwrap_or_default(),
                    "star" => row.star.map(|s| s.to_string()).unwrap_or_default(),
                    "rank" => row.rank.map(|s| s.to_string()).unwrap_or_default(),
                    "volunteer_id" => row.volunteer_id.clone().unwrap_or_default(),
                    "value" => num(row.value),
                    "numerator" => num(row.numerator),
                    "denominator" => num(row.denominator),
                    "previous" => num(row.previous.flatten()),
                    "change" => row
                        .change
                        .flatten()
                        .map(|c| format!("{c}"))
                        .unwrap_or_default(),
                    _ => String::new(),
                })
                .collect()
        })
        .collect();
    (cols, rows)
}

/// Encode a KPI answer (`Arrow` is not offered for KPIs).
pub fn kpi(format: Format, r: &KpiResponse) -> Result<Vec<u8>, AnalyticsError> {
    match format {
        Format::Json => serde_json::to_vec_pretty(r)
            .map_err(|e| AnalyticsError::BadRequest(format!("cannot encode: {e}"))),
        Format::Csv => {
            let (cols, rows) = kpi_cells(r);
            csv(&cols, &rows)
        }
        Format::Table => {
            let (cols, rows) = kpi_cells(r);
            let widths: Vec<usize> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    rows.iter()
                        .map(|r| r[i].chars().count())
                        .max()
                        .unwrap_or(0)
                        .max(c.len())
                })
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            let mut out = format!(
                "{}{} by {}, {}..{}{}\n",
                r.kpi,
                r.area
                    .as_deref()
                    .map(|a| format!(" in {a}"))
                    .unwrap_or_default(),
                r.level.name(),
                r.from,
                r.to,
                r.compare
                    .map(|c| format!(", compared {}", c.name()))
                    .unwrap_or_default()
            );
            out.push_str(&line(cols.iter().map(|c| c.to_string()).collect()));
            out.push('\n');
            for row in rows {
                out.push_str(&line(row));
                out.push('\n');
            }
            Ok(out.into_bytes())
        }
        Format::Arrow => Err(AnalyticsError::BadRequest(
            "KPIs are served as JSON, CSV or a table; Arrow is for SQL results".into(),
        )),
    }
}

/// CSV for spreadsheets, by the `csv` crate (quotes commas, quotes, CR and LF), with
/// every text cell a spreadsheet would take for a formula neutralised as OWASP advises:
/// a leading `=`, `+`, `-`, `@`, tab or CR gets a `'` before it. Numbers stay numbers.
/// Unit names and ids come from stations' events: a station named `=HYPERLINK(…)` must
/// open as that text.
pub fn csv<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> Result<Vec<u8>, AnalyticsError> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    let fail = |e: ::csv::Error| AnalyticsError::BadRequest(format!("cannot encode CSV: {e}"));
    w.write_record(header).map_err(fail)?;
    for row in rows {
        w.write_record(row.iter().map(|c| neutralised(c.as_ref()).into_owned()))
            .map_err(fail)?;
    }
    w.into_inner()
        .map_err(|e| AnalyticsError::BadRequest(format!("cannot encode CSV: {e}")))
}

/// A cell as a spreadsheet may open it safely (see `csv`).
pub fn neutralised(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.parse::<f64>().is_err() {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cells_that_would_be_formulas_are_neutralised() {
        for (cell, want) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+1+1", "'+1+1"),
            ("-cmd", "'-cmd"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("-1.5", "-1.5"),
            ("S330203001001", "S330203001001"),
        ] {
            assert_eq!(neutralised(cell), want);
        }
        let out = csv(&["a", "b"], &[vec!["x\ry", "=1"]]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a,b\n\"x\ry\",'=1\n");
    }
}
