"""The KPIs of kpis.md v1, read a second way: plain DuckDB SQL over the Parquet files
of the lake's current Delta snapshot. Shares nothing with wenming's engine (no views,
no Rust calendar): periods are local midnights computed by DuckDB's ICU time zones,
and every "as of" rule is a range join.

usage: kpis_duckdb.py LAKE FROM TO GRANULARITY LEVEL [TZ]   → JSON {kpi: rows} on stdout
(rows: [period, area, value, numerator, denominator, extra]; extra = star or
[rank, volunteer_id]).
"""
import datetime as dt
import json
import sys

import duckdb
from deltalake import DeltaTable

TABLES = ["unit_events", "team_events", "volunteer_events", "activity_events",
          "attendance_events", "service_events", "order_events", "points_events",
          "wish_events", "feedback_events"]


def periods(frm, to, g):
    """(label, first, day after last) of each period, clipped to frm..to."""
    out = []
    if g == "total":
        return [(frm, frm, to + dt.timedelta(days=1))]
    def start(d):
        if g == "day":
            return d
        if g == "week":
            return d - dt.timedelta(days=d.weekday())
        if g == "month":
            return d.replace(day=1)
        if g == "quarter":
            return d.replace(month=(d.month - 1) // 3 * 3 + 1, day=1)
        return d.replace(month=1, day=1)
    def nxt(s):
        if g == "day":
            return s + dt.timedelta(days=1)
        if g == "week":
            return s + dt.timedelta(days=7)
        months = {"month": 1, "quarter": 3, "year": 12}[g]
        m = s.month - 1 + months
        return s.replace(year=s.year + m // 12, month=m % 12 + 1, day=1)
    label = start(frm)
    while label <= to:
        n = nxt(label)
        out.append((label, max(label, frm), min(n, to + dt.timedelta(days=1))))
        label = n
    return out


def main():
    lake, frm, to, g, level = sys.argv[1:6]
    tz = sys.argv[6] if len(sys.argv) > 6 else "Asia/Shanghai"
    frm, to = dt.date.fromisoformat(frm), dt.date.fromisoformat(to)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for t in TABLES:
        try:
            files = DeltaTable(f"{lake}/{t}").file_uris()
        except Exception:  # a table nothing was written to: not read by any KPI below
            continue
        if not files:
            continue
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet({files!r})")
    con.execute("CREATE TABLE periods (p INT, label DATE, s TIMESTAMPTZ, e TIMESTAMPTZ)")
    for i, (label, first, end) in enumerate(periods(frm, to, g)):
        con.execute(
            f"INSERT INTO periods SELECT {i}, DATE '{label}', "
            f"timezone('{tz}', TIMESTAMP '{first} 00:00:00'), timezone('{tz}', TIMESTAMP '{end} 00:00:00')")
    area = {"city": "'city'", "district": "substr(area_code, 1, 6)",
            "street": "substr(area_code, 1, 9)", "unit": "unit_id"}[level]
    # Units: level and area from the latest registration; open from the first
    # registration until the first closure.
    con.execute(f"""CREATE TABLE u AS
      SELECT unit_id, arg_max(level, (occurred_at, event_id)) AS level,
             arg_max({area}, (occurred_at, event_id)) AS area,
             min(occurred_at) AS reg,
             (SELECT min(c.occurred_at) FROM unit_events c WHERE c.type = 'unit.closed' AND c.unit_id = r.unit_id) AS closed
      FROM unit_events r WHERE type = 'unit.registered' GROUP BY unit_id""")
    con.execute("""CREATE TABLE grid AS SELECT DISTINCT p, area FROM periods, u
      WHERE u.reg < e AND (closed IS NULL OR (closed >= s AND closed > reg))""")
    # Residents of open stations at each period's end.
    con.execute("""CREATE TABLE res AS
      SELECT p, u.area, sum(coalesce((SELECT arg_max(x.residents, (x.occurred_at, x.event_id))
          FROM unit_events x WHERE x.unit_id = u.unit_id AND x.residents IS NOT NULL
            AND x.type IN ('unit.registered', 'unit.updated') AND x.occurred_at < e), 0)) AS n
      FROM periods, u WHERE u.level = 'station' AND u.reg < e AND (closed IS NULL OR closed >= e)
      GROUP BY p, u.area""")
    con.execute("""CREATE TABLE stations AS
      SELECT p, u.area, count(*) AS n FROM periods, u
      WHERE u.level = 'station' AND u.reg < e AND (closed IS NULL OR closed >= e) GROUP BY p, u.area""")
    # Volunteers registered at each period's end, by their home unit's area.
    con.execute("""CREATE TABLE vol AS
      SELECT volunteer_id, arg_max(unit_id, (occurred_at, event_id)) AS home, min(occurred_at) AS reg,
        (SELECT min(d.occurred_at) FROM volunteer_events d WHERE d.type = 'volunteer.deregistered'
           AND d.volunteer_id = r.volunteer_id) AS dereg
      FROM volunteer_events r WHERE type = 'volunteer.registered' GROUP BY volunteer_id""")
    con.execute("""CREATE TABLE regv AS
      SELECT p, u.area, v.volunteer_id FROM periods, vol v JOIN u ON u.unit_id = v.home
      WHERE v.reg < e AND (v.dereg IS NULL OR v.dereg >= e)""")
    # Held activities, in the period of their latest publication's start.
    con.execute("""CREATE TABLE held AS
      SELECT a.activity_id, a.unit_id, u.area, p.p, coalesce((SELECT arg_max(c.anonymous_headcount, (c.occurred_at, c.event_id))
          FROM activity_events c WHERE c.type = 'activity.completed' AND c.activity_id = a.activity_id), 0) AS hc
      FROM (SELECT activity_id, arg_max(unit_id, (occurred_at, event_id)) AS unit_id,
                   arg_max(starts_at, (occurred_at, event_id)) AS starts_at
            FROM activity_events WHERE type = 'activity.published' GROUP BY activity_id) a
      JOIN u ON u.unit_id = a.unit_id JOIN periods p ON a.starts_at >= p.s AND a.starts_at < p.e
      WHERE a.activity_id NOT IN (SELECT activity_id FROM activity_events WHERE type = 'activity.cancelled')""")
    con.execute("""CREATE TABLE visits AS
      SELECT DISTINCT h.p, h.area, h.unit_id, h.activity_id, c.person_id, c.role
      FROM held h JOIN attendance_events c ON c.activity_id = h.activity_id""")
    # Service records: latest minutes of recorded + amended, unless revoked.
    con.execute("""CREATE TABLE rec AS
      SELECT r.record_id, r.volunteer_id, r.unit_id, r.started_at,
        (SELECT arg_max(m.minutes, (m.occurred_at, m.event_id)) FROM service_events m
          WHERE m.record_id = r.record_id AND m.type IN ('service.recorded', 'service.amended')) AS minutes
      FROM (SELECT record_id, arg_max(volunteer_id, (occurred_at, event_id)) AS volunteer_id,
                   arg_max(unit_id, (occurred_at, event_id)) AS unit_id,
                   arg_max(started_at, (occurred_at, event_id)) AS started_at
            FROM service_events WHERE type = 'service.recorded' GROUP BY record_id) r
      WHERE r.record_id NOT IN (SELECT record_id FROM service_events WHERE type = 'service.revoked')""")
    con.execute("""CREATE TABLE recp AS
      SELECT p.p, u.area, r.* FROM rec r JOIN u ON u.unit_id = r.unit_id
      JOIN periods p ON r.started_at >= p.s AND r.started_at < p.e""")
    con.execute("""CREATE TABLE ord AS
      SELECT p.p, u.area, o.order_id,
        EXISTS (SELECT 1 FROM order_events c WHERE c.type = 'order.completed' AND c.order_id = o.order_id) AS completed,
        (SELECT epoch_us(min(c.occurred_at)) FROM order_events c WHERE c.type = 'order.accepted' AND c.order_id = o.order_id) AS acc_us,
        epoch_us(o.placed_at) AS placed_us,
        (SELECT arg_max(c.score, (c.occurred_at, c.event_id)) FROM order_events c WHERE c.type = 'order.rated' AND c.order_id = o.order_id) AS score
      FROM (SELECT order_id, arg_max(unit_id, (occurred_at, event_id)) AS unit_id, max(occurred_at) AS placed_at_any,
                   arg_max(occurred_at, (occurred_at, event_id)) AS placed_at
            FROM order_events WHERE type = 'order.placed' GROUP BY order_id) o
      JOIN u ON u.unit_id = o.unit_id JOIN periods p ON o.placed_at >= p.s AND o.placed_at < p.e""")

    def per_cell(sql):
        """value per (p, area) from `sql` returning p, area, x."""
        return {(r[0], r[1]): r[2] for r in con.execute(sql).fetchall()}

    grid = con.execute("SELECT p, area FROM grid ORDER BY p, area").fetchall()
    label = {r[0]: str(r[1]) for r in con.execute("SELECT p, label FROM periods").fetchall()}
    res = per_cell("SELECT p, area, n FROM res")
    stn = per_cell("SELECT p, area, n FROM stations")
    regv = per_cell("SELECT p, area, count(*) FROM regv GROUP BY p, area")
    minutes = per_cell("SELECT p, area, sum(minutes) FROM recp GROUP BY p, area")

    def count(cells):
        return [[label[p], a, cells.get((p, a)) or 0, None, None, None] for p, a in grid]

    def ratio(num, den):
        out = []
        for p, a in grid:
            n, d = num.get((p, a)) or 0, den.get((p, a)) or 0
            out.append([label[p], a, (n / d) if d else None, n, d, None])
        return out

    result = {}
    result["activities_held"] = count(per_cell("SELECT p, area, count(*) FROM held GROUP BY p, area"))
    hc = per_cell("SELECT p, area, sum(hc) FROM held GROUP BY p, area")
    vis = per_cell("SELECT p, area, count(*) FROM (SELECT DISTINCT p, area, activity_id, person_id FROM visits) GROUP BY p, area")
    rvis = per_cell("SELECT p, area, count(*) FROM (SELECT DISTINCT p, area, activity_id, person_id FROM visits WHERE role = 'resident') GROUP BY p, area")
    result["participant_visits"] = count({k: (vis.get(k) or 0) + (hc.get(k) or 0) for k in set(vis) | set(hc)})
    result["resident_visits"] = count({k: (rvis.get(k) or 0) + (hc.get(k) or 0) for k in set(rvis) | set(hc)})
    result["unique_participants"] = count(per_cell("SELECT p, area, count(DISTINCT person_id) FROM visits GROUP BY p, area"))
    result["participation_rate"] = ratio(
        per_cell("SELECT p, area, count(DISTINCT person_id) FROM visits WHERE role = 'resident' GROUP BY p, area"), res)
    result["active_station_rate"] = ratio(per_cell("""
        SELECT h.p, h.area, count(DISTINCT h.unit_id) FROM held h JOIN u ON u.unit_id = h.unit_id
        JOIN periods q ON q.p = h.p
        WHERE u.level = 'station' AND u.reg < q.e AND (u.closed IS NULL OR u.closed >= q.e) GROUP BY h.p, h.area"""), stn)
    result["volunteer_registration_rate"] = ratio(regv, res)
    result["volunteer_activity_rate"] = ratio(per_cell("""
        SELECT g.p, g.area, count(*) FROM regv g JOIN periods q ON q.p = g.p
        WHERE EXISTS (SELECT 1 FROM rec r WHERE r.volunteer_id = g.volunteer_id AND r.started_at >= q.s AND r.started_at < q.e)
        GROUP BY g.p, g.area"""), regv)
    result["service_hours"] = [[l, a, v / 60, None, None, None] for l, a, v, *_ in count(minutes)]
    result["serving_volunteers"] = count(per_cell("SELECT p, area, count(DISTINCT volunteer_id) FROM recp GROUP BY p, area"))
    hours = {k: v / 60 for k, v in minutes.items()}
    result["hours_per_volunteer"] = ratio(hours, regv)
    result["hours_per_resident"] = ratio(hours, res)
    stars = {}
    for p, a, star, n in con.execute("""
        WITH cum AS (SELECT g.p, g.area, g.volunteer_id,
            (SELECT coalesce(sum(r.minutes), 0) FROM rec r JOIN periods q ON q.p = g.p
              WHERE r.volunteer_id = g.volunteer_id AND r.started_at < q.e) AS m FROM regv g)
        SELECT p, area, CASE WHEN m >= 90000 THEN 5 WHEN m >= 60000 THEN 4 WHEN m >= 36000 THEN 3
                             WHEN m >= 18000 THEN 2 ELSE 1 END AS star, count(*)
        FROM cum WHERE m >= 6000 GROUP BY ALL""").fetchall():
        stars[(p, a, star)] = n
    result["star_volunteers"] = [[label[p], a, stars.get((p, a, s), 0), None, None, s]
                                 for p, a in grid for s in range(1, 6)]
    result["orders_placed"] = count(per_cell("SELECT p, area, count(*) FROM ord GROUP BY p, area"))
    result["order_completion_rate"] = ratio(
        per_cell("SELECT p, area, count(*) FILTER (WHERE completed) FROM ord GROUP BY p, area"),
        per_cell("SELECT p, area, count(*) FROM ord GROUP BY p, area"))
    med = per_cell("SELECT p, area, median((acc_us - placed_us) / 60e6) FROM ord WHERE acc_us IS NOT NULL GROUP BY p, area")
    result["order_response_minutes_p50"] = [[label[p], a, med.get((p, a)), None, None, None] for p, a in grid]
    result["order_satisfaction"] = ratio(
        per_cell("SELECT p, area, sum(score) FROM ord WHERE score IS NOT NULL GROUP BY p, area"),
        per_cell("SELECT p, area, count(score) FROM ord GROUP BY p, area"))
    ranking = []
    rows = con.execute("""SELECT p, area, volunteer_id, sum(minutes) AS m,
        row_number() OVER (PARTITION BY p, area ORDER BY sum(minutes) DESC, volunteer_id) AS rank
        FROM recp GROUP BY p, area, volunteer_id QUALIFY rank <= 10 ORDER BY p, area, rank""").fetchall()
    in_grid = set(grid)
    for p, a, v, m, rank in rows:
        if (p, a) in in_grid:
            ranking.append([label[p], a, m / 60, None, None, [rank, v]])
    result["volunteer_ranking"] = ranking
    json.dump(result, sys.stdout, default=str)


if __name__ == "__main__":
    main()
