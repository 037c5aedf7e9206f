"""What the bot carries out of the review queue: moderators' decisions to users (user_notices)
and new queue items to the moderators' Discord channel (review_items.announced_at).

Every claim is one statement with SKIP LOCKED, so bot processes claim side by side and never
take the same row; a claimed notice is leased (``not_before``) while its DM is being sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection

from tracking.text import storable_text

DM, NEXT_COMMAND = "dm", "next_command"


@dataclass(frozen=True)
class Notice:
    id: int
    user_id: int
    body: str
    attempts: int  # including this one


# Due notices that may still go by DM (not refused), oldest due first; the attempt is counted
# and the row leased so no other bot sends it meanwhile.
_CLAIM_TO_SEND_SQL = """
UPDATE user_notices SET attempts = attempts + 1, not_before = clock_timestamp() + %(lease)s
WHERE id IN (
    SELECT id FROM user_notices
    WHERE delivered_at IS NULL AND dm_refused_at IS NULL AND not_before <= clock_timestamp()
    ORDER BY not_before, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, user_id, body, attempts
"""


def claim_notices_to_send(*, lease: timedelta, limit: int = 10) -> list[Notice]:
    """Claim up to ``limit`` due notices to send by DM, each leased for ``lease``."""
    return _claimed(Notice, _CLAIM_TO_SEND_SQL, {"lease": lease, "limit": limit})


def notice_sent(*, notice_id: int) -> bool:
    """The DM went out. False if the notice had been delivered already."""
    return _delivered([notice_id], DM) == 1


def notice_refused(*, notice_id: int, error: str) -> None:
    """Discord refused the DM (the user does not accept them): kept for their next command."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE user_notices SET dm_refused_at = clock_timestamp(), last_error = %s, not_before = clock_timestamp()"
            " WHERE id = %s AND delivered_at IS NULL",
            [_error(error), notice_id],
        )


def notice_failed(*, notice_id: int, error: str, retry_after: timedelta) -> None:
    """Discord could not be reached: the DM is tried again after ``retry_after``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE user_notices SET last_error = %s, not_before = clock_timestamp() + %s"
            " WHERE id = %s AND delivered_at IS NULL",
            [_error(error), retry_after, notice_id],
        )


def users_owed_notices() -> set[int]:
    """The users with a notice not delivered yet (the small partial index user_notices_owed_idx)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT user_id FROM user_notices WHERE delivered_at IS NULL")
        return {row[0] for row in cursor.fetchall()}


# At the user's command: what Discord refused to DM, and what is due and nobody is sending.
# A notice leased by a bot sending its DM (or waiting out a retry) is left to that bot.
_TAKE_OWED_SQL = """
UPDATE user_notices SET not_before = clock_timestamp() + %(lease)s
WHERE id IN (
    SELECT id FROM user_notices
    WHERE user_id = %(user_id)s AND delivered_at IS NULL
      AND (dm_refused_at IS NOT NULL OR not_before <= clock_timestamp())
    ORDER BY id
    FOR UPDATE SKIP LOCKED
)
RETURNING id, user_id, body, attempts
"""


def take_owed_notices(*, user_id: int, lease: timedelta) -> list[Notice]:
    """Claim the user's notices to show them at their command, oldest first, leased for ``lease``."""
    return _claimed(Notice, _TAKE_OWED_SQL, {"user_id": user_id, "lease": lease})


def notices_shown(*, notice_ids: Sequence[int]) -> int:
    """Shown at the user's command; how many were still undelivered."""
    return _delivered(notice_ids, NEXT_COMMAND)


def release_notices(*, notice_ids: Sequence[int]) -> None:
    """Not shown after all (Discord refused the follow-up): due again at once."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE user_notices SET not_before = clock_timestamp() WHERE id = ANY (%s) AND delivered_at IS NULL",
            [list(notice_ids)],
        )


def _delivered(notice_ids: Sequence[int], via: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE user_notices SET delivered_at = clock_timestamp(), delivered_via = %s"
            " WHERE id = ANY (%s) AND delivered_at IS NULL",
            [via, list(notice_ids)],
        )
        return cursor.rowcount


def _claimed(make, sql: str, values: dict) -> list:
    """The rows a claim statement returned (id first), as ``make`` objects in id order."""
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        return [make(*row) for row in sorted(cursor.fetchall())]


def _error(error: str) -> str:
    return storable_text("last_error", error)[:1000]


# ---------------------------------------------------------------------------------------------
# Announcements of new queue items (MOD_CHANNEL_ID)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Announcement:
    item_id: int
    kind: str
    summary: str
    hits: int


# Open items not announced yet and made within ``recent`` (older backlog is not announced),
# marked announced as they are claimed: another bot skips them; a failed post hands them back.
_CLAIM_ANNOUNCEMENTS_SQL = """
UPDATE review_items SET announced_at = clock_timestamp()
WHERE id IN (
    SELECT id FROM review_items
    WHERE announced_at IS NULL AND state = 'open' AND created_at > clock_timestamp() - %(recent)s
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, kind, summary, hits
"""


def claim_announcements(*, recent: timedelta, limit: int = 10) -> list[Announcement]:
    """Claim up to ``limit`` new open items to announce, oldest first."""
    return _claimed(Announcement, _CLAIM_ANNOUNCEMENTS_SQL, {"recent": recent, "limit": limit})


def unclaim_announcements(*, item_ids: Sequence[int]) -> None:
    """Not posted after all: announced again at the next poll."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE review_items SET announced_at = NULL WHERE id = ANY (%s)", [list(item_ids)])
