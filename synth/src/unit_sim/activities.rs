//! An activity's story: published, perhaps re-published or cancelled, check-ins,
//! completion, and the service shifts it brings.

use super::*;

impl UnitSim {
    pub(super) fn activity_story(
        &mut self,
        plan: ActivityPlan,
        order_id: Option<String>,
        em: &mut Emitter,
    ) {
        self.next_activity += 1;
        let activity_id = format!("A{}-{}", self.info.no, self.next_activity);
        let src = source(&mut em.rng);
        let mut start = plan.start;
        let team = if rng::chance(&mut em.rng, 0.7) {
            self.team(&mut em.rng)
        } else {
            None
        };
        let publication = |em: &mut Emitter, start: DateTime<FixedOffset>| ActivityPublished {
            activity_id: Id(activity_id.clone()),
            unit_id: Id(self.info.id.clone()),
            team_id: team.clone().map(Id),
            category: plan.category,
            title: Text(format!(
                "{}{}",
                plan.category.title_zh(),
                THEMES[em.rng.random_range(0..THEMES.len())]
            )),
            starts_at: stamp(&mut em.rng, start),
            ends_at: stamp(&mut em.rng, start + Duration::minutes(plan.minutes)),
            capacity: rng::chance(&mut em.rng, 0.6).then(|| Bounded(em.rng.random_range(20..200))),
            order_id: order_id.clone().map(Id),
        };
        let data = publication(em, start);
        em.emit(&self.info.id, plan.publish, data, src, false);

        // Re-published with a new date now and then (the latest publication wins).
        if rng::chance(&mut em.rng, 0.02) {
            let shift = Duration::days(em.rng.random_range(1..11))
                * if em.rng.random_bool(0.5) { 1 } else { -1 };
            let republish = between(
                &mut em.rng,
                plan.publish + Duration::minutes(10),
                (plan.start - plan.publish) / 2,
            );
            start = (start + shift).max(republish + Duration::hours(2));
            let data = publication(em, start);
            em.emit(&self.info.id, republish, data, src, false);
        }
        let end = start + Duration::minutes(plan.minutes);
        if order_id.is_none() && rng::chance(&mut em.rng, 0.03) {
            let at = between(
                &mut em.rng,
                plan.publish + Duration::minutes(30),
                (start - plan.publish) / 2,
            );
            let reasons = ["天气", "场地冲突", "报名不足"];
            let data = ActivityCancelled {
                activity_id: Id(activity_id.clone()),
                reason: Some(Text::from(reasons[em.rng.random_range(0..3)])),
            };
            em.emit(&self.info.id, at, data, src, false);
            return;
        }

        // Check-ins: ≈ 34 people, about a third of them volunteers; some scan twice.
        let size = rng::lognormal(&mut em.rng, 1.0, 0.35) / 1.06;
        let people = rng::poisson(&mut em.rng, 34.0 * size);
        let mut serving = Vec::new();
        for _ in 0..people {
            let volunteer = if rng::chance(&mut em.rng, 0.3) {
                self.pick_volunteer(&mut em.rng)
            } else {
                None
            };
            let (person, role) = match volunteer {
                Some(v) => (self.volunteer_id(v), Role::Volunteer),
                None => (self.resident_id(&mut em.rng), Role::Resident),
            };
            let method = match em.rng.random_range(0..10) {
                0..=6 => CheckInMethod::Scan,
                7..=8 => CheckInMethod::Gps,
                _ => CheckInMethod::Manual,
            };
            let at = between(
                &mut em.rng,
                start - Duration::minutes(15),
                Duration::minutes(45),
            );
            let scans = if rng::chance(&mut em.rng, 0.05) { 2 } else { 1 };
            for s in 0..scans {
                let data = AttendanceCheckedIn {
                    activity_id: Id(activity_id.clone()),
                    person_id: Id(person.clone()),
                    role,
                    method,
                };
                em.emit(
                    &self.info.id,
                    at + Duration::minutes(7 * s),
                    data,
                    Some("i-zhiyuan"),
                    false,
                );
            }
            if let Some(v) = volunteer {
                serving.push(v);
            }
        }
        if rng::chance(&mut em.rng, 0.0005) {
            // A check-in whose activity never reaches the pipeline (an orphan).
            let data = AttendanceCheckedIn {
                activity_id: Id(format!("{activity_id}-lost")),
                person_id: Id(self.resident_id(&mut em.rng)),
                role: Role::Resident,
                method: CheckInMethod::Manual,
            };
            em.emit(&self.info.id, start, data, Some("app"), false);
        }
        if rng::chance(&mut em.rng, 0.92) {
            let headcount = |em: &mut Emitter| {
                if rng::chance(&mut em.rng, 0.3) {
                    0
                } else {
                    i64::from(rng::poisson(&mut em.rng, 6.0))
                }
            };
            let at = between(
                &mut em.rng,
                end + Duration::minutes(30),
                Duration::hours(48),
            );
            let data = ActivityCompleted {
                activity_id: Id(activity_id.clone()),
                anonymous_headcount: Bounded(headcount(em)),
            };
            em.emit(&self.info.id, at, data, src, false);
            if rng::chance(&mut em.rng, 0.03) {
                let later = between(&mut em.rng, at + Duration::hours(1), Duration::days(3));
                let data = ActivityCompleted {
                    activity_id: Id(activity_id.clone()),
                    anonymous_headcount: Bounded(headcount(em)),
                };
                em.emit(&self.info.id, later, data, src, false);
            }
        }
        for v in serving {
            if rng::chance(&mut em.rng, 0.9) {
                let minutes = (plan.minutes - em.rng.random_range(0..15)).clamp(1, 1440);
                self.service_record(em, v, start, end, minutes, Some(&activity_id), team.clone());
            }
        }
    }
}
