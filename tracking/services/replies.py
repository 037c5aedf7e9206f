"""Reply tokens: kept so that any bot process can edit a queued reply while its token lives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.utils import timezone

from tracking.models import ReplyToken


@dataclass(frozen=True)
class ReplyTokenRow:
    interaction_id: int
    application_id: int
    token: str
    size_limit: int
    expires_at: datetime


# The new rows, and a sweep of up to 20 expired ones: each write removes more than expire in
# its time, so the table stays about one token lifetime (15 minutes) of replies long.
_KEEP_SQL = """
WITH swept AS (
    DELETE FROM reply_tokens
    WHERE interaction_id IN (SELECT interaction_id FROM reply_tokens WHERE expires_at < clock_timestamp() LIMIT 20)
)
INSERT INTO reply_tokens (interaction_id, application_id, token, size_limit, expires_at)
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::integer[], %s::timestamptz[])
ON CONFLICT (interaction_id) DO NOTHING
"""


def keep_reply_tokens(*, rows: list[ReplyTokenRow]) -> None:
    """The tokens of replies just answered, in one statement."""
    columns = [[getattr(row, name) for row in rows] for name in ReplyTokenRow.__dataclass_fields__]
    with connection.cursor() as cursor:
        cursor.execute(_KEEP_SQL, columns)


def live_reply_token(*, interaction_id: int) -> ReplyToken | None:
    """The reply's token while it has time left, else None."""
    return ReplyToken.objects.filter(interaction_id=interaction_id, expires_at__gt=timezone.now()).first()


def forget_reply_token(*, interaction_id: int) -> None:
    ReplyToken.objects.filter(interaction_id=interaction_id).delete()
