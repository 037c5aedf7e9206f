"""The review queue: claim, release, resolve with a reason, reopen, notes.

Items are made by the database (0018's triggers). A claim makes an item one moderator's
until ``claimed_until`` (``REVIEW_CLAIM_MINUTES``); every write checks it in the same
statement or under the item's row lock, so of two moderators acting at once exactly one wins
and the other is told who holds it. Every change lands in the audit log (services.audit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from tracking.errors import InvalidInput, TrackingError
from tracking.models import AppealState, Decision, ItemKind, ItemState, ReportState
from tracking.services.audit import moderating
from tracking.services.moderation import approve, ban_user, clean_reason, lift_bans, remove_output
from tracking.text import storable_text

REQUEST_KINDS = (ItemKind.REPORT, ItemKind.SAFETY_FILTER)
NOTE_MAX = 2000


class ItemUnavailable(TrackingError):
    """The item cannot be taken or decided now: missing, resolved, or someone else's claim."""


def claim_duration() -> timedelta:
    return timedelta(minutes=settings.REVIEW_CLAIM_MINUTES)


@dataclass(frozen=True)
class _Locked:
    id: int
    kind: str
    state: str
    user_id: int
    guild_id: int | None
    request_id: int | None
    appeal_id: int | None
    claimed_by: str | None
    claimed_until: datetime | None
    resolved_by: str | None

    def held_by_other(self, actor: str, now: datetime) -> bool:
        return self.claimed_by not in (None, actor) and self.claimed_until > now


_LOCK_SQL = """
SELECT id, kind, state, user_id, guild_id, request_id, appeal_id, claimed_by, claimed_until, resolved_by
FROM review_items WHERE id = %s FOR UPDATE
"""


def _lock(cursor, item_id: int) -> _Locked:
    cursor.execute(_LOCK_SQL, [item_id])
    row = cursor.fetchone()
    if row is None:
        raise ItemUnavailable(f"review item {item_id} does not exist")
    return _Locked(*row)


def _claimed_message(item_id: int, by: str, until: datetime) -> str:
    return f"item #{item_id} is claimed by {by} until {until:%H:%M} UTC"


def _unavailable(item: _Locked, actor: str) -> ItemUnavailable | None:
    if item.state == ItemState.RESOLVED:
        return ItemUnavailable(f"item #{item.id} is already resolved (by {item.resolved_by})")
    if item.held_by_other(actor, timezone.now()):
        return ItemUnavailable(_claimed_message(item.id, item.claimed_by, item.claimed_until))
    return None


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------

_CLAIM_SQL = """
UPDATE review_items SET claimed_by = %(actor)s, claimed_until = clock_timestamp() + %(ttl)s
WHERE id = %(id)s AND state = 'open'
  AND (claimed_by IS NULL OR claimed_by = %(actor)s OR claimed_until <= clock_timestamp())
RETURNING claimed_until
"""


def claim(*, item_id: int, actor: str) -> datetime:
    """Make the item the actor's (or extend their claim); returns until when. Refused, naming
    the holder, while another moderator's claim runs."""
    with moderating(actor=actor, action="claim"), connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"id": item_id, "actor": actor, "ttl": claim_duration()})
        row = cursor.fetchone()
        if row is not None:
            return row[0]
        raise _unavailable(_lock(cursor, item_id), actor) or ItemUnavailable(f"item #{item_id} cannot be claimed")


# The oldest open item nobody holds (of one kind, or any); SKIP LOCKED: two moderators taking
# "the next" at once get two different items, neither waits.
_TAKE_NEXT_SQL = """
UPDATE review_items SET claimed_by = %(actor)s, claimed_until = clock_timestamp() + %(ttl)s
WHERE id = (
    SELECT id FROM review_items
    WHERE state = 'open' AND (claimed_by IS NULL OR claimed_until <= clock_timestamp())
      AND (kind = %(kind)s::text OR %(kind)s::text IS NULL)
    ORDER BY created_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING id
"""


def take_next(*, actor: str, kind: str | None = None) -> int | None:
    """Claim the oldest unclaimed open item (of one kind, if given); None when there is none."""
    if kind is not None and kind not in ItemKind.values:
        raise InvalidInput("kind", f"unknown kind {kind!r}")
    with moderating(actor=actor, action="claim"), connection.cursor() as cursor:
        cursor.execute(_TAKE_NEXT_SQL, {"actor": actor, "ttl": claim_duration(), "kind": kind})
        row = cursor.fetchone()
    return row[0] if row else None


def release(*, item_id: int, actor: str) -> bool:
    """Give up the actor's claim; False when they held none."""
    with moderating(actor=actor, action="release"), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE review_items SET claimed_by = NULL, claimed_until = NULL"
            " WHERE id = %s AND state = 'open' AND claimed_by = %s RETURNING id",
            [item_id, actor],
        )
        return cursor.fetchone() is not None


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BanTerms:
    """A ban decided in the queue: everywhere or in the item's guild, until expires_at (None: permanent)."""

    everywhere: bool = True
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Resolution:
    item_id: int
    decision: str
    effect: str  # what the decision did, in words for the moderator


def _check_decision(item: _Locked, decision: str, ban: BanTerms | None) -> None:
    if decision not in Decision.values:
        choices = ", ".join(Decision.values)
        raise InvalidInput("decision", f"choose a decision ({choices})")
    if item.kind == ItemKind.APPEAL and decision not in (Decision.APPROVE, Decision.DISMISS):
        raise InvalidInput("decision", "an appeal is decided by approve (lift the ban) or dismiss (keep it)")
    if decision == Decision.REMOVE_OUTPUT and (item.kind not in REQUEST_KINDS or item.request_id is None):
        raise InvalidInput("decision", "this item is about a user, not one video: approve, ban or dismiss")
    if decision == Decision.BAN and not (ban or BanTerms()).everywhere and item.guild_id is None:
        raise InvalidInput("ban", "the request was not made in a server: ban everywhere")


def _decide_appeal(cursor, item: _Locked, decision: str, *, actor: str, reason: str) -> str:
    granted = decision == Decision.APPROVE
    cursor.execute(
        "UPDATE appeals SET state = %s, decided_at = clock_timestamp(), decided_by = %s, decision_reason = %s"
        " WHERE id = %s AND state = 'open' RETURNING ban_id",
        [AppealState.GRANTED if granted else AppealState.DENIED, actor, reason, item.appeal_id],
    )
    row = cursor.fetchone()
    if row is None:
        raise ItemUnavailable(f"the appeal of item #{item.id} was already decided")
    if granted:
        lift_bans(ban_ids=[row[0]], actor=actor, reason=reason)
        body = f"Your appeal was granted and your veobot ban lifted: {reason}"
    else:
        body = f"Your appeal of your veobot ban was denied: {reason}"
    cursor.execute(
        "INSERT INTO user_notices (user_id, appeal_id, body) VALUES (%s, %s, %s)",
        [item.user_id, item.appeal_id, body[:2000]],
    )
    return f"ban #{row[0]} lifted; the user is told" if granted else "appeal denied; the user is told"


def _apply(cursor, item: _Locked, decision: str, *, actor: str, reason: str, ban: BanTerms | None) -> str:
    """Do what the decision means for the item's subject; returns it in words."""
    if item.kind == ItemKind.APPEAL:
        return _decide_appeal(cursor, item, decision, actor=actor, reason=reason)
    requests = [item.request_id] if item.request_id is not None else []
    if decision == Decision.APPROVE and item.kind in REQUEST_KINDS and requests:
        approve(request_ids=requests, actor=actor, reason=reason)
        return f"request #{item.request_id} approved"
    if decision == Decision.REMOVE_OUTPUT:
        remove_output(request_ids=requests, actor=actor, reason=reason)
        return f"output of request #{item.request_id} removed"
    if decision == Decision.BAN:
        ban = ban or BanTerms()
        guild_id = None if ban.everywhere else item.guild_id
        ban_id = ban_user(
            user_id=item.user_id,
            guild_id=guild_id,
            expires_at=ban.expires_at,
            reason=reason,
            actor=actor,
            request_ids=requests,
        )
        where = "everywhere" if guild_id is None else f"in server {guild_id}"
        until = "permanently" if ban.expires_at is None else f"until {ban.expires_at:%Y-%m-%d %H:%M} UTC"
        return f"user {item.user_id} banned {where} {until} (ban #{ban_id})"
    return "no action"


_RESOLVE_SQL = """
UPDATE review_items SET state = 'resolved', decision = %(decision)s, resolution_reason = %(reason)s,
                        resolved_by = %(actor)s, resolved_at = clock_timestamp(),
                        claimed_by = NULL, claimed_until = NULL
WHERE id = %(id)s
"""

# The reports of the decided video end with the decision: acted on, or dismissed.
_CLOSE_REPORTS_SQL = """
UPDATE reports SET state = %(state)s, resolved_at = clock_timestamp(), resolved_by = %(actor)s
WHERE request_id = %(request_id)s AND state = 'open'
"""


def resolve(*, item_id: int, actor: str, decision: str, reason: str | None, ban: BanTerms | None = None) -> Resolution:
    """Decide an open item (free or the actor's) with a required reason, and do what the
    decision means: approve the video (an appeal: lift the ban), remove its output, ban the
    user, or dismiss. One transaction: all of it happens, or none."""
    reason = clean_reason(reason)
    with transaction.atomic(), connection.cursor() as cursor:
        item = _lock(cursor, item_id)
        refusal = _unavailable(item, actor)
        if refusal is not None:
            raise refusal
        _check_decision(item, decision, ban)
        effect = _apply(cursor, item, decision, actor=actor, reason=reason, ban=ban)
        with moderating(actor=actor, action=f"resolve: {decision}", reason=reason):
            cursor.execute(_RESOLVE_SQL, {"id": item.id, "decision": decision, "reason": reason, "actor": actor})
            if item.kind in REQUEST_KINDS and item.request_id is not None:
                acted = decision in (Decision.REMOVE_OUTPUT, Decision.BAN)
                state = ReportState.ACTIONED if acted else ReportState.DISMISSED
                cursor.execute(_CLOSE_REPORTS_SQL, {"state": state, "actor": actor, "request_id": item.request_id})
    return Resolution(item.id, decision, effect)


@dataclass(frozen=True)
class BulkResult:
    resolved: list[Resolution]
    skipped: list[tuple[int, str]]  # (item id, why), e.g. claimed by someone else


def resolve_many(
    *, item_ids: Sequence[int], actor: str, decision: str, reason: str | None, ban: BanTerms | None = None
) -> BulkResult:
    """One decision and one reason for several items; each is decided on its own (an item
    someone else holds, or that the decision does not fit, is skipped and said why)."""
    reason = clean_reason(reason)
    ids = sorted({int(item_id) for item_id in item_ids})
    if not ids:
        raise InvalidInput("item_ids", "select at least one item")
    resolved, skipped = [], []
    for item_id in ids:
        try:
            resolved.append(resolve(item_id=item_id, actor=actor, decision=decision, reason=reason, ban=ban))
        except (ItemUnavailable, InvalidInput) as error:
            skipped.append((item_id, str(error)))
    return BulkResult(resolved, skipped)


_REOPEN_SQL = """
UPDATE review_items SET state = 'open', decision = NULL, resolution_reason = NULL, resolved_by = NULL,
                        resolved_at = NULL, claimed_by = %(actor)s, claimed_until = clock_timestamp() + %(ttl)s
WHERE id = %(id)s AND state = 'resolved'
RETURNING appeal_id
"""


def reopen(*, item_id: int, actor: str, reason: str | None) -> None:
    """Open a resolved item again, claimed by the actor. What its decision did stays done (a
    ban stays, a removed output stays removed); the new decision can add to it. An appeal is
    open again too."""
    reason = clean_reason(reason)
    try:
        with moderating(actor=actor, action="reopen", reason=reason), connection.cursor() as cursor:
            cursor.execute(_REOPEN_SQL, {"id": item_id, "actor": actor, "ttl": claim_duration()})
            row = cursor.fetchone()
            if row is None:
                item = _lock(cursor, item_id)
                raise ItemUnavailable(f"item #{item.id} is open already")
            if row[0] is not None:
                cursor.execute(
                    "UPDATE appeals SET state = 'open', decided_at = NULL, decided_by = NULL, decision_reason = NULL"
                    " WHERE id = %s",
                    [row[0]],
                )
    except IntegrityError:
        raise ItemUnavailable(
            f"item #{item_id} cannot be reopened: a newer open item (or appeal) covers the same subject"
        ) from None


def add_note(*, item_id: int, actor: str, body: str | None) -> int:
    """A moderator's note on an item (open or resolved); returns its id."""
    body = storable_text("note", body or "").strip()
    if not body:
        raise InvalidInput("note", "the note is empty")
    if len(body) > NOTE_MAX:
        raise InvalidInput("note", f"a note must be at most {NOTE_MAX} characters (got {len(body)})")
    with moderating(actor=actor, action="note"), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO review_notes (item_id, author, body) SELECT id, %s, %s FROM review_items WHERE id = %s"
            " RETURNING id",
            [actor, body, item_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise ItemUnavailable(f"review item {item_id} does not exist")
    return row[0]
