//! The files of an export run: CSV (formula-like cells neutralised), XLSX (a sheet per
//! KPI, Chinese headers) and Parquet, the same rows in each.

use super::*;

/// Rows of all answers as text cells: kpi, period, area, area_name, star, rank,
/// volunteer_id, value, numerator, denominator.
fn cells(answers: &[(Kpi, Arc<KpiResponse>)]) -> Vec<[String; 10]> {
    let n = |x: Option<Num>| {
        x.map(|v| match v {
            Num::Int(i) => i.to_string(),
            Num::Real(f) => f.to_string(),
        })
        .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (kpi, a) in answers {
        for r in &a.rows {
            out.push([
                kpi.name().to_string(),
                r.period.to_string(),
                r.area.clone(),
                r.area_name.clone().unwrap_or_default(),
                r.star.map(|s| s.to_string()).unwrap_or_default(),
                r.rank.map(|s| s.to_string()).unwrap_or_default(),
                r.volunteer_id.clone().unwrap_or_default(),
                n(r.value),
                n(r.numerator),
                n(r.denominator),
            ]);
        }
    }
    out
}

const COLUMNS: [&str; 10] = [
    "kpi",
    "period",
    "area",
    "area_name",
    "star",
    "rank",
    "volunteer_id",
    "value",
    "numerator",
    "denominator",
];
const COLUMNS_ZH: [&str; 10] = [
    "指标",
    "周期",
    "区域代码",
    "区域",
    "星级",
    "排名",
    "志愿者编号",
    "数值",
    "分子",
    "分母",
];
/// Where the numbers start in `COLUMNS`.
const FIRST_NUMBER: usize = 7;

/// CSV for spreadsheets (`encode::csv`: formula-like text cells neutralised).
pub(super) fn csv(answers: &[(Kpi, Arc<KpiResponse>)]) -> Result<(Vec<u8>, usize), String> {
    let rows = cells(answers);
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.to_vec()).collect();
    let bytes = wenming_analytics::encode::csv(&COLUMNS, &rows).map_err(|e| e.to_string())?;
    Ok((bytes, rows.len()))
}

/// One sheet per KPI, named by its Chinese title, with Chinese column headers. Cells are
/// text or numbers, never formulas; numbers keep full precision and are shown rounded
/// (rates as percent to 0.1, hours to 0.1, counts whole).
pub(crate) fn xlsx(answers: &[(Kpi, Arc<KpiResponse>)]) -> Result<(Vec<u8>, usize), String> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut book = Workbook::new();
    // The workbook's creation time is the snapshot's last commit, not the clock: the
    // same answers make the same bytes (an export re-run from its snapshot has the
    // SHA-256 of the first run).
    let committed = answers
        .iter()
        .filter_map(|(_, a)| a.lineage.as_ref())
        .flat_map(|l| l.tables.values().map(|t| t.committed_at))
        .max()
        .unwrap_or_default();
    let created = rust_xlsxwriter::ExcelDateTime::from_timestamp(committed.timestamp())
        .map_err(|e| e.to_string())?;
    book.set_properties(&rust_xlsxwriter::DocProperties::new().set_creation_datetime(&created));
    let mut total = 0;
    let bold = Format::new().set_bold();
    for (kpi, a) in answers {
        let info = kpi.info();
        let shown = match info.unit {
            "ratio" => "0.0%",
            "activities" | "visits" | "people" | "orders" | "volunteers" => "#,##0",
            _ => "#,##0.0",
        };
        // Parts of a ratio are counts (or hours, for the hour ratios).
        let parts = if info.name.starts_with("hours_per") {
            "#,##0.0"
        } else {
            "#,##0"
        };
        let sheet = book.add_worksheet();
        let title: String = info
            .title_zh
            .chars()
            .filter(|c| !"[]:*?/\\（）".contains(*c))
            .take(31)
            .collect();
        sheet.set_name(&title).map_err(|e| e.to_string())?;
        for (c, h) in COLUMNS_ZH.iter().enumerate().skip(1) {
            sheet
                .write_string_with_format(0, (c - 1) as u16, *h, &bold)
                .map_err(|e| e.to_string())?;
        }
        let rows = cells(&[(*kpi, a.clone())]);
        for (i, r) in rows.iter().enumerate() {
            let row = (i + 1) as u32;
            for (c, v) in r.iter().enumerate().skip(1) {
                let col = (c - 1) as u16;
                if c >= FIRST_NUMBER && !v.is_empty() {
                    let num: f64 = v.parse().unwrap_or_default();
                    let format =
                        Format::new().set_num_format(if c == FIRST_NUMBER { shown } else { parts });
                    sheet
                        .write_number_with_format(row, col, num, &format)
                        .map_err(|e| e.to_string())?;
                } else {
                    sheet.write_string(row, col, v).map_err(|e| e.to_string())?;
                }
            }
        }
        sheet.set_column_width(2, 24).map_err(|e| e.to_string())?;
        total += rows.len();
    }
    let bytes = book.save_to_buffer().map_err(|e| e.to_string())?;
    Ok((bytes, total))
}

pub(super) fn parquet(answers: &[(Kpi, Arc<KpiResponse>)]) -> Result<(Vec<u8>, usize), String> {
    let mut kpi = Vec::new();
    let mut period = Vec::new();
    let mut area = Vec::new();
    let mut area_name: Vec<Option<String>> = Vec::new();
    let mut star: Vec<Option<i64>> = Vec::new();
    let mut rank: Vec<Option<i64>> = Vec::new();
    let mut volunteer: Vec<Option<String>> = Vec::new();
    let mut value: Vec<Option<f64>> = Vec::new();
    let mut numerator: Vec<Option<f64>> = Vec::new();
    let mut denominator: Vec<Option<f64>> = Vec::new();
    for (k, a) in answers {
        for r in &a.rows {
            kpi.push(k.name().to_string());
            period.push(r.period.to_string());
            area.push(r.area.clone());
            area_name.push(r.area_name.clone());
            star.push(r.star.map(i64::from));
            rank.push(r.rank.map(i64::from));
            volunteer.push(r.volunteer_id.clone());
            value.push(r.value.map(Num::as_f64));
            numerator.push(r.numerator.map(Num::as_f64));
            denominator.push(r.denominator.map(Num::as_f64));
        }
    }
    let rows = kpi.len();
    let schema = Arc::new(Schema::new(vec![
        Field::new("kpi", DataType::Utf8, false),
        Field::new("period", DataType::Utf8, false),
        Field::new("area", DataType::Utf8, false),
        Field::new("area_name", DataType::Utf8, true),
        Field::new("star", DataType::Int64, true),
        Field::new("rank", DataType::Int64, true),
        Field::new("volunteer_id", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
        Field::new("numerator", DataType::Float64, true),
        Field::new("denominator", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(kpi)),
        Arc::new(StringArray::from(period)),
        Arc::new(StringArray::from(area)),
        Arc::new(StringArray::from(area_name)),
        Arc::new(Int64Array::from(star)),
        Arc::new(Int64Array::from(rank)),
        Arc::new(StringArray::from(volunteer)),
        Arc::new(Float64Array::from(value)),
        Arc::new(Float64Array::from(numerator)),
        Arc::new(Float64Array::from(denominator)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).map_err(|e| e.to_string())?;
    w.write(&batch).map_err(|e| e.to_string())?;
    w.close().map_err(|e| e.to_string())?;
    Ok((out, rows))
}
