"""What the moderation schema costs the hot writes: admission and a worker's two transitions
(generating, completed), with the schema at 0016, 0017 (stored text vector), 0018 (review
queue and audit triggers) and 0019 (the phrase pairs index); or other versions (--versions).

    .venv/bin/python bench/write_costs.py --rows 1000000 --calls 2000
    .venv/bin/python bench/write_costs.py --rows 1000000 --versions 21,23   # 0023, the search facets

It uses (or loads) the database of bench/admin_pages.py with --rows rows, rolls the
migrations back to each version and forward again, interleaved over --rounds rounds so that a
shared machine's drift hits every version, and times from one connection (one round trip per
statement): admit_video_request for a new user, then transition_video_request to generating
and to completed for the request it made. Every such update writes a new row version, and every
index on video_requests (the text and pairs indexes too) gets an entry for it: what the p50s
show. Reports p50 per statement and the backend's CPU per request (from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bench.admin_dataset import load, server_conninfo  # noqa: E402
from bench.admission_moderation import CALL, PROMPT, runner  # noqa: E402
from bench.cpu import process_seconds  # noqa: E402

VERSIONS = (16, 17, 18, 19)
ID_OF = "SELECT id FROM video_requests WHERE interaction_id = %s"
GENERATING = (
    "SELECT 1 FROM transition_video_request(%s, 'generating', 'bench', NULL, false, NULL, 'operations/bench',"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
)
COMPLETED = (
    "SELECT 1 FROM transition_video_request(%s, 'completed', 'bench', NULL, false, NULL, NULL,"
    " ARRAY['file:bench.mp4'], NULL, 1000, 0, NULL, NULL, NULL)"
)


def one_version(conn: psycopg.Connection, calls: int, first_interaction: int) -> dict:
    timings: dict[str, list[float]] = {"admit": [], "generating": [], "completed": []}
    pid = conn.info.backend_pid
    cpu_before = process_seconds([pid])
    for i in range(calls):
        interaction = first_interaction + i
        started = time.perf_counter()
        conn.execute(CALL, [interaction, 10**12 + interaction, PROMPT])
        timings["admit"].append(time.perf_counter() - started)
        (request_id,) = conn.execute(ID_OF, [interaction]).fetchone()
        for step, sql in (("generating", GENERATING), ("completed", COMPLETED)):
            started = time.perf_counter()
            conn.execute(sql, [request_id])
            timings[step].append(time.perf_counter() - started)
    cpu = process_seconds([pid]) - cpu_before
    result = {f"{step}_p50_ms": round(statistics.median(t) * 1000, 3) for step, t in timings.items()}
    result["backend_cpu_ms_per_request"] = round(cpu * 1000 / calls, 3)  # includes the id look-ups
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--versions",
        default=",".join(map(str, VERSIONS)),
        help="schema versions to compare, each one migration after the one before (e.g. 21,23)",
    )
    parser.add_argument("--dbname", help="a database of bench/admin_pages.py's data with --rows rows, by name")
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    params = server_conninfo()
    dbname = args.dbname or f"veobot_bench_admin_{args.rows}"
    versions = tuple(int(v) for v in args.versions.split(","))
    load(params, dbname, args.rows)
    migrations = runner(params, dbname)
    interaction = 8 * 10**15 + int(time.time()) * 10**5  # new interactions (and users) on every run
    results: dict[int, list[dict]] = {version: [] for version in versions}
    migrations.migrate()
    for _round in range(args.rounds):
        # From the newest down, one migration at a time; then all of them up again.
        for version in sorted(versions, reverse=True):
            if version != max(versions):
                migrations.rollback()
            with psycopg.connect(**params, dbname=dbname, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE video_requests")
                measured = one_version(conn, args.calls, interaction)
            interaction += args.calls
            results[version].append(measured)
            print(json.dumps({"version": version, **measured}), flush=True)
        migrations.migrate()
    summary = {"rows": args.rows, "calls": args.calls, "results": results, "load_average": os.getloadavg()}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
