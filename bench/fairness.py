"""Fair share against first-come-first-served when Veo's start cap is the bottleneck, and what the
fair order costs at 100,000 pending requests.

    .venv/bin/python bench/fairness.py                 # both parts
    .venv/bin/python bench/fairness.py --part order    # waits, slot use, throughput
    .venv/bin/python bench/fairness.py --part plans    # EXPLAIN ANALYZE and timings at 100k pending

Works in a scratch database of its own on the configured server (DATABASE_URL's name +
"_fairness", created from the migrations and dropped at the end).

order: the product's claim_video_request, copied twice into the scratch database with its
sliding minute scaled to a second (so the start cap of 10 a minute becomes 10 a second): once
as it is (fair) and once with only its order of pending rows put back to (available_at, id)
(FIFO, the order before 0021). Two worker threads, each on its own connection, claim (10 at a
time) and record each start as the worker does (transition_video_request to generating); after a
claim that gives nothing a thread sleeps until the window can next have room (2-50 ms); Veo itself takes no time. One heavy user queues 200
requests, then 50 light users queue 2 each, either at once ("burst") or one user every 0.4 s
("spread"); everyone is in one guild, as on one Discord server. Wait = started_at - created_at.
Start-slot use: each start takes a place in the window, free again a second later and taken by
the start 10 places on; use = 1 s / the mean time between the two (work waits throughout, in
both scenarios). starts/s = starts / (last start - first arrival).

plans: 100,000 pending rows from 20,000 users (5 each, 200 guilds), then 100,000 from one user
followed by 1,000 light users: EXPLAIN ANALYZE of the claim's choice of pending rows and of the
position query, each in the fair order and FIFO's; the claim itself (a rolled-back call, so each
finds the same queue); and an insert with and without the stamping trigger (what 0021 adds to
each admission), timed inside the server in alternating blocks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from bench.admin_dataset import server_conninfo  # noqa: E402
from bench.admission_moderation import runner  # noqa: E402
from bench.server import machine_description  # noqa: E402

CAP = 10  # starts per (scaled) minute
LEASE = "5 minutes"
POLL = 0.002
FAIR_ORDER = "ORDER BY fair_round, fair_turn, id"
FIFO_ORDER = "ORDER BY available_at, id"
CHOSEN = "SELECT id, fair_round, fair_turn"
INSERT = (
    "INSERT INTO video_requests (interaction_id, user_id, guild_id, source, prompt, duration_seconds, aspect_ratio,"
    " resolution, model, status, counts_toward_quota)"
    " VALUES (%s, %s, %s, 'cli', 'a red fox in snow', 4, '16:9', '720p', 'veo-3.1-generate-001', 'pending', true)"
)
START = (
    "SELECT 1 FROM transition_video_request(%s, 'generating', 'bench', NULL, false, %s, 'operations/bench',"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
)
HEAVY, GUILD = 1, 77
GRANTS = "SELECT extract(epoch FROM granted_at) FROM veo_start_slots ORDER BY id"
NEXT_ROOM = (
    "SELECT extract(epoch FROM min(granted_at) + interval '1 second' - clock_timestamp())"
    " FROM (SELECT granted_at FROM veo_start_slots ORDER BY id DESC LIMIT %s) AS window_full"
)
CLAIM = "SELECT id FROM {}(%s, %s, ARRAY['cli'], 1000, %s, 10)"  # a bench_claim_ function


def scratch_name() -> str:
    url = os.environ.get("DATABASE_URL")
    return (conninfo_to_dict(url).get("dbname") if url else "veobot") + "_fairness"


def create_scratch(params: dict, dbname: str) -> None:
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(dbname)))
    runner(params, dbname).migrate()


def drop_scratch(params: dict, dbname: str) -> None:
    with psycopg.connect(**params, dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def install_claims(conn: psycopg.Connection, *, scale_window: bool) -> None:
    """bench_claim_fair and bench_claim_fifo: the product's claim, renamed; FIFO's differs only in
    its order of pending rows. Fails loudly if the product's function no longer has what is swapped."""
    (body,) = conn.execute(
        "SELECT pg_get_functiondef('claim_video_request(text,interval,text[],integer,integer,integer)'::regprocedure)"
    ).fetchone()
    if scale_window:
        assert body.count("interval '1 minute'") == 2, "the claim's start window changed: update the bench"
        body = body.replace("interval '1 minute'", "interval '1 second'")
    assert body.count(FAIR_ORDER) == 3, "the claim's order changed: update the bench"
    fifo = body.replace(FAIR_ORDER, FIFO_ORDER).replace(CHOSEN, CHOSEN + ", available_at")
    assert body.count(CHOSEN) == 1, "the claim's choice of pending rows changed: update the bench"
    for name, text in (("fair", body), ("fifo", fifo)):
        conn.execute(sql.SQL(text.replace("public.claim_video_request(", f"public.bench_claim_{name}(", 1)))


def reset(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE video_requests, veo_start_slots CASCADE")
    conn.execute("UPDATE fair_share_clock SET round = 0")


# -- order ---------------------------------------------------------------------------------------


def worker(conninfo: str, order: str, name: str, total: int, started: list[int], lock: threading.Lock) -> None:
    try:
        claim_and_start(conninfo, order, name, total, started, lock)
    except BaseException as error:
        with lock:
            started.extend([None] * total)  # stops the other worker; the run reports the error
        raise SystemExit(f"worker {name}: {error}") from error


def claim_and_start(conninfo: str, order: str, name: str, total: int, started: list, lock: threading.Lock) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while True:
            with lock:
                if len(started) >= total:
                    return
            rows = conn.execute(
                sql.SQL(CLAIM).format(sql.Identifier(f"bench_claim_{order}")), [name, LEASE, CAP]
            ).fetchall()
            for (request_id,) in rows:
                conn.execute(START, [request_id, name])
            with lock:
                started.extend(request_id for (request_id,) in rows)
            if not rows:
                # Asleep until the start window can next have room, as a worker woken then would
                # be: the figure is then about the claim, not about how often a harness polls.
                (until,) = conn.execute(NEXT_ROOM, [CAP]).fetchone()
                time.sleep(min(max(float(until or 0), POLL), 0.05))


def arrivals(scenario: str) -> list[tuple[float, int, int]]:
    """(seconds after the start, user, requests queued at once)."""
    light = (
        [(0.0, 100 + n, 2) for n in range(50)]
        if scenario == "burst"
        else [(1.0 + 0.4 * n, 100 + n, 2) for n in range(50)]
    )
    return [(0.0, HEAVY, 200), *light]


def run_order(conninfo: str, order: str, scenario: str) -> dict:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        reset(conn)
        plan = arrivals(scenario)
        total = sum(count for _, _, count in plan)
        started: list[int] = []
        lock = threading.Lock()
        threads = [
            threading.Thread(target=worker, args=(conninfo, order, f"w{n}", total, started, lock)) for n in range(2)
        ]
        interaction = 1
        begin = time.perf_counter()
        for thread in threads:
            thread.start()
        for at, user, count in plan:
            time.sleep(max(0.0, begin + at - time.perf_counter()))
            for _ in range(count):
                conn.execute(INSERT, [interaction, user, GUILD])
                interaction += 1
        for thread in threads:
            thread.join()
        if None in started:
            raise SystemExit("a worker failed (above)")
        rows = conn.execute(
            "SELECT user_id, extract(epoch FROM started_at - created_at), extract(epoch FROM started_at)"
            " FROM video_requests"
        ).fetchall()
        (first_arrival,) = conn.execute("SELECT extract(epoch FROM min(created_at)) FROM video_requests").fetchone()
        grants = [float(at) for (at,) in conn.execute(GRANTS)]
    light = sorted(float(wait) for user, wait, _ in rows if user != HEAVY)
    heavy = sorted(float(wait) for user, wait, _ in rows if user == HEAVY)
    # A slot is the place in the window a grant takes; it is free again a second later, and is
    # used again by the grant CAP places on. Idle = the time between.
    reuse = [grants[i] - grants[i - CAP] for i in range(CAP, len(grants))]
    span = grants[-1] - float(first_arrival)
    return {
        "light": light,
        "heavy": heavy,
        "span": span,
        "throughput": len(rows) / span,
        "slot_use": 1.0 / statistics.mean(reuse),
    }


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def part_order(conninfo: str, repeats: int) -> None:
    print("\n## order: 1 heavy user x 200, then 50 light users x 2; cap 10 starts a second")
    print("| scenario | order | light p50 | light p95 | light max | heavy p50 | heavy p95 | starts/s | slot use |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for scenario in ("burst", "spread"):
        p95 = {}
        for _ in range(repeats):
            for order in ("fifo", "fair"):  # alternating, so drift on a shared machine hits both
                r = run_order(conninfo, order, scenario)
                p95.setdefault(order, []).append(pct(r["light"], 95))
                print(
                    f"| {scenario} | {order} | {pct(r['light'], 50):.2f} s | {pct(r['light'], 95):.2f} s"
                    f" | {r['light'][-1]:.2f} s | {pct(r['heavy'], 50):.2f} s | {pct(r['heavy'], 95):.2f} s"
                    f" | {r['throughput']:.2f} | {r['slot_use']:.1%} |",
                    flush=True,
                )
        ratio = statistics.median(p95["fair"]) / statistics.median(p95["fifo"])
        print(f"{scenario}: light p95, fair / FIFO = {ratio:.2f}")


# -- plans ---------------------------------------------------------------------------------------

_DUE = (
    "SELECT id FROM video_requests WHERE status = 'pending' AND available_at <= clock_timestamp()"
    " AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp()) "
)
CLAIM_CHOICE = {
    "fair": _DUE + FAIR_ORDER + " LIMIT 10 FOR UPDATE SKIP LOCKED",
    "fifo": _DUE + FIFO_ORDER + " LIMIT 10 FOR UPDATE SKIP LOCKED",
}
POSITION = {
    "fair": "SELECT count(*) FROM (SELECT 1 FROM video_requests ahead, video_requests me WHERE me.id = %s"
    " AND ahead.status = 'pending' AND (ahead.fair_round, ahead.fair_turn, ahead.id)"
    " < (me.fair_round, me.fair_turn, me.id) LIMIT 1000) AS a",
    "fifo": "SELECT count(*) FROM (SELECT 1 FROM video_requests ahead, video_requests me WHERE me.id = %s"
    " AND ahead.status = 'pending' AND (ahead.available_at, ahead.id) < (me.available_at, me.id) LIMIT 1000) AS a",
}
BULK = (
    "INSERT INTO video_requests (interaction_id, user_id, guild_id, source, prompt, duration_seconds, aspect_ratio,"
    " resolution, model, status, counts_toward_quota)"
    " SELECT %(first)s + n, %(user)s + n %% %(users)s, 1 + n %% %(guilds)s, 'cli', 'a red fox in snow', 4, '16:9', '720p',"
    " 'veo-3.1-generate-001', 'pending', true FROM generate_series(0, %(count)s - 1) AS n"
)


def bulk(conn: psycopg.Connection, *, first: int, count: int, user: int, users: int, guilds: int) -> float:
    """``count`` pending requests through the trigger: users user..user+users-1 in turn."""
    began = time.perf_counter()
    conn.execute(BULK, {"first": first, "count": count, "user": user, "users": users, "guilds": guilds})
    return time.perf_counter() - began


def explain(conn: psycopg.Connection, query: str, params=None) -> str:
    conn.execute("BEGIN")
    try:
        statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}").format(sql.SQL(query))
        lines = [row[0] for row in conn.execute(statement, params)]
    finally:
        conn.execute("ROLLBACK")
    return "\n".join("    " + line for line in lines)


def timed_ms(conn: psycopg.Connection, query, params, calls: int) -> float:
    times = []
    for _ in range(calls):
        conn.execute("BEGIN")
        began = time.perf_counter()
        conn.execute(query, params).fetchall()
        times.append((time.perf_counter() - began) * 1000)
        conn.execute("ROLLBACK")
    return statistics.median(times)


def measure(conn: psycopg.Connection, label: str, *, newest: int) -> None:
    conn.execute("VACUUM ANALYZE video_requests")
    (pending,) = conn.execute("SELECT count(*) FROM video_requests WHERE status = 'pending'").fetchone()
    print(f"\n### {label}: {pending:,} pending")
    for order in ("fair", "fifo"):
        print(f"claim's choice of 10, {order}:\n" + explain(conn, CLAIM_CHOICE[order]))
        print(f"position of the newest request, {order}:\n" + explain(conn, POSITION[order], [newest]))
    # Alternating call by call, so that a shared machine's drift hits both orders alike.
    claims: dict[str, list[float]] = {"fair": [], "fifo": []}
    positions: dict[str, list[float]] = {"fair": [], "fifo": []}
    for n in range(400):
        order = ("fair", "fifo")[n % 2]
        claim = sql.SQL(CLAIM).format(sql.Identifier(f"bench_claim_{order}"))
        claims[order].append(timed_ms(conn, claim, ["bench", LEASE, 1000], 1))
        positions[order].append(timed_ms(conn, POSITION[order], [newest], 1))
    for order in ("fair", "fifo"):
        print(
            f"{order}: claim_video_request(limit 10) p50 {statistics.median(claims[order]):.2f} ms,"
            f" position of the newest p50 {statistics.median(positions[order]):.2f} ms"
        )
    conn.execute("DROP TABLE IF EXISTS bench_insert_ms")
    conn.execute("CREATE TABLE bench_insert_ms (trigger_on boolean, ms float8)")
    conn.execute(INSERT_COST)
    rows = conn.execute(
        "SELECT trigger_on, avg(ms), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FROM bench_insert_ms GROUP BY 1"
    ).fetchall()
    for trigger_on, mean, median in sorted(rows, reverse=True):
        label = "with the trigger" if trigger_on else "without it"
        print(f"insert, in the server, {label}: mean {mean:.3f} ms, median of blocks {median:.3f} ms")


# Inserts timed inside the server (no round trip, no commit), in blocks of 200 with the stamping
# trigger on and off in turn, so that a shared machine's drift hits both.
INSERT_COST = """
DO $$
DECLARE
    began timestamptz;
BEGIN
    FOR block IN 1..20 LOOP
        IF block % 2 = 0 THEN
            ALTER TABLE video_requests ENABLE TRIGGER video_requests_take_turn;
        ELSE
            ALTER TABLE video_requests DISABLE TRIGGER video_requests_take_turn;
        END IF;
        began := clock_timestamp();
        FOR i IN 1..200 LOOP
            INSERT INTO video_requests (interaction_id, user_id, guild_id, source, prompt, duration_seconds,
                                        aspect_ratio, resolution, model, status, counts_toward_quota)
            VALUES (900000000 + block * 1000 + i, 1000 + (block * 200 + i) % 20000, 1 + i % 200, 'cli',
                    'a red fox in snow', 4, '16:9', '720p', 'veo-3.1-generate-001', 'pending', true);
        END LOOP;
        INSERT INTO bench_insert_ms VALUES (block % 2 = 0, extract(epoch FROM clock_timestamp() - began) * 1000 / 200);
    END LOOP;
    ALTER TABLE video_requests ENABLE TRIGGER video_requests_take_turn;
END
$$
"""


def part_plans(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        reset(conn)
        seconds = bulk(conn, first=1, count=100_000, user=1000, users=20_000, guilds=200)
        print(f"\nloaded 100,000 pending from 20,000 users through the trigger in {seconds:.1f} s")
        (newest,) = conn.execute("SELECT max(id) FROM video_requests").fetchone()
        measure(conn, "many users", newest=newest)
        reset(conn)
        seconds = bulk(conn, first=1, count=100_000, user=7, users=1, guilds=1)
        seconds += bulk(conn, first=200_000, count=1_000, user=2000, users=1_000, guilds=200)
        print(f"\nloaded 100,000 pending from one user, then 1,000 light users, in {seconds:.1f} s")
        (newest,) = conn.execute("SELECT max(id) FROM video_requests").fetchone()
        measure(conn, "one huge user", newest=newest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("order", "plans", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    params, dbname = server_conninfo(), scratch_name()
    create_scratch(params, dbname)
    conninfo = make_conninfo("", **params, dbname=dbname)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            print(machine_description())
            print(conn.execute("SELECT version()").fetchone()[0])
            install_claims(conn, scale_window=True)
        if args.part in ("order", "both"):
            part_order(conninfo, args.repeats)
        if args.part in ("plans", "both"):
            part_plans(conninfo)
    finally:
        if not args.keep:
            drop_scratch(params, dbname)


if __name__ == "__main__":
    main()
