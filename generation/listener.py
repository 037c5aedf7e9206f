"""A worker's LISTEN connection: wakes the idle worker when another process admits work.

One dedicated psycopg connection per worker, in autocommit (a LISTEN inside an open
transaction would hear nothing until it commits), outside Django's pool so it never holds a
pooled connection, and to the server itself (the "direct" database, DATABASE_DIRECT_URL): a
LISTEN through a transaction-pooling PgBouncer subscribes a server connection that the next
transaction of someone else gets, and its notifications never reach this one
(DATABASE_LISTEN_URL, when set, names another way to that server). When it fails --
the database restarting, a network cut, an administrator terminating it -- the worker goes on
polling and this reconnects with a doubling backoff, logging once per outage. Notifications sent meanwhile are lost, so each new LISTEN is followed
by one look at the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import psycopg
from django.conf import settings
from psycopg import sql

from generation.health import listen_parameters
from generation.runtime import sleep_unless
from generation.wakeup import THIS_PROCESS
from tracking.services import WORK_CHANNEL

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.5, 30.0  # seconds between attempts to listen again
APPLICATION_NAME = "veobot-listener"  # how it shows in pg_stat_activity


async def listen_for_work(wake: asyncio.Event, *, stop: asyncio.Event, worker: str) -> None:
    """Set ``wake`` on every notification on WORK_CHANNEL until ``stop`` is set or this task
    is cancelled (the worker cancels it on shutdown: nothing here delays it)."""
    retry, unreachable = RETRY_FIRST, False
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                **listen_parameters(application_name=APPLICATION_NAME), autocommit=True
            ) as conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(WORK_CHANNEL)))
                if unreachable:
                    log.info("worker %s: listening for new work again", worker)
                retry, unreachable = RETRY_FIRST, False
                wake.set()  # whatever was admitted while nobody listened
                async for notification in notifications(conn):
                    if for_us(notification):
                        wake.set()
        except Exception as error:  # whatever it is, polling carries on; say so once per outage
            if not unreachable:
                log.warning(
                    "worker %s: not listening for new work (%s); finding it by polling every %s s "
                    "until the database answers again",
                    worker,
                    type(error).__name__,
                    f"{settings.VEO_WORKER_IDLE_POLL.total_seconds():g}",
                    exc_info=not isinstance(error, psycopg.Error),
                )
            unreachable = True
        await sleep_unless(stop, retry)
        retry = min(retry * 2, RETRY_MAX)


async def notifications(conn: psycopg.AsyncConnection) -> AsyncIterator[psycopg.Notify]:
    """``conn.notifies()``, waiting on the socket through the event loop until it is readable:
    psycopg's own wakes every 0.1 s (to look for a timeout), which an idle process paid for.
    Raises psycopg.OperationalError when the connection is lost."""
    loop = asyncio.get_running_loop()
    pgconn, encoding = conn.pgconn, conn.info.encoding
    while True:
        readable = loop.create_future()
        fd = pgconn.socket
        loop.add_reader(fd, _settle, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        pgconn.consume_input()
        while (notification := pgconn.notifies()) is not None:
            yield psycopg.Notify(
                notification.relname.decode(encoding), notification.extra.decode(encoding), notification.be_pid
            )


def _settle(readable: asyncio.Future) -> None:
    if not readable.done():
        readable.set_result(None)


def for_us(notification: psycopg.Notify) -> bool:
    """Whether a notification is news to this process: not when this process sent it for work it
    had already woken its own workers for (the bot's admissions); a second claim would be empty."""
    return notification.payload != THIS_PROCESS
