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
from django.db import connections

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
