"""Many real connections admitting for one user at once admit exactly the limit, every time."""

import pytest

from tests.concurrency import admit_from_processes, admit_from_threads
from tracking.models import VideoRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sql]

LIMIT = 5


def _assert_exactly_limit(user_id: int, results: list[bool], attempts: int) -> None:
    assert len(results) == attempts
    assert sum(results) == LIMIT, f"admitted {sum(results)} of {attempts}, limit {LIMIT}"
    rows = VideoRequest.objects.filter(user_id=user_id)
    assert rows.count() == attempts
    assert rows.filter(status="pending", counts_toward_quota=True).count() == LIMIT
    assert rows.filter(status="rejected", error_code="quota_exceeded").count() == attempts - LIMIT


@pytest.mark.parametrize("round_number", range(10))
def test_threads_with_their_own_connections(db_settings, round_number):
    user_id = 880_000 + round_number
    results = admit_from_threads(
        db_settings, user_id=user_id, attempts=24, limit=LIMIT, first_interaction=user_id * 1000
    )
    _assert_exactly_limit(user_id, results, 24)


@pytest.mark.parametrize("round_number", range(3))
def test_processes_with_threads(db_settings, round_number):
    user_id = 890_000 + round_number
    results = admit_from_processes(
        db_settings, user_id=user_id, processes=4, per_process=8, limit=LIMIT, first_interaction=user_id * 1000
    )
    _assert_exactly_limit(user_id, results, 32)
