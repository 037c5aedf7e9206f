"""Running asyncio services from management commands: signals, the metrics port."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from generation import metrics

log = logging.getLogger(__name__)


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; SIGTERM or SIGINT sets ``stop`` so it can hand work back and exit. The
    process's metrics are served meanwhile when METRICS_PORT is set."""
    metrics.serve()

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _stopping, stop, signum)
        await main(stop)

    asyncio.run(runner())


def _stopping(stop: asyncio.Event, signum: int) -> None:
    if not stop.is_set():
        log.info("%s received: finishing up and handing work back", signal.Signals(signum).name)
    stop.set()


async def sleep_unless(stop: asyncio.Event, seconds: float, *, wake: asyncio.Event | None = None) -> None:
    """Sleep for ``seconds``, or less if ``stop`` (or ``wake``) is set meanwhile."""
    waiters = [asyncio.ensure_future(event.wait()) for event in (stop, wake) if event is not None]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
