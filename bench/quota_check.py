"""What a measurement wrote: requests admitted and refused, and whether any user got more than the quota."""

from __future__ import annotations

from datetime import timedelta

import psycopg

# A counted row r is over-admitted when the user's counted rows in (r.created_at - window,
# r.created_at] -- r included -- exceed the limit: exactly what admission saw when it said yes.
OVER_ADMISSIONS_SQL = """
SELECT count(*)
FROM video_requests AS r
WHERE r.id > %(after_id)s AND r.counts_toward_quota
  AND (SELECT count(*) FROM video_requests AS o
       WHERE o.user_id = r.user_id AND o.counts_toward_quota
         AND o.created_at > r.created_at - %(window)s AND o.created_at <= r.created_at) > %(limit)s
"""


def newest_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT COALESCE(max(id), 0) FROM video_requests").fetchone()[0]


def admitted_and_rejected(conn: psycopg.Connection, *, after_id: int) -> tuple[int, int]:
    return conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'rejected')"
        " FROM video_requests WHERE id > %s",
        [after_id],
    ).fetchone()


def over_admissions(conn: psycopg.Connection, *, after_id: int, limit: int, window: timedelta) -> int:
    """Rows written after `after_id` that took a user above `limit` requests per `window`."""
    return conn.execute(OVER_ADMISSIONS_SQL, {"after_id": after_id, "limit": limit, "window": window}).fetchone()[0]
