//! The second, independent path: every KPI computed by wenming equals the same KPI read
//! by plain DuckDB SQL over the lake's Parquet files (`tests/interop/kpis_duckdb.py`),
//! for generated data and for the hand-written edge cases, in several
//! granularity × level shapes.
//!
//! Needs Python with `duckdb` and `deltalake`; skipped when they are missing unless
//! WENMING_TEST_PYTHON is set (CI sets it, so there it cannot be skipped).

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;
use wenming_analytics::{Analytics, Granularity, Kpi, KpiRequest, Level, Scope};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/interop/kpis_duckdb.py"
);

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import duckdb, deltalake"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("WENMING_TEST_PYTHON").is_err(),
            "WENMING_TEST_PYTHON is set but python3 with duckdb and deltalake is not available"
        );
        eprintln!("skipping: python3 with duckdb and deltalake not available");
    }
    ok
}

fn duckdb_kpis(lake: &std::path::Path, from: &str, to: &str, g: &str, level: &str) -> Value {
    let out = Command::new("python3")
        .args([SCRIPT, lake.to_str().unwrap(), from, to, g, level])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the DuckDB script")
}

fn same(a: &Value, b: Option<f64>) -> bool {
    match (a.as_f64(), b) {
        (None, None) => a.is_null(),
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => false,
    }
}

/// Compare every KPI for one shape; returns how many rows were compared.
async fn compare(
    a: &Analytics,
    lake: &std::path::Path,
    from: &str,
    to: &str,
    g: Granularity,
    level: Level,
) -> usize {
    let expected = duckdb_kpis(lake, from, to, g.name(), level.name());
    let mut compared = 0;
    for kpi in Kpi::ALL {
        let req = KpiRequest {
            kpi: *kpi,
            from: d(from),
            to: d(to),
            granularity: g,
            level,
            area: None,
            compare: None,
            top: None,
        };
        let ours = a.kpi(&req, &Scope::City).await.unwrap();
        let theirs = expected[kpi.name()].as_array().unwrap();
        let shape = format!("{} {g} {}", kpi.name(), level.name());
        assert_eq!(
            ours.rows.len(),
            theirs.len(),
            "{shape}: row count; ours {:?}",
            ours.rows.iter().take(5).collect::<Vec<_>>()
        );
        for (r, t) in ours.rows.iter().zip(theirs) {
            let t = t.as_array().unwrap();
            let extra = match (&r.star, &r.rank) {
                (Some(s), _) => serde_json::json!(s),
                (_, Some(rank)) => serde_json::json!([rank, r.volunteer_id]),
                _ => Value::Null,
            };
            let ok = r.period.to_string() == t[0].as_str().unwrap()
                && r.area == t[1].as_str().unwrap()
                && same(&t[2], r.value.map(|v| v.as_f64()))
                && same(&t[3], r.numerator.map(|v| v.as_f64()))
                && same(&t[4], r.denominator.map(|v| v.as_f64()))
                && extra == t[5];
            assert!(ok, "{shape}: ours {r:?}, DuckDB {t:?}");
            compared += 1;
        }
    }
    compared
}

#[tokio::test]
async fn generated_data_agrees_with_duckdb() {
    if !python_ready() {
        return;
    }
    let mut options = wenming_synth::Options::new(wenming_synth::Scale::Tiny, 11);
    options.duplicate_rate = 0.01;
    let mut lines = Vec::new();
    wenming_synth::generate(&options, &mut lines, |_| {}).unwrap();
    let mut stream = Stream::default();
    stream.lines = String::from_utf8(lines)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let (dir, a) = lake_of(&stream).await;
    let lake = dir.path().join("lake");
    let mut rows = 0;
    for (g, level) in [
        (Granularity::Month, Level::District),
        (Granularity::Week, Level::Street),
        (Granularity::Day, Level::Unit),
        (Granularity::Quarter, Level::City),
        (Granularity::Total, Level::Street),
    ] {
        rows += compare(&a, &lake, "2024-01-01", "2024-02-29", g, level).await;
    }
    // A range that starts and ends mid-period.
    rows += compare(
        &a,
        &lake,
        "2024-01-10",
        "2024-02-20",
        Granularity::Month,
        Level::Unit,
    )
    .await;
    assert!(rows > 5000, "only {rows} rows compared");
}

#[tokio::test]
async fn edge_cases_agree_with_duckdb() {
    if !python_ready() {
        return;
    }
    let (dir, a) = common::fixture::fixture().await;
    let lake = dir.path().join("lake");
    for (from, to, g, level) in [
        (
            "2024-01-01",
            "2024-02-29",
            Granularity::Month,
            Level::District,
        ),
        ("2024-01-01", "2024-03-31", Granularity::Month, Level::Unit),
        ("2024-01-25", "2024-02-05", Granularity::Day, Level::Street),
        ("2023-12-01", "2025-01-05", Granularity::Week, Level::City),
        (
            "2023-11-15",
            "2025-02-10",
            Granularity::Quarter,
            Level::District,
        ),
        ("2024-01-31", "2024-02-01", Granularity::Total, Level::Unit),
    ] {
        compare(&a, &lake, from, to, g, level).await;
    }
}
