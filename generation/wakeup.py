"""Waking idle workers when work is admitted, instead of at their next poll.

Inside the admitting process the worker's wake event is set directly. Other processes hear of
it through PostgreSQL: once an admission has committed, the admitter sends NOTIFY on
``services.WORK_CHANNEL`` and every worker LISTENs on it (generation.listener). Both are hints:
a lost one costs at most one VEO_WORKER_IDLE_POLL, because the polling stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import DatabaseError

from tracking import services

log = logging.getLogger(__name__)

# The workers running in this process: each one's loop, wake event and, when it has one, its
# check of whether its own runs fill the cap. An admission may come from another thread (the
# CLI's, a test's) than the worker's loop.
_lock = threading.Lock()
_workers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event, Callable[[], bool] | None]] = set()


@contextmanager
def woken_by_local_admissions(
    wake: asyncio.Event, *, holds_the_cap: Callable[[], bool] | None = None
) -> Iterator[None]:
    """While the block runs, admissions in this process set ``wake`` (call it on ``wake``'s loop);
    ``holds_the_cap`` says whether that worker's own runs fill VEO_MAX_CONCURRENT (``cap_held_here``)."""
    entry = (asyncio.get_running_loop(), wake, holds_the_cap)
    with _lock:
        _workers.add(entry)
    try:
        yield
    finally:
        with _lock:
            _workers.discard(entry)


def cap_held_here() -> bool:
    """Whether a worker of this process (on the calling loop) holds the global cap on generations
    by itself: then no worker anywhere can start new work until one of its runs ends, and a NOTIFY
    would only make the others claim in vain (they poll all the same)."""
    loop = asyncio.get_running_loop()
    return any(owner is loop and check is not None and check() for owner, _, check in _registered())


def wake_local_workers() -> None:
    """Set the wake event of every worker in this process; safe from any thread. A worker on the
    calling loop is woken directly (no trip through the loop's self-pipe), and not at all while it
    holds the cap: its wait would only start again (Worker._idle) -- on a busy bot, once a /veo."""
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None  # the CLI's thread, a test's: every worker is on another loop
    for loop, wake, holds_the_cap in _registered():
        if loop is here:
            if holds_the_cap is None or not holds_the_cap():
                wake.set()
            continue
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:
            pass  # that loop just closed: its worker has stopped


def _registered() -> list[tuple[asyncio.AbstractEventLoop, asyncio.Event, Callable[[], bool] | None]]:
    with _lock:
        return list(_workers)


# This process, as it names itself in a NOTIFY whose work it has already woken its own workers
# for: its listeners leave those alone (a second claim right after the first would find nothing).
# The random part keeps two containers of one hostname, each its pid 1, apart.
THIS_PROCESS = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def notify_workers(*, woken_here: bool = False) -> None:
    """NOTIFY the workers of other processes (blocking: call it on a database thread). Never
    raises for the database: without the hint they find the work at their next poll.
    ``woken_here``: wake_local_workers() has run for this work, so this process's listeners
    ignore the notification."""
    try:
        services.notify_work(sender=THIS_PROCESS if woken_here else "")
    except DatabaseError as error:
        log.debug("could not notify workers of new work (%s); they will find it by polling", type(error).__name__)


def work_admitted() -> None:
    """After an admission has committed, from synchronous code (the CLI): wake every worker."""
    wake_local_workers()
    notify_workers()
