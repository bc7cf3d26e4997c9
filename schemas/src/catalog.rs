//! The 25 event types of contract v1, declared once. The `catalog!` macro turns each
//! declaration into a typed struct, its decoder (fields checked in the order written,
//! each refusing with the contract's code) and the field list that the Arrow and JSON
//! Schema builders read.

use serde::Serialize;

use crate::field::{
    AreaCode, Bounded, Category, Channel, CheckInMethod, FeedbackKind, Field, FieldKind,
    FieldValue, Gender, Id, Level, Role, Text, Timestamp,
};
use crate::json::Object;
use crate::rejection::Rejection;

/// The largest integer JSON readers in every language hold exactly (2^53 - 1).
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// Minutes of one service record: 1..=1440 (one day).
pub type Minutes = Bounded<1, 1440>;
/// A rating score, 1..=5.
pub type Score = Bounded<1, 5>;
/// Points earned or redeemed: > 0.
pub type Points = Bounded<1, MAX_SAFE_INTEGER>;
/// Counts that may be zero: residents, households, capacity, anonymous headcount.
pub type Count = Bounded<0, MAX_SAFE_INTEGER>;
/// A volunteer's year of birth. The contract sets no bounds; these refuse only typos.
pub type BirthYear = Bounded<1900, 2100>;

/// The lake table family an event lands in: one topic, many typed tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Unit,
    Team,
    Volunteer,
    Activity,
    Attendance,
    Service,
    Order,
    Points,
    Wish,
    Feedback,
}

impl Family {
    pub const ALL: &'static [Family] = &[
        Family::Unit,
        Family::Team,
        Family::Volunteer,
        Family::Activity,
        Family::Attendance,
        Family::Service,
        Family::Order,
        Family::Points,
        Family::Wish,
        Family::Feedback,
    ];

    /// Name of the raw event table in the lake (and in SQL).
    pub fn table_name(self) -> &'static str {
        match self {
            Family::Unit => "unit_events",
            Family::Team => "team_events",
            Family::Volunteer => "volunteer_events",
            Family::Activity => "activity_events",
            Family::Attendance => "attendance_events",
            Family::Service => "service_events",
            Family::Order => "order_events",
            Family::Points => "points_events",
            Family::Wish => "wish_events",
            Family::Feedback => "feedback_events",
        }
    }

    pub fn event_types(self) -> impl Iterator<Item = EventType> {
        EventType::ALL
            .iter()
            .copied()
            .filter(move |t| t.family() == self)
    }
}

/// One field of an event type's `data`, as the contract lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    pub required: bool,
}

macro_rules! catalog {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal in $family:ident {
            $($field:ident : $ty:ty),* $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Serialize)]
            pub struct $variant {
                $(
                    #[serde(skip_serializing_if = "crate::field::Field::is_absent")]
                    pub $field: $ty,
                )*
            }

            impl $variant {
                pub const FIELDS: &'static [FieldSpec] = &[$(
                    FieldSpec {
                        name: stringify!($field),
                        kind: <$ty as Field>::KIND,
                        required: <$ty as Field>::REQUIRED,
                    }
                ),*];

                /// Calls `f` with every field's name and value, in the contract's order.
                pub fn visit(&self, f: &mut dyn FnMut(&'static str, FieldValue<'_>)) {
                    $(f(stringify!($field), Field::value(&self.$field));)*
                }

                fn decode(data: &Object<'_>) -> Result<Self, Rejection> {
                    Ok($variant {
                        $($field: <$ty as Field>::decode_field(
                            data.get(stringify!($field)),
                            stringify!($field),
                        )?,)*
                    })
                }
            }

            impl From<$variant> for EventData {
                fn from(d: $variant) -> Self {
                    EventData::$variant(d)
                }
            }
        )*

        /// The `type` of an event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $($variant),*
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The name as the contract spells it, e.g. `service.recorded`.
            pub fn name(self) -> &'static str {
                match self { $(EventType::$variant => $name),* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(EventType::$variant),)* _ => None }
            }

            pub fn family(self) -> Family {
                match self { $(EventType::$variant => Family::$family),* }
            }

            /// The fields of `data`, in the contract's order.
            pub fn fields(self) -> &'static [FieldSpec] {
                match self { $(EventType::$variant => $variant::FIELDS),* }
            }

            pub(crate) fn decode_data(
                self,
                data: &Object<'_>,
            ) -> Result<EventData, Rejection> {
                match self { $(EventType::$variant => $variant::decode(data).map(EventData::$variant)),* }
            }
        }

        /// The typed `data` of an event.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum EventData {
            $($variant($variant)),*
        }

        impl EventData {
            pub fn event_type(&self) -> EventType {
                match self { $(EventData::$variant(_) => EventType::$variant),* }
            }

            /// Calls `f` with every field's name and value (`Null` for an absent optional
            /// field), in the contract's order: how ingest fills Arrow columns without
            /// going back through JSON.
            pub fn visit(&self, f: &mut dyn FnMut(&'static str, FieldValue<'_>)) {
                match self { $(EventData::$variant(d) => d.visit(f)),* }
            }
        }
    };
}

catalog! {
    // Reference
    UnitRegistered = "unit.registered" in Unit {
        unit_id: Id, level: Level, parent_id: Option<Id>, name: Text, area_code: AreaCode,
        residents: Option<Count>, households: Option<Count>,
    }
    /// Effective from `occurred_at`.
    UnitUpdated = "unit.updated" in Unit {
        unit_id: Id, name: Option<Text>, residents: Option<Count>, households: Option<Count>,
    }
    UnitClosed = "unit.closed" in Unit { unit_id: Id }
    TeamRegistered = "team.registered" in Team { team_id: Id, unit_id: Id, name: Text }
    VolunteerRegistered = "volunteer.registered" in Volunteer {
        volunteer_id: Id, unit_id: Id, birth_year: Option<BirthYear>, gender: Option<Gender>,
        party_member: Option<bool>,
    }
    VolunteerDeregistered = "volunteer.deregistered" in Volunteer {
        volunteer_id: Id, reason: Option<Text>,
    }

    // Activities and participation
    ActivityPublished = "activity.published" in Activity {
        activity_id: Id, unit_id: Id, team_id: Option<Id>, category: Category, title: Text,
        starts_at: Timestamp, ends_at: Timestamp, capacity: Option<Count>, order_id: Option<Id>,
    }
    ActivityCancelled = "activity.cancelled" in Activity { activity_id: Id, reason: Option<Text> }
    ActivityCompleted = "activity.completed" in Activity {
        activity_id: Id, anonymous_headcount: Count,
    }
    AttendanceCheckedIn = "attendance.checked_in" in Attendance {
        activity_id: Id, person_id: Id, role: Role, method: CheckInMethod,
    }

    // Volunteer service
    ServiceRecorded = "service.recorded" in Service {
        record_id: Id, volunteer_id: Id, unit_id: Id, activity_id: Option<Id>,
        team_id: Option<Id>, started_at: Timestamp, ended_at: Timestamp, minutes: Minutes,
        verifier_id: Option<Id>,
    }
    ServiceAmended = "service.amended" in Service {
        record_id: Id, minutes: Minutes, reason: Option<Text>,
    }
    ServiceRevoked = "service.revoked" in Service { record_id: Id, reason: Option<Text> }

    // Orders (点单 → 派单 → 接单 → 评单)
    OrderPlaced = "order.placed" in Order {
        order_id: Id, unit_id: Id, category: Category, channel: Channel,
    }
    OrderDispatched = "order.dispatched" in Order { order_id: Id, team_id: Id }
    OrderAccepted = "order.accepted" in Order { order_id: Id, team_id: Id }
    OrderDeclined = "order.declined" in Order { order_id: Id, team_id: Id, reason: Option<Text> }
    OrderCompleted = "order.completed" in Order { order_id: Id, activity_id: Option<Id> }
    OrderRated = "order.rated" in Order { order_id: Id, score: Score }

    // Points, wishes, feedback
    PointsEarned = "points.earned" in Points {
        volunteer_id: Id, points: Points, reason: Text, record_id: Option<Id>,
    }
    PointsRedeemed = "points.redeemed" in Points { volunteer_id: Id, points: Points, item: Text }
    WishPosted = "wish.posted" in Wish { wish_id: Id, unit_id: Id }
    WishFulfilled = "wish.fulfilled" in Wish { wish_id: Id }
    FeedbackSubmitted = "feedback.submitted" in Feedback {
        feedback_id: Id, unit_id: Id, kind: FeedbackKind, due_at: Timestamp,
    }
    FeedbackClosed = "feedback.closed" in Feedback { feedback_id: Id }
}

impl EventType {
    /// Whether `data` carries a `unit_id` that must equal the envelope's.
    pub fn has_data_unit_id(self) -> bool {
        self.fields().iter().any(|f| f.name == "unit_id")
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_has_the_contracts_25_types() {
        assert_eq!(EventType::ALL.len(), 25);
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.name()), Some(*t));
        }
        let total: usize = Family::ALL.iter().map(|f| f.event_types().count()).sum();
        assert_eq!(total, 25);
    }
}
