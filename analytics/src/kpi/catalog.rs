//! The KPI catalog: every KPI of the contract (kpis.md v1) with its titles, unit and
//! definition in plain words. The CLI (`wenming kpi --list`), the API (`GET /v1/kpis`)
//! and `docs/kpis.md` all read from here, so a KPI is described once.

use serde::Serialize;

/// What kind of number a KPI is, which decides the shape of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// A count: `value` alone, an integer, 0 when nothing happened.
    Count,
    /// A sum: `value` alone, 0 when nothing happened.
    Sum,
    /// numerator ÷ denominator, both returned; `null` when the denominator is 0.
    Ratio,
    /// A median: `value` alone, `null` when there is nothing to take it of.
    Median,
    /// One count row per star level 1..5.
    Stars,
    /// Up to N rows with `rank` and `volunteer_id`.
    Ranking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kpi {
    ActivitiesHeld,
    ParticipantVisits,
    ResidentVisits,
    UniqueParticipants,
    ParticipationRate,
    ActiveStationRate,
    VolunteerRegistrationRate,
    VolunteerActivityRate,
    ServiceHours,
    ServingVolunteers,
    HoursPerVolunteer,
    HoursPerResident,
    StarVolunteers,
    OrdersPlaced,
    OrderCompletionRate,
    OrderResponseMinutesP50,
    OrderSatisfaction,
    VolunteerRanking,
}

/// A catalog entry, as the API serves it.
#[derive(Debug, Clone, Serialize)]
pub struct KpiInfo {
    pub name: &'static str,
    pub title_zh: &'static str,
    pub title_en: &'static str,
    pub group: &'static str,
    pub unit: &'static str,
    pub shape: Shape,
    pub definition: &'static str,
    /// A target line (volunteer_registration_rate), when the KPI has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
}

macro_rules! catalog {
    ($( $kpi:ident, $name:literal, $zh:literal, $en:literal, $group:literal, $unit:literal, $shape:ident, $def:literal; )*) => {
        impl Kpi {
            pub const ALL: &'static [Kpi] = &[$(Kpi::$kpi),*];

            pub fn name(self) -> &'static str {
                match self { $(Kpi::$kpi => $name),* }
            }

            pub fn parse(s: &str) -> Option<Kpi> {
                match s { $($name => Some(Kpi::$kpi),)* _ => None }
            }

            pub fn info(self) -> KpiInfo {
                match self {
                    $(Kpi::$kpi => KpiInfo {
                        name: $name, title_zh: $zh, title_en: $en, group: $group,
                        unit: $unit, shape: Shape::$shape, definition: $def, target: None,
                    }),*
                }
            }
        }
    };
}

catalog! {
    ActivitiesHeld, "activities_held", "开展活动数", "Activities held", "participation", "activities", Count,
        "Activities published and never cancelled whose start (starts_at) falls in the period, at their unit.";
    ParticipantVisits, "participant_visits", "参与人次", "Participant visits", "participation", "visits", Count,
        "Over the activities held in the period: distinct (activity, person) check-ins plus the anonymous headcount of each activity's latest completion report.";
    ResidentVisits, "resident_visits", "服务群众人次", "Resident visits", "participation", "visits", Count,
        "As participant visits, counting only check-ins with the role resident, plus the anonymous headcounts.";
    UniqueParticipants, "unique_participants", "参与人数", "Unique participants", "participation", "people", Count,
        "Distinct people checked in to activities held in the period.";
    ParticipationRate, "participation_rate", "群众参与率", "Participation rate", "participation", "ratio", Ratio,
        "Distinct residents (role resident) checked in to activities held in the period, divided by the residents of the scope's open stations at the period's end.";
    ActiveStationRate, "active_station_rate", "站点活跃率", "Active station rate", "coverage", "ratio", Ratio,
        "Open stations with at least one activity held in the period, divided by open stations, both at the period's end.";
    VolunteerRegistrationRate, "volunteer_registration_rate", "志愿者注册率", "Volunteer registration rate", "coverage", "ratio", Ratio,
        "Volunteers registered at the period's end whose home unit is in the scope, divided by the residents of the scope then. Target line 13% unless configured otherwise.";
    VolunteerActivityRate, "volunteer_activity_rate", "志愿者活跃度", "Volunteer activity rate", "coverage", "ratio", Ratio,
        "Of the volunteers registered at the period's end with a home unit in the scope, the share with at least one effective service record (anywhere) started in the period.";
    ServiceHours, "service_hours", "志愿服务时长", "Service hours", "service", "hours", Sum,
        "Effective service minutes divided by 60: each record counted once with its latest minutes (amendments applied), revoked records left out, in the period of its start and at its unit.";
    ServingVolunteers, "serving_volunteers", "参与服务志愿者数", "Serving volunteers", "service", "volunteers", Count,
        "Distinct volunteers with an effective service record started in the period at a unit of the scope.";
    HoursPerVolunteer, "hours_per_volunteer", "人均服务时长（志愿者）", "Hours per volunteer", "service", "hours", Ratio,
        "Service hours divided by the volunteers registered at the period's end whose home unit is in the scope.";
    HoursPerResident, "hours_per_resident", "人均服务时长（常住人口）", "Hours per resident", "service", "hours", Ratio,
        "Service hours divided by the residents of the scope at the period's end.";
    StarVolunteers, "star_volunteers", "星级志愿者", "Star volunteers", "service", "volunteers", Stars,
        "Volunteers registered at the period's end (home unit in the scope) by the star level their cumulative effective hours reach by then: 1 star from 100 h, 2 from 300 h, 3 from 600 h, 4 from 1000 h, 5 from 1500 h; each counted once at their highest level.";
    OrdersPlaced, "orders_placed", "群众点单数", "Orders placed", "orders", "orders", Count,
        "Orders placed in the period at a unit of the scope.";
    OrderCompletionRate, "order_completion_rate", "点单完成率", "Order completion rate", "orders", "ratio", Ratio,
        "Of the orders placed in the period, the share completed (at any time up to now).";
    OrderResponseMinutesP50, "order_response_minutes_p50", "接单响应时间中位数", "Median order response time", "orders", "minutes", Median,
        "Median of the minutes from an order being placed to its earliest acceptance, over the accepted orders placed in the period (the mean of the two middle values when their number is even).";
    OrderSatisfaction, "order_satisfaction", "群众满意度", "Order satisfaction", "orders", "score (1-5)", Ratio,
        "Mean of the latest score of the rated orders placed in the period: the sum of scores over the number of rated orders.";
    VolunteerRanking, "volunteer_ranking", "志愿者服务时长排行（时尚达人）", "Volunteer ranking", "rankings", "hours", Ranking,
        "Volunteers by their effective service hours in records of the period at units of the scope, most first, ties by volunteer id; the top N (default 10).";
}

/// The catalog, with configured target lines filled in.
pub fn catalog(registration_target: f64) -> Vec<KpiInfo> {
    Kpi::ALL
        .iter()
        .map(|k| {
            let mut info = k.info();
            if *k == Kpi::VolunteerRegistrationRate {
                info.target = Some(registration_target);
            }
            info
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kpi_of_the_contract_is_in_the_catalog_once() {
        let names: Vec<_> = Kpi::ALL.iter().map(|k| k.name()).collect();
        let expected = [
            "activities_held",
            "participant_visits",
            "resident_visits",
            "unique_participants",
            "participation_rate",
            "active_station_rate",
            "volunteer_registration_rate",
            "volunteer_activity_rate",
            "service_hours",
            "serving_volunteers",
            "hours_per_volunteer",
            "hours_per_resident",
            "star_volunteers",
            "orders_placed",
            "order_completion_rate",
            "order_response_minutes_p50",
            "order_satisfaction",
            "volunteer_ranking",
        ];
        assert_eq!(names, expected);
        for k in Kpi::ALL {
            assert_eq!(Kpi::parse(k.name()), Some(*k));
        }
    }
}

#[cfg(test)]
mod docs {
    use super::*;

    /// docs/kpis.md shows the catalog as it is: each definition and title verbatim.
    #[test]
    fn the_docs_show_the_catalog() {
        let page = include_str!("../../../docs/kpis.md");
        for k in Kpi::ALL {
            let i = k.info();
            let row = format!(
                "| `{}` | {} | {} | {} | {} |",
                i.name, i.title_zh, i.title_en, i.unit, i.definition
            );
            assert!(
                page.contains(&row),
                "docs/kpis.md lacks or differs for:\n{row}"
            );
        }
    }
}
