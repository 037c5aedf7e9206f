"""Reads for the moderators' dashboard: volumes, generation times, failure and safety-filter
rates, top users and guilds. Keyword-only and typed; tracking.dashboards keeps snapshots of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from tracking.analytics_spend import BudgetsUse, Spend, spend
from tracking.models import Status
from tracking.rows import fetch_tuples
from tracking.selectors import FAILURE_STATUSES


def status_counts(*, since: datetime, until: datetime) -> dict[str, int]:
    """Requests created in [since, until) by status; every status present, zeros included."""
    rows = fetch_tuples(
        "SELECT status, count(*) FROM video_requests WHERE created_at >= %s AND created_at < %s GROUP BY status",
        [since, until],
    )
    return dict.fromkeys(Status.values, 0) | dict(rows)


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def generation_time_percentiles(*, since: datetime, until: datetime) -> Percentiles:
    """Generation time (started -> completed) of requests completed in the period."""
    (row,) = fetch_tuples(
        "SELECT count(*),"
        " percentile_cont(0.50) WITHIN GROUP (ORDER BY duration_ms),"
        " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)"
        " FROM video_requests WHERE status = 'completed' AND created_at >= %s AND created_at < %s",
        [since, until],
    )
    return Percentiles(*row)


def failure_rate(*, since: datetime, until: datetime) -> float | None:
    """Share of finished generations (completed, failed, timeout) that failed or timed out."""
    counts = status_counts(since=since, until=until)
    finished = counts[Status.COMPLETED] + sum(counts[s] for s in FAILURE_STATUSES)
    if not finished:
        return None
    return sum(counts[s] for s in FAILURE_STATUSES) / finished


@dataclass(frozen=True)
class GuildStats:
    guild_id: int | None  # None: direct messages, or the command line (from_cli)
    requests: int
    completed: int
    failed: int
    rejected: int
    users: int
    from_cli: bool = False  # snapshots stored before it was counted apart read as False


def guild_stats(*, since: datetime, until: datetime, limit: int = 20) -> list[GuildStats]:
    # Per (guild, user) first, then per guild: counting the users is then a hash aggregate,
    # where count(DISTINCT user_id) would sort every row of the period.
    rows = fetch_tuples(
        "SELECT guild_id, sum(n)::int, sum(completed)::int, sum(failed)::int, sum(rejected)::int, count(*),"
        "       from_cli"
        " FROM (SELECT guild_id, source = 'cli' AS from_cli, user_id, count(*) AS n,"
        "              count(*) FILTER (WHERE status = 'completed') AS completed,"
        "              count(*) FILTER (WHERE status IN ('failed', 'timeout')) AS failed,"
        "              count(*) FILTER (WHERE status = 'rejected') AS rejected"
        "       FROM video_requests WHERE created_at >= %s AND created_at < %s"
        "       GROUP BY guild_id, source = 'cli', user_id) AS per_user"
        " GROUP BY guild_id, from_cli ORDER BY sum(n) DESC, guild_id NULLS LAST, from_cli LIMIT %s",
        [since, until, limit],
    )
    return [GuildStats(*row) for row in rows]


@dataclass(frozen=True)
class PromptCount:
    prompt: str
    requests: int
    users: int


def top_prompts(*, since: datetime, until: datetime, limit: int = 10) -> list[PromptCount]:
    """Most requested prompts (case and surrounding space ignored)."""
    rows = fetch_tuples(
        "SELECT min(prompt), count(*), count(DISTINCT user_id) FROM video_requests"
        " WHERE created_at >= %s AND created_at < %s"
        " GROUP BY lower(btrim(prompt)) ORDER BY count(*) DESC, min(prompt) LIMIT %s",
        [since, until, limit],
    )
    return [PromptCount(*row) for row in rows]


@dataclass(frozen=True)
class BucketCounts:
    start: datetime  # the hour or UTC day
    by_status: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True)
class UserStats:
    user_id: int
    requests: int
    rejected: int
    safety_filtered: int


@dataclass(frozen=True)
class Activity:
    buckets: list[BucketCounts]  # every hour or day of the period, empty ones included
    per_hour_of_day: list[int]  # 24 counts, UTC: the busiest hours
    totals: dict[str, int]  # by status, every status present
    safety_filtered: int  # generations (completed, failed, timeout) Veo's filter refused
    top_users: list[UserStats]  # most requests first


# One pass over video_requests_stats_idx (index-only). GROUPING() tells the sets apart (a
# bit per column, 1 = not grouped by it); a top-N over the materialised sets keeps only the
# busiest users instead of sending every user of the period to Python.
_ACTIVITY_SQL = """
WITH sets AS (
    SELECT GROUPING(b, status, h, user_id) AS g, b, status, h, user_id, count(*) AS n,
           count(*) FILTER (WHERE status = 'rejected') AS rejected,
           count(*) FILTER (WHERE safety_filtered_count > 0 AND status IN ('completed', 'failed', 'timeout'))
               AS filtered
    FROM (SELECT date_trunc(%(bucket)s, created_at AT TIME ZONE 'UTC') AS b, status,
                 extract(hour FROM created_at AT TIME ZONE 'UTC')::int AS h, user_id, safety_filtered_count
          FROM video_requests WHERE created_at >= %(since)s AND created_at < %(until)s) AS r
    GROUP BY GROUPING SETS ((b, status), (h), (user_id))
)
SELECT * FROM sets WHERE g <> %(user_set)s
UNION ALL
(SELECT * FROM sets WHERE g = %(user_set)s ORDER BY n DESC, user_id LIMIT %(top)s)
"""
_BUCKET_STATUS, _HOUR, _USER = 0b0011, 0b1101, 0b1110  # GROUPING(b, status, h, user_id): 1 = not grouped


def activity(*, since: datetime, until: datetime, bucket: str = "day", top: int = 10) -> Activity:
    """Requests created in [since, until) per bucket ("hour" or "day", UTC) and status, per
    hour of day, safety-filtered, and the `top` users: one pass over the period."""
    if bucket not in ("hour", "day"):
        raise ValueError(f"bucket must be hour or day (got {bucket!r})")
    rows = fetch_tuples(
        _ACTIVITY_SQL, {"bucket": bucket, "since": since, "until": until, "user_set": _USER, "top": top}
    )
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    first = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    if bucket == "day":
        first = first.replace(hour=0)
    buckets: dict[datetime, dict[str, int]] = {}
    moment = first
    while moment < until.astimezone(UTC).replace(tzinfo=None):
        buckets[moment] = dict.fromkeys(Status.values, 0)
        moment += step
    per_hour = [0] * 24
    totals = dict.fromkeys(Status.values, 0)
    safety = 0
    users = []
    for grouping, start, status, hour, user_id, n, rejected, filtered in rows:
        if grouping == _BUCKET_STATUS:
            buckets.setdefault(start, dict.fromkeys(Status.values, 0))[status] = n
            totals[status] += n
            safety += filtered
        elif grouping == _HOUR:
            per_hour[hour] = n
        elif grouping == _USER:
            users.append(UserStats(user_id, n, rejected, filtered))
    users.sort(key=lambda u: (-u.requests, u.user_id))
    return Activity(
        buckets=[BucketCounts(start.replace(tzinfo=UTC), counts) for start, counts in sorted(buckets.items())],
        per_hour_of_day=per_hour,
        totals=totals,
        safety_filtered=safety,
        top_users=users,
    )


@dataclass(frozen=True)
class Dashboard:
    since: datetime
    until: datetime
    activity: Activity
    generation_time: Percentiles
    failure_rate: float | None
    safety_filter_rate: float | None
    top_users: list[UserStats]
    top_guilds: list[GuildStats]
    spend: Spend


def dashboard(*, until: datetime, days: int = 1, budgets: BudgetsUse | None = None) -> Dashboard:
    """Everything the dashboard shows for the `days` days before `until`; hourly buckets
    for a single day, daily ones otherwise."""
    since = until - timedelta(days=days)
    with transaction.atomic(), connection.cursor() as cursor:
        # Hash aggregates over a day of requests need more than the default 4 MB, or they
        # sort on disk; for this transaction only.
        cursor.execute("SET LOCAL work_mem = '32MB'")
        seen = activity(since=since, until=until, bucket="hour" if days == 1 else "day")
        generation_time = generation_time_percentiles(since=since, until=until)
        guilds = guild_stats(since=since, until=until, limit=10)
        money = spend(since=since, until=until, now=until, budgets=budgets)
    totals = seen.totals
    finished = totals[Status.COMPLETED] + sum(totals[s] for s in FAILURE_STATUSES)
    return Dashboard(
        since=since,
        until=until,
        activity=seen,
        generation_time=generation_time,
        # failure_rate() would count the statuses a second time; the totals are at hand.
        failure_rate=sum(totals[s] for s in FAILURE_STATUSES) / finished if finished else None,
        safety_filter_rate=seen.safety_filtered / finished if finished else None,
        top_users=seen.top_users,
        top_guilds=guilds,
        spend=money,
    )
