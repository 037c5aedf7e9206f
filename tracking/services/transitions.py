"""Lifecycle transitions and refunds: one statement each; the database validates every move
and writes the event history (transition_video_request in SQL)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import psycopg.errors
from django.db import IntegrityError, connection, transaction

from tracking import rows
from tracking.errors import InvalidTransition, RequestNotFound
from tracking.models import Status, VideoRequest
from tracking.outcomes import Ending, refunded
from tracking.retries import redone_if_rolled_back
from tracking.text import storable_text


@dataclass(frozen=True)
class Transition:
    request_id: int
    status: str
    changed: bool  # False: the request already had that status (a no-op)
    # The row as the transition left it (when changed): callers need not read it again.
    row: VideoRequest | None = dataclasses.field(default=None, compare=False, repr=False)


# One round trip: transition_video_request (SQL) stamps who and why for the event trigger,
# then moves the row. The status guard makes a repeat of the same transition match nothing
# (a no-op, not an error).
_TRANSITION_SQL = """
SELECT * FROM transition_video_request(
    %(id)s, %(status)s, %(actor)s, %(reason)s, %(refund)s, %(worker)s::text, %(operation_name)s::text,
    %(output_uris)s::text[], %(public_urls)s::text[], %(output_size_bytes)s::bigint,
    %(safety_filtered_count)s::integer, %(safety_filtered_reasons)s::text[], %(error_code)s::text,
    %(error_message)s::text)
"""


@redone_if_rolled_back
def _transition(
    request_id: int,
    status: str,
    *,
    actor: str,
    reason: str | None = None,
    refund: bool = False,
    worker: str | None = None,
    **fields,
) -> Transition:
    """Move a request to ``status``. With ``worker``, only while that worker holds the lease:
    a worker that lost its lease gets ``changed=False`` and the current status back."""
    values = dict.fromkeys(
        (
            "operation_name",
            "output_uris",
            "public_urls",
            "output_size_bytes",
            "safety_filtered_count",
            "safety_filtered_reasons",
            "error_code",
            "error_message",
        )
    )
    values.update(fields)
    for name in ("error_message", "operation_name"):
        if values[name] is not None:
            values[name] = storable_text(name, values[name])[:4000]
    values.update(id=request_id, status=status, actor=actor, reason=reason or "", refund=refund, worker=worker)
    try:
        with _own_statement():
            # The returned row comes back as a model: callers need not read it again.
            moved = next(iter(rows.fetch_requests(_TRANSITION_SQL, values)), None)
            if moved is not None:
                return Transition(request_id, str(status), changed=True, row=moved)
            with connection.cursor() as cursor:
                cursor.execute("SELECT status FROM video_requests WHERE id = %s", [request_id])
                row = cursor.fetchone()
    except IntegrityError as error:
        raise _refusal(error) from None
    if row is None:
        raise RequestNotFound(f"video request {request_id} does not exist")
    return Transition(request_id, row[0], changed=False)


def _own_statement():
    """A refused statement must not poison a caller's transaction: inside one, wrap it in a
    savepoint; in autocommit (the normal case) it is already its own transaction."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def _refusal(error: IntegrityError) -> Exception:
    cause = error.__cause__
    if isinstance(cause, psycopg.errors.CheckViolation):
        return InvalidTransition(cause.diag.message_primary or str(cause))
    return error


def mark_generating(
    *, request_id: int, operation_name: str, worker: str | None = None, actor: str = "worker"
) -> Transition:
    return _transition(request_id, Status.GENERATING, actor=actor, worker=worker, operation_name=operation_name)


def mark_completed(
    *,
    request_id: int,
    output_uris: Sequence[str],
    public_urls: Sequence[str] = (),
    output_size_bytes: int | None = None,
    worker: str | None = None,
    actor: str = "worker",
) -> Transition:
    return _transition(
        request_id,
        Status.COMPLETED,
        actor=actor,
        worker=worker,
        output_uris=list(output_uris),
        public_urls=list(public_urls),
        output_size_bytes=output_size_bytes,
    )


def mark_ended(*, request_id: int, ending: Ending, worker: str | None = None, actor: str = "worker") -> Transition:
    """End a request without a video, as ``ending`` says (status, code, refund: tracking.outcomes)."""
    return _transition(
        request_id,
        ending.status,
        actor=actor,
        worker=worker,
        refund=ending.refunded,
        error_code=ending.code,
        error_message=ending.message,
        safety_filtered_count=ending.filtered_count or None,
        safety_filtered_reasons=list(ending.filtered_reasons) or None,
    )


def mark_failed(
    *,
    request_id: int,
    error_code: str,
    error_message: str,
    refund: bool | None = None,
    safety_filtered_count: int | None = None,
    safety_filtered_reasons: Sequence[str] | None = None,
    worker: str | None = None,
    actor: str = "worker",
) -> Transition:
    """Fail a request. ``refund`` None: the refund rule decides (tracking.outcomes.refunded)."""
    return _transition(
        request_id,
        Status.FAILED,
        actor=actor,
        worker=worker,
        refund=refunded(error_code) if refund is None else refund,
        error_code=error_code,
        error_message=error_message,
        safety_filtered_count=safety_filtered_count,
        safety_filtered_reasons=list(safety_filtered_reasons) if safety_filtered_reasons else None,
    )


def mark_timeout(
    *,
    request_id: int,
    error_message: str,
    error_code: str = "timeout",
    worker: str | None = None,
    actor: str = "worker",
) -> Transition:
    """A deadline passed on our side: always refunded."""
    return _transition(
        request_id,
        Status.TIMEOUT,
        actor=actor,
        worker=worker,
        refund=True,
        error_code=error_code,
        error_message=error_message,
    )


def cancel(*, request_id: int, actor: str, reason: str) -> Transition:
    """Cancel a pending or generating request; the user gets the slot back."""
    return _transition(
        request_id,
        Status.CANCELLED,
        actor=actor,
        reason=reason,
        refund=True,
        error_code="cancelled",
        error_message=f"cancelled by {actor}: {reason}",
    )


_REFUND_SQL = """
WITH who AS (SELECT set_config('veobot.actor', %(actor)s, true), set_config('veobot.reason', %(reason)s, true))
UPDATE video_requests SET counts_toward_quota = false
FROM who
WHERE id = %(id)s AND counts_toward_quota
RETURNING id
"""


def refund(*, request_id: int, actor: str, reason: str) -> bool:
    """Give the request's quota slot back. True if refunded now, False if it never counted
    or was already refunded (a refund is never counted twice)."""
    reason = storable_text("reason", reason)
    with connection.cursor() as cursor:
        cursor.execute(_REFUND_SQL, {"id": request_id, "actor": actor, "reason": reason})
        if cursor.fetchone():
            return True
        cursor.execute("SELECT 1 FROM video_requests WHERE id = %s", [request_id])
        if cursor.fetchone() is None:
            raise RequestNotFound(f"video request {request_id} does not exist")
    return False
