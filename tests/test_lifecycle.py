"""The request lifecycle as the database enforces it: transitions, timestamps, events."""

import itertools

import pytest
from django.db import IntegrityError, connection, transaction
from psycopg import sql

from tests.helpers import admit
from tracking import services
from tracking.errors import InvalidTransition, RequestNotFound
from tracking.models import Status, VideoRequest, VideoRequestEvent

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

LEGAL = {
    ("pending", "generating"),
    ("pending", "failed"),
    ("pending", "timeout"),
    ("pending", "cancelled"),
    ("generating", "completed"),
    ("generating", "failed"),
    ("generating", "timeout"),
    ("generating", "cancelled"),
}
STATUSES = [s.value for s in Status]


def _force_status(request_id: int, status: str) -> None:
    """Put a row in any status via legal edges only."""
    paths = {
        "pending": [],
        "generating": ["generating"],
        "completed": ["generating", "completed"],
        "failed": ["failed"],
        "timeout": ["timeout"],
        "cancelled": ["cancelled"],
    }
    for step in paths[status]:
        _raw_update(request_id, step)


def _raw_update(request_id: int, status: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE video_requests SET status = %s,"
            " operation_name = COALESCE(operation_name, 'operations/1'),"
            " output_uris = CASE WHEN %s = 'completed' THEN ARRAY['file:x.mp4'] ELSE output_uris END,"
            " error_code = CASE WHEN %s IN ('failed', 'timeout') THEN 'backend_error' ELSE error_code END,"
            # Ended on our side: refunded, as the refund rule (video_requests_ended_by_us_never_counts) requires.
            " counts_toward_quota = counts_toward_quota AND %s NOT IN ('failed', 'timeout', 'cancelled')"
            " WHERE id = %s",
            [status, status, status, status, request_id],
        )


def _row_in(status: str) -> int:
    if status == "rejected":
        # Rejected rows are born rejected: a banned user's request.
        from tests.factories import UserBanFactory

        UserBanFactory(user_id=7007)
        admission = admit(user_id=7007)
        assert admission.status == "rejected"
        return admission.request_id
    request_id = admit(user_id=7000 + STATUSES.index(status)).request_id
    _force_status(request_id, status)
    return request_id


@pytest.mark.parametrize(
    "from_status,to_status", [pair for pair in itertools.product(STATUSES, STATUSES) if pair[0] != pair[1]]
)
def test_every_transition_is_accepted_or_refused_by_the_database(from_status, to_status):
    request_id = _row_in(from_status)
    if (from_status, to_status) in LEGAL:
        _raw_update(request_id, to_status)
        assert VideoRequest.objects.get(id=request_id).status == to_status
    else:
        with (
            pytest.raises(
                IntegrityError,
                match=f"invalid status transition for request {request_id}: {from_status} -> {to_status}",
            ),
            transaction.atomic(),
        ):
            _raw_update(request_id, to_status)
        assert VideoRequest.objects.get(id=request_id).status == from_status


@pytest.mark.parametrize("status", ["generating", "completed", "failed", "timeout", "cancelled"])
def test_rows_cannot_be_born_past_pending(status):
    with (
        pytest.raises(IntegrityError, match=f"a new request must be pending or rejected, not {status}"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "INSERT INTO video_requests (interaction_id, user_id, prompt, duration_seconds, aspect_ratio,"
            " resolution, model, status, counts_toward_quota, operation_name, output_uris, error_code)"
            " VALUES (1, 1, 'p', 4, '16:9', '720p', 'm', %s, true, 'op', ARRAY['x'], 'e')",
            [status],
        )


def test_full_lifecycle_records_timestamps_duration_and_history():
    admission = admit(user_id=42)
    request_id = admission.request_id
    services.mark_generating(request_id=request_id, operation_name="projects/p/locations/l/operations/abc")
    services.mark_completed(request_id=request_id, output_uris=["file:videos/1.mp4"], output_size_bytes=1234)

    row = VideoRequest.objects.get(id=request_id)
    assert row.status == "completed"
    assert row.created_at <= row.started_at <= row.completed_at
    expected_ms = round((row.completed_at - row.started_at).total_seconds() * 1000)
    assert abs(row.duration_ms - expected_ms) <= 1
    assert row.output_uris == ["file:videos/1.mp4"] and row.output_size_bytes == 1234

    events = list(VideoRequestEvent.objects.filter(request_id=request_id).order_by("id"))
    assert [(e.kind, e.from_status, e.to_status) for e in events] == [
        ("created", None, "pending"),
        ("status_changed", "pending", "generating"),
        ("status_changed", "generating", "completed"),
    ]
    assert events[1].detail["operation_name"] == "projects/p/locations/l/operations/abc"
    assert events[1].actor == "worker"
    assert events[0].at <= events[1].at <= events[2].at


def test_same_status_update_is_a_no_op():
    request_id = admit(user_id=43).request_id
    first = services.mark_generating(request_id=request_id, operation_name="operations/1")
    again = services.mark_generating(request_id=request_id, operation_name="operations/2")
    assert first.changed and not again.changed
    row = VideoRequest.objects.get(id=request_id)
    assert row.operation_name == "operations/1"
    assert VideoRequestEvent.objects.filter(request_id=request_id, kind="status_changed").count() == 1


def test_finished_requests_cannot_move_again():
    request_id = admit(user_id=44).request_id
    services.mark_failed(request_id=request_id, error_code="backend_error", error_message="Veo returned 500")
    with pytest.raises(InvalidTransition, match="failed -> completed"):
        services.mark_completed(request_id=request_id, output_uris=["file:x.mp4"])
    assert VideoRequest.objects.get(id=request_id).status == "failed"


def test_unknown_request_is_reported():
    with pytest.raises(RequestNotFound):
        services.mark_timeout(request_id=987654321, error_message="deadline passed")


def test_duration_and_lifecycle_timestamps_are_not_writable_by_callers():
    request_id = admit(user_id=45).request_id
    with pytest.raises(Exception, match="duration_ms"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE video_requests SET duration_ms = 5 WHERE id = %s", [request_id])
    with (
        pytest.raises(IntegrityError, match="set by the database"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE video_requests SET started_at = now() WHERE id = %s", [request_id])


def test_request_facts_are_read_only():
    request_id = admit(user_id=46).request_id
    with (
        pytest.raises(IntegrityError, match="facts are read-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE video_requests SET prompt = 'something else' WHERE id = %s", [request_id])


def test_events_are_append_only():
    request_id = admit(user_id=47).request_id
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE video_request_events SET actor = 'me' WHERE request_id = %s", [request_id])


def test_enum_and_range_checks_hold_in_sql():
    request_id = admit(user_id=48).request_id
    for column, value in [
        ("review_status", "great"),
        ("attempts", -1),
        ("safety_filtered_count", -2),
        ("delivery_method", "pigeon"),
    ]:
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("UPDATE video_requests SET {} = %s WHERE id = %s").format(sql.Identifier(column)),
                [value, request_id],
            )


def test_cancel_records_actor_reason_and_refunds():
    request_id = admit(user_id=49).request_id
    services.cancel(request_id=request_id, actor="mod:alice", reason="duplicate of #12")
    row = VideoRequest.objects.get(id=request_id)
    assert row.status == "cancelled" and not row.counts_toward_quota
    changed = VideoRequestEvent.objects.get(request_id=request_id, kind="status_changed")
    assert changed.actor == "mod:alice" and changed.detail["reason"] == "duplicate of #12"
    assert VideoRequestEvent.objects.filter(request_id=request_id, kind="refunded").count() == 1
