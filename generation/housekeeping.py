"""Periodic chores a worker does beside its requests."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError

from generation.runtime import sleep_unless
from tracking import aio, dashboards, ledgers

log = logging.getLogger(__name__)

T = TypeVar("T")

LEDGER_PRUNE_EVERY = 24 * 3600  # seconds: a day's rows a time (a ledger's rows are hours and days)


async def keep_dashboards_fresh(stop: asyncio.Event) -> None:
    """Recompute the moderators' dashboard snapshots when they are DASHBOARD_REFRESH old.

    Every worker runs this; the database lets one of them do it at a time. Looking four
    times per interval keeps a snapshot at most 1.25 intervals old (plus the computing)."""
    every = settings.DASHBOARD_REFRESH.total_seconds()
    if every:
        await _periodically(
            stop,
            dashboards.refresh_due,
            every=max(every / 4, 1),
            first_within=min(every / 4, 5),
            done=lambda refreshed: (
                refreshed and "dashboard recomputed for " + ", ".join(f"{days} day(s)" for days in refreshed)
            ),
        )


async def keep_ledgers_pruned(stop: asyncio.Event) -> None:
    """Delete the spend ledgers' rows no budget can read any more, once a day (tracking.ledgers).

    Every worker runs this; two at once delete the same rows, which is harmless."""
    await _periodically(
        stop,
        ledgers.prune_spend_ledgers,
        every=LEDGER_PRUNE_EVERY,
        first_within=3600,
        done=lambda pruned: pruned and f"spend ledgers: {pruned} row(s) older than any budget window deleted",
    )


async def _periodically(
    stop: asyncio.Event, chore: Callable[[], T], *, every: float, first_within: float, done: Callable[[T], object]
) -> None:
    """``chore`` on a database thread every ``every`` seconds until ``stop``, first at a random
    moment within ``first_within`` (workers started together should not all run it at once),
    logging what ``done`` says of its result, if anything."""
    await sleep_unless(stop, random.uniform(0, first_within))
    while not stop.is_set():
        try:
            result = await aio.run(chore)
        except DatabaseError as error:
            # The worker itself reports outages; a chore just tries again next time.
            log.debug("%s skipped: %s", chore.__name__, type(error).__name__)
        else:
            if message := done(result):
                log.info("%s", message)
        await sleep_unless(stop, every)
