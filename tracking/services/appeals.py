"""Appeals of bans: a banned user's /appeal lands in the review queue (0018's trigger)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from tracking.errors import InvalidInput, TrackingError
from tracking.services.admission import require_snowflake
from tracking.text import storable_text

APPEAL_MAX = 1000


class NotBanned(TrackingError):
    """The user has no ban in force here to appeal."""


@dataclass(frozen=True)
class AppealFiled:
    appeal_id: int
    ban_id: int
    new: bool  # False: the ban already had an open appeal (this one, or an earlier)
    created_at: datetime


def clean_appeal(body: str | None) -> str:
    body = storable_text("appeal", body or "").strip()
    if not body:
        raise InvalidInput("appeal", "write why the ban should be lifted")
    if len(body) > APPEAL_MAX:
        raise InvalidInput("appeal", f"an appeal must be at most {APPEAL_MAX} characters (got {len(body)})")
    return body


# The ban in force for this user here (active_ban: this guild's, else the global one); the
# appeal is inserted unless the ban has an open one or this interaction filed one already.
_FILE_SQL = """
WITH ban AS (
    SELECT id FROM active_ban(%(user_id)s, %(guild_id)s, clock_timestamp()) WHERE id IS NOT NULL
)
INSERT INTO appeals (ban_id, user_id, interaction_id, body)
SELECT id, %(user_id)s, %(interaction_id)s, %(body)s FROM ban
ON CONFLICT DO NOTHING
RETURNING id, ban_id, created_at
"""

_EXISTING_SQL = """
SELECT a.id, a.ban_id, a.created_at FROM appeals a
WHERE a.interaction_id = %(interaction_id)s
   OR (a.state = 'open' AND a.ban_id = (
       SELECT id FROM active_ban(%(user_id)s, %(guild_id)s, clock_timestamp()) WHERE id IS NOT NULL))
ORDER BY a.interaction_id = %(interaction_id)s DESC
LIMIT 1
"""


def file_appeal(*, user_id: int, guild_id: int | None, interaction_id: int, body: str | None) -> AppealFiled:
    """File the user's appeal of the ban in force for them here; one open appeal per ban."""
    require_snowflake("user_id", user_id, required=True)
    require_snowflake("guild_id", guild_id, required=False)
    require_snowflake("interaction_id", interaction_id, required=True)
    values = {"user_id": user_id, "guild_id": guild_id, "interaction_id": interaction_id, "body": clean_appeal(body)}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_FILE_SQL, values)
        row = cursor.fetchone()
        if row is not None:
            return AppealFiled(row[0], row[1], True, row[2])
        cursor.execute(_EXISTING_SQL, values)
        row = cursor.fetchone()
    if row is None:
        raise NotBanned("you are not banned from veobot here, so there is nothing to appeal")
    return AppealFiled(row[0], row[1], False, row[2])
