//! The current-state views: what the events say the world looks like now, under stable
//! names for analysts. Each is plain SQL over the raw event tables, so it is rebuilt by
//! replay like everything else, and `docs/tables.md` documents every column.
//!
//! Two rules of the KPI contract are applied here once: **latest wins** (the event with
//! the latest `occurred_at`, ties broken by the greater `event_id`; ids are stored in
//! lower case, so text order is the UUIDs' order) and **duplicates are one** (every view
//! is keyed by its entity, so an event stored twice changes nothing).

pub struct View {
    pub name: &'static str,
    /// The one raw table it is derived from: the view is recomputed when that table
    /// gets a new version, and only then.
    pub reads: &'static str,
    pub sql: &'static str,
}

/// In dependency order.
pub const VIEWS: &[View] = &[
    View {
        name: "units",
        reads: "unit_events",
        sql: UNITS,
    },
    View {
        name: "volunteers",
        reads: "volunteer_events",
        sql: VOLUNTEERS,
    },
    View {
        name: "teams",
        reads: "team_events",
        sql: TEAMS,
    },
    View {
        name: "activities",
        reads: "activity_events",
        sql: ACTIVITIES,
    },
    View {
        name: "attendance",
        reads: "attendance_events",
        sql: ATTENDANCE,
    },
    View {
        name: "service_records",
        reads: "service_events",
        sql: SERVICE_RECORDS,
    },
    View {
        name: "orders",
        reads: "order_events",
        sql: ORDERS,
    },
    View {
        name: "points",
        reads: "points_events",
        sql: POINTS,
    },
    View {
        name: "wishes",
        reads: "wish_events",
        sql: WISHES,
    },
    View {
        name: "feedback",
        reads: "feedback_events",
        sql: FEEDBACK,
    },
];

/// Names of every published table: views first, then the raw event tables.
pub fn published() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = VIEWS.iter().map(|v| v.name).collect();
    names.extend(wenming_schemas::Family::ALL.iter().map(|f| f.table_name()));
    names
}

// "Latest wins" is written as `last_value(x ORDER BY occurred_at, event_id)`, a hash
// aggregate per entity, rather than a row_number() window: a window sorts the whole
// history (millions of service events) where the aggregate keeps one row per entity.
const UNITS: &str = r#"
WITH reg AS (
  SELECT unit_id,
         last_value(level ORDER BY occurred_at, event_id) AS level,
         last_value(parent_id ORDER BY occurred_at, event_id) AS parent_id,
         last_value(area_code ORDER BY occurred_at, event_id) AS area_code,
         min(occurred_at) AS registered_at
  FROM unit_events WHERE "type" = 'unit.registered' GROUP BY unit_id),
named AS (
  SELECT unit_id, last_value(name ORDER BY occurred_at, event_id) AS name
  FROM unit_events WHERE "type" IN ('unit.registered', 'unit.updated') AND name IS NOT NULL
  GROUP BY unit_id),
pop AS (
  SELECT unit_id, last_value(residents ORDER BY occurred_at, event_id) AS residents
  FROM unit_events WHERE "type" IN ('unit.registered', 'unit.updated') AND residents IS NOT NULL
  GROUP BY unit_id),
hh AS (
  SELECT unit_id, last_value(households ORDER BY occurred_at, event_id) AS households
  FROM unit_events WHERE "type" IN ('unit.registered', 'unit.updated') AND households IS NOT NULL
  GROUP BY unit_id),
closed AS (
  SELECT unit_id, min(occurred_at) AS closed_at FROM unit_events
  WHERE "type" = 'unit.closed' GROUP BY unit_id)
SELECT r.unit_id, r.level, r.parent_id, n.name, r.area_code,
       substr(r.area_code, 1, 6) AS district_code,
       substr(r.area_code, 1, 9) AS street_code,
       p.residents, h.households, r.registered_at, c.closed_at,
       c.closed_at IS NULL AS open
FROM reg r
LEFT JOIN named n ON n.unit_id = r.unit_id
LEFT JOIN pop p ON p.unit_id = r.unit_id
LEFT JOIN hh h ON h.unit_id = r.unit_id
LEFT JOIN closed c ON c.unit_id = r.unit_id
"#;

// party_member goes through an integer: the hash aggregate keeps ordered last values
// for numbers and strings, not for booleans.
const VOLUNTEERS: &str = r#"
WITH reg AS (
  SELECT volunteer_id,
         last_value(unit_id ORDER BY occurred_at, event_id) AS unit_id,
         last_value(birth_year ORDER BY occurred_at, event_id) AS birth_year,
         last_value(gender ORDER BY occurred_at, event_id) AS gender,
         last_value(CAST(party_member AS INT) ORDER BY occurred_at, event_id) AS party_member,
         min(occurred_at) AS registered_at
  FROM volunteer_events WHERE "type" = 'volunteer.registered' GROUP BY volunteer_id),
dereg AS (
  SELECT volunteer_id, min(occurred_at) AS deregistered_at FROM volunteer_events
  WHERE "type" = 'volunteer.deregistered' GROUP BY volunteer_id)
SELECT r.volunteer_id, r.unit_id AS home_unit_id, r.birth_year, r.gender,
       CAST(r.party_member AS BOOLEAN) AS party_member,
       r.registered_at, d.deregistered_at, d.deregistered_at IS NULL AS registered
FROM reg r LEFT JOIN dereg d ON d.volunteer_id = r.volunteer_id
"#;

const TEAMS: &str = r#"
SELECT team_id,
       last_value(unit_id ORDER BY occurred_at, event_id) AS unit_id,
       last_value(name ORDER BY occurred_at, event_id) AS name,
       min(occurred_at) AS registered_at
FROM team_events WHERE "type" = 'team.registered' GROUP BY team_id
"#;

const ACTIVITIES: &str = r#"
WITH pub AS (
  SELECT activity_id,
         last_value(unit_id ORDER BY occurred_at, event_id) AS unit_id,
         last_value(team_id ORDER BY occurred_at, event_id) AS team_id,
         last_value(category ORDER BY occurred_at, event_id) AS category,
         last_value(title ORDER BY occurred_at, event_id) AS title,
         last_value(starts_at ORDER BY occurred_at, event_id) AS starts_at,
         last_value(ends_at ORDER BY occurred_at, event_id) AS ends_at,
         last_value(capacity ORDER BY occurred_at, event_id) AS capacity,
         last_value(order_id ORDER BY occurred_at, event_id) AS order_id,
         max(occurred_at) AS published_at,
         count(DISTINCT event_id) AS publications
  FROM activity_events WHERE "type" = 'activity.published' GROUP BY activity_id),
cancel AS (
  SELECT activity_id, min(occurred_at) AS cancelled_at FROM activity_events
  WHERE "type" = 'activity.cancelled' GROUP BY activity_id),
done AS (
  SELECT activity_id,
         last_value(anonymous_headcount ORDER BY occurred_at, event_id) AS anonymous_headcount,
         max(occurred_at) AS occurred_at
  FROM activity_events WHERE "type" = 'activity.completed' GROUP BY activity_id)
SELECT p.activity_id, p.unit_id, p.team_id, p.category, p.title, p.starts_at, p.ends_at,
       p.capacity, p.order_id, p.published_at, p.publications,
       c.cancelled_at IS NOT NULL AS cancelled, c.cancelled_at,
       d.occurred_at AS completed_at, d.anonymous_headcount,
       c.cancelled_at IS NULL AS held
FROM pub p
LEFT JOIN cancel c ON c.activity_id = p.activity_id
LEFT JOIN done d ON d.activity_id = p.activity_id
"#;

const ATTENDANCE: &str = r#"
SELECT activity_id, person_id,
       bool_or(role = 'resident') AS as_resident,
       bool_or(role = 'volunteer') AS as_volunteer,
       min(occurred_at) AS first_checked_in_at,
       count(DISTINCT event_id) AS check_ins
FROM attendance_events
GROUP BY activity_id, person_id
"#;

const SERVICE_RECORDS: &str = r#"
WITH rec AS (
  SELECT record_id,
         last_value(volunteer_id ORDER BY occurred_at, event_id) AS volunteer_id,
         last_value(unit_id ORDER BY occurred_at, event_id) AS unit_id,
         last_value(activity_id ORDER BY occurred_at, event_id) AS activity_id,
         last_value(team_id ORDER BY occurred_at, event_id) AS team_id,
         last_value(started_at ORDER BY occurred_at, event_id) AS started_at,
         last_value(ended_at ORDER BY occurred_at, event_id) AS ended_at,
         last_value(verifier_id ORDER BY occurred_at, event_id) AS verifier_id,
         last_value(minutes ORDER BY occurred_at, event_id) AS recorded_minutes,
         max(occurred_at) AS recorded_at
  FROM service_events WHERE "type" = 'service.recorded' GROUP BY record_id),
latest AS (
  SELECT record_id, last_value(minutes ORDER BY occurred_at, event_id) AS minutes
  FROM service_events WHERE "type" IN ('service.recorded', 'service.amended')
  GROUP BY record_id),
amends AS (
  SELECT record_id, count(DISTINCT event_id) AS amendments FROM service_events
  WHERE "type" = 'service.amended' GROUP BY record_id),
rev AS (
  SELECT record_id, min(occurred_at) AS revoked_at FROM service_events
  WHERE "type" = 'service.revoked' GROUP BY record_id)
SELECT r.record_id, r.volunteer_id, r.unit_id, r.activity_id, r.team_id, r.started_at,
       r.ended_at, r.verifier_id, r.recorded_at, r.recorded_minutes, l.minutes,
       coalesce(m.amendments, 0) AS amendments, v.revoked_at IS NOT NULL AS revoked, v.revoked_at,
       v.revoked_at IS NULL AS effective
FROM rec r
JOIN latest l ON l.record_id = r.record_id
LEFT JOIN amends m ON m.record_id = r.record_id
LEFT JOIN rev v ON v.record_id = r.record_id
"#;

const ORDERS: &str = r#"
WITH placed AS (
  SELECT order_id,
         last_value(unit_id ORDER BY occurred_at, event_id) AS unit_id,
         last_value(category ORDER BY occurred_at, event_id) AS category,
         last_value(channel ORDER BY occurred_at, event_id) AS channel,
         max(occurred_at) AS placed_at
  FROM order_events WHERE "type" = 'order.placed' GROUP BY order_id),
steps AS (
  SELECT order_id,
         min(CASE WHEN "type" = 'order.dispatched' THEN occurred_at END) AS dispatched_at,
         min(CASE WHEN "type" = 'order.accepted' THEN occurred_at END) AS accepted_at,
         min(CASE WHEN "type" = 'order.completed' THEN occurred_at END) AS completed_at,
         count(DISTINCT CASE WHEN "type" = 'order.declined' THEN event_id END) AS declines
  FROM order_events GROUP BY order_id),
accepted_by AS (
  SELECT order_id, first_value(team_id ORDER BY occurred_at, event_id) AS team_id
  FROM order_events WHERE "type" = 'order.accepted' GROUP BY order_id),
rated AS (
  SELECT order_id, last_value(score ORDER BY occurred_at, event_id) AS score,
         max(occurred_at) AS rated_at
  FROM order_events WHERE "type" = 'order.rated' GROUP BY order_id)
SELECT p.order_id, p.unit_id, p.category, p.channel, p.placed_at, s.dispatched_at,
       s.accepted_at, a.team_id AS accepted_by_team_id, s.declines, s.completed_at,
       s.completed_at IS NOT NULL AS completed, r.score, r.rated_at,
       CAST(CAST(s.accepted_at AS BIGINT) - CAST(p.placed_at AS BIGINT) AS DOUBLE) / 60000000.0
         AS response_minutes
FROM placed p
JOIN steps s ON s.order_id = p.order_id
LEFT JOIN accepted_by a ON a.order_id = p.order_id
LEFT JOIN rated r ON r.order_id = p.order_id
"#;

const POINTS: &str = r#"
SELECT volunteer_id,
       coalesce(sum(CASE WHEN "type" = 'points.earned' THEN points END), 0) AS earned,
       coalesce(sum(CASE WHEN "type" = 'points.redeemed' THEN points END), 0) AS redeemed,
       coalesce(sum(CASE WHEN "type" = 'points.earned' THEN points ELSE -points END), 0) AS balance,
       max(occurred_at) AS last_at
FROM (SELECT DISTINCT event_id, "type", volunteer_id, points, occurred_at FROM points_events) e
GROUP BY volunteer_id
"#;

const WISHES: &str = r#"
SELECT w.wish_id, w.unit_id, w.posted_at, f.fulfilled_at, f.fulfilled_at IS NOT NULL AS fulfilled
FROM (
  SELECT wish_id, last_value(unit_id ORDER BY occurred_at, event_id) AS unit_id,
         max(occurred_at) AS posted_at
  FROM wish_events WHERE "type" = 'wish.posted' GROUP BY wish_id) w
LEFT JOIN (SELECT wish_id, min(occurred_at) AS fulfilled_at FROM wish_events
           WHERE "type" = 'wish.fulfilled' GROUP BY wish_id) f ON f.wish_id = w.wish_id
"#;

const FEEDBACK: &str = r#"
SELECT s.feedback_id, s.unit_id, s.kind, s.due_at, s.submitted_at, c.closed_at,
       c.closed_at IS NOT NULL AS closed,
       c.closed_at IS NOT NULL AND c.closed_at <= s.due_at AS closed_in_time
FROM (
  SELECT feedback_id,
         last_value(unit_id ORDER BY occurred_at, event_id) AS unit_id,
         last_value(kind ORDER BY occurred_at, event_id) AS kind,
         last_value(due_at ORDER BY occurred_at, event_id) AS due_at,
         max(occurred_at) AS submitted_at
  FROM feedback_events WHERE "type" = 'feedback.submitted' GROUP BY feedback_id) s
LEFT JOIN (SELECT feedback_id, min(occurred_at) AS closed_at FROM feedback_events
           WHERE "type" = 'feedback.closed' GROUP BY feedback_id) c ON c.feedback_id = s.feedback_id
"#;
