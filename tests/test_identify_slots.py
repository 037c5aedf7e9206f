"""IDENTIFY pacing across processes (generation.identify_slots): one IDENTIFY per interval per
bucket among every holder of the token, refereed by a PostgreSQL advisory lock."""

import asyncio
import time

import pytest
from django.db import connection

from generation.identify_slots import LOCK_SPACE, SharedIdentifySlots

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 0.6


def held_buckets() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND granted ORDER BY objid",
            [LOCK_SPACE],
        )
        return [row[0] for row in cursor.fetchall()]


def test_a_second_process_identifies_in_a_bucket_only_after_the_first_ones_interval(db_settings):
    first, second, other_bucket = (SharedIdentifySlots(interval=INTERVAL) for _ in range(3))

    async def main():
        await first.take(0)
        took_first = time.monotonic()
        await other_bucket.take(1)  # another bucket is not held up
        assert await asyncio.to_thread(held_buckets) == [0, 1]
        await second.take(0)  # waits for the first's slot to end
        return time.monotonic() - took_first

    waited = asyncio.run(main())
    assert waited >= INTERVAL * 0.95  # a lower bound the lock guarantees, not a speed
    time.sleep(INTERVAL * 1.5)
    assert held_buckets() == []  # every slot freed with its connection


def test_without_the_database_the_process_goes_ahead_and_says_so_once(db_settings, settings, caplog):
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "PORT": "1"}}  # nothing listens there
    slots = SharedIdentifySlots(interval=INTERVAL)

    async def main():
        await slots.take(0)
        await slots.take(0)

    asyncio.run(main())
    warnings = [r for r in caplog.records if "identify pacing across processes unavailable" in r.getMessage()]
    assert len(warnings) == 1
