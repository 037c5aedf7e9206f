"""The database watch (generation.health) against a PostgreSQL that stops answering: a network
partition, through a TCP proxy that stops forwarding without closing anything, and a server
that refuses connections. Nothing but the watch touches the database here, so what notices
the outage is the heartbeat."""

import asyncio
import threading
import time

import pytest
from django.db import OperationalError, connection
from psycopg_pool import PoolTimeout

from generation.health import DATABASE_DOWN, DatabaseHealth, watch_database
from tests.tcp_proxy import TcpProxy

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Overriding setting DATABASES"),
]


@pytest.fixture
def proxied(settings, db_settings):
    """The watch's connections (generation.health.connection_parameters) go through a proxy."""
    with TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy:
        default = settings.DATABASES["default"]
        settings.DATABASES = {**settings.DATABASES, "default": {**default, "HOST": "127.0.0.1", "PORT": proxy.port}}
        yield proxy


async def _until(condition, *, timeout: float = 15, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("fault", ["partition", "cut"])
def test_heartbeat_notices_the_outage_with_nothing_else_asking_and_the_probe_its_end(proxied, fault):
    health, passes = DatabaseHealth(), []

    async def every_pass() -> None:
        passes.append(health.degraded)

    async def scenario() -> None:
        stop = asyncio.Event()
        watch = asyncio.create_task(watch_database(health, stop, every_pass=every_pass))
        await _until(lambda: len(passes) >= 1, what="a first pass")
        await asyncio.sleep(1.5)  # heartbeats answered meanwhile
        assert not health.degraded
        getattr(proxied, fault)()
        await _until(lambda: health.degraded, what="the outage noticed")
        replays_during = len(passes)
        await asyncio.sleep(1.5)
        assert health.degraded and len(passes) == replays_during  # no replay while it is down
        proxied.restore()
        await _until(lambda: not health.degraded, what="the end of the outage")
        await _until(lambda: len(passes) > replays_during, what="a replay pass after it")
        stop.set()
        await asyncio.wait_for(watch, 10)  # stops promptly, even with a heartbeat left hanging

    asyncio.run(scenario())
    assert not any(passes)  # every_pass only ever ran while the database was up


@pytest.fixture
def short_pool_wait():
    """The pools opened meanwhile wait 1 s for a connection instead of 10. A call that finds a pool
    open and then queues for a connection after another thread closed it is never answered
    (psycopg_pool checks that the pool is open before it takes its lock, and close() fails only
    the clients already queued): it waits out the pool's timeout, and with a pool closed 100
    times under four callers, one usually does. Then a pool with the usual timeout again."""
    options = connection.settings_dict["OPTIONS"]
    usual = options["pool"]
    options["pool"] = {**usual, "timeout": 1}
    try:
        yield
    finally:
        options["pool"] = usual
        DatabaseHealth.reset_pool()


@pytest.mark.usefixtures("short_pool_wait")
def test_calls_that_meet_the_pool_closed_as_an_outage_ends_start_no_new_outage():
    # Calls keep taking connections from the pool while the outage ends and the pool is closed
    # (to drop its dead connections and backed-off reconnects). Some meet it closed; that is no
    # sign the database is away, and used to start a false second outage at once.
    health, stop, met_closed, calls = DatabaseHealth(), threading.Event(), [], [0]

    def caller() -> None:
        while not stop.is_set():
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                calls[0] += 1
            except DATABASE_DOWN as error:
                if isinstance(error.__cause__, PoolTimeout):
                    # No connection handed out in time: a call queued on a pool closed meanwhile
                    # (short_pool_wait), or a machine too busy. What a PoolTimeout means is tested
                    # below; here, only the pool closed under a call.
                    continue
                met_closed.append(error)
                health.failed(error)
            finally:
                connection.close()

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(100):
            DatabaseHealth.reset_pool()
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert calls[0] > 0 and met_closed  # the race is real...
    assert not health.degraded  # ...and no outage


def test_no_pooled_connection_in_time_is_an_outage_only_when_the_heartbeat_is_not_answered_either():
    def pool_timeout() -> OperationalError:
        error = OperationalError("couldn't get a connection after 10.00 sec")
        error.__cause__ = PoolTimeout("couldn't get a connection after 10.00 sec")
        return error

    answered = DatabaseHealth()
    answered.heard()
    answered.failed(pool_timeout())
    assert not answered.degraded  # the pool lagging behind, not PostgreSQL

    silent = DatabaseHealth()
    silent.failed(pool_timeout())
    assert silent.degraded
