"""Periodic chores a worker does beside its requests."""

from __future__ import annotations

import asyncio
import logging
import random

from django.conf import settings
from django.db import DatabaseError

from generation.runtime import sleep_unless
from tracking import aio, dashboards, ledgers

log = logging.getLogger(__name__)


async def keep_dashboards_fresh(stop: asyncio.Event) -> None:
    """Recompute the moderators' dashboard snapshots when they are DASHBOARD_REFRESH old.

    Every worker runs this; the database lets one of them do it at a time. Looking four
    times per interval keeps a snapshot at most 1.25 intervals old (plus the computing)."""
    every = settings.DASHBOARD_REFRESH.total_seconds()
    if not every:
        return
    # Workers started together should not all look at the same moment.
    await sleep_unless(stop, random.uniform(0, min(every / 4, 5)))
    while not stop.is_set():
        try:
            refreshed = await aio.run(dashboards.refresh_due)
        except DatabaseError as error:
            # The worker itself reports outages; a chore just tries again next time.
            log.debug("dashboard refresh skipped: %s", type(error).__name__)
        else:
            if refreshed:
                log.info("dashboard recomputed for %s", ", ".join(f"{days} day(s)" for days in refreshed))
        await sleep_unless(stop, max(every / 4, 1))


LEDGER_PRUNE_EVERY = 24 * 3600  # seconds: a day's rows a time (a ledger's rows are hours and days)


async def keep_ledgers_pruned(stop: asyncio.Event) -> None:
    """Delete the spend ledgers' rows no budget can read any more, once a day (tracking.ledgers).

    Every worker runs this; two at once delete the same rows, which is harmless. Started at a
    random moment of the first hour, so that workers started together do not scan together."""
    await sleep_unless(stop, random.uniform(0, 3600))
    while not stop.is_set():
        try:
            pruned = await aio.run(ledgers.prune_spend_ledgers)
        except DatabaseError as error:
            log.debug("ledger pruning skipped: %s", type(error).__name__)
        else:
            if pruned:
                log.info("spend ledgers: %s row(s) older than any budget window deleted", pruned)
        await sleep_unless(stop, LEDGER_PRUNE_EVERY)
