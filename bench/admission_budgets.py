"""What budgets and role policies cost admission: the admit_video_request before them (0019's,
taken from 0020's down migration and installed in the benchmark's database only, as
admit_video_request_previous) against today's, with no budget configured and with every budget
and role policy in play, alternating, on a priced copy of the admission benchmark's history.

    .venv/bin/python bench/admission_budgets.py --dsn "host=127.0.0.1 port=5432 user=postgres" --rows 1000000

The history (request_history: 90 days, 100k users) is loaded into --dbname, then priced: each
row gets the cost the insert trigger would have given it at the Veo 3.1 (or 3.1 Fast) price of
its resolution and audio, and the operator's and guilds' ledgers what their triggers would have
written (the triggers were off while loading). "budgets + roles" adds, for each of the 2,000
guilds the script draws from, a guild policy with a guild budget and two role policies (one with
a per-user budget), passes the member's three role ids and the operator's daily cap. Every
budget is large enough to admit, so the admitted path (every sum read) is what is measured. The
figure that matters is server CPU per admission, from /proc (bench/cpu.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from psycopg import sql  # noqa: E402

from bench import cpu, pgbench_driver, request_history  # noqa: E402
from bench.admission_plans import KNOWN_USERS, PROMPT, QUOTA_LIMIT  # noqa: E402
from bench.admission_versions import PREVIOUS  # noqa: E402
from bench.server import REPO, Server, machine_description, server_description  # noqa: E402

GUILDS = 2000  # bench/scripts/admission.sql draws guild ids 1..2000
CALL = """\\set user_id :user_step * random(1, :user_count) + random(:user_offset_min, :user_offset_max)
\\set guild_id random(1, {guilds})
\\set channel_id :guild_id * 100 + random(1, 20)
SELECT request_id, admitted, reason_code FROM {function}(
    nextval('bench_interaction_ids'), :user_id, :guild_id, :channel_id, :prompt, NULL, 8::smallint, '16:9',
    '720p', true, 'allow_adult', NULL, 'veo-3.1-fast-generate-001', 'discord', :quota_limit, :quota_window, 0{extra});
"""
ROLES_AND_CAP = ", NULL, NULL, NULL, NULL, NULL, ARRAY[:guild_id * 10 + 1, :guild_id * 10 + 2, 99]::bigint[], 1000000"

PRICE_HISTORY = """
UPDATE video_requests r SET
    cost_estimated_usd = CASE WHEN r.status = 'rejected' THEN 0 ELSE p.usd_per_second * r.duration_seconds END,
    cost_final_usd = CASE WHEN r.status IN ('pending', 'generating') THEN NULL
                          WHEN r.counts_toward_quota AND r.status <> 'rejected' THEN p.usd_per_second * r.duration_seconds
                          ELSE 0 END
FROM (VALUES ('veo-3.0-generate-001', 'veo-3.1-generate-001'), ('veo-3.0-fast-generate-001', 'veo-3.1-fast-generate-001'))
     AS m (loaded, model),
     veo_prices p
WHERE r.model = m.loaded AND p.model = m.model AND p.resolution = r.resolution AND p.generate_audio = r.generate_audio
"""
# What the ledgers' triggers would have written for that history (a database priced before the
# guild ledger existed got it from the migration that added it).
LEDGER = """
INSERT INTO operator_spend_hours (hour, shard, usd)
SELECT date_trunc('hour', created_at, 'UTC'), operator_spend_shard(user_id), sum(cost_estimated_usd) FROM video_requests
WHERE counts_toward_quota AND cost_estimated_usd > 0 GROUP BY 1, 2
"""
GUILD_LEDGER = """
INSERT INTO guild_spend_ledger (guild_id, hours, starts, usd)
SELECT guild_id, 1, date_trunc('hour', created_at, 'UTC'), sum(cost_estimated_usd) FROM video_requests
WHERE counts_toward_quota AND cost_estimated_usd > 0 AND guild_id IS NOT NULL GROUP BY 1, 3
UNION ALL
SELECT guild_id, 24, date_trunc('day', created_at, 'UTC'), sum(cost_estimated_usd) FROM video_requests
WHERE counts_toward_quota AND cost_estimated_usd > 0 AND guild_id IS NOT NULL GROUP BY 1, 3
"""

POLICIES = """
INSERT INTO quota_policies (guild_id, role_id, role_label, quota_limit, quota_window, budget_usd, budget_window,
                            guild_budget_usd, guild_budget_window)
SELECT g, NULL, NULL, %(limit)s, interval '1 day', NULL, NULL, 1000000, interval '30 days' FROM generate_series(1, %(guilds)s) g
UNION ALL
SELECT g, g * 10 + 1, 'Supporter', %(limit)s, interval '1 day', 10000, interval '7 days', NULL, NULL
FROM generate_series(1, %(guilds)s) g
UNION ALL
SELECT g, g * 10 + 2, 'Member', %(limit)s - 1, interval '1 day', NULL, NULL, NULL, NULL FROM generate_series(1, %(guilds)s) g
ON CONFLICT DO NOTHING
"""


# 0019's answer: 0020 added columns to admission_result, which 0019's function cannot fill.
PREVIOUS_RESULT = """
CREATE TYPE admission_result_previous AS (request_id bigint, admitted boolean, duplicate boolean, status text,
    reason_code text, reason text, used integer, quota_limit integer, remaining integer, reset_at timestamptz)
"""


def previous_admission_sql() -> str:
    """0019's admit_video_request, as 0020's down migration restores it, named PREVIOUS (and
    answering the type admission_result had then)."""
    text = (REPO / "migrations_sql" / "0020_costs_budgets_roles.down.sql").read_text()
    start = text.index("CREATE FUNCTION admit_video_request(")
    end = text.index("$$;", text.index("BEGIN", start)) + 3
    body = text[start:end].replace("FUNCTION admit_video_request(", f"FUNCTION {PREVIOUS}(", 1)
    return body.replace("admission_result", "admission_result_previous")


def price_history(conn) -> None:
    """Give the loaded history Veo 3.1 models and costs (once; a priced history is left as it is)."""
    if conn.execute("SELECT EXISTS (SELECT 1 FROM video_requests WHERE cost_estimated_usd IS NOT NULL)").fetchone()[0]:
        return
    print("pricing the history (triggers off, as it was loaded) ...", flush=True)
    conn.execute("SET session_replication_role = replica")
    conn.execute(PRICE_HISTORY)
    conn.execute("RESET session_replication_role")
    conn.execute(LEDGER)
    conn.execute(GUILD_LEDGER)
    conn.execute("VACUUM (ANALYZE) video_requests")


# Each variant: its label, the function it calls and what it passes beyond the 17 arguments.
VARIANTS = (
    ("previous admission", PREVIOUS, ""),
    ("current, no budgets", "admit_video_request", ""),
    ("budgets + roles", "admit_video_request", ROLES_AND_CAP),
)


def install_variants(conn) -> None:
    """The policies "budgets + roles" reads, and 0019's function beside today's."""
    conn.execute(POLICIES, {"limit": QUOTA_LIMIT, "guilds": GUILDS})
    remove_previous(conn)
    conn.execute(PREVIOUS_RESULT)
    conn.execute(previous_admission_sql())


def remove_variants(conn) -> None:
    remove_previous(conn)
    conn.execute("DELETE FROM quota_policies")


def remove_previous(conn) -> None:
    conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}").format(sql.Identifier(PREVIOUS)))
    conn.execute("DROP TYPE IF EXISTS admission_result_previous")


def scripts(scratch: Path) -> tuple[tuple[str, str], ...]:
    written = []
    for label, function, extra in VARIANTS:
        path = scratch / f"{label.replace(' ', '_').replace(',', '').replace('+', 'and')}.sql"
        path.write_text(CALL.format(guilds=GUILDS, function=function, extra=extra))
        written.append((label, str(path)))
    return tuple(written)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dsn", help="libpq connection string (default: the embedded PostgreSQL)")
    parser.add_argument("--dbname", help="the benchmark's own database (default: veobot_bench_costs_<rows>)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    server = Server.from_dsn(args.dsn) if args.dsn else Server.embedded()
    dbname = args.dbname or f"veobot_bench_costs_{args.rows}"
    data = request_history.prepare(server, dbname=dbname, rows=args.rows, reload=False)
    results: dict[tuple[str, int], list[pgbench_driver.Result]] = {}
    scratch = tempfile.TemporaryDirectory(prefix="veobot-admission-budgets-")
    variants = scripts(Path(scratch.name))
    variables = {
        "user_step": KNOWN_USERS.step,
        "user_count": KNOWN_USERS.count,
        "user_offset_min": KNOWN_USERS.offset_min,
        "user_offset_max": KNOWN_USERS.offset_max,
        "prompt": PROMPT,
        "quota_limit": QUOTA_LIMIT,
        "quota_window": "86400 seconds",
    }
    with scratch, server.connect(data.dbname) as conn:
        print("machine:", ", ".join(f"{k} {v}" for k, v in machine_description().items()))
        print("server: ", ", ".join(f"{k} {v}" for k, v in server_description(conn).items()))
        price_history(conn)
        install_variants(conn)
        counted = conn.execute(
            "SELECT count(*) FROM video_requests WHERE counts_toward_quota AND cost_estimated_usd > 0"
            " AND created_at > now() - interval '1 day'"
        ).fetchone()[0]
        print(
            f"dataset: {data.dbname}, {data.rows:,} rows ({counted:,} spent in the last day); previous: 0019's, from 0020's down migration"
        )
        try:
            for number in range(1, args.rounds + 1):
                for clients in args.clients:
                    # Every other round backwards, and each measurement from the loaded history:
                    # the requests a measurement admits stay pending, and before 0025 the
                    # fair-share insert trigger's turn look-up slowed as they piled up (its plan,
                    # chosen while none were pending, read them all): in one run, server CPU per
                    # admission went from 2 ms in round 1 to 7-12 ms in round 3, whatever the
                    # variant. Every measurement still starts from the same queue.
                    for label, script in variants if number % 2 else variants[::-1]:
                        request_history.remove_benchmark_rows(conn, data.last_loaded_id)
                        cpu.wait_until_quiet(max_seconds=5)
                        result = pgbench_driver.run(
                            script=script,
                            conninfo=server.conninfo(data.dbname, with_password=False),
                            env=server.client_env(),
                            clients=clients,
                            seconds=args.duration,
                            variables=variables,
                            backend_pids=lambda: server.backend_pids(conn, data.dbname),
                            own_pids=[],
                        )
                        results.setdefault((label, clients), []).append(result)
                        print(
                            f"round {number}: {label}, {clients} client(s): {result.tps:.0f} tps, "
                            f"p50 {result.p50_ms:.3f} ms, server cpu {result.server_cpu_us or 0:.0f} us",
                            flush=True,
                        )
        finally:
            remove_variants(conn)
            request_history.prepare(server, dbname=data.dbname, rows=args.rows, reload=False)

    print(
        f"\nmedians of {args.rounds} round(s)\n{'variant':22} {'clients':>7} {'tps':>7} {'p50 ms':>7} {'cpu us':>7}"
        f" {'cpu/prev':>8} {'round ratios':>12}"
    )
    for clients in args.clients:
        previous = results[(variants[0][0], clients)]
        for label, _ in variants:
            rs = results[(label, clients)]
            print(
                f"{label:22} {clients:>7} {statistics.median(r.tps for r in rs):>7.0f} "
                f"{statistics.median(r.p50_ms for r in rs):>7.3f} {_median_cpu(rs):>7.0f} "
                f"{_median_cpu(rs) / _median_cpu(previous):>8.2f} {_median_ratio(rs, previous):>12.2f}"
            )
    return 0


def _median_cpu(results: list) -> float:
    """A reading of no CPU at all is a failed one (the backends were not yet the measured ones)."""
    readings = [r.server_cpu_us for r in results if r.server_cpu_us]
    return statistics.median(readings) if readings else float("nan")


def _median_ratio(results: list, previous: list) -> float:
    """The median of each round's ratio to the previous function's reading of the same round:
    measurements side by side in time, so a drift that moves a whole round moves both."""
    ratios = [
        r.server_cpu_us / p.server_cpu_us
        for r, p in zip(results, previous, strict=True)
        if r.server_cpu_us and p.server_cpu_us
    ]
    return statistics.median(ratios) if ratios else float("nan")


if __name__ == "__main__":
    sys.exit(main())
