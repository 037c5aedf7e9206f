"""claim_video_request taking several requests at once: the global caps still hold exactly,
from one claim and from many connections claiming at the same moment."""

import threading
from datetime import timedelta

import psycopg
import pytest
from django.db import connection

from tests.concurrency import _in_threads, conninfo
from tests.helpers import admit
from tests.workers import truncate_requests
from tracking import services
from tracking.models import VeoStartSlot, VideoRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sql]

LEASE = timedelta(minutes=5)


@pytest.fixture(autouse=True)
def empty_queue():
    truncate_requests()


def _claim(limit: int, *, max_concurrent: int = 100, max_starts_per_minute: int = 100, worker: str = "w1"):
    return services.claim_work(
        worker=worker,
        lease=LEASE,
        sources=["discord"],
        max_concurrent=max_concurrent,
        max_starts_per_minute=max_starts_per_minute,
        limit=limit,
    )


def _queue(count: int) -> list[int]:
    return [admit(user_id=700 + n).request_id for n in range(count)]


def _age_grants(seconds: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE veo_start_slots SET granted_at = granted_at - make_interval(secs => %s)", [seconds])


def test_a_batch_claims_the_oldest_first_and_each_once():
    ids = _queue(5)
    claimed = _claim(3)
    assert [row.id for row in sorted(claimed, key=lambda row: row.id)] == ids[:3]
    assert {row.claimed_by for row in claimed} == {"w1"} and {row.attempts for row in claimed} == {1}
    assert sorted(row.id for row in _claim(10)) == ids[3:]
    assert _claim(10) == []
    assert VeoStartSlot.objects.count() == 5


def test_a_batch_stops_at_the_concurrency_cap():
    _queue(8)
    assert len(_claim(10, max_concurrent=3)) == 3
    assert _claim(10, max_concurrent=3) == []  # three pending under a live lease count as busy


def test_a_batch_stops_at_the_start_rate_and_the_window_slides():
    _queue(10)
    assert len(_claim(10, max_starts_per_minute=4)) == 4
    assert _claim(10, max_starts_per_minute=4) == []
    _age_grants(50)  # still inside the minute
    assert _claim(10, max_starts_per_minute=4) == []
    _age_grants(11)  # now outside it
    assert len(_claim(10, max_starts_per_minute=4)) == 4


def test_the_window_is_exact_across_gaps_in_the_grant_numbers():
    _queue(12)
    assert len(_claim(3, max_starts_per_minute=6)) == 3
    _age_grants(120)
    assert len(_claim(3, max_starts_per_minute=6)) == 3
    # A rolled-back grant leaves a hole in the numbering: the probe lands on an old grant or
    # none, and the two recent grants that remain must still be counted.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM veo_start_slots WHERE id = (SELECT max(id) FROM veo_start_slots)")
    assert len(_claim(10, max_starts_per_minute=6)) == 4  # 6 minus the two left in the window
    assert _claim(10, max_starts_per_minute=6) == []


def test_many_connections_claiming_at_once_never_exceed_the_caps(db_settings):
    _queue(60)
    info = conninfo(db_settings)
    together = threading.Barrier(12)
    claimed: list[int] = []

    def claim_from_own_connection(worker: str) -> None:
        with psycopg.connect(**info, autocommit=True) as conn:
            together.wait()
            for _ in range(3):
                rows = conn.execute(
                    "SELECT id FROM claim_video_request(%s, %s, %s, %s, %s, %s)",
                    [worker, LEASE, ["discord"], 17, 1000, 4],
                ).fetchall()
                claimed.extend(row[0] for row in rows)

    _in_threads(claim_from_own_connection, [(f"w{n}",) for n in range(12)])
    assert len(claimed) == len(set(claimed)) == 17
    assert VideoRequest.objects.filter(status="pending", claimed_by__isnull=False).count() == 17
    assert VeoStartSlot.objects.count() == 17
