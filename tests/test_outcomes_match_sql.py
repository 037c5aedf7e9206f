"""Python's lifecycle table (tracking.outcomes) against the database's, which stays the authority.

The engine decides how a request ends from tracking.outcomes; the database refuses an illegal
move (video_request_transition_allowed) and a request ended on our side that still counts
toward the quota (video_requests_ended_by_us_never_counts). If the two ever disagree, a
request could never be recorded as it ended: these tests fail first.
"""

import itertools

import pytest
from django.db import IntegrityError, connection, transaction

from tests.helpers import admit
from tracking import services
from tracking.models import Status, VideoRequest
from tracking.outcomes import CODES, TRANSITIONS, Ending

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

STATUSES = [status.value for status in Status]


@pytest.mark.parametrize("from_status,to_status", itertools.product(STATUSES, STATUSES))
def test_python_and_sql_allow_the_same_moves(from_status, to_status):
    with connection.cursor() as cursor:
        cursor.execute("SELECT video_request_transition_allowed(%s, %s)", [from_status, to_status])
        assert cursor.fetchone()[0] == ((from_status, to_status) in TRANSITIONS)


@pytest.mark.parametrize("refund_filtered", [False, True], ids=["filtered_counts", "filtered_refunded"])
@pytest.mark.parametrize("started", [False, True], ids=["before_start", "while_generating"])
@pytest.mark.parametrize("code", sorted(CODES))
def test_every_ending_is_recorded_as_the_table_says(settings, code, started, refund_filtered):
    settings.VEO_REFUND_CONTENT_FILTERED = refund_filtered
    request_id = admit(user_id=8100).request_id
    if started:
        services.mark_generating(request_id=request_id, operation_name="operations/8100")
    ending = Ending(code, f"ended: {code}")
    moved = services.mark_ended(request_id=request_id, ending=ending)
    row = VideoRequest.objects.get(id=request_id)
    assert moved.changed and (row.status, row.error_code) == (CODES[code], code)
    assert row.counts_toward_quota == (not ending.refunded)
    assert ending.refunded == (code != "content_filtered" or refund_filtered)


@pytest.mark.parametrize("code", sorted(set(CODES) - {"content_filtered"}))
def test_the_database_refuses_an_ending_of_ours_that_still_counts(code):
    request_id = admit(user_id=8200).request_id
    with (
        pytest.raises(IntegrityError, match="video_requests_ended_by_us_never_counts"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE video_requests SET status = %s, error_code = %s WHERE id = %s", [CODES[code], code, request_id]
        )
    assert VideoRequest.objects.get(id=request_id).status == Status.PENDING


def test_only_the_safety_filter_may_leave_a_failure_counted():
    request_id = admit(user_id=8300).request_id
    services.mark_failed(request_id=request_id, error_code="content_filtered", error_message="filtered", refund=False)
    assert VideoRequest.objects.get(id=request_id).counts_toward_quota


def test_an_ending_the_table_does_not_know_is_refused_before_it_reaches_the_database():
    with pytest.raises(ValueError, match="unknown ending 'rate_limited'"):
        Ending("rate_limited", "no longer an ending: a 429 goes back to the queue")
