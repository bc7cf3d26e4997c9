//! What residents ask of a unit: orders (点单 → 派单 → 接单 → 评单), wishes, feedback.

use super::*;

impl UnitSim {
    /// 点单 → 派单 → 接单 → 评单, with declines, and an activity for some orders.
    pub(super) fn order_story(&mut self, date: NaiveDate, em: &mut Emitter) {
        self.next_order += 1;
        let order_id = format!("O{}-{}", self.info.no, self.next_order);
        let unit = self.info.id.clone();
        let placed = local(date, em.rng.random_range(480..1260));
        let category = category(&mut em.rng, DayKind::Ordinary);
        let channel = match em.rng.random_range(0..10) {
            0..=4 => Channel::App,
            5..=6 => Channel::Hotline,
            7..=8 => Channel::Visit,
            _ => Channel::Screen,
        };
        let data = OrderPlaced {
            order_id: Id(order_id.clone()),
            unit_id: Id(unit.clone()),
            category,
            channel,
        };
        let at = stamp(&mut em.rng, placed).0;
        em.emit(&unit, at, data, Some("app"), false);
        let Some(mut team) = self.team(&mut em.rng) else {
            return;
        };
        let mut dispatched = between(
            &mut em.rng,
            placed + Duration::minutes(10),
            Duration::hours(6),
        );
        em.emit(
            &unit,
            dispatched,
            OrderDispatched {
                order_id: Id(order_id.clone()),
                team_id: Id(team.clone()),
            },
            Some("app"),
            false,
        );
        if rng::chance(&mut em.rng, 0.1) {
            let declined = between(
                &mut em.rng,
                dispatched + Duration::minutes(5),
                Duration::hours(3),
            );
            em.emit(
                &unit,
                declined,
                OrderDeclined {
                    order_id: Id(order_id.clone()),
                    team_id: Id(team.clone()),
                    reason: Some(Text::from("人手不足")),
                },
                Some("app"),
                false,
            );
            team = self.team(&mut em.rng).unwrap_or(team);
            dispatched = between(
                &mut em.rng,
                declined + Duration::minutes(10),
                Duration::hours(2),
            );
            em.emit(
                &unit,
                dispatched,
                OrderDispatched {
                    order_id: Id(order_id.clone()),
                    team_id: Id(team.clone()),
                },
                Some("app"),
                false,
            );
        }
        if !rng::chance(&mut em.rng, 0.9) {
            return;
        }
        let wait = rng::lognormal(&mut em.rng, 40.0, 0.8).clamp(1.0, 4320.0) as i64;
        let accepted = dispatched + Duration::minutes(wait);
        em.emit(
            &unit,
            accepted,
            OrderAccepted {
                order_id: Id(order_id.clone()),
                team_id: Id(team.clone()),
            },
            Some("app"),
            false,
        );
        if !rng::chance(&mut em.rng, 0.85) {
            return;
        }
        let completed = between(&mut em.rng, accepted + Duration::days(1), Duration::days(9));
        let activity_id = if rng::chance(&mut em.rng, 0.5) {
            let plan = ActivityPlan {
                publish: accepted + Duration::hours(1),
                start: completed - Duration::hours(2),
                minutes: 90,
                category,
            };
            self.activity_story(plan, Some(order_id.clone()), em);
            Some(Id(format!("A{}-{}", self.info.no, self.next_activity)))
        } else {
            None
        };
        em.emit(
            &unit,
            completed,
            OrderCompleted {
                order_id: Id(order_id.clone()),
                activity_id,
            },
            Some("app"),
            false,
        );
        if !rng::chance(&mut em.rng, 0.7) {
            return;
        }
        let score = |em: &mut Emitter| match em.rng.random_range(0..100) {
            0..=54 => 5,
            55..=84 => 4,
            85..=94 => 3,
            95..=97 => 2,
            _ => 1,
        };
        let rated = between(
            &mut em.rng,
            completed + Duration::hours(1),
            Duration::days(5),
        );
        let s = score(em);
        em.emit(
            &unit,
            rated,
            OrderRated {
                order_id: Id(order_id.clone()),
                score: Bounded(s),
            },
            Some("app"),
            false,
        );
        if rng::chance(&mut em.rng, 0.02) {
            let s = score(em);
            let later = rated + Duration::hours(em.rng.random_range(1..48));
            em.emit(
                &unit,
                later,
                OrderRated {
                    order_id: Id(order_id),
                    score: Bounded(s),
                },
                Some("app"),
                false,
            );
        }
    }

    pub(super) fn wish_story(&mut self, date: NaiveDate, em: &mut Emitter) {
        self.next_other += 1;
        let wish_id = format!("W{}-{}", self.info.no, self.next_other);
        let at = local(date, em.rng.random_range(480..1320));
        em.emit(
            &self.info.id,
            at,
            WishPosted {
                wish_id: Id(wish_id.clone()),
                unit_id: Id(self.info.id.clone()),
            },
            Some("app"),
            false,
        );
        if rng::chance(&mut em.rng, 0.8) {
            let done = between(&mut em.rng, at + Duration::days(1), Duration::days(30));
            em.emit(
                &self.info.id,
                done,
                WishFulfilled {
                    wish_id: Id(wish_id),
                },
                Some("app"),
                false,
            );
        }
    }

    pub(super) fn feedback_story(&mut self, date: NaiveDate, em: &mut Emitter) {
        self.next_other += 1;
        let feedback_id = format!("F{}-{}", self.info.no, self.next_other);
        let at = local(date, em.rng.random_range(480..1320));
        let kind = [
            FeedbackKind::Suggestion,
            FeedbackKind::Complaint,
            FeedbackKind::Help,
        ][em.rng.random_range(0..3)];
        let data = FeedbackSubmitted {
            feedback_id: Id(feedback_id.clone()),
            unit_id: Id(self.info.id.clone()),
            kind,
            due_at: stamp(&mut em.rng, at + Duration::days(7)),
        };
        em.emit(&self.info.id, at, data, Some("app"), false);
        if rng::chance(&mut em.rng, 0.85) {
            let closed = between(&mut em.rng, at + Duration::hours(1), Duration::days(10));
            em.emit(
                &self.info.id,
                closed,
                FeedbackClosed {
                    feedback_id: Id(feedback_id),
                },
                Some("app"),
                false,
            );
        }
    }
}
