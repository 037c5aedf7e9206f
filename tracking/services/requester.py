"""What a requester may do to their own request from Discord (the buttons on its messages)."""

from __future__ import annotations

from enum import StrEnum

from django.db import connection

from tracking.errors import InvalidInput
from tracking.services.admission import require_snowflake
from tracking.services.moderation import remove_output
from tracking.text import storable_text

_CANCEL_SQL = """
WITH who AS (SELECT set_config('veobot.actor', %(actor)s, true),
                    set_config('veobot.reason', 'cancelled by its requester', true))
UPDATE video_requests SET status = 'cancelled', counts_toward_quota = false, error_code = 'cancelled',
                          error_message = 'cancelled by its requester before it started'
FROM who
WHERE interaction_id = %(interaction_id)s AND user_id = %(user_id)s AND status = 'pending' AND claimed_by IS NULL
RETURNING id
"""


class Cancelled(StrEnum):
    """How a requester's cancellation went."""

    DONE = "done"  # cancelled, and its quota slot given back
    UNKNOWN = "unknown"  # no such request
    NOT_YOURS = "not_yours"
    STARTING = "starting"  # a worker holds it: its start at Veo may be under way
    STARTED = "started"  # Veo is generating it (and billing for it)
    ENDED = "ended"  # it had already ended (cancelled included)


def cancel_by_requester(*, interaction_id: int, user_id: int) -> tuple[Cancelled, str | None]:
    """Cancel a request for its requester while nothing has started at Veo: pending, and held by
    no worker (one that holds it may be starting it). One statement when it can be done; a
    second read says why when it cannot. The request is named by its interaction, which names it
    in degraded mode too. Returns the answer and the request's status."""
    require_snowflake("interaction_id", interaction_id, required=True)
    require_snowflake("user_id", user_id, required=True)
    with connection.cursor() as cursor:
        values = {"interaction_id": interaction_id, "user_id": user_id, "actor": f"discord:{user_id}"}
        cursor.execute(_CANCEL_SQL, values)
        if cursor.fetchone():
            return Cancelled.DONE, "cancelled"
        cursor.execute("SELECT user_id, status FROM video_requests WHERE interaction_id = %s", [interaction_id])
        row = cursor.fetchone()
    if row is None:
        return Cancelled.UNKNOWN, None
    owner, status = row
    if owner != user_id:
        return Cancelled.NOT_YOURS, status
    if status == "pending":  # a worker held it (or took it in between): it may be starting
        return Cancelled.STARTING, status
    return (Cancelled.STARTED if status == "generating" else Cancelled.ENDED), status


class Removed(StrEnum):
    """How a Delete went."""

    DONE = "done"  # output removed, its message queued for deletion
    UNKNOWN = "unknown"
    NOT_YOURS = "not_yours"  # neither its requester nor a moderator of the channel
    ALREADY = "already"  # removed before (by its author or a moderator)


AUTHOR_REMOVED = "removed by its author"
MODERATOR_REMOVED = "removed by a moderator of the Discord channel"


def remove_by_requester(*, interaction_id: int, user_id: int, moderator: bool) -> Removed:
    """Remove a request's output for its requester, or for someone who moderates the channel it was
    posted in (``moderator``: Discord says they may manage its messages). Recorded in the events as
    the moderators' removal is, with who and why; the message and the stored files go with it."""
    require_snowflake("interaction_id", interaction_id, required=True)
    require_snowflake("user_id", user_id, required=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, user_id, review_status FROM video_requests WHERE interaction_id = %s", [interaction_id]
        )
        row = cursor.fetchone()
    if row is None:
        return Removed.UNKNOWN
    request_id, owner, review = row
    if owner != user_id and not moderator:
        return Removed.NOT_YOURS
    if review == "removed":
        return Removed.ALREADY
    reason = AUTHOR_REMOVED if owner == user_id else MODERATOR_REMOVED
    removed = remove_output(request_ids=[request_id], actor=f"discord:{user_id}", reason=reason)
    return Removed.DONE if removed else Removed.ALREADY


class Reported(StrEnum):
    DONE = "done"
    ALREADY = "already"  # this reporter's earlier report of it is still open
    UNKNOWN = "unknown"


REPORT_REASON_MAX = 1000

# The report and its event in one statement; a reporter's open report of the same request makes
# the insert a no-op (the partial unique index), and no event is written for it.
_REPORT_SQL = """
WITH report AS (
    INSERT INTO reports (request_id, reporter_id, guild_id, reason)
    SELECT id, %(reporter)s, %(guild)s, %(reason)s FROM video_requests WHERE interaction_id = %(interaction_id)s
    ON CONFLICT (request_id, reporter_id) WHERE state = 'open' DO NOTHING
    RETURNING id, request_id
), noted AS (
    INSERT INTO video_request_events (request_id, kind, actor, detail)
    SELECT request_id, 'reported', %(actor)s, jsonb_build_object('report_id', id, 'reason', %(reason)s) FROM report
)
SELECT id FROM report
"""


def report_request(*, interaction_id: int, reporter_id: int, guild_id: int | None, reason: str) -> Reported:
    """Anyone's report of a request, with their reason (1-1000 visible characters), for moderators."""
    require_snowflake("interaction_id", interaction_id, required=True)
    require_snowflake("reporter_id", reporter_id, required=True)
    require_snowflake("guild_id", guild_id, required=False)
    reason = " ".join(storable_text("reason", reason or "").split())
    if not reason:
        raise InvalidInput("reason", "a reason is required")
    if len(reason) > REPORT_REASON_MAX:
        raise InvalidInput("reason", f"the reason must be at most {REPORT_REASON_MAX} characters (got {len(reason)})")
    values = {
        "interaction_id": interaction_id,
        "reporter": reporter_id,
        "guild": guild_id,
        "reason": reason,
        "actor": f"discord:{reporter_id}",
    }
    with connection.cursor() as cursor:
        cursor.execute(_REPORT_SQL, values)
        if cursor.fetchone():
            return Reported.DONE
        cursor.execute("SELECT 1 FROM video_requests WHERE interaction_id = %s", [interaction_id])
        return Reported.ALREADY if cursor.fetchone() else Reported.UNKNOWN
