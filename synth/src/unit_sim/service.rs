//! Volunteers' service shifts and their records, amended or revoked now and then.

use super::*;

impl UnitSim {
    /// Independent service: patrols, visits, 文明劝导; most 1–4 hours.
    pub(super) fn service_shifts(&mut self, day: &Day, em: &mut Emitter) {
        self.rebuild_cumulative();
        let total_weight = self.cumulative.last().copied().unwrap_or(0.0);
        let lambda = total_weight * RECORDS_PER_MONTH / DAYS_PER_MONTH * (0.5 + 0.5 * day.weight);
        for _ in 0..rng::poisson(&mut em.rng, lambda) {
            let Some(v) = self.pick_volunteer(&mut em.rng) else {
                continue;
            };
            let start = local(day.date, em.rng.random_range(420..1200));
            let minutes = (rng::lognormal(&mut em.rng, 170.0, 0.45).clamp(30.0, 720.0) / 5.0)
                .round() as i64
                * 5;
            let end = start + Duration::minutes(minutes + em.rng.random_range(0..30));
            let team = if rng::chance(&mut em.rng, 0.5) {
                self.team(&mut em.rng)
            } else {
                None
            };
            self.service_record(em, v, start, end, minutes, None, team);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn service_record(
        &mut self,
        em: &mut Emitter,
        volunteer: u32,
        start: DateTime<FixedOffset>,
        end: DateTime<FixedOffset>,
        minutes: i64,
        activity_id: Option<&str>,
        team: Option<String>,
    ) {
        self.next_record += 1;
        let record_id = format!("SR{}-{}", self.info.no, self.next_record);
        let recorded = between(
            &mut em.rng,
            end + Duration::minutes(10),
            Duration::hours(72),
        );
        let data = ServiceRecorded {
            record_id: Id(record_id.clone()),
            volunteer_id: Id(self.volunteer_id(volunteer)),
            unit_id: Id(self.info.id.clone()),
            activity_id: activity_id.map(Id::from),
            team_id: team.map(Id),
            started_at: stamp(&mut em.rng, start),
            ended_at: stamp(&mut em.rng, end),
            minutes: Bounded(minutes),
            verifier_id: rng::chance(&mut em.rng, 0.6)
                .then(|| Id(format!("VER{}-{}", self.info.no, em.rng.random_range(0..5)))),
        };
        let src = source(&mut em.rng);
        em.emit(&self.info.id, recorded, data, src, false);
        if rng::chance(&mut em.rng, 0.8) {
            let data = PointsEarned {
                volunteer_id: Id(self.volunteer_id(volunteer)),
                points: Bounded((minutes / 6).max(1)),
                reason: Text::from("service"),
                record_id: Some(Id(record_id.clone())),
            };
            let at = recorded + Duration::minutes(em.rng.random_range(1..60));
            em.emit(&self.info.id, at, data, src, false);
        }
        let amend = |em: &mut Emitter, at: DateTime<FixedOffset>| {
            let m = ((minutes as f64) * em.rng.random_range(0.5..1.2)).round() as i64;
            let data = ServiceAmended {
                record_id: Id(record_id.clone()),
                minutes: Bounded(m.clamp(1, 1440)),
                reason: Some(Text::from("核减")),
            };
            em.emit(&self.info.id, at, data, Some("ledger"), false);
        };
        if rng::chance(&mut em.rng, 0.02) {
            let at = between(
                &mut em.rng,
                recorded + Duration::days(1),
                Duration::days(20),
            );
            amend(em, at);
            if rng::chance(&mut em.rng, 0.1) {
                // Two amendments at the same instant: the greater event_id wins.
                amend(em, at);
            }
        }
        if rng::chance(&mut em.rng, 0.01) {
            let at = between(
                &mut em.rng,
                recorded + Duration::days(1),
                Duration::days(30),
            );
            let data = ServiceRevoked {
                record_id: Id(record_id.clone()),
                reason: Some(Text::from("虚报")),
            };
            em.emit(&self.info.id, at, data, Some("ledger"), false);
            if rng::chance(&mut em.rng, 0.2) {
                amend(em, at + Duration::days(2));
            }
        }
    }
}
