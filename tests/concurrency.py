"""Admissions from many real connections at once: threads here, processes via spawn.

Each admission uses its own psycopg connection (its own server backend), so the only
thing serialising them is what the database does.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count

import psycopg

ADMIT = (
    "SELECT admitted FROM admit_video_request(%s, %s, NULL, NULL, 'a red fox in snow', NULL, 4::smallint,"
    " '16:9', '720p', true, 'allow_adult', NULL, 'veo-test', 'discord', %s, interval '24 hours', 0)"
)


def conninfo(db: dict) -> dict:
    return {
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "dbname": db["NAME"],
        # Django's own choice too: a statement prepared on one server connection is unknown to
        # the next one a transaction-pooling PgBouncer hands out.
        "prepare_threshold": None,
    }


def _in_threads(target, arguments) -> None:
    """target(*args) for each args, each in its own thread, all started before any is joined."""
    threads = [threading.Thread(target=target, args=args) for args in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _admit_many(info: dict, user_id: int, interaction_ids: list[int], limit: int, start, results: list) -> None:
    connections = [psycopg.connect(**info, autocommit=True) for _ in interaction_ids]
    try:
        start.wait()  # every process is connected
        together = threading.Barrier(len(connections))  # every thread fires at once

        def admit_one(connection: psycopg.Connection, interaction_id: int) -> None:
            together.wait()
            results.append(connection.execute(ADMIT, [interaction_id, user_id, limit]).fetchone()[0])

        _in_threads(admit_one, zip(connections, interaction_ids, strict=False))
    finally:
        for connection in connections:
            connection.close()


def admit_from_threads(db: dict, *, user_id: int, attempts: int, limit: int, first_interaction: int) -> list[bool]:
    results: list[bool] = []
    start = threading.Barrier(1)
    _admit_many(
        conninfo(db), user_id, list(range(first_interaction, first_interaction + attempts)), limit, start, results
    )
    return results


def _process_main(info, user_id, interaction_ids, limit, start, queue) -> None:
    results: list[bool] = []
    _admit_many(info, user_id, interaction_ids, limit, start, results)
    queue.put(results)


def admit_from_processes(
    db: dict, *, user_id: int, processes: int, per_process: int, limit: int, first_interaction: int
) -> list[bool]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    queue = context.Queue()
    ids = count(first_interaction)
    workers = [
        context.Process(
            target=_process_main,
            args=(conninfo(db), user_id, [next(ids) for _ in range(per_process)], limit, start, queue),
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [admitted for _ in workers for admitted in queue.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=30)
    return results


# -- planned attacks: many users, paced attempts, every answer kept ----------------------------

ADMIT_WITH = (
    "SELECT request_id, admitted, duplicate, status, reason_code, reason, reset_at FROM admit_video_request("
    "%s, %s, %s, NULL, 'a red fox in snow', NULL, 4::smallint, '16:9', '720p', true, 'allow_adult', NULL,"
    " 'veo-test', 'discord', %s, %s, %s)"
)


@dataclass(frozen=True)
class Attempt:
    interaction_id: int
    user_id: int
    guild_id: int | None
    pause: float  # seconds to wait before sending it, so the attack spans rolling windows


@dataclass(frozen=True)
class Defaults:
    """The configured quota (VEO_QUOTA_*) that applies where no policy row does."""

    limit: int
    window: timedelta
    max_in_flight: int = 0


def _run_lanes(info: dict, lanes: list[list[Attempt]], defaults: Defaults, start, answers: list) -> None:
    """One connection per lane; every lane sends its attempts in order, all lanes at once."""
    connections = [psycopg.connect(**info, autocommit=True) for _ in lanes]
    try:
        start.wait()

        def run_lane(connection: psycopg.Connection, lane: list[Attempt]) -> None:
            for attempt in lane:
                time.sleep(attempt.pause)
                try:
                    row = connection.execute(
                        ADMIT_WITH,
                        [
                            attempt.interaction_id,
                            attempt.user_id,
                            attempt.guild_id,
                            defaults.limit,
                            defaults.window,
                            defaults.max_in_flight,
                        ],
                    ).fetchone()
                    answers.append((attempt.interaction_id, attempt.user_id, *row, None))
                except psycopg.Error as error:  # kept, not raised: the run counts errors
                    answers.append(
                        (
                            attempt.interaction_id,
                            attempt.user_id,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            f"{type(error).__name__}: {error}",
                        )
                    )

        _in_threads(run_lane, zip(connections, lanes, strict=False))
    finally:
        for connection in connections:
            connection.close()


def _attack_process_main(info, lanes, defaults, start, queue) -> None:
    answers: list = []
    _run_lanes(info, lanes, defaults, start, answers)
    queue.put(answers)


def attack_from_processes(
    db: dict, plan: list[list[list[Attempt]]], defaults: Defaults, just_before=lambda: None
) -> list[Answer]:
    """plan[process][lane] -> attempts; one OS process per plan entry, one connection per lane.
    ``just_before()`` runs once every process is connected, right before they all start.

    Returns one Answer per attempt sent (errors included), whatever the database said."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(plan) + 1)  # and this process, which runs just_before first
    queue = context.Queue()
    workers = [
        context.Process(target=_attack_process_main, args=(conninfo(db), lanes, defaults, start, queue))
        for lanes in plan
    ]
    for worker in workers:
        worker.start()
    while start.n_waiting < len(plan):
        if any(worker.exitcode is not None for worker in workers):
            raise RuntimeError("an attacking process died before the start (see its output above)")
        time.sleep(0.01)
    just_before()
    start.wait()
    answers = [Answer(*raw) for _ in workers for raw in queue.get(timeout=600)]
    for worker in workers:
        worker.join(timeout=30)
    return answers


@dataclass(frozen=True)
class Answer:
    interaction_id: int
    user_id: int
    request_id: int | None
    admitted: bool | None
    duplicate: bool | None
    status: str | None
    reason_code: str | None
    reason: str | None
    reset_at: datetime | None  # when the next slot frees, as the refusal says
    error: str | None
