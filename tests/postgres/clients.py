"""Python's Postgres clients against `wenming serve`'s Postgres wire, each compared with
the same query's rows from `POST /v1/sql`. Run by tests/postgres.rs; prints "ok  NAME"
per check and exits non-zero on the first failure.

  clients.py --pg HOST:PORT --http HOST:PORT --user NAME --token TOKEN --other-user NAME --other-token TOKEN
"""
import argparse
import asyncio
import json
import threading
import time
import urllib.request

import asyncpg
import pandas
import psycopg
import sqlalchemy

QUERY = "SELECT unit_id, count(*) AS n FROM service_records GROUP BY unit_id ORDER BY unit_id"


def http_rows(http, token, sql):
    req = urllib.request.Request(
        f"http://{http}/v1/sql", data=json.dumps({"sql": sql}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return [tuple(row.values()) for row in json.load(r)]


def check(name, fn):
    started = time.time()
    fn()
    print(f"ok  {name} ({time.time() - started:.1f} s)", flush=True)


def main():
    p = argparse.ArgumentParser()
    for a in ("--pg", "--http", "--user", "--token", "--other-user", "--other-token"):
        p.add_argument(a, required=True)
    a = p.parse_args()
    host, port = a.pg.split(":")
    dsn = f"host={host} port={port} dbname=wenming user={a.user} password={a.token}"
    expected = http_rows(a.http, a.token, QUERY)
    assert expected, "the scope has rows"

    def psycopg_with_server_side_parameters():
        with psycopg.connect(dsn) as c:
            rows = c.execute(QUERY).fetchall()
            assert rows == expected, (rows, expected)
            # A $1 parameter bound by the server (extended protocol).
            unit = expected[0][0]
            got = c.execute("SELECT count(*) AS n FROM service_records WHERE unit_id = %s", (unit,),
                            prepare=True).fetchone()[0]
            assert got == expected[0][1], (got, expected[0])
            # Types: int8, float8, bool, text, date, NULL.
            row = c.execute("SELECT CAST(1 AS BIGINT) AS i, CAST(1.5 AS DOUBLE) AS f, true AS b, "
                            "'x' AS t, DATE '2024-01-02' AS d, NULL AS n").fetchone()
            assert row[:5] == (1, 1.5, True, "x", __import__("datetime").date(2024, 1, 2)), row
            assert row[5] is None
            # Empty results and refusals with SQLSTATE codes.
            assert c.execute("SELECT unit_id FROM units WHERE false").fetchall() == []
            for sql, code in [("DROP TABLE units", "42501"), ("SELECT * FROM nosuch", "42P01"),
                              ("SELEC 1", "42601"), ("SET datafusion.execution.batch_size = 1", "42501")]:
                try:
                    c.execute(sql)
                    raise AssertionError(f"{sql} passed")
                except psycopg.Error as e:
                    assert e.sqlstate == code, (sql, e.sqlstate, str(e))
                    c.rollback()

    def asyncpg_binary_formats():
        async def run():
            c = await asyncpg.connect(host=host, port=int(port), user=a.user, password=a.token, database="wenming")
            try:
                rows = [tuple(r) for r in await c.fetch(QUERY)]
                assert rows == expected, (rows, expected)
                r = await c.fetchrow("SELECT count(*) AS n FROM service_records WHERE unit_id = $1", expected[0][0])
                assert r["n"] == expected[0][1], r
                ts = await c.fetchval("SELECT max(started_at) FROM service_records")
                assert ts is not None and ts.year >= 2024, ts
            finally:
                await c.close()
        asyncio.run(run())

    def sqlalchemy_and_pandas():
        engine = sqlalchemy.create_engine(f"postgresql+psycopg://{a.user}:{a.token}@{host}:{port}/wenming")
        frame = pandas.read_sql(QUERY, engine)
        rows = [tuple(r) for r in frame.itertuples(index=False)]
        assert rows == expected, (rows, expected)
        inspector = sqlalchemy.inspect(engine)
        names = inspector.get_table_names()
        assert "service_events" in names, names
        assert "service_records" in inspector.get_view_names()
        columns = {c["name"]: c for c in inspector.get_columns("service_records")}
        assert isinstance(columns["minutes"]["type"], sqlalchemy.BigInteger), columns["minutes"]
        assert columns["started_at"]["type"].timezone, columns["started_at"]
        assert inspector.get_pk_constraint("service_records")["constrained_columns"] == []
        assert inspector.get_indexes("service_records") == []
        assert inspector.get_unique_constraints("service_records") == []
        assert inspector.get_foreign_keys("service_records") == []
        # Reflection, then a query built by SQLAlchemy Core on the reflected table.
        table = sqlalchemy.Table("service_records", sqlalchemy.MetaData(), autoload_with=engine)
        query = (sqlalchemy.select(table.c.unit_id, sqlalchemy.func.count().label("n"))
                 .group_by(table.c.unit_id).order_by(table.c.unit_id))
        with engine.connect() as c:
            assert [tuple(r) for r in c.execute(query)] == expected
        everything = sqlalchemy.MetaData()
        everything.reflect(engine, views=True)
        assert set(everything.tables) == set(names) | set(inspector.get_view_names())
        engine.dispose()

    def another_scope_sees_other_rows():
        other = f"host={host} port={port} dbname=wenming user={a.other_user} password={a.other_token}"
        with psycopg.connect(other) as c:
            rows = c.execute(QUERY).fetchall()
        assert rows == http_rows(a.http, a.other_token, QUERY), rows
        assert not set(rows) & set(expected), "two districts share no units"

    def cancel_stops_the_query_and_frees_its_slot():
        # One slot per token (tests/postgres.rs configures per_token = 1): if the
        # cancelled query still ran, the next statement would find no slot.
        runaway = "SELECT count(*) FROM service_events a, service_events b, service_events c"
        with psycopg.connect(dsn) as c:
            timer = threading.Timer(1.0, c.cancel)
            timer.start()
            started = time.time()
            try:
                c.execute(runaway)
                raise AssertionError("the runaway finished")
            except psycopg.errors.QueryCanceled as e:
                assert "user request" in str(e), str(e)
            c.rollback()
            assert time.time() - started < 20, "cancelled at once"
            assert c.execute("SELECT 1").fetchone() == (1,)
        # The statement timeout, lowered by the client, over the extended protocol.
        with psycopg.connect(dsn) as c:
            c.execute("SET statement_timeout = '500ms'")
            started = time.time()
            try:
                c.execute(runaway)
                raise AssertionError("the runaway finished")
            except psycopg.errors.QueryCanceled as e:
                assert "statement timeout" in str(e), str(e)
            c.rollback()
            assert time.time() - started < 20, "timed out at once"
            assert c.execute("SELECT 1").fetchone() == (1,)

    def runaways_of_one_token_leave_others_answering():
        runaway = "SELECT count(*) FROM service_events a, service_events b, service_events c"
        conns = [psycopg.connect(dsn) for _ in range(20)]
        errors = []

        def run(c):
            try:
                c.execute(runaway)
            except psycopg.Error as e:
                errors.append(e.sqlstate)
        threads = [threading.Thread(target=run, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        time.sleep(1.0)
        other = f"host={host} port={port} dbname=wenming user={a.other_user} password={a.other_token}"
        with psycopg.connect(other) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        for c in conns:
            c.cancel()
        for t in threads:
            t.join(60)
        for c in conns:
            c.close()
        # The token's one slot ran one runaway; the rest were refused for want of one.
        assert "53000" in errors, errors

    check("psycopg: rows equal POST /v1/sql, server-side parameters, types, SQLSTATEs", psycopg_with_server_side_parameters)
    check("asyncpg: binary formats", asyncpg_binary_formats)
    check("SQLAlchemy: pandas read_sql, the inspector, reflection", sqlalchemy_and_pandas)
    check("another district's analyst sees its own rows only", another_scope_sees_other_rows)
    check("CancelRequest and statement_timeout stop the query", cancel_stops_the_query_and_frees_its_slot)
    check("20 runaways of one token leave another token answering", runaways_of_one_token_leave_others_answering)


if __name__ == "__main__":
    main()
