"""What 0003_moderation costs admission: admit_video_request p50 with only 0001, with 0003
(five more indexes on video_requests and the blocked-term check), and with 0003 plus 50
blocked terms (40 words, 10 regular expressions).

    .venv/bin/python bench/admission_moderation.py --rows 1000000 --calls 3000

It uses (or loads) the database of bench/admin_pages.py with --rows rows, rolls 0003 back
and forward on it, and times single admit_video_request calls from one connection (one
round trip each, distinct users, default quota). Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bench.admin_dataset import load, server_conninfo  # noqa: E402

CALL = (
    "SELECT admitted FROM admit_video_request(%s, %s, 77, 78, %s, NULL, 4::smallint, '16:9', '720p', true,"
    " 'allow_adult', NULL, 'veo-3.1-generate-001', 'discord', 5, interval '24 hours', 0)"
)
PROMPT = "A red fox walking through a misty pine forest at dawn, slow dolly-in shot, cinematic lighting"


def runner(params: dict, dbname: str):
    from tracking.sql_migrations import Runner

    return Runner(
        {
            "NAME": dbname,
            "USER": params.get("user", ""),
            "PASSWORD": params.get("password", ""),
            "HOST": params.get("host", ""),
            "PORT": params.get("port", ""),
        },
        log=lambda line: None,
    )


def p50_ms(conn: psycopg.Connection, calls: int, first_interaction: int) -> float:
    times = []
    for i in range(calls):
        started = time.perf_counter()
        conn.execute(CALL, [first_interaction + i, 10**12 + first_interaction + i, PROMPT])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    import os

    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    params = server_conninfo()
    dbname = f"veobot_bench_admin_{args.rows}"
    load(params, dbname, args.rows)
    migrations = runner(params, dbname)
    interaction = 9 * 10**15
    results: dict[str, list[float]] = {"0001 only": [], "0001 + 0003": [], "0001 + 0003, 50 blocked terms": []}
    for _round in range(2):  # interleaved, so that drift on a shared machine hits every variant
        migrations.rollback(to_version=1)
        with psycopg.connect(**params, dbname=dbname, autocommit=True) as conn:
            results["0001 only"].append(p50_ms(conn, args.calls, interaction))
        interaction += args.calls
        migrations.migrate()
        with psycopg.connect(**params, dbname=dbname, autocommit=True) as conn:
            results["0001 + 0003"].append(p50_ms(conn, args.calls, interaction))
            interaction += args.calls
            for n in range(40):
                conn.execute("INSERT INTO blocked_terms (kind, pattern) VALUES ('word', %s)", [f"forbiddenword{n}"])
            for n in range(10):
                conn.execute(
                    "INSERT INTO blocked_terms (kind, pattern) VALUES ('regex', %s)", [rf"bad(thing|stuff){n}\d+"]
                )
            results["0001 + 0003, 50 blocked terms"].append(p50_ms(conn, args.calls, interaction))
            interaction += args.calls
            conn.execute("DELETE FROM blocked_terms")
    for label, values in results.items():
        print(f"{label:34s} p50 {' / '.join(f'{v:.3f}' for v in values)} ms")


if __name__ == "__main__":
    main()
