"""Writes: admission, lifecycle transitions, refunds and moderation actions.

Every function is keyword-only and typed. The database owns the rules (legal transitions,
derived timestamps, the event history); these functions pass values through one statement
each and translate the database's refusals into ``tracking.errors``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import psycopg.errors
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from tracking import media, rows
from tracking.errors import InvalidInput, InvalidTransition, RequestNotFound
from tracking.models import (AspectRatio, BlockedTerm, DeliveryMethod, DiscordAction, DiscordActionKind,
                             PersonGeneration, QuotaPolicy, Resolution, ReviewStatus, Source, Status, VideoRequest)
from tracking.text import has_visible, prompt_text, storable_text

# Failures caused by the request itself; everything else failed on our side and is refunded.
USER_CAUSED_ERROR_CODES = frozenset({"content_filtered"})


@dataclass(frozen=True)
class VideoParameters:
    prompt: str
    duration_seconds: int = 4
    aspect_ratio: str = AspectRatio.LANDSCAPE
    resolution: str = Resolution.HD
    generate_audio: bool = True
    negative_prompt: str | None = None
    seed: int | None = None
    person_generation: str = PersonGeneration.ALLOW_ADULT
    model: str | None = None  # None: settings.VEO_MODEL


@dataclass(frozen=True)
class Admission:
    request_id: int
    admitted: bool
    duplicate: bool
    status: str
    reason_code: str | None
    reason: str | None
    used: int
    limit: int
    remaining: int
    reset_at: datetime | None


@dataclass(frozen=True)
class Transition:
    request_id: int
    status: str
    changed: bool  # False: the request already had that status (a no-op)
    # The row as the transition left it (when changed): callers need not read it again.
    row: VideoRequest | None = dataclasses.field(default=None, compare=False, repr=False)


def clean_parameters(params: VideoParameters) -> VideoParameters:
    """Validate and normalise parameters; raise InvalidInput with a specific message."""
    prompt = " ".join(prompt_text("prompt", params.prompt).split())
    if not has_visible(prompt):
        raise InvalidInput("prompt", "prompt has no visible characters (only spaces or invisible ones)")
    low, high = settings.VEO_PROMPT_MIN_LENGTH, settings.VEO_PROMPT_MAX_LENGTH
    if not low <= len(prompt) <= high:
        raise InvalidInput("prompt", f"prompt must be {low}-{high} characters (got {len(prompt)})")
    negative = params.negative_prompt
    if negative is not None:
        negative = " ".join(prompt_text("negative_prompt", negative).split()) or None
        if negative and len(negative) > high:
            raise InvalidInput("negative_prompt", f"negative_prompt must be at most {high} characters (got {len(negative)})")
    _choice("duration_seconds", params.duration_seconds, (4, 6, 8))
    _choice("aspect_ratio", params.aspect_ratio, AspectRatio.values)
    _choice("resolution", params.resolution, Resolution.values)
    _choice("person_generation", params.person_generation, PersonGeneration.values)
    if not isinstance(params.generate_audio, bool):
        raise InvalidInput("generate_audio", "generate_audio must be true or false")
    if params.seed is not None and (isinstance(params.seed, bool) or not 0 <= params.seed <= 4_294_967_295):
        raise InvalidInput("seed", "seed must be a whole number from 0 to 4294967295")
    model = storable_text("model", params.model or settings.VEO_RECORDED_MODEL)
    return replace(params, prompt=prompt, negative_prompt=negative, model=model)


def _choice(field: str, value, allowed) -> None:
    if isinstance(value, bool) or value not in allowed:
        options = ", ".join(str(option) for option in allowed)
        raise InvalidInput(field, f"{field} must be one of {options} (got {value!r})")


def _snowflake(field: str, value: int | None, *, required: bool) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise InvalidInput(field, f"{field} must be a positive 64-bit Discord id (got {value!r})")


def admit_request(
    *,
    interaction_id: int,
    user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    params: VideoParameters,
    source: str = Source.DISCORD,
) -> Admission:
    """Admit or refuse a request in one database round trip (see admit_video_request in SQL)."""
    _snowflake("interaction_id", interaction_id, required=True)
    _snowflake("user_id", user_id, required=True)
    _snowflake("guild_id", guild_id, required=False)
    _snowflake("channel_id", channel_id, required=False)
    _choice("source", source, Source.values)
    clean = clean_parameters(params)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT request_id, admitted, duplicate, status, reason_code, reason, used, quota_limit, remaining, reset_at"
            " FROM admit_video_request(%s, %s, %s, %s, %s, %s, %s::smallint, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [interaction_id, user_id, guild_id, channel_id, clean.prompt, clean.negative_prompt,
             clean.duration_seconds, clean.aspect_ratio, clean.resolution, clean.generate_audio,
             clean.person_generation, clean.seed, clean.model, source, settings.VEO_QUOTA_LIMIT,
             settings.VEO_QUOTA_WINDOW, settings.VEO_QUOTA_MAX_IN_FLIGHT],
        )
        return Admission(*cursor.fetchone())


# Admissions announce new work on this channel (NOTIFY) and idle workers LISTEN on it, so they
# start at once instead of at their next poll (discordbot.wakeup). The payload is empty: a
# notification only means "look now"; the claim decides what is there.
WORK_CHANNEL = "veobot_work"


def notify_work() -> None:
    """Tell listening workers that work was admitted. Call it after the admission has committed,
    never inside it: NOTIFY takes a database-wide lock at commit, which admission should not pay."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [WORK_CHANNEL])


# -- lifecycle ------------------------------------------------------------------------

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


def _transition(request_id: int, status: str, *, actor: str, reason: str | None = None, refund: bool = False,
                worker: str | None = None, **fields) -> Transition:
    """Move a request to ``status``. With ``worker``, only while that worker holds the lease:
    a worker that lost its lease gets ``changed=False`` and the current status back."""
    values = dict.fromkeys(("operation_name", "output_uris", "public_urls", "output_size_bytes",
                            "safety_filtered_count", "safety_filtered_reasons", "error_code", "error_message"))
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


def mark_generating(*, request_id: int, operation_name: str, worker: str | None = None,
                    actor: str = "worker") -> Transition:
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
    return _transition(request_id, Status.COMPLETED, actor=actor, worker=worker, output_uris=list(output_uris),
                       public_urls=list(public_urls), output_size_bytes=output_size_bytes)


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
    """Fail a request. By default failures on our side are refunded; user-caused ones
    (content_filtered, invalid_request) count, unless VEO_REFUND_CONTENT_FILTERED says otherwise."""
    if refund is None:
        refund = error_code not in USER_CAUSED_ERROR_CODES or (
            error_code == "content_filtered" and settings.VEO_REFUND_CONTENT_FILTERED)
    return _transition(request_id, Status.FAILED, actor=actor, worker=worker, refund=refund, error_code=error_code,
                       error_message=error_message, safety_filtered_count=safety_filtered_count,
                       safety_filtered_reasons=list(safety_filtered_reasons) if safety_filtered_reasons else None)


def mark_timeout(*, request_id: int, error_message: str, error_code: str = "timeout",
                 worker: str | None = None, actor: str = "worker") -> Transition:
    """A deadline passed on our side: always refunded."""
    return _transition(request_id, Status.TIMEOUT, actor=actor, worker=worker, refund=True, error_code=error_code,
                       error_message=error_message)


def cancel(*, request_id: int, actor: str, reason: str) -> Transition:
    """Cancel a pending or generating request; the user gets the slot back."""
    return _transition(request_id, Status.CANCELLED, actor=actor, reason=reason, refund=True,
                       error_code="cancelled", error_message=f"cancelled by {actor}: {reason}")


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


# -- the worker's queue -------------------------------------------------------------------


def claim_next(*, worker: str, lease: timedelta, sources: Sequence[str], max_concurrent: int,
               max_starts_per_minute: int) -> VideoRequest | None:
    """Claim the next piece of work (deliver > resume > start within the global caps).

    The returned row carries the lease; what to do follows from its status: pending ->
    start, generating -> resume polling its operation, finished -> deliver."""
    claimed = claim_work(worker=worker, lease=lease, sources=sources, max_concurrent=max_concurrent,
                         max_starts_per_minute=max_starts_per_minute, limit=1)
    return claimed[0] if claimed else None


def claim_work(*, worker: str, lease: timedelta, sources: Sequence[str], max_concurrent: int,
               max_starts_per_minute: int, limit: int) -> list[VideoRequest]:
    """Claim up to ``limit`` pieces of work in one round trip, in claim_next's order."""
    return rows.fetch_requests("SELECT * FROM claim_video_request(%s, %s, %s, %s, %s, %s)",
                               [worker, lease, list(sources), max_concurrent, max_starts_per_minute, limit])


def renew_lease(*, request_id: int, worker: str, lease: timedelta) -> bool:
    """Extend the lease; False means another worker took the request over."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE video_requests SET lease_expires_at = clock_timestamp() + %s"
                       " WHERE id = %s AND claimed_by = %s RETURNING id", [lease, request_id, worker])
        return cursor.fetchone() is not None


def release(*, request_id: int, worker: str, reason: str, retry_at: datetime | None = None) -> bool:
    """Hand the request back so any worker can claim it (pending ones not before retry_at)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT release_video_request(%s, %s, COALESCE(%s, clock_timestamp()), %s)",
                       [request_id, worker, retry_at, reason])
        return cursor.fetchone()[0]


def record_delivery(*, request_id: int, worker: str | None, method: str, message_id: int | None = None,
                    error: str | None = None, removal_known: bool = False) -> bool:
    """Record how the outcome reached the user (or that it could not) and free the lease.
    Idempotent: a request is delivered once; later calls return False.

    ``removal_known``: the delivery knew the output was removed (it said so instead of showing
    it). Otherwise, if a moderator removed it meanwhile, the message's deletion is queued."""
    _choice("method", method, DeliveryMethod.values)
    if error is not None:
        error = storable_text("delivery_error", error)[:1000]
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_DELIVERY_SQL, {"method": method, "message_id": message_id, "error": error,
                                              "id": request_id, "worker": worker, "removal_known": removal_known})
        return cursor.fetchone()[0] is not None


# record_video_request_delivery (SQL) also queues the message's deletion when a moderator
# removed the output while the delivery was on its way.
_RECORD_DELIVERY_SQL = ("SELECT record_video_request_delivery(%(id)s, %(worker)s::text, %(method)s,"
                        " %(message_id)s::bigint, %(error)s::text, %(removal_known)s)")


# -- replay of the bot's degraded-mode journal --------------------------------------------------


def replay_journaled_request(*, request: dict, steps: Sequence[dict], actor: str) -> tuple[int, bool]:
    """Write one request the bot journaled while the database was unreachable, with its original
    timestamps and every transition (validated by the usual triggers), in one transaction.
    Idempotent on the interaction id: returns (request id, False) if it is already there."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT request_id, inserted FROM replay_video_request(%s::jsonb, %s::jsonb, %s)",
                       [json.dumps(request), json.dumps(list(steps)), actor])
        request_id, inserted = cursor.fetchone()
    return request_id, inserted

# -- moderation -----------------------------------------------------------------------
# Every action takes the moderator (actor) and a reason, and stamps both for the event
# trigger in the same statement as the change, exactly as _transition does.

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
    with connection.cursor() as cursor:
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
    local_files: tuple[str, ...]   # local outputs deleted once the removal committed
    bucket_action_id: int | None = None  # the bot deletes these gs:// objects (None: there are none)
    gcs_objects: tuple[str, ...] = ()


# The gs:// outputs of a row, as an array; empty when it has none.
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
    RETURNING id, channel_id, discord_message_id, output_uris, {_GCS_OUTPUTS} AS gcs_uris
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
SELECT r.id, q.id, r.output_uris, b.id, b.object_uris
FROM removed r LEFT JOIN queued q ON q.request_id = r.id LEFT JOIN bucket b ON b.request_id = r.id
ORDER BY r.id
"""


def remove_output(*, request_ids: Sequence[int], actor: str, reason: str) -> list[Removal]:
    """Mark outputs removed, hide their public links, queue deletion of the Discord messages
    and of the gs:// objects (the bot holds the token and the bucket credentials, and performs
    both), and delete local files after commit."""
    values = {"ids": _ids(request_ids), "actor": actor, "reason": clean_reason(reason)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_REMOVE_SQL, values)
        removals = [Removal(request_id, action_id, tuple(u for u in uris if u.startswith("file:")),
                            bucket_action_id, tuple(objects or ()))
                    for request_id, action_id, uris, bucket_action_id, objects in cursor.fetchall()]
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
        cursor.execute("SELECT output_uris FROM video_requests WHERE id = %s AND review_status = 'removed'",
                       [request_id])
        row = cursor.fetchone()
        cursor.execute(_QUEUE_LATE_OBJECTS_SQL, [request_id])
    uris = [uri for uri in (row[0] if row else None) or () if uri.startswith("file:")]
    media.delete_local_files(uris)
    return uris


def refund_requests(*, request_ids: Sequence[int], actor: str, reason: str) -> list[int]:
    """Give quota slots back; returns the ids refunded now (others never counted or were refunded)."""
    reason = clean_reason(reason)
    return [request_id for request_id in _ids(request_ids)
            if refund(request_id=request_id, actor=actor, reason=reason)]


_CANCEL_SQL = f"""
WITH {_WHO}
UPDATE video_requests SET status = 'cancelled', counts_toward_quota = false, error_code = 'cancelled',
                          error_message = %(message)s
FROM who
WHERE id = ANY(%(ids)s) AND status IN ('pending', 'generating')
RETURNING id
"""


def cancel_requests(*, request_ids: Sequence[int], actor: str, reason: str) -> list[int]:
    """Cancel the pending or generating requests among request_ids (the others are left
    alone); the users get their slots back. Returns the ids cancelled."""
    reason = clean_reason(reason)
    values = {"ids": _ids(request_ids), "actor": actor, "reason": reason,
              "message": f"cancelled by {actor}: {reason}"[:4000]}
    with connection.cursor() as cursor:
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


def ban_user(*, user_id: int, reason: str, actor: str, guild_id: int | None = None,
             expires_at: datetime | None = None, request_ids: Sequence[int] = ()) -> int:
    """Ban a user (everywhere, or in one guild) until expires_at (None: permanently); the
    ban applies from the user's next request. The requests that prompted it (request_ids)
    get a user_banned event. Returns the ban id."""
    _snowflake("user_id", user_id, required=True)
    _snowflake("guild_id", guild_id, required=False)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at", "the expiry must be in the future (leave it empty for a permanent ban)")
    values = {"user_id": user_id, "guild_id": guild_id, "reason": clean_reason(reason), "actor": actor,
              "expires_at": expires_at, "ids": sorted(set(request_ids))}
    with connection.cursor() as cursor:
        cursor.execute(_BAN_SQL, values)
        return cursor.fetchone()[0]


def lift_bans(*, ban_ids: Sequence[int], actor: str) -> list[int]:
    """Lift bans in force now; returns the ids lifted (already lifted ones are left alone)."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE user_bans SET lifted_at = clock_timestamp(), lifted_by = %s"
                       " WHERE id = ANY(%s) AND lifted_at IS NULL RETURNING id", [actor, list(ban_ids)])
        return sorted(row[0] for row in cursor.fetchall())


def save_quota_policy(*, policy: QuotaPolicy, actor: str) -> QuotaPolicy:
    """Create or update a policy; it applies from the next admission (no cache)."""
    if policy._state.adding:
        policy.created_by = actor
    else:
        policy.updated_at = timezone.now()
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
        with _own_statement():
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
    with connection.cursor() as cursor:
        cursor.execute(_NOTE_SQL, {"id": request_id, "actor": actor, "reason": clean_reason(reason)})
        if cursor.fetchone() is None:
            raise RequestNotFound(f"video request {request_id} does not exist")


# -- the moderators' outbox (performed by the bot) -----------------------------------------------

_CLAIM_ACTION_SQL = """
UPDATE discord_actions SET attempts = attempts + 1, not_before = clock_timestamp() + %(lease)s
WHERE id = (
    SELECT id FROM discord_actions
    WHERE done_at IS NULL AND failed_at IS NULL AND not_before <= clock_timestamp()
      AND attempts < %(max_attempts)s AND action = ANY (%(kinds)s)
    ORDER BY not_before, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING *
"""


def claim_discord_action(*, lease: timedelta, max_attempts: int,
                         kinds: Sequence[str] = tuple(DiscordActionKind.values)) -> DiscordAction | None:
    """Claim the oldest due action of the moderators' outbox (of ``kinds``) and count the attempt.

    SKIP LOCKED lets bots claim side by side; the claim pushes ``not_before`` out by ``lease``,
    so no other bot takes the action while this one performs it (or until the lease runs out,
    if this one dies). Actions that used up ``max_attempts`` are never claimed again. A worker
    without the Discord gateway claims only what it can perform: bucket deletions."""
    claimed = list(DiscordAction.objects.raw(
        _CLAIM_ACTION_SQL, {"lease": lease, "max_attempts": max_attempts, "kinds": list(kinds)}))
    return claimed[0] if claimed else None


def finish_discord_action(*, action_id: int, error: str | None = None, retry_after: timedelta | None = None,
                          give_up: bool = False) -> bool:
    """Record an attempt: without ``error`` the action is done; with one it stays pending, due
    again after ``retry_after`` (immediately if None), unless ``give_up``: then it has failed
    for good, ``error`` being why. False if it had already ended."""
    if error is not None:
        error = storable_text("last_error", error)[:1000]
    elif give_up:
        raise ValueError("giving up needs the reason (error)")
    with connection.cursor() as cursor:
        if error is None:
            cursor.execute("UPDATE discord_actions SET done_at = clock_timestamp(), last_error = NULL"
                           " WHERE id = %s AND done_at IS NULL AND failed_at IS NULL RETURNING id", [action_id])
        else:
            cursor.execute("UPDATE discord_actions SET last_error = %s,"
                           " not_before = clock_timestamp() + COALESCE(%s, interval '0'),"
                           " failed_at = CASE WHEN %s THEN clock_timestamp() END"
                           " WHERE id = %s AND done_at IS NULL AND failed_at IS NULL RETURNING id",
                           [error, retry_after, give_up, action_id])
        return cursor.fetchone() is not None
