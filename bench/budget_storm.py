"""Budget storm: many processes admit at once against one guild's budget; the guild never
spends past it, in any run.

    .venv/bin/python bench/budget_storm.py --dsn "host=127.0.0.1 port=5432 user=postgres dbname=veobot_x"

Each process opens --threads connections (one server backend each) and every connection admits
--per-connection requests, each for a user of its own in one guild whose policy sets a guild
budget, all released together by a barrier. Every request costs the same (Veo 3.1, 720p with
audio, 4 s: $1.60), so the budget fits exactly floor(budget / cost) of them: more is an
over-spend, fewer a refusal that was not needed. Each run uses a fresh guild and a fresh set of
users. Prints, per run: admitted, spend, budget; exit status 1 if any run spent past its budget.
The database must have the schema (manage.py migrate_sql); the rows a run writes are left for
inspection (a scratch database is the place for it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import threading
from dataclasses import dataclass
from decimal import Decimal

import psycopg

MODEL = "veo-3.1-generate-001"
COST = Decimal("1.60")  # its seeded price, 720p with audio: $0.40 x 4 s
ADMIT = (
    "SELECT admitted, reason_code FROM admit_video_request(%s, %s, %s, NULL, 'a red fox in snow', NULL,"
    " 4::smallint, '16:9', '720p', true, 'allow_adult', NULL, %s, 'discord', 1000, interval '1 day', 0)"
)


@dataclass(frozen=True)
class Run:
    guild_id: int
    attempts: int
    admitted: int
    refused_by_budget: int
    spend: Decimal
    budget: Decimal

    @property
    def fits(self) -> int:
        return int(self.budget // COST)

    @property
    def overspent(self) -> bool:
        return self.spend > self.budget


def _process(conninfo: str, guild_id: int, lanes: list[list[tuple[int, int]]], start, queue) -> None:
    answers: list = []
    # When every connection of this process is open, one thread meets the other processes
    # (start), then all are released together.
    together = threading.Barrier(len(lanes), action=start.wait)

    def lane(ids: list[tuple[int, int]]) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            together.wait()
            for interaction_id, user_id in ids:
                answers.append(conn.execute(ADMIT, [interaction_id, user_id, guild_id, MODEL]).fetchone())

    threads = [threading.Thread(target=lane, args=(ids,)) for ids in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(answers)


def storm(conninfo: str, *, guild_id: int, budget: Decimal, processes: int, threads: int, per_connection: int) -> Run:
    """One run: a guild budget of ``budget``, then processes x threads connections admitting at once."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO quota_policies (guild_id, quota_limit, quota_window, guild_budget_usd, guild_budget_window)"
            " VALUES (%s, 1000, interval '1 day', %s, interval '1 day')",
            [guild_id, budget],
        )
    context = multiprocessing.get_context("spawn")
    start, queue = context.Barrier(processes), context.Queue()
    first = guild_id * 100_000
    workers = []
    for process in range(processes):
        lanes = [
            [
                (first + n, first + n)
                for n in range(
                    (process * threads + lane) * per_connection, (process * threads + lane + 1) * per_connection
                )
            ]
            for lane in range(threads)
        ]
        workers.append(context.Process(target=_process, args=(conninfo, guild_id, lanes, start, queue)))
    for worker in workers:
        worker.start()
    answers = [answer for _ in workers for answer in queue.get(timeout=300)]
    for worker in workers:
        worker.join(timeout=30)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        spend = conn.execute(
            "SELECT COALESCE(sum(cost_estimated_usd), 0) FROM video_requests WHERE guild_id = %s AND counts_toward_quota",
            [guild_id],
        ).fetchone()[0]
    return Run(
        guild_id=guild_id,
        attempts=len(answers),
        admitted=sum(1 for admitted, _ in answers if admitted),
        refused_by_budget=sum(1 for _, code in answers if code == "budget_guild"),
        spend=spend,
        budget=budget,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string of a migrated scratch database")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4, help="connections per process")
    parser.add_argument("--per-connection", type=int, default=4, help="admissions per connection")
    parser.add_argument("--budget", type=Decimal, default=Decimal("40.00"))
    parser.add_argument("--first-guild", type=int, default=900_000, help="runs use guilds from this id up")
    args = parser.parse_args()
    print("run  attempts  admitted  fits  refused(budget_guild)  spend     budget   over?")
    failed = False
    for number in range(args.runs):
        run = storm(
            args.dsn,
            guild_id=args.first_guild + number,
            budget=args.budget,
            processes=args.processes,
            threads=args.threads,
            per_connection=args.per_connection,
        )
        failed |= run.overspent
        print(
            f"{number + 1:>3}  {run.attempts:>8}  {run.admitted:>8}  {run.fits:>4}  {run.refused_by_budget:>21}"
            f"  ${run.spend:<8}${run.budget:<8} {'OVER' if run.overspent else 'no'}",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
