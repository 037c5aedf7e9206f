"""The moderators' outbox (discord_actions): claiming due actions and recording attempts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.db import connection

from tracking.models import DiscordAction, DiscordActionKind
from tracking.text import storable_text

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


def claim_discord_action(
    *, lease: timedelta, max_attempts: int, kinds: Sequence[str] = tuple(DiscordActionKind.values)
) -> DiscordAction | None:
    """Claim the oldest due action of the moderators' outbox (of ``kinds``) and count the attempt.

    SKIP LOCKED lets bots claim side by side; the claim pushes ``not_before`` out by ``lease``,
    so no other bot takes the action while this one performs it (or until the lease runs out,
    if this one dies). Actions that used up ``max_attempts`` are never claimed again. A worker
    without the Discord gateway claims only what it can perform: bucket deletions."""
    claimed = list(
        DiscordAction.objects.raw(
            _CLAIM_ACTION_SQL, {"lease": lease, "max_attempts": max_attempts, "kinds": list(kinds)}
        )
    )
    return claimed[0] if claimed else None


def finish_discord_action(
    *, action_id: int, error: str | None = None, retry_after: timedelta | None = None, give_up: bool = False
) -> bool:
    """Record an attempt: without ``error`` the action is done; with one it stays pending, due
    again after ``retry_after`` (immediately if None), unless ``give_up``: then it has failed
    for good, ``error`` being why. False if it had already ended."""
    if error is not None:
        error = storable_text("last_error", error)[:1000]
    elif give_up:
        raise ValueError("giving up needs the reason (error)")
    with connection.cursor() as cursor:
        if error is None:
            cursor.execute(
                "UPDATE discord_actions SET done_at = clock_timestamp(), last_error = NULL"
                " WHERE id = %s AND done_at IS NULL AND failed_at IS NULL RETURNING id",
                [action_id],
            )
        else:
            cursor.execute(
                "UPDATE discord_actions SET last_error = %s,"
                " not_before = clock_timestamp() + COALESCE(%s, interval '0'),"
                " failed_at = CASE WHEN %s THEN clock_timestamp() END"
                " WHERE id = %s AND done_at IS NULL AND failed_at IS NULL RETURNING id",
                [error, retry_after, give_up, action_id],
            )
        return cursor.fetchone() is not None
