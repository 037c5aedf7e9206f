"""Calling the (synchronous) services and selectors from the bot's event loop.

Work runs on a small thread pool, never on the loop; each call hands its database
connection back to Django's pool when it finishes, so threads never hoard connections.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import OperationalError, connections

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.DATABASE_MAX_CONNECTIONS, thread_name_prefix="veobot-db")
    return _executor


def _call_and_release(fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
    try:
        return fn(**kwargs)
    finally:
        connections.close_all()


async def run(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``await run(services.admit_request, user_id=..., ...)`` without blocking the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(_call_and_release, fn, kwargs))


class NoAnswer(OperationalError):
    """PostgreSQL did not answer in time: as good as unreachable for whoever is waiting (a network
    partition resets nothing, so without a deadline a call would wait for as long as it lasts)."""


async def run_within(seconds: float, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``run``, given up after ``seconds`` with ``NoAnswer``. The call itself cannot be stopped: its
    thread finishes whenever the database answers, so what it does must be safe to do late (an
    admission is: the caller records what it told the user, and replay reconciles the two)."""
    loop = asyncio.get_running_loop()
    # The executor's future itself, not a coroutine around it: wait_for then makes no task of its own.
    answer = loop.run_in_executor(_pool(), functools.partial(_call_and_release, fn, kwargs))
    try:
        return await asyncio.wait_for(answer, seconds)
    except TimeoutError:
        raise NoAnswer(f"PostgreSQL did not answer within {seconds:g} s") from None
