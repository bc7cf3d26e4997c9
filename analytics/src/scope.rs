//! Geography: the levels KPIs are grouped by, and the scopes that restrict what a
//! question (an `area`) or a caller (a token's scope) may see. A scope is applied to the
//! units a query reads, inside the query layer: rows outside it are never computed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::reference::Unit;

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    City,
    District,
    Street,
    Unit,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::City => "city",
            Level::District => "district",
            Level::Street => "street",
            Level::Unit => "unit",
        }
    }

    /// The area a unit's events count toward at this level.
    pub fn area_of(self, u: &Unit) -> String {
        match self {
            Level::City => "city".to_string(),
            Level::District => u.district.clone(),
            Level::Street => u.street.clone(),
            Level::Unit => u.id.clone(),
        }
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "city" => Ok(Level::City),
            "district" => Ok(Level::District),
            "street" => Ok(Level::Street),
            "unit" => Ok(Level::Unit),
            _ => Err(format!(
                "unknown level {s:?}: expected city, district, street or unit"
            )),
        }
    }
}

/// A part of the network: everything, a district, a street or one unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Scope {
    City,
    District(String),
    Street(String),
    Unit(String),
}

impl Scope {
    pub fn contains(&self, u: &Unit) -> bool {
        match self {
            Scope::City => true,
            Scope::District(d) => &u.district == d,
            Scope::Street(s) => &u.street == s,
            Scope::Unit(id) => &u.id == id,
        }
    }

    /// Read a query's `area`: six digits name a district, nine a street, anything else
    /// a unit id.
    pub fn from_area(area: &str) -> Scope {
        let digits = area.chars().all(|c| c.is_ascii_digit());
        match area.len() {
            6 if digits => Scope::District(area.to_string()),
            9 if digits => Scope::Street(area.to_string()),
            _ => Scope::Unit(area.to_string()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::City => f.write_str("city"),
            Scope::District(d) => write!(f, "district:{d}"),
            Scope::Street(s) => write!(f, "street:{s}"),
            Scope::Unit(u) => write!(f, "unit:{u}"),
        }
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for Scope {
    type Err = String;
    /// `city`, `district:330203`, `street:330203001` or `unit:ID`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "bad scope {s:?}: expected city, district:<6 digits>, street:<9 digits> or unit:<id>"
            )
        };
        if s == "city" {
            return Ok(Scope::City);
        }
        let (kind, code) = s.split_once(':').ok_or_else(bad)?;
        let digits = |n: usize| code.len() == n && code.chars().all(|c| c.is_ascii_digit());
        match kind {
            "district" if digits(6) => Ok(Scope::District(code.into())),
            "street" if digits(9) => Ok(Scope::Street(code.into())),
            "unit" if !code.is_empty() && code.chars().count() <= 64 => {
                Ok(Scope::Unit(code.into()))
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_back() {
        for s in ["city", "district:330203", "street:330203001", "unit:S-1"] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
        for bad in ["district:33", "street:abc", "unit:", "town:1", ""] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
        assert_eq!(Scope::from_area("330203"), Scope::District("330203".into()));
        assert_eq!(
            Scope::from_area("330203001"),
            Scope::Street("330203001".into())
        );
        assert_eq!(
            Scope::from_area("S330203001001"),
            Scope::Unit("S330203001001".into())
        );
    }
}
