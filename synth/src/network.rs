//! The practice network of a scale: districts (中心), streets (所), stations (站) and
//! practice points (点), with residents, households, teams and volunteer counts drawn
//! from real-looking distributions.

use chrono::NaiveDate;
use rand::Rng;
use wenming_schemas::field::Level;

use crate::rng::{self, SimRng};

/// How big a network to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// 1 district, 2 streets, 8 stations, 2 points; 2 months by default. For tests.
    Tiny,
    /// 1 district, 12 streets, 150 stations, 75 points; 1 year by default.
    District,
    /// 10 districts, 150 streets, 2,000 stations, 1,000 points; 1 year by default.
    City,
}

impl Scale {
    pub fn parse(s: &str) -> Option<Scale> {
        match s {
            "tiny" => Some(Scale::Tiny),
            "district" => Some(Scale::District),
            "city" => Some(Scale::City),
            _ => None,
        }
    }

    /// (districts, streets, stations, points)
    pub fn shape(self) -> (usize, usize, usize, usize) {
        match self {
            Scale::Tiny => (1, 2, 8, 2),
            Scale::District => (1, 12, 150, 75),
            Scale::City => (10, 150, 2000, 1000),
        }
    }

    /// The default date range: two months for tiny, one year otherwise.
    pub fn default_range(self) -> (NaiveDate, NaiveDate) {
        let from = NaiveDate::from_ymd_opt(2024, 1, 1).expect("a real date");
        let to = match self {
            Scale::Tiny => NaiveDate::from_ymd_opt(2024, 2, 29),
            _ => NaiveDate::from_ymd_opt(2024, 12, 31),
        }
        .expect("a real date");
        (from, to)
    }
}

/// Districts of a city (Ningbo's codes, for realism); the first is used by smaller scales.
const DISTRICTS: &[(&str, &str)] = &[
    ("330203", "海曙区"),
    ("330205", "江北区"),
    ("330206", "北仑区"),
    ("330211", "镇海区"),
    ("330212", "鄞州区"),
    ("330213", "奉化区"),
    ("330225", "象山县"),
    ("330226", "宁海县"),
    ("330281", "余姚市"),
    ("330282", "慈溪市"),
];

const SYLLABLES: &[&str] = &[
    "和", "平", "安", "康", "福", "明", "华", "新", "兴", "阳", "光", "春", "秋", "东", "西", "南",
    "北", "湖", "山", "桥", "文", "昌", "景", "丰", "泰", "宁", "海", "月", "望", "梅",
];

fn place_name(rng: &mut SimRng) -> String {
    let a = SYLLABLES[rng.random_range(0..SYLLABLES.len())];
    let b = SYLLABLES[rng.random_range(0..SYLLABLES.len())];
    format!("{a}{b}")
}

/// One unit of the network and its static traits.
#[derive(Debug, Clone)]
pub struct UnitInfo {
    /// Index in the network; part of every id the unit issues.
    pub no: u32,
    pub id: String,
    pub level: Level,
    pub parent: Option<u32>,
    pub parent_id: Option<String>,
    pub area_code: String,
    pub name: String,
    /// 常住人口: stations only, 0 elsewhere.
    pub residents: i64,
    pub households: i64,
    /// Opened inside the range (registered then); `None`: existed before it.
    pub opens: Option<NaiveDate>,
    /// Closed inside the range.
    pub closes: Option<NaiveDate>,
    /// The station whose residents attend this unit's activities.
    pub pool_station: u32,
    /// Residents in that station's pool (for person ids).
    pub pool_size: i64,
    pub initial_volunteers: u32,
    pub teams: u32,
    /// Activities a month on average.
    pub activities_per_month: f64,
}

/// Builds the network of a scale, deterministically for a seed.
pub fn build(scale: Scale, seed: u64, from: NaiveDate, to: NaiveDate) -> Vec<UnitInfo> {
    let mut rng = rng::stream(seed, &[0x6e6574]);
    let (n_districts, n_streets, n_stations, n_points) = scale.shape();
    let days = (to - from).num_days().max(1);
    let mut units: Vec<UnitInfo> = Vec::new();
    fn push(units: &mut Vec<UnitInfo>, u: UnitInfo) -> u32 {
        let no = units.len() as u32;
        units.push(UnitInfo { no, ..u });
        no
    }
    let blank = |level: Level| UnitInfo {
        no: 0,
        id: String::new(),
        level,
        parent: None,
        parent_id: None,
        area_code: String::new(),
        name: String::new(),
        residents: 0,
        households: 0,
        opens: None,
        closes: None,
        pool_station: 0,
        pool_size: 0,
        initial_volunteers: 0,
        teams: 0,
        activities_per_month: 0.0,
    };

    let mut station_nos = Vec::new();
    let mut street_count = 0usize;
    for (d, (code, dname)) in DISTRICTS.iter().take(n_districts).enumerate() {
        let center = push(
            &mut units,
            UnitInfo {
                id: format!("C{code}"),
                area_code: format!("{code}000000"),
                name: format!("{dname}新时代文明实践中心"),
                initial_volunteers: rng.random_range(100..300),
                teams: rng.random_range(3..9),
                activities_per_month: 6.0,
                ..blank(Level::Center)
            },
        );
        // Spread streets and stations evenly, the remainder to the first ones.
        let streets_here = n_streets / n_districts + usize::from(d < n_streets % n_districts);
        for s in 0..streets_here {
            let street = format!("{code}{:03}", s + 1);
            let sname = place_name(&mut rng);
            let institute = push(
                &mut units,
                UnitInfo {
                    id: format!("I{street}"),
                    parent: Some(center),
                    area_code: format!("{street}000"),
                    name: format!("{sname}街道新时代文明实践所"),
                    initial_volunteers: rng.random_range(30..100),
                    teams: rng.random_range(2..5),
                    activities_per_month: 3.0,
                    ..blank(Level::Institute)
                },
            );
            let street_index = street_count;
            street_count += 1;
            let stations_here =
                n_stations / n_streets + usize::from(street_index < n_stations % n_streets);
            for k in 0..stations_here {
                let code12 = format!("{street}{:03}", k + 1);
                // Residents: skewed, 1,000..=25,000, median ≈ 2,800 (many small villages).
                let residents = rng::lognormal(&mut rng, 2800.0, 0.7).clamp(1000.0, 25000.0) as i64;
                let households = (residents as f64 / rng.random_range(2.0..2.45)) as i64;
                let opens = rng::chance(&mut rng, 0.01)
                    .then(|| from + chrono::Duration::days(rng.random_range(1..days)));
                let closes = (opens.is_none() && rng::chance(&mut rng, 0.005))
                    .then(|| from + chrono::Duration::days(rng.random_range(1..days)));
                let share = rng.random_range(0.10..0.20);
                let no = push(
                    &mut units,
                    UnitInfo {
                        id: format!("S{code12}"),
                        parent: Some(institute),
                        area_code: code12,
                        name: format!("{}社区新时代文明实践站", place_name(&mut rng)),
                        residents,
                        households,
                        opens,
                        closes,
                        pool_size: residents,
                        initial_volunteers: (residents as f64 * share) as u32,
                        teams: rng.random_range(2..7),
                        activities_per_month: 5.0,
                        ..blank(Level::Station)
                    },
                );
                units[no as usize].pool_station = no;
                station_nos.push(no);
            }
            // Residents of the street's first station attend the institute's activities.
            if let Some(&first) = station_nos.get(station_nos.len() - stations_here) {
                units[institute as usize].pool_station = first;
                units[institute as usize].pool_size = units[first as usize].residents;
            }
        }
        let first = units
            .iter()
            .find(|u| u.level == Level::Station && u.area_code.starts_with(code))
            .map(|u| (u.no, u.residents))
            .unwrap_or((0, 0));
        units[center as usize].pool_station = first.0;
        units[center as usize].pool_size = first.1;
    }

    // Practice points hang under stations, spread evenly.
    for p in 0..n_points {
        let parent = station_nos[p * station_nos.len() / n_points.max(1)];
        let (code, pool) = {
            let s = &units[parent as usize];
            (s.area_code.clone(), s.residents)
        };
        let closes = rng::chance(&mut rng, 0.02)
            .then(|| from + chrono::Duration::days(rng.random_range(1..days)));
        push(
            &mut units,
            UnitInfo {
                id: format!("P{code}-{}", p + 1),
                parent: Some(parent),
                area_code: code,
                name: format!("{}新时代文明实践点", place_name(&mut rng)),
                closes,
                pool_station: parent,
                pool_size: pool,
                initial_volunteers: rng.random_range(10..40),
                teams: 1,
                activities_per_month: 1.5,
                ..blank(Level::Point)
            },
        );
    }
    // Every network shows both edge cases offices must handle: a station that opens
    // inside the range and one that closes inside it.
    if station_nos.len() >= 2 {
        let opening = station_nos[station_nos.len() - 1] as usize;
        if !units
            .iter()
            .any(|u| u.level == Level::Station && u.opens.is_some())
        {
            units[opening].opens = Some(from + chrono::Duration::days(days / 3));
            units[opening].closes = None;
        }
        if !units
            .iter()
            .any(|u| u.level == Level::Station && u.closes.is_some())
        {
            let closing = station_nos[station_nos.len() / 2] as usize;
            units[closing].closes = Some(from + chrono::Duration::days(days * 2 / 3));
            units[closing].opens = None;
        }
    }
    for i in 0..units.len() {
        units[i].parent_id = units[i].parent.map(|p| units[p as usize].id.clone());
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn city_has_the_shape_and_population_asked_for() {
        let (from, to) = Scale::City.default_range();
        let units = build(Scale::City, 7, from, to);
        let count = |l: Level| units.iter().filter(|u| u.level == l).count();
        assert_eq!(count(Level::Center), 10);
        assert_eq!(count(Level::Institute), 150);
        assert_eq!(count(Level::Station), 2000);
        assert_eq!(count(Level::Point), 1000);
        let residents: i64 = units.iter().map(|u| u.residents).sum();
        let volunteers: u64 = units.iter().map(|u| u64::from(u.initial_volunteers)).sum();
        assert!((5_000_000..10_000_000).contains(&residents), "{residents}");
        assert!((800_000..1_300_000).contains(&volunteers), "{volunteers}");
        for u in &units {
            assert!(u.id.len() <= 64);
            assert_eq!(u.area_code.len(), 12);
            if u.level == Level::Station {
                assert!((1000..=25000).contains(&u.residents));
            }
        }
        let ids: std::collections::HashSet<_> = units.iter().map(|u| &u.id).collect();
        assert_eq!(ids.len(), units.len());
    }
}
