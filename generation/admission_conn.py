"""The admission batches' own database connection, used from the event loop.

Each batch's statement (tracking.services.burst.admission_statement, the one ``admit_requests``
runs through Django's cursor) goes over one psycopg ``AsyncConnection`` owned by the batches
(they go one at a time, so one connection is all they use), not on a trip to a database thread:
handing each admission to the thread pool and back took a quarter of the bot's samples per /veo
on a busy machine (docs/BENCHMARKS.md; on a quiet one, little).

What the thread path did, this does too:

- the database away: Django's exceptions (``DATABASE_DOWN``, with psycopg's error as the cause,
  so tracking.retries.rolled_back still tells a deadlock from an outage), and the connection is
  dropped; the next batch connects again (after an outage, once the process has seen the database back);
- no answer within ``seconds``: ``NoAnswer``. The statement is not cancelled, as the thread's
  call could not be: the connection is abandoned to it, and closed whenever it finishes;
- behind a transaction-pooling PgBouncer: each statement its own transaction (autocommit), no
  prepared statements (``connection_parameters``), and the arguments bound on the client side,
  as Django binds them, so the statement is the same text either way;
- the connection's parameters are the default database's (health.connection_parameters): its
  password goes to libpq only, never into a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import select
from collections.abc import AsyncIterator, Coroutine
from typing import TypeVar

import psycopg
from django.db import utils

from generation.health import connection_parameters
from tracking.aio import NoAnswer
from tracking.services import NOTIFY_WORK_SQL, WORK_CHANNEL
from tracking.services.burst import AdmissionStatement, BurstAnswer

log = logging.getLogger(__name__)
T = TypeVar("T")

APPLICATION_NAME = "veobot-admission"  # how it shows in pg_stat_activity
# Django's exceptions for psycopg's, in the order Django's DatabaseErrorWrapper tries them.
_DJANGO_ERRORS = [
    (getattr(psycopg, name), getattr(utils, name))
    for name in (
        "DataError",
        "OperationalError",
        "IntegrityError",
        "InternalError",
        "ProgrammingError",
        "NotSupportedError",
        "DatabaseError",
        "InterfaceError",
        "Error",
    )
]


def django_error(error: psycopg.Error) -> utils.Error:
    """``error`` as Django would raise it (raise it ``from error``: the cause keeps the sqlstate)."""
    for psycopg_class, django_class in _DJANGO_ERRORS:
        if isinstance(error, psycopg_class):
            return django_class(*error.args)
    return utils.Error(*error.args)


class AdmissionConnection:
    def __init__(self) -> None:
        self._conn: psycopg.AsyncConnection | None = None

    async def admit(self, statement: AdmissionStatement, *, seconds: float) -> list[BurstAnswer]:
        """``statement``'s answers, committed. Raises Django's exceptions for the database's,
        ``NoAnswer`` after ``seconds`` without an answer."""
        return await self._within(seconds, self._admit(statement))

    async def notify(self, *, sender: str, seconds: float) -> None:
        """NOTIFY the workers of new work (after the admission's commit). Never raises for the
        database: without the hint they find the work at their next poll."""
        try:
            await self._within(seconds, self._notify(sender))
        except utils.DatabaseError as error:
            log.debug("could not notify workers of new work (%s); they will find it by polling", type(error).__name__)

    def close(self) -> None:
        """Close the connection (synchronous: libpq's own close, nothing to wait for)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()

    async def _within(self, seconds: float, call: Coroutine[object, object, T]) -> T:
        work = asyncio.ensure_future(call)
        try:
            done, _ = await asyncio.wait({work}, timeout=seconds)
        except asyncio.CancelledError:
            self._abandon(work)
            raise
        if not done:
            self._abandon(work)
            raise NoAnswer(f"PostgreSQL did not answer within {seconds:g} s")
        return work.result()

    async def _admit(self, statement: AdmissionStatement) -> list[BurstAnswer]:
        async with self._statement() as conn, conn.cursor() as cursor:
            await cursor.execute(statement.sql, statement.arguments)
            rows = await cursor.fetchall()
        return statement.answers([_in_utc(row) for row in rows])

    async def _notify(self, sender: str) -> None:
        async with self._statement() as conn:
            await conn.execute(NOTIFY_WORK_SQL, [WORK_CHANNEL, sender])

    @contextlib.asynccontextmanager
    async def _statement(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """The connection for one statement; psycopg's errors raised as Django's. A connection
        the statement left broken (or in a transaction) is dropped: the next one connects."""
        conn = None
        try:
            conn = await self._connection()
            yield conn
        except psycopg.Error as error:
            if conn is not None and (conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE):
                self._drop(conn)
            raise django_error(error) from error
        except BaseException:
            if conn is not None:
                self._drop(conn)  # cancelled mid-statement, or a bug: in no state to reuse
            raise

    async def _connection(self) -> psycopg.AsyncConnection:
        conn = self._conn
        if conn is not None and (conn.closed or _has_news(conn)):
            # Idle, it should have nothing to read: a server that ended the session (a restart, an
            # administrator) said so on the socket. A new connection, before a statement fails on it.
            self._drop(conn)
            conn = None
        if conn is None:
            conn = self._conn = await psycopg.AsyncConnection.connect(
                **connection_parameters(application_name=APPLICATION_NAME),
                autocommit=True,
                cursor_factory=psycopg.AsyncClientCursor,
            )
        return conn

    def _drop(self, conn: psycopg.AsyncConnection) -> None:
        if self._conn is conn:
            self._conn = None
        if not conn.closed:
            conn.pgconn.finish()

    def _abandon(self, work: asyncio.Future) -> None:
        """``work`` is left to finish whenever the database answers; its connection goes with it."""
        conn, self._conn = self._conn, None

        def finished(done: asyncio.Future) -> None:
            if not done.cancelled():
                done.exception()  # retrieved: nobody waits for it any more
            if conn is not None and not conn.closed:
                conn.pgconn.finish()

        work.add_done_callback(finished)


def _has_news(conn: psycopg.AsyncConnection) -> bool:
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    return bool(readable)


def _in_utc(row: tuple) -> tuple:
    """Timestamps as Django's connections give them (UTC), whatever the session's TimeZone."""
    return tuple(
        value.astimezone(datetime.UTC) if isinstance(value, datetime.datetime) and value.tzinfo else value
        for value in row
    )
