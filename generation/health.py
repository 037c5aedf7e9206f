"""Whether PostgreSQL answers, as this process sees it.

``DatabaseHealth`` notices an outage (any call failing with one of ``DATABASE_DOWN``), logs one
warning for it, and from then on probes with a short connect timeout instead of letting every
request wait out the pool's; degraded mode (generation.degraded) runs while it says so.

A server that is down refuses or resets connections, and calls fail at once. A network partition
does neither: packets stop, and a call waits for as long as it lasts. So what a user waits on has
a deadline (``ANSWER_TIMEOUT``, tracking.aio.run_within), and while the database is up a
heartbeat on a connection of its own notices a partition within
HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT even when nothing else touches the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from psycopg_pool import PoolClosed, PoolTimeout

from generation import metrics
from generation.runtime import sleep_unless
from tracking.aio import NoAnswer
from tracking.retries import first_line, rolled_back
from tracking.sql_migrations import DIRECT_DB_ALIAS

log = logging.getLogger(__name__)

# The database went away (pool timeouts included). A transaction ended to break a deadlock raises
# one of these too, though the database is there: tracking.retries.rolled_back tells it apart.
DATABASE_DOWN = (OperationalError, InterfaceError)

PROBE_TIMEOUT = 2  # seconds: a probe answers fast or the database counts as down
# Seconds a call a Discord user waits on may take. Not Discord's 3 s: the bot has deferred by then
# (discordbot.answers.DEFER_AFTER) and has 15 min to answer. Long enough that a slow but
# present database (a lock queue, a checkpoint) is not taken for a lost one; a partition is
# usually noticed sooner by the heartbeat.
ANSWER_TIMEOUT = 5
HEARTBEAT_INTERVAL = 0.5  # seconds between two heartbeats while the database is up
HEARTBEAT_TIMEOUT = 1  # seconds a heartbeat waits for its answer
# Keys of the database OPTIONS that are Django's, not libpq connection parameters.
DJANGO_ONLY_OPTIONS = {"pool", "isolation_level", "assume_role", "server_side_binding", "cursor_factory", "context"}


def connection_parameters(*, application_name: str, alias: str = "default") -> dict:
    """libpq parameters of a configured database (the test database under pytest), for a
    connection of our own outside Django's pool: ``default`` (perhaps through PgBouncer), or
    ``direct`` for what needs a session of its own (LISTEN)."""
    db = settings.DATABASES[alias]
    options = {key: value for key, value in db.get("OPTIONS", {}).items() if key not in DJANGO_ONLY_OPTIONS}
    params = {
        "dbname": db["NAME"],
        "user": db.get("USER"),
        "password": db.get("PASSWORD"),
        "host": db.get("HOST"),
        "port": str(db["PORT"]) if db.get("PORT") else None,
        **options,
        "application_name": application_name,
    }
    # As Django does for its own connections: psycopg would otherwise prepare a statement run
    # five times (the heartbeat's), and a transaction-pooling PgBouncer older than 1.21 sends
    # the next transaction to a server connection that never saw it.
    return {key: value for key, value in params.items() if value not in (None, "")} | {"prepare_threshold": None}


def listen_parameters(*, application_name: str) -> dict:
    """libpq parameters of the workers' LISTEN connection: DATABASE_LISTEN_URL when set, else the
    ``direct`` database (the server itself, never a transaction-pooling PgBouncer)."""
    if not settings.DATABASE_LISTEN_URL:
        return connection_parameters(application_name=application_name, alias=DIRECT_DB_ALIAS)
    return {
        "conninfo": settings.DATABASE_LISTEN_URL,
        "connect_timeout": settings.DATABASE_CONNECT_TIMEOUT,
        "application_name": application_name,
        "prepare_threshold": None,
    }


class DatabaseHealth:
    def __init__(self, *, meanwhile: str = "the worker claims nothing until it answers again") -> None:
        self.meanwhile = meanwhile  # what this process does during an outage, for the warning
        self.down_since: float | None = None
        self.last_heard: float | None = None  # time.monotonic() of the heartbeat's last answer
        self._outage_listeners: list[Callable[[], None]] = []

    def on_outage(self, listener: Callable[[], None]) -> None:
        """``listener()`` as each outage begins, on the event loop (where ``failed`` is called): what
        waits for the database without having reached it can go the degraded way at once."""
        self._outage_listeners.append(listener)

    def heard(self) -> None:
        """The heartbeat was answered."""
        self.last_heard = time.monotonic()

    def heard_lately(self) -> bool:
        return self.last_heard is not None and time.monotonic() - self.last_heard < 2 * HEARTBEAT_INTERVAL + 1

    @property
    def degraded(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException) -> None:
        """A call failed because the database is unreachable: one warning per outage. A call that
        met a pool closed under it (reset_pool, as an outage ended), or whose transaction
        PostgreSQL ended to break a deadlock (tracking.retries), says nothing about the database:
        it is not an outage."""
        cause = error.__cause__ or error
        if rolled_back(error):
            log.info("a database call was ended to break a deadlock (%s); not an outage", first_line(error))
            return
        if isinstance(cause, PoolClosed):
            log.info("a database call met the connection pool closed under it (%s); not an outage", error)
            return
        if isinstance(cause, PoolTimeout) and self.heard_lately():
            # The pool had no connection in time while the heartbeat's own connection was just
            # answered: the pool (still catching up after an outage) is what failed, not PostgreSQL.
            log.info("a database call got no pooled connection in time (%s), but the database answers", error)
            return
        if self.down_since is None:
            self.down_since = time.monotonic()
            metrics.set_degraded(True)
            first = first_line(error)
            log.warning(
                "DEGRADED: PostgreSQL is unreachable (%s: %s); %s",
                type(error).__name__,
                first,
                self.meanwhile,
                extra={"fields": {"event": "degraded", "status": "degraded"}},
            )
            for listener in self._outage_listeners:
                listener()

    @staticmethod
    def probe() -> bool:
        """One short connection outside the pool (blocking: run it in a thread)."""
        try:
            params = {**connection_parameters(application_name="veobot-probe"), "connect_timeout": PROBE_TIMEOUT}
            with psycopg.connect(**params) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    @staticmethod
    def reset_pool() -> None:
        """Close the connection pool (blocking: run it in a thread). Entering an outage, this stops
        its reconnect attempts; leaving one, it drops the dead connections and the reconnect
        attempts backed off meanwhile (a pool opened during the outage may wait many seconds
        before its next try). The next call opens a new pool."""
        connections["default"].close_pool()

    def recovered(self) -> None:
        outage = time.monotonic() - (self.down_since or time.monotonic())
        self.down_since = None
        metrics.set_degraded(False)
        log.warning(
            "database reachable again after %.0f s of degraded mode",
            outage,
            extra={"fields": {"event": "recovered", "status": "ok", "outage_s": round(outage, 1)}},
        )


class Heartbeat:
    """``SELECT 1`` on a connection of its own (outside the pool, so never queued behind a burst of
    requests), given up after HEARTBEAT_TIMEOUT. A connection left hanging by a partition is
    abandoned to its thread, which closes it whenever the network lets it finish."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection | None = None

    async def check(self) -> None:
        """Raises one of DATABASE_DOWN unless the database answers in time."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self._beat), HEARTBEAT_TIMEOUT)
        except TimeoutError:
            self._conn = None
            raise NoAnswer(f"PostgreSQL did not answer a heartbeat within {HEARTBEAT_TIMEOUT} s") from None
        except psycopg.Error as error:
            self._conn = None
            raise OperationalError(str(error)) from error

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _beat(self) -> None:
        reused = self._conn is not None
        try:
            self._select_one()
        except psycopg.OperationalError:
            if not reused:
                raise
            self._select_one()  # the connection died meanwhile (an outage since, a restart): a new one

    def _select_one(self) -> None:
        conn = self._conn
        try:
            if conn is None:
                params = {
                    **connection_parameters(application_name="veobot-heartbeat"),
                    "connect_timeout": PROBE_TIMEOUT,
                }
                conn = self._conn = psycopg.connect(**params, autocommit=True)
            conn.execute("SELECT 1")
        except BaseException:
            if conn is not None:
                conn.close()
            if self._conn is conn:
                self._conn = None
            raise
        if self._conn is not conn:  # given up on while it hung: nobody else will close it
            conn.close()


async def watch_database(
    health: DatabaseHealth, stop: asyncio.Event, *, every_pass: Callable[[], Awaitable[object]] | None = None
) -> None:
    """While the database is unreachable, probe it every DATABASE_PROBE_INTERVAL; when it answers,
    end the outage. ``every_pass`` (the journal replay) runs on every pass it is reachable. Beside
    that, the heartbeat: its own loop, so that a pass waiting on the database cannot hold it up."""
    await asyncio.gather(_probe_and_replay(health, stop, every_pass), _heartbeats(health, stop))


async def _probe_and_replay(
    health: DatabaseHealth, stop: asyncio.Event, every_pass: Callable[[], Awaitable[object]] | None
) -> None:
    interval = settings.DATABASE_PROBE_INTERVAL.total_seconds()
    pool_closed = False
    while not stop.is_set():
        try:
            if health.degraded:
                if not pool_closed:
                    await asyncio.to_thread(health.reset_pool)
                    pool_closed = True
                if await asyncio.to_thread(health.probe):
                    await asyncio.to_thread(health.reset_pool)
                    pool_closed = False
                    health.recovered()
            if not health.degraded and every_pass is not None:
                await every_pass()
        except Exception:
            log.exception("database watch: unexpected error (will retry)")
        await sleep_unless(stop, interval)


async def _heartbeats(health: DatabaseHealth, stop: asyncio.Event) -> None:
    heartbeat = Heartbeat()
    try:
        while not stop.is_set():
            if not health.degraded:
                try:
                    await heartbeat.check()
                    health.heard()
                except DATABASE_DOWN as error:
                    health.failed(error)
                except Exception:
                    log.exception("database heartbeat: unexpected error (will retry)")
            await sleep_unless(stop, HEARTBEAT_INTERVAL)
    finally:
        await asyncio.to_thread(heartbeat.close)
