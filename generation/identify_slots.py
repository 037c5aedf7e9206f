"""Discord's IDENTIFY rule across every gateway process of the bot, with PostgreSQL as the referee.

Discord lets a bot start one gateway session per 5 s in each bucket ``shard_id %
max_concurrency``, counting every process that holds the token. Processes started together
(a deploy, a restart of every unit) would each identify their first shard at once. Before an
IDENTIFY, a process takes the bucket's transaction-level advisory lock and holds it for the 5 s
after: the next process's IDENTIFY in that bucket waits for it. Transaction-level, so it works
through a transaction-pooling PgBouncer; on a connection of its own, outside Django's pool.

When the database cannot be reached (or the wait grows absurd), the process goes ahead with
its own pacing only, and says so once: a refused IDENTIFY is retried by discord.py, a bot that
will not start is worse.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import psycopg

from generation.health import PROBE_TIMEOUT, connection_parameters

log = logging.getLogger(__name__)

LOCK_SPACE = 0x7665_6F62  # pg_advisory_xact_lock(LOCK_SPACE, bucket): "veob"
LONGEST_WAIT_MS = 120_000  # behind two dozen processes' first shards; then go ahead regardless


class SharedIdentifySlots:
    def __init__(self, *, interval: float) -> None:
        self.interval = interval
        self._warned = False

    async def take(self, bucket: int) -> None:
        """Return once no other process identified in ``bucket`` within the interval; the slot is
        held for the interval from now."""
        try:
            await asyncio.to_thread(self._take, bucket)
        except psycopg.Error as error:
            if not self._warned:
                self._warned = True
                log.warning(
                    "identify pacing across processes unavailable (%s): this process paces its own IDENTIFYs only",
                    type(error).__name__,
                )

    def _take(self, bucket: int) -> None:
        params = {**connection_parameters(application_name="veobot-identify"), "connect_timeout": PROBE_TIMEOUT}
        conn = psycopg.connect(**params)
        try:
            conn.execute(f"SET LOCAL lock_timeout = {LONGEST_WAIT_MS}")
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_SPACE, bucket])
        except BaseException:
            conn.close()
            raise
        # Ending the transaction frees the lock: the next IDENTIFY of this bucket, anywhere, may go.
        release = threading.Timer(self.interval, conn.close)
        release.daemon = True  # a process that exits meanwhile frees the lock with its connection
        release.start()
