//! One unit's life, a day at a time. Each day a unit starts the stories whose first
//! event falls on that day (an activity's publication, a service shift, an order, a
//! wish, ...) and a story writes all its events at once, including the ones that happen
//! days later: the stream sorts them out by arrival.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use rand::Rng;
use wenming_schemas::catalog::*;
use wenming_schemas::field::{
    AreaCode, Bounded, Category, Channel, CheckInMethod, FeedbackKind, Gender, Id, Level, Role,
    Text, Timestamp,
};

use crate::calendar::{self, DayKind};
use crate::emit::Emitter;
use crate::network::UnitInfo;
use crate::rng::{self, SimRng};

mod activities;
mod requests;
mod service;

/// China Standard Time: no daylight saving, so a fixed offset is exact.
pub fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

fn local(day: NaiveDate, minute_of_day: i64) -> DateTime<FixedOffset> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    cst()
        .from_local_datetime(&midnight)
        .single()
        .expect("fixed offsets are unambiguous")
        + Duration::minutes(minute_of_day)
}

/// Senders write their local offset, a tenth of them UTC (`Z`): KPIs must not care.
fn stamp(rng: &mut SimRng, t: DateTime<FixedOffset>) -> Timestamp {
    if rng::chance(rng, 0.1) {
        Timestamp(t.with_timezone(&Utc).fixed_offset())
    } else {
        Timestamp(t)
    }
}

fn between(rng: &mut SimRng, from: DateTime<FixedOffset>, span: Duration) -> DateTime<FixedOffset> {
    let secs = span.num_seconds().max(1);
    from + Duration::seconds(rng.random_range(0..secs))
}

fn source(rng: &mut SimRng) -> Option<&'static str> {
    match rng.random_range(0..10) {
        0..=4 => Some("national"),
        5..=6 => Some("i-zhiyuan"),
        7 => Some("app"),
        8 => Some("ledger"),
        _ => None,
    }
}

const CATEGORY_MIX: &[(Category, u32)] = &[
    (Category::Theory, 18),
    (Category::Culture, 16),
    (Category::Convenience, 16),
    (Category::Education, 10),
    (Category::Health, 10),
    (Category::Law, 6),
    (Category::Environment, 8),
    (Category::ElderlyChild, 10),
    (Category::Festival, 3),
    (Category::Other, 3),
];

fn category(rng: &mut SimRng, kind: DayKind) -> Category {
    if kind == DayKind::Festival && rng::chance(rng, 0.6) {
        return Category::Festival;
    }
    if kind == DayKind::VolunteerDay && rng::chance(rng, 0.5) {
        return if rng.random_bool(0.5) {
            Category::Convenience
        } else {
            Category::Environment
        };
    }
    rng::pick_from(rng, CATEGORY_MIX)
}

const THEMES: &[&str] = &[
    "进社区",
    "在身边",
    "志愿行",
    "面对面",
    "微课堂",
    "暖人心",
    "齐参与",
];
const ITEMS: &[&str] = &["大米", "食用油", "洗衣液", "毛巾", "图书", "雨伞", "电影票"];

struct Volunteer {
    weight: f64,
    registered: bool,
}

/// An activity decided in advance: it is published `lead` days before it starts.
struct ActivityPlan {
    publish: DateTime<FixedOffset>,
    start: DateTime<FixedOffset>,
    minutes: i64,
    category: Category,
}

/// What the day asks of a unit.
pub struct Day {
    pub date: NaiveDate,
    /// Inside `from..=to` (before it only publications of planned activities happen).
    pub in_range: bool,
    /// Relative intensity, averaging 1 over the range.
    pub weight: f64,
}

/// A unit and its changing state.
pub struct UnitSim {
    pub info: UnitInfo,
    volunteers: Vec<Volunteer>,
    /// Running sums of registered volunteers' weights, rebuilt when `dirty`.
    cumulative: Vec<f64>,
    dirty: bool,
    /// Volunteers still to register at a unit that opened inside the range.
    pending_volunteers: u32,
    residents: i64,
    open: bool,
    /// Planned activities, latest publication first (popped from the end).
    plans: Vec<ActivityPlan>,
    next_activity: u32,
    next_record: u32,
    next_order: u32,
    next_other: u32,
}

/// Monthly service records of a volunteer of weight 1.
const RECORDS_PER_MONTH: f64 = 0.8;
const DAYS_PER_MONTH: f64 = 30.44;

impl UnitSim {
    pub fn new(info: UnitInfo, seed: u64, from: NaiveDate, to: NaiveDate, weights: &[f64]) -> Self {
        let mut rng = rng::stream(seed, &[1, u64::from(info.no)]);
        let mut sim = UnitSim {
            volunteers: Vec::new(),
            cumulative: Vec::new(),
            dirty: true,
            pending_volunteers: 0,
            residents: info.residents,
            open: info.opens.is_none(),
            plans: Vec::new(),
            next_activity: 0,
            next_record: 0,
            next_order: 0,
            next_other: 0,
            info,
        };
        if sim.info.opens.is_some() {
            sim.pending_volunteers = sim.info.initial_volunteers;
        } else {
            for _ in 0..sim.info.initial_volunteers {
                sim.add_volunteer(&mut rng);
            }
        }
        sim.plan_activities(&mut rng, from, to, weights);
        sim
    }

    fn add_volunteer(&mut self, rng: &mut SimRng) -> u32 {
        // Most volunteers serve now and then, a few a great deal (heavy tail).
        let weight = if rng::chance(rng, 0.4) {
            0.1
        } else {
            rng::lognormal(rng, 1.0, 1.0)
        };
        self.volunteers.push(Volunteer {
            weight,
            registered: true,
        });
        self.dirty = true;
        self.volunteers.len() as u32 - 1
    }

    fn volunteer_id(&self, n: u32) -> String {
        format!("V{}-{n}", self.info.no)
    }

    fn team_id(&self, k: u32) -> String {
        format!("T{}-{k}", self.info.no)
    }

    fn plan_activities(
        &mut self,
        rng: &mut SimRng,
        from: NaiveDate,
        to: NaiveDate,
        weights: &[f64],
    ) {
        const STARTS: &[i64] = &[510, 540, 570, 840, 870, 900, 1140, 1170];
        for (day, w) in from.iter_days().take_while(|d| *d <= to).zip(weights) {
            if self.info.opens.is_some_and(|o| day <= o)
                || self.info.closes.is_some_and(|c| day >= c)
            {
                continue;
            }
            let n = rng::poisson(rng, self.info.activities_per_month / DAYS_PER_MONTH * w);
            for _ in 0..n {
                // Now and then an evening event runs past local midnight.
                let start_minute = if rng::chance(rng, 0.01) {
                    1410
                } else {
                    STARTS[rng.random_range(0..STARTS.len())]
                };
                let minutes = if rng::chance(rng, 0.01) {
                    480
                } else {
                    [60, 90, 120, 150, 180][rng.random_range(0..5)]
                };
                let mut lead = rng.random_range(3..15);
                if let Some(opened) = self.info.opens {
                    lead = lead.min((day - opened).num_days() - 1).max(0);
                }
                let publish_day = day - Duration::days(lead);
                let publish = local(publish_day, rng.random_range(480..1200));
                let start = local(day, start_minute);
                self.plans.push(ActivityPlan {
                    publish: publish.min(start - Duration::hours(1)),
                    start,
                    minutes,
                    category: category(rng, calendar::day_kind(day)),
                });
            }
        }
        self.plans.sort_by_key(|p| std::cmp::Reverse(p.publish));
    }

    fn rebuild_cumulative(&mut self) {
        if !self.dirty {
            return;
        }
        let mut sum = 0.0;
        self.cumulative = self
            .volunteers
            .iter()
            .map(|v| {
                if v.registered {
                    sum += v.weight;
                }
                sum
            })
            .collect();
        self.dirty = false;
    }

    fn registered_volunteers(&self) -> usize {
        self.volunteers.iter().filter(|v| v.registered).count()
    }

    /// A registered volunteer, likelier the more they serve.
    fn pick_volunteer(&mut self, rng: &mut SimRng) -> Option<u32> {
        self.rebuild_cumulative();
        let i = rng::pick_weighted(rng, &self.cumulative)?;
        self.volunteers[i].registered.then_some(i as u32)
    }

    fn team(&self, rng: &mut SimRng) -> Option<String> {
        (self.info.teams > 0).then(|| self.team_id(rng.random_range(0..self.info.teams)))
    }

    fn resident_id(&self, rng: &mut SimRng) -> String {
        // Regulars come often: skew towards low numbers.
        let u: f64 = rng.random();
        let k = ((self.info.pool_size.max(1) as f64) * u.powf(2.5)) as i64;
        format!("R{}-{k}", self.info.pool_station)
    }

    fn registration(&self) -> UnitRegistered {
        UnitRegistered {
            unit_id: Id(self.info.id.clone()),
            level: self.info.level,
            parent_id: self.info.parent_id.clone().map(Id),
            name: Text(self.info.name.clone()),
            area_code: AreaCode(self.info.area_code.clone()),
            residents: (self.info.level == Level::Station).then_some(Bounded(self.info.residents)),
            households: (self.info.level == Level::Station)
                .then_some(Bounded(self.info.households)),
        }
    }

    fn emit_volunteer_registered(
        &self,
        em: &mut Emitter,
        n: u32,
        at: DateTime<FixedOffset>,
        on_time: bool,
    ) {
        let rng = &mut em.rng;
        let data = VolunteerRegistered {
            volunteer_id: Id(self.volunteer_id(n)),
            unit_id: Id(self.info.id.clone()),
            birth_year: rng::chance(rng, 0.8).then(|| Bounded(rng.random_range(1950..2008))),
            gender: rng::chance(rng, 0.85).then(|| match rng.random_range(0..100) {
                0..=59 => Gender::F,
                60..=98 => Gender::M,
                _ => Gender::X,
            }),
            party_member: rng::chance(rng, 0.7).then(|| rng::chance(rng, 0.25)),
        };
        let src = source(&mut em.rng);
        em.emit(&self.info.id, at, data, src, on_time);
    }

    /// The network as it stood before the range: units, teams and volunteers registered
    /// in earlier years, loaded at the start (they arrive as they happened).
    pub fn history(&mut self, em: &mut Emitter, from: NaiveDate) {
        if self.info.opens.is_some() {
            return;
        }
        let registered = local(from - Duration::days(em.rng.random_range(200..900)), 540);
        let reg = self.registration();
        em.emit(&self.info.id, registered, reg, Some("ledger"), true);
        self.emit_teams(em, registered, true);
        let since = (local(from, 0) - registered).num_minutes();
        for n in 0..self.volunteers.len() as u32 {
            let at = registered + Duration::minutes(em.rng.random_range(0..since));
            self.emit_volunteer_registered(em, n, at, true);
        }
    }

    fn emit_teams(&self, em: &mut Emitter, after: DateTime<FixedOffset>, on_time: bool) {
        for k in 0..self.info.teams {
            let at = after + Duration::hours(em.rng.random_range(1..72));
            let data = TeamRegistered {
                team_id: Id(self.team_id(k)),
                unit_id: Id(self.info.id.clone()),
                name: Text(format!(
                    "{}志愿服务{}队",
                    self.info.name.trim_end_matches("新时代文明实践站"),
                    k + 1
                )),
            };
            em.emit(&self.info.id, at, data, Some("national"), on_time);
        }
    }

    /// Everything that starts at this unit on `day`.
    pub fn day(&mut self, day: &Day, em: &mut Emitter) {
        if self.info.opens == Some(day.date) {
            let at = local(day.date, 540);
            let reg = self.registration();
            em.emit(&self.info.id, at, reg, Some("national"), false);
            self.emit_teams(em, at, false);
            self.open = true;
        }
        if self.open && day.in_range && self.info.closes == Some(day.date) {
            em.emit(
                &self.info.id,
                local(day.date, 1020),
                UnitClosed {
                    unit_id: Id(self.info.id.clone()),
                },
                Some("ledger"),
                false,
            );
            self.open = false;
        }
        while self
            .plans
            .last()
            .is_some_and(|p| p.publish.date_naive() <= day.date)
        {
            let plan = self.plans.pop().expect("checked above");
            if self.open {
                self.activity_story(plan, None, em);
            }
        }
        if !self.open || !day.in_range {
            return;
        }
        self.registrations(day, em);
        self.population_update(day, em);
        self.service_shifts(day, em);
        let level = self.info.level;
        let per_year = |station: f64, point: f64, other: f64| match level {
            Level::Station => station,
            Level::Point => point,
            _ => other,
        } / 365.0;
        for _ in 0..rng::poisson(&mut em.rng, per_year(30.0, 3.0, 0.0)) {
            self.order_story(day.date, em);
        }
        for _ in 0..rng::poisson(&mut em.rng, per_year(20.0, 2.0, 0.0)) {
            self.wish_story(day.date, em);
        }
        for _ in 0..rng::poisson(&mut em.rng, per_year(10.0, 1.0, 4.0)) {
            self.feedback_story(day.date, em);
        }
        let redemptions = self.registered_volunteers() as f64 * 0.2 / 365.0;
        for _ in 0..rng::poisson(&mut em.rng, redemptions) {
            if let Some(v) = self.pick_volunteer(&mut em.rng) {
                let at = local(day.date, em.rng.random_range(480..1260));
                let data = PointsRedeemed {
                    volunteer_id: Id(self.volunteer_id(v)),
                    points: Bounded(em.rng.random_range(20..200)),
                    item: Text::from(ITEMS[em.rng.random_range(0..ITEMS.len())]),
                };
                let at_s = stamp(&mut em.rng, at);
                em.emit(&self.info.id, at_s.0, data, Some("app"), false);
            }
        }
    }

    fn registrations(&mut self, day: &Day, em: &mut Emitter) {
        // New units fill up over two months; every unit grows ~8 % a year.
        let mut rate = self.info.initial_volunteers as f64 * 0.08 / 365.0;
        if self.pending_volunteers > 0 {
            rate += self.info.initial_volunteers as f64 / 60.0;
        }
        for _ in 0..rng::poisson(&mut em.rng, rate) {
            self.pending_volunteers = self.pending_volunteers.saturating_sub(1);
            let n = self.add_volunteer(&mut em.rng);
            let at = local(day.date, em.rng.random_range(420..1380));
            self.emit_volunteer_registered(em, n, at, false);
        }
        let leaving = self.registered_volunteers() as f64 * 0.02 / 365.0;
        for _ in 0..rng::poisson(&mut em.rng, leaving) {
            if let Some(v) = self.pick_volunteer(&mut em.rng) {
                self.volunteers[v as usize].registered = false;
                self.dirty = true;
                let at = local(day.date, em.rng.random_range(480..1200));
                let reason = ["moved", "health", "personal"][em.rng.random_range(0..3)];
                let data = VolunteerDeregistered {
                    volunteer_id: Id(self.volunteer_id(v)),
                    reason: rng::chance(&mut em.rng, 0.7).then(|| Text::from(reason)),
                };
                em.emit(&self.info.id, at, data, Some("national"), false);
            }
        }
    }

    fn population_update(&mut self, day: &Day, em: &mut Emitter) {
        if self.info.level != Level::Station || !rng::chance(&mut em.rng, 1.0 / 200.0) {
            return;
        }
        let factor = em.rng.random_range(0.97..1.03);
        self.residents = ((self.residents as f64) * factor) as i64;
        let data = UnitUpdated {
            unit_id: Id(self.info.id.clone()),
            name: None,
            residents: Some(Bounded(self.residents)),
            households: rng::chance(&mut em.rng, 0.8)
                .then(|| Bounded((self.residents as f64 / 2.2) as i64)),
        };
        em.emit(
            &self.info.id,
            local(day.date, 600),
            data,
            Some("ledger"),
            false,
        );
    }
}
