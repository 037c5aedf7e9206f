"""The dashboard's spend over a large request table: the snapshot's spend pass per period, with
the spend index (video_requests_spend_idx) and, in the same run, without it (the baseline: the
index dropped inside a transaction that is rolled back).

    .venv/bin/python bench/spend_dashboard.py --rows 2000000 --days 18   # 10M rows' density over 90 days

Rows are the moderation benchmark's (bench/admin_dataset.py) with costs as the database would
set them (estimate from the model, resolution, audio and duration; final once ended, 0 when
refunded; none while pending or generating) and two models. They are loaded into a database of
their own, veobot_bench_spend_<rows>, reused when it already holds that many rows.

With --writes N it also times what the index costs the hot writes (bench/write_costs.py's
admission and two transitions, N requests) with the index and without it (dropped and built
again), interleaved over --rounds rounds so that a shared machine's drift hits both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench import admin_dataset  # noqa: E402
from bench.bulk_load import load_requests  # noqa: E402

PRICE = (
    "(CASE WHEN h %% 10 < 7 THEN CASE WHEN h %% 5 <> 0 THEN 0.40 ELSE 0.20 END"
    " ELSE CASE WHEN h %% 5 <> 0 THEN CASE WHEN h %% 4 < 3 THEN 0.10 ELSE 0.12 END"
    " ELSE CASE WHEN h %% 4 < 3 THEN 0.08 ELSE 0.10 END END END)"
)
ESTIMATE = f"CASE WHEN status = 'rejected' THEN 0 ELSE {PRICE} * (ARRAY[4, 6, 8, 8])[1 + (h / 7 %% 4)] END"
COUNTS = "(status IN ('pending', 'generating', 'completed') OR filtered)"
LOAD_SQL = (
    admin_dataset.LOAD_SQL.replace(
        "review_status, reviewed_by, reviewed_at)",
        "review_status, reviewed_by, reviewed_at, cost_estimated_usd, cost_final_usd)",
    )
    .replace(
        "'veo-3.1-generate-001', status,",
        "CASE WHEN h %% 10 < 7 THEN 'veo-3.1-generate-001' ELSE 'veo-3.1-fast-generate-001' END, status,",
    )
    .replace(
        "CASE WHEN review <> 'unreviewed' THEN created_at + interval '1 hour' END\nFROM (",
        "CASE WHEN review <> 'unreviewed' THEN created_at + interval '1 hour' END,\n"
        f"    {ESTIMATE},\n"
        f"    CASE WHEN status IN ('pending', 'generating') THEN NULL WHEN {COUNTS} THEN {ESTIMATE} ELSE 0 END\nFROM (",
    )
)


def _load(params: dict, dbname: str, rows: int, days: int) -> None:
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
            with psycopg.connect(**params, dbname=dbname) as db:
                if db.execute("SELECT to_regclass('bench_spend_dataset')").fetchone()[0]:
                    print(f"{dbname}: reusing its rows")
                    return
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    admin_dataset._migrate(params, dbname, print)
    with psycopg.connect(**params, dbname=dbname, autocommit=True) as conn:
        load_requests(
            conn,
            LOAD_SQL,
            rows=rows,
            params={"days": days, "users": admin_dataset.USERS, "guilds": admin_dataset.GUILDS, "tail": False},
            log=print,
        )
        conn.execute("VACUUM (ANALYZE) video_requests")
        conn.execute("CREATE TABLE bench_spend_dataset (rows bigint NOT NULL)")
        conn.execute("INSERT INTO bench_spend_dataset VALUES (%s)", [rows])


def _measure(conn: psycopg.Connection, days: int, repeat: int) -> tuple[float, str]:
    from tracking.analytics_spend import spend_query

    until = datetime.now(UTC)
    query, args = spend_query(since=until - timedelta(days=days), until=until)
    conn.execute("SET work_mem = '32MB'")  # as analytics.dashboard sets it
    times = []
    for _ in range(repeat + 1):  # the first warms the cache
        started = time.perf_counter()
        conn.execute(query, args).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    plan = conn.execute(sql.SQL("EXPLAIN (ANALYZE, BUFFERS) {}").format(sql.SQL(query)), args).fetchall()
    scan = next((line for (line,) in plan if "Scan" in line and "video_requests" in line), "?")
    return statistics.median(times[1:]), scan.strip()


def _write_costs(conn: psycopg.Connection, calls: int, rounds: int) -> None:
    from bench.write_costs import one_version

    definition = conn.execute("SELECT pg_get_indexdef('video_requests_spend_idx'::regclass)").fetchone()[0]
    first = 9 * 10**17 + int(time.time()) * 10**5  # new interactions on every run
    results: dict[str, list[dict]] = {"with the spend index": [], "without (base)": []}
    for _ in range(rounds):
        for name in results:
            if name.startswith("without"):
                conn.execute("DROP INDEX video_requests_spend_idx")
            results[name].append(one_version(conn, calls, first))
            first += calls
            if name.startswith("without"):
                conn.execute(definition)
    for name, runs in results.items():
        keys = runs[0].keys()
        print(f"  writes, {name}: " + ", ".join(f"{k} {statistics.median(r[k] for r in runs)}" for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=18, help="the days the rows span (10M over 90 = 2M over 18)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--writes", type=int, default=0, help="requests per round for the write cost (0: none)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veosite.settings")
    import django

    django.setup()
    params = admin_dataset.server_conninfo()
    dbname = f"veobot_bench_spend_{args.rows}"
    _load(params, dbname, args.rows, args.days)
    with psycopg.connect(**params, dbname=dbname) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        total, priced = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE cost_estimated_usd > 0) FROM video_requests"
        ).fetchone()
        print(f"PostgreSQL {version}, {total:,} rows ({priced:,} priced) over {args.days} days, {os.cpu_count()} CPUs")
        for days in (1, 7):
            with_index, scan = _measure(conn, days, args.repeat)
            print(f"  {days} day(s), spend index:    p50 {with_index:8.1f} ms   {scan}")
            conn.execute("DROP INDEX video_requests_spend_idx")
            without, scan = _measure(conn, days, args.repeat)
            conn.rollback()
            print(f"  {days} day(s), without (base): p50 {without:8.1f} ms   {scan}")
    if args.writes:
        with psycopg.connect(**params, dbname=dbname, autocommit=True) as conn:
            _write_costs(conn, args.writes, args.rounds)


if __name__ == "__main__":
    main()
