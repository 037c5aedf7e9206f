"""Moderators' actions: review, removal, refunds, cancellations, bans, policies, notes.

Every action takes the moderator (actor) and a reason, and stamps both for the event
trigger in the same statement as the change, exactly as a transition does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from tracking import media
from tracking.errors import InvalidInput, RequestNotFound
from tracking.models import BlockedTerm, QuotaPolicy, ReviewStatus
from tracking.retries import redone_if_rolled_back
from tracking.services.admission import require_snowflake
from tracking.services.audit import moderating
from tracking.services.transitions import _own_statement, refund
from tracking.text import storable_text

_WHO = "who AS (SELECT set_config('veobot.actor', %(actor)s, true), set_config('veobot.reason', %(reason)s, true))"


def clean_reason(reason: str | None) -> str:
    """A moderator's reason: required, storable, at most 1000 characters."""
    reason = " ".join(storable_text("reason", reason or "").split())
    if not reason:
        raise InvalidInput("reason", "a reason is required")
    if len(reason) > 1000:
        raise InvalidInput("reason", f"the reason must be at most 1000 characters (got {len(reason)})")
    return reason


def _ids(request_ids: Sequence[int]) -> list[int]:
    ids = sorted({int(request_id) for request_id in request_ids})
    if not ids:
        raise InvalidInput("request_ids", "select at least one request")
    return ids


_REVIEW_SQL = f"""
WITH {_WHO}
UPDATE video_requests SET review_status = %(review)s, reviewed_by = %(actor)s, reviewed_at = clock_timestamp(),
                          review_note = %(reason)s
FROM who
WHERE id = ANY(%(ids)s) AND review_status <> %(review)s AND review_status <> 'removed'
RETURNING id
"""


def _review(request_ids: Sequence[int], review: str, *, actor: str, reason: str) -> list[int]:
    """Set the review state; returns the ids that changed. A removed output stays removed."""
    values = {"ids": _ids(request_ids), "review": review, "actor": actor, "reason": clean_reason(reason)}
    with moderating(actor=actor, action=f"review: {review}", reason=values["reason"]), connection.cursor() as cursor:
        cursor.execute(_REVIEW_SQL, values)
        return sorted(row[0] for row in cursor.fetchall())


def approve(*, request_ids: Sequence[int], actor: str, reason: str) -> list[int]:
    return _review(request_ids, ReviewStatus.APPROVED, actor=actor, reason=reason)


def flag(*, request_ids: Sequence[int], actor: str, reason: str) -> list[int]:
    return _review(request_ids, ReviewStatus.FLAGGED, actor=actor, reason=reason)


def mark_unreviewed(*, request_ids: Sequence[int], actor: str, reason: str) -> list[int]:
    return _review(request_ids, ReviewStatus.UNREVIEWED, actor=actor, reason=reason)


@dataclass(frozen=True)
class Removal:
    request_id: int
    discord_action_id: int | None  # None: no Discord message to delete (CLI, undelivered)
    local_files: tuple[str, ...]  # local outputs deleted once the removal committed
    bucket_action_id: int | None = None  # the bot deletes these gs:// objects (None: there are none)
    gcs_objects: tuple[str, ...] = ()


# The gs:// outputs of a row, as an array; empty when it has none.
# The frames a request was given go with its outputs. Not video_input_uri: that is its parent's
# output, which stays the parent's.
_INPUT_FILES = "array_remove(ARRAY[image_uri, last_frame_uri], NULL)"
_GCS_OUTPUTS = "ARRAY(SELECT u FROM unnest(output_uris) AS u WHERE starts_with(u, 'gs://'))"

# One statement: mark removed and hide the public links, queue the Discord message's deletion
# and the bucket objects' deletion for the bot (it holds the token and the bucket credentials)
# in the same transaction, and record what was removed and why.
_REMOVE_SQL = f"""
WITH {_WHO},
removed AS (
    UPDATE video_requests SET review_status = 'removed', reviewed_by = %(actor)s, reviewed_at = clock_timestamp(),
                              review_note = %(reason)s, public_urls = '{{}}'
    FROM who
    WHERE id = ANY(%(ids)s) AND review_status <> 'removed'
    RETURNING id, channel_id, discord_message_id, output_uris, {_GCS_OUTPUTS} AS gcs_uris,
              {_INPUT_FILES} AS input_uris
),
queued AS (
    INSERT INTO discord_actions (request_id, action, channel_id, message_id, requested_by, reason)
    SELECT id, 'delete_message', channel_id, discord_message_id, %(actor)s, %(reason)s
    FROM removed WHERE channel_id IS NOT NULL AND discord_message_id IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING request_id, id
),
bucket AS (
    INSERT INTO discord_actions (request_id, action, object_uris, requested_by, reason)
    SELECT id, 'delete_gcs_objects', gcs_uris, %(actor)s, %(reason)s
    FROM removed WHERE cardinality(gcs_uris) > 0
    ON CONFLICT DO NOTHING
    RETURNING request_id, id, object_uris
),
noted AS (
    INSERT INTO video_request_events (request_id, kind, actor, detail)
    SELECT r.id, 'output_removed', %(actor)s, jsonb_strip_nulls(jsonb_build_object(
        'reason', %(reason)s, 'outputs', to_jsonb(r.output_uris), 'discord_action_id', q.id,
        'bucket_action_id', b.id))
    FROM removed r LEFT JOIN queued q ON q.request_id = r.id LEFT JOIN bucket b ON b.request_id = r.id
)
SELECT r.id, q.id, r.output_uris || r.input_uris, b.id, b.object_uris
FROM removed r LEFT JOIN queued q ON q.request_id = r.id LEFT JOIN bucket b ON b.request_id = r.id
ORDER BY r.id
"""


def remove_output(*, request_ids: Sequence[int], actor: str, reason: str) -> list[Removal]:
    """Mark outputs removed, hide their public links, queue deletion of the Discord messages
    and of the gs:// objects (the bot holds the token and the bucket credentials, and performs
    both), and delete local files after commit."""
    values = {"ids": _ids(request_ids), "actor": actor, "reason": clean_reason(reason)}
    with moderating(actor=actor, action="remove output", reason=values["reason"]), connection.cursor() as cursor:
        cursor.execute(_REMOVE_SQL, values)
        removals = [
            Removal(
                request_id,
                action_id,
                tuple(u for u in uris if u.startswith("file:")),
                bucket_action_id,
                tuple(objects or ()),
            )
            for request_id, action_id, uris, bucket_action_id, objects in cursor.fetchall()
        ]
        files = [uri for removal in removals for uri in removal.local_files]
        transaction.on_commit(lambda: media.delete_local_files(files))
    return removals


# A removed output whose generation finished after the removal: the removal had no gs://
# objects to queue, so they are queued now (once: the unique index makes a repeat a no-op).
_QUEUE_LATE_OBJECTS_SQL = f"""
INSERT INTO discord_actions (request_id, action, object_uris, requested_by, reason)
SELECT id, 'delete_gcs_objects', {_GCS_OUTPUTS}, COALESCE(reviewed_by, 'system'),
       COALESCE(NULLIF(btrim(left(review_note, 1000)), ''), 'output removed before it was stored')
FROM video_requests
WHERE id = %s AND review_status = 'removed' AND cardinality({_GCS_OUTPUTS}) > 0
ON CONFLICT DO NOTHING
"""


def discard_removed_outputs(*, request_id: int) -> list[str]:
    """Delete the local files of a removed output that were written after the removal (the
    generation finished later), and queue its gs:// objects for the bot to delete; returns
    the local URIs deleted. Does nothing unless it is removed."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT output_uris FROM video_requests WHERE id = %s AND review_status = 'removed'", [request_id]
        )
        row = cursor.fetchone()
        cursor.execute(_QUEUE_LATE_OBJECTS_SQL, [request_id])
    uris = [uri for uri in (row[0] if row else None) or () if uri.startswith("file:")]
    media.delete_local_files(uris)
    return uris


@redone_if_rolled_back
def refund_requests(*, request_ids: Sequence[int], actor: str, reason: str) -> list[int]:
    """Give quota slots back; returns the ids refunded now (others never counted or were refunded)."""
    reason = clean_reason(reason)
    with moderating(actor=actor, action="refund", reason=reason):
        return [
            request_id for request_id in _ids(request_ids) if refund(request_id=request_id, actor=actor, reason=reason)
        ]


_CANCEL_SQL = f"""
WITH {_WHO}
UPDATE video_requests SET status = 'cancelled', counts_toward_quota = false, error_code = 'cancelled',
                          error_message = %(message)s
FROM who
WHERE id = ANY(%(ids)s) AND status IN ('pending', 'generating')
RETURNING id
"""


@redone_if_rolled_back
def cancel_requests(*, request_ids: Sequence[int], actor: str, reason: str) -> list[int]:
    """Cancel the pending or generating requests among request_ids (the others are left
    alone); the users get their slots back. Returns the ids cancelled."""
    reason = clean_reason(reason)
    values = {
        "ids": _ids(request_ids),
        "actor": actor,
        "reason": reason,
        "message": f"cancelled by {actor}: {reason}"[:4000],
    }
    with moderating(actor=actor, action="cancel", reason=reason), connection.cursor() as cursor:
        cursor.execute(_CANCEL_SQL, values)
        return sorted(row[0] for row in cursor.fetchall())


_BAN_SQL = """
WITH ban AS (
    INSERT INTO user_bans (user_id, guild_id, reason, banned_by, expires_at)
    VALUES (%(user_id)s, %(guild_id)s, %(reason)s, %(actor)s, %(expires_at)s)
    RETURNING id
), noted AS (
    INSERT INTO video_request_events (request_id, kind, actor, detail)
    SELECT vr.id, 'user_banned', %(actor)s, jsonb_strip_nulls(jsonb_build_object(
        'ban_id', ban.id, 'reason', %(reason)s, 'guild_id', %(guild_id)s::text, 'expires_at', %(expires_at)s))
    FROM ban, video_requests vr WHERE vr.id = ANY(%(ids)s) AND vr.user_id = %(user_id)s
)
SELECT id FROM ban
"""


def ban_user(
    *,
    user_id: int,
    reason: str,
    actor: str,
    guild_id: int | None = None,
    expires_at: datetime | None = None,
    request_ids: Sequence[int] = (),
) -> int:
    """Ban a user (everywhere, or in one guild) until expires_at (None: permanently); the
    ban applies from the user's next request. The requests that prompted it (request_ids)
    get a user_banned event. Returns the ban id."""
    require_snowflake("user_id", user_id, required=True)
    require_snowflake("guild_id", guild_id, required=False)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at", "the expiry must be in the future (leave it empty for a permanent ban)")
    values = {
        "user_id": user_id,
        "guild_id": guild_id,
        "reason": clean_reason(reason),
        "actor": actor,
        "expires_at": expires_at,
        "ids": sorted(set(request_ids)),
    }
    with moderating(actor=actor, action="ban", reason=values["reason"]), connection.cursor() as cursor:
        cursor.execute(_BAN_SQL, values)
        return cursor.fetchone()[0]


def lift_bans(*, ban_ids: Sequence[int], actor: str, reason: str | None = None) -> list[int]:
    """Lift bans in force now; returns the ids lifted (already lifted ones are left alone)."""
    with moderating(actor=actor, action="lift ban", reason=reason), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE user_bans SET lifted_at = clock_timestamp(), lifted_by = %s"
            " WHERE id = ANY(%s) AND lifted_at IS NULL RETURNING id",
            [actor, list(ban_ids)],
        )
        return sorted(row[0] for row in cursor.fetchall())


def save_quota_policy(*, policy: QuotaPolicy, actor: str) -> QuotaPolicy:
    """Create or update a policy; it applies from the next admission (no cache)."""
    if policy._state.adding:
        policy.created_by = actor
    else:
        policy.updated_at = timezone.now()
    with moderating(actor=actor, action="save quota policy"):
        policy.save()
    return policy


def save_blocked_term(*, term: BlockedTerm, actor: str) -> BlockedTerm:
    """Create or update a blocked term; the database validates the pattern (see
    blocked_term_problem in SQL) and admission applies it from the next request."""
    if term._state.adding:
        term.created_by = actor
    term.pattern = storable_text("pattern", term.pattern).strip()
    term.message = storable_text("message", term.message or "").strip()
    try:
        with moderating(actor=actor, action="save blocked term"), _own_statement():
            term.save()
    except IntegrityError as error:
        diag = getattr(error.__cause__, "diag", None)
        raise InvalidInput("pattern", getattr(diag, "message_primary", None) or "the term was refused") from None
    return term


_NOTE_SQL = f"""
WITH {_WHO},
noted AS (
    UPDATE video_requests SET review_note = %(reason)s, reviewed_by = %(actor)s, reviewed_at = clock_timestamp()
    FROM who WHERE id = %(id)s
    RETURNING id
)
INSERT INTO video_request_events (request_id, kind, actor, detail)
SELECT id, 'note', %(actor)s, jsonb_build_object('reason', %(reason)s) FROM noted
RETURNING request_id
"""


def add_review_note(*, request_id: int, actor: str, reason: str) -> None:
    """Record a moderator's note without changing the review state."""
    reason = clean_reason(reason)
    with moderating(actor=actor, action="note", reason=reason), connection.cursor() as cursor:
        cursor.execute(_NOTE_SQL, {"id": request_id, "actor": actor, "reason": reason})
        if cursor.fetchone() is None:
            raise RequestNotFound(f"video request {request_id} does not exist")
