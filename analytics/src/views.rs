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
    /// The entity column: each entity's rows are derived from that entity's events
    /// alone (every step of the SQL partitions, groups or joins by it, or by it and a
    /// finer column, as attendance by activity and person). A new version of the raw
    /// table derives again only the entities its new rows name
    /// (`Lakehouse::incremental`), and the other rows are kept.
    pub key: Option<&'static str>,
}

/// In dependency order.
pub const VIEWS: &[View] = &[
    View {
        name: "units",
        reads: "unit_events",
        sql: UNITS,
        key: Some("unit_id"),
    },
    View {
        name: "volunteers",
        reads: "volunteer_events",
        sql: VOLUNTEERS,
        key: Some("volunteer_id"),
    },
    View {
        name: "teams",
        reads: "team_events",
        sql: TEAMS,
        key: Some("team_id"),
    },
    View {
        name: "activities",
        reads: "activity_events",
        sql: ACTIVITIES,
        key: Some("activity_id"),
    },
    View {
        name: "attendance",
        reads: "attendance_events",
        sql: ATTENDANCE,
        key: Some("activity_id"),
    },
    View {
        name: "service_records",
        reads: "service_events",
        sql: SERVICE_RECORDS,
        key: Some("record_id"),
    },
    View {
        name: "orders",
        reads: "order_events",
        sql: ORDERS,
        key: Some("order_id"),
    },
    View {
        name: "points",
        reads: "points_events",
        sql: POINTS,
        key: Some("volunteer_id"),
    },
    View {
        name: "wishes",
        reads: "wish_events",
        sql: WISHES,
        key: Some("wish_id"),
    },
    View {
        name: "feedback",
        reads: "feedback_events",
        sql: FEEDBACK,
        key: Some("feedback_id"),
    },
];

/// Names of every published table: views first, then the raw event tables.
pub fn published() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = VIEWS.iter().map(|v| v.name).collect();
    names.extend(wenming_schemas::Family::ALL.iter().map(|f| f.table_name()));
    names
}

// An event stored twice counts once: `count(*)` over a DISTINCT of the events, never
// `count(DISTINCT event_id)` per entity, which keeps a hash set per group (5.8 M
// check-in groups took 24 GB and were killed on the city lake).
//
// "Latest wins" is a row_number() window over each entity's events ordered by
// (occurred_at, event_id). We measured the alternatives on the city lake (31 M events):
// ordered `last_value` aggregates keep one ordering value per group per accumulator and
// ran out of time or memory (>100 s, ~15 GB on service records), while the window's
// sort finished in ~3 s within ~0.5 GB. Each view is computed once per version of its
// raw table (see `materialized`), so this cost is paid when data lands, not per query.
const UNITS: &str = r#"
WITH reg AS (
  SELECT unit_id, level, parent_id, name, area_code, occurred_at,
         row_number() OVER (PARTITION BY unit_id ORDER BY occurred_at DESC, event_id DESC) AS rn,
         min(occurred_at) OVER (PARTITION BY unit_id) AS registered_at
  FROM unit_events WHERE "type" = 'unit.registered'),
named AS (
  SELECT unit_id, name,
         row_number() OVER (PARTITION BY unit_id ORDER BY occurred_at DESC, event_id DESC) AS rn
  FROM unit_events WHERE "type" IN ('unit.registered', 'unit.updated') AND name IS NOT NULL),
pop AS (
  SELECT unit_id, residents,
         row_number() OVER (PARTITION BY unit_id ORDER BY occurred_at DESC, event_id DESC) AS rn
  FROM unit_events WHERE "type" IN ('unit.registered', 'unit.updated') AND residents IS NOT NULL),
hh AS (
  SELECT unit_id, households,
         row_number() OVER (PARTITION BY unit_id ORDER BY occurred_at DESC, event_id DESC) AS rn
  FROM unit_events WHERE "type" IN ('unit.registered', 'unit.updated') AND households IS NOT NULL),
closed AS (
  SELECT unit_id, min(occurred_at) AS closed_at FROM unit_events
  WHERE "type" = 'unit.closed' GROUP BY unit_id)
SELECT r.unit_id, r.level, r.parent_id, n.name, r.area_code,
       substr(r.area_code, 1, 6) AS district_code,
       substr(r.area_code, 1, 9) AS street_code,
       p.residents, h.households, r.registered_at, c.closed_at,
       c.closed_at IS NULL AS open
FROM reg r
LEFT JOIN named n ON n.unit_id = r.unit_id AND n.rn = 1
LEFT JOIN pop p ON p.unit_id = r.unit_id AND p.rn = 1
LEFT JOIN hh h ON h.unit_id = r.unit_id AND h.rn = 1
LEFT JOIN closed c ON c.unit_id = r.unit_id
WHERE r.rn = 1
"#;

const VOLUNTEERS: &str = r#"
WITH reg AS (
  SELECT volunteer_id, unit_id, birth_year, gender, party_member,
         row_number() OVER (PARTITION BY volunteer_id ORDER BY occurred_at DESC, event_id DESC) AS rn,
         min(occurred_at) OVER (PARTITION BY volunteer_id) AS registered_at
  FROM volunteer_events WHERE "type" = 'volunteer.registered'),
dereg AS (
  SELECT volunteer_id, min(occurred_at) AS deregistered_at FROM volunteer_events
  WHERE "type" = 'volunteer.deregistered' GROUP BY volunteer_id)
SELECT r.volunteer_id, r.unit_id AS home_unit_id, r.birth_year, r.gender, r.party_member,
       r.registered_at, d.deregistered_at, d.deregistered_at IS NULL AS registered
FROM reg r LEFT JOIN dereg d ON d.volunteer_id = r.volunteer_id
WHERE r.rn = 1
"#;

const TEAMS: &str = r#"
SELECT team_id, unit_id, name, registered_at FROM (
  SELECT team_id, unit_id, name,
         row_number() OVER (PARTITION BY team_id ORDER BY occurred_at DESC, event_id DESC) AS rn,
         min(occurred_at) OVER (PARTITION BY team_id) AS registered_at
  FROM team_events WHERE "type" = 'team.registered') t
WHERE rn = 1
"#;

const ACTIVITIES: &str = r#"
WITH pub AS (
  SELECT activity_id, unit_id, team_id, category, title, starts_at, ends_at, capacity,
         order_id, occurred_at AS published_at,
         row_number() OVER (PARTITION BY activity_id ORDER BY occurred_at DESC, event_id DESC) AS rn
  FROM activity_events WHERE "type" = 'activity.published'),
pubs AS (
  SELECT activity_id, count(DISTINCT event_id) AS publications FROM activity_events
  WHERE "type" = 'activity.published' GROUP BY activity_id),
cancel AS (
  SELECT activity_id, min(occurred_at) AS cancelled_at FROM activity_events
  WHERE "type" = 'activity.cancelled' GROUP BY activity_id),
done AS (
  SELECT activity_id, anonymous_headcount, occurred_at,
         row_number() OVER (PARTITION BY activity_id ORDER BY occurred_at DESC, event_id DESC) AS rn
  FROM activity_events WHERE "type" = 'activity.completed')
SELECT p.activity_id, p.unit_id, p.team_id, p.category, p.title, p.starts_at, p.ends_at,
       p.capacity, p.order_id, p.published_at, n.publications,
       c.cancelled_at IS NOT NULL AS cancelled, c.cancelled_at,
       d.occurred_at AS completed_at, d.anonymous_headcount,
       c.cancelled_at IS NULL AS held
FROM pub p
JOIN pubs n ON n.activity_id = p.activity_id
LEFT JOIN cancel c ON c.activity_id = p.activity_id
LEFT JOIN done d ON d.activity_id = p.activity_id AND d.rn = 1
WHERE p.rn = 1
"#;

const ATTENDANCE: &str = r#"
SELECT activity_id, person_id,
       bool_or(role = 'resident') AS as_resident,
       bool_or(role = 'volunteer') AS as_volunteer,
       min(occurred_at) AS first_checked_in_at,
       count(*) AS check_ins
FROM (SELECT DISTINCT event_id, activity_id, person_id, role, occurred_at
      FROM attendance_events) e
GROUP BY activity_id, person_id
"#;

// Latest wins without sorting 12.5 M records: a record is almost always recorded once,
// so only the records recorded more than once (found by a hash aggregate) go through the
// row_number() window, and the rest are taken as they are. Amendments and revocations
// are few; they are reduced per record first and joined with the small side written on
// the left, which DataFusion builds its hash table from (the records stream past it).
// Measured on the city lake (12.5 M records): the window over every record took 19.5 s
// for its sort alone and the joins that built on the records side ran out of 8 GiB; this
// takes ~11 s in ~2 GB. The records recorded once are an anti join (`NOT EXISTS`), not
// `multi RIGHT JOIN recorded … WHERE m.record_id IS NULL`: DataFusion 55 pushed that
// `IS NULL` into the scan of the records' side (the same column name on both sides) and
// lost every record recorded once (tests/views.rs counts the rows against the events).
const SERVICE_RECORDS: &str = r#"
WITH recorded AS (
  SELECT event_id, record_id, volunteer_id, unit_id, activity_id, team_id, started_at,
         ended_at, verifier_id, minutes, occurred_at
  FROM service_events WHERE "type" = 'service.recorded'),
multi AS (
  SELECT record_id FROM recorded GROUP BY record_id HAVING count(*) > 1),
rec AS (
  SELECT r.* FROM recorded r
  WHERE NOT EXISTS (SELECT 1 FROM multi m WHERE m.record_id = r.record_id)
  UNION ALL
  SELECT event_id, record_id, volunteer_id, unit_id, activity_id, team_id, started_at,
         ended_at, verifier_id, minutes, occurred_at FROM (
    SELECT r.*,
           row_number() OVER (PARTITION BY r.record_id ORDER BY r.occurred_at DESC, r.event_id DESC) AS rn
    FROM multi m JOIN recorded r ON m.record_id = r.record_id) w
  WHERE rn = 1),
amended AS (
  SELECT record_id, minutes, occurred_at, event_id, amendments FROM (
    SELECT record_id, minutes, occurred_at, event_id,
           row_number() OVER (PARTITION BY record_id ORDER BY occurred_at DESC, event_id DESC) AS rn,
           count(*) OVER (PARTITION BY record_id) AS amendments
    FROM (SELECT DISTINCT event_id, record_id, minutes, occurred_at FROM service_events
          WHERE "type" = 'service.amended') d) a
  WHERE rn = 1),
rev AS (
  SELECT record_id, min(occurred_at) AS revoked_at FROM service_events
  WHERE "type" = 'service.revoked' GROUP BY record_id)
SELECT r.record_id, r.volunteer_id, r.unit_id, r.activity_id, r.team_id, r.started_at,
       r.ended_at, r.verifier_id, r.occurred_at AS recorded_at, r.minutes AS recorded_minutes,
       CASE WHEN a.occurred_at > r.occurred_at
              OR (a.occurred_at = r.occurred_at AND a.event_id > r.event_id)
            THEN a.minutes ELSE r.minutes END AS minutes,
       coalesce(a.amendments, 0) AS amendments, v.revoked_at IS NOT NULL AS revoked,
       v.revoked_at, v.revoked_at IS NULL AS effective
FROM rev v
RIGHT JOIN (amended a RIGHT JOIN rec r ON a.record_id = r.record_id)
  ON v.record_id = r.record_id
"#;

const ORDERS: &str = r#"
WITH placed AS (
  SELECT order_id, unit_id, category, channel, occurred_at AS placed_at,
         row_number() OVER (PARTITION BY order_id ORDER BY occurred_at DESC, event_id DESC) AS rn
  FROM order_events WHERE "type" = 'order.placed'),
steps AS (
  SELECT order_id,
         min(CASE WHEN "type" = 'order.dispatched' THEN occurred_at END) AS dispatched_at,
         min(CASE WHEN "type" = 'order.accepted' THEN occurred_at END) AS accepted_at,
         min(CASE WHEN "type" = 'order.completed' THEN occurred_at END) AS completed_at,
         count(DISTINCT CASE WHEN "type" = 'order.declined' THEN event_id END) AS declines
  FROM order_events GROUP BY order_id),
accepted_by AS (
  SELECT order_id, team_id,
         row_number() OVER (PARTITION BY order_id ORDER BY occurred_at ASC, event_id ASC) AS rn
  FROM order_events WHERE "type" = 'order.accepted'),
rated AS (
  SELECT order_id, score, occurred_at AS rated_at,
         row_number() OVER (PARTITION BY order_id ORDER BY occurred_at DESC, event_id DESC) AS rn
  FROM order_events WHERE "type" = 'order.rated')
SELECT p.order_id, p.unit_id, p.category, p.channel, p.placed_at, s.dispatched_at,
       s.accepted_at, a.team_id AS accepted_by_team_id, s.declines, s.completed_at,
       s.completed_at IS NOT NULL AS completed, r.score, r.rated_at,
       CAST(CAST(s.accepted_at AS BIGINT) - CAST(p.placed_at AS BIGINT) AS DOUBLE) / 60000000.0
         AS response_minutes
FROM placed p
JOIN steps s ON s.order_id = p.order_id
LEFT JOIN accepted_by a ON a.order_id = p.order_id AND a.rn = 1
LEFT JOIN rated r ON r.order_id = p.order_id AND r.rn = 1
WHERE p.rn = 1
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
  SELECT wish_id, unit_id, occurred_at AS posted_at,
         row_number() OVER (PARTITION BY wish_id ORDER BY occurred_at DESC, event_id DESC) AS rn
  FROM wish_events WHERE "type" = 'wish.posted') w
LEFT JOIN (SELECT wish_id, min(occurred_at) AS fulfilled_at FROM wish_events
           WHERE "type" = 'wish.fulfilled' GROUP BY wish_id) f ON f.wish_id = w.wish_id
WHERE w.rn = 1
"#;

const FEEDBACK: &str = r#"
SELECT s.feedback_id, s.unit_id, s.kind, s.due_at, s.submitted_at, c.closed_at,
       c.closed_at IS NOT NULL AS closed,
       c.closed_at IS NOT NULL AND c.closed_at <= s.due_at AS closed_in_time
FROM (
  SELECT feedback_id, unit_id, kind, due_at, occurred_at AS submitted_at,
         row_number() OVER (PARTITION BY feedback_id ORDER BY occurred_at DESC, event_id DESC) AS rn
  FROM feedback_events WHERE "type" = 'feedback.submitted') s
LEFT JOIN (SELECT feedback_id, min(occurred_at) AS closed_at FROM feedback_events
           WHERE "type" = 'feedback.closed' GROUP BY feedback_id) c ON c.feedback_id = s.feedback_id
WHERE s.rn = 1
"#;
