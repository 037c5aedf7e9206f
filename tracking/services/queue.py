"""The worker's queue: claims with leases, renewals, releases and the record of deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import connection

from tracking import rows
from tracking.models import DeliveryMethod, VideoRequest
from tracking.services.admission import require_choice
from tracking.text import storable_text


def claim_next(
    *, worker: str, lease: timedelta, sources: Sequence[str], max_concurrent: int, max_starts_per_minute: int
) -> VideoRequest | None:
    """Claim the next piece of work (deliver > resume > start within the global caps).

    The returned row carries the lease; what to do follows from its status: pending ->
    start, generating -> resume polling its operation, finished -> deliver."""
    claimed = claim_work(
        worker=worker,
        lease=lease,
        sources=sources,
        max_concurrent=max_concurrent,
        max_starts_per_minute=max_starts_per_minute,
        limit=1,
    )
    return claimed[0] if claimed else None


def claim_work(
    *,
    worker: str,
    lease: timedelta,
    sources: Sequence[str],
    max_concurrent: int,
    max_starts_per_minute: int,
    limit: int,
) -> list[VideoRequest]:
    """Claim up to ``limit`` pieces of work in one round trip, in claim_next's order."""
    return rows.fetch_requests(
        "SELECT * FROM claim_video_request(%s, %s, %s, %s, %s, %s)",
        [worker, lease, list(sources), max_concurrent, max_starts_per_minute, limit],
    )


def renew_lease(*, request_id: int, worker: str, lease: timedelta) -> str | None:
    """Extend the lease; returns the request's status (a moderator may have cancelled it), or
    None when another worker took the request over."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE video_requests SET lease_expires_at = clock_timestamp() + %s"
            " WHERE id = %s AND claimed_by = %s RETURNING status",
            [lease, request_id, worker],
        )
        row = cursor.fetchone()
        return row[0] if row else None


def release(*, request_id: int, worker: str, reason: str, retry_at: datetime | None = None) -> bool:
    """Hand the request back so any worker can claim it (pending ones not before retry_at)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT release_video_request(%s, %s, COALESCE(%s, clock_timestamp()), %s)",
            [request_id, worker, retry_at, reason],
        )
        return cursor.fetchone()[0]


def record_delivery(
    *,
    request_id: int,
    worker: str | None,
    method: str,
    message_id: int | None = None,
    error: str | None = None,
    removal_known: bool = False,
) -> bool:
    """Record how the outcome reached the user (or that it could not) and free the lease.
    Idempotent: a request is delivered once; later calls return False.

    ``removal_known``: the delivery knew the output was removed (it said so instead of showing
    it). Otherwise, if a moderator removed it meanwhile, the message's deletion is queued."""
    require_choice("method", method, DeliveryMethod.values)
    if error is not None:
        error = storable_text("delivery_error", error)[:1000]
    with connection.cursor() as cursor:
        cursor.execute(
            _RECORD_DELIVERY_SQL,
            {
                "method": method,
                "message_id": message_id,
                "error": error,
                "id": request_id,
                "worker": worker,
                "removal_known": removal_known,
            },
        )
        return cursor.fetchone()[0] is not None


# record_video_request_delivery (SQL) also queues the message's deletion when a moderator
# removed the output while the delivery was on its way.
_RECORD_DELIVERY_SQL = (
    "SELECT record_video_request_delivery(%(id)s, %(worker)s::text, %(method)s,"
    " %(message_id)s::bigint, %(error)s::text, %(removal_known)s)"
)
