"""Reads: quota status, a user's history, analytics. Keyword-only and typed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from tracking.models import Status, VideoRequest

FAILURE_STATUSES = (Status.FAILED, Status.TIMEOUT)


@dataclass(frozen=True)
class QuotaStatus:
    used: int
    limit: int
    remaining: int
    window: timedelta
    reset_at: datetime | None  # when the next slot frees; None if nothing counts now

    def resets_in(self, *, now: datetime) -> str:
        return humanize_duration(self.reset_at - now) if self.reset_at else "now"


def humanize_duration(delta: timedelta) -> str:
    """timedelta -> '2h 15m', '3d 4h', '15m 30s', '40s': the two largest units, rounded up."""
    seconds = max(0, math.ceil(delta.total_seconds()))
    units = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        amount, seconds = divmod(seconds, size)
        units.append((amount, unit))
    while len(units) > 1 and units[0][0] == 0:
        units.pop(0)
    shown = [units[0]] + [u for u in units[1:2] if u[0]]
    return " ".join(f"{amount}{unit}" for amount, unit in shown)


def quota_status(*, user_id: int, guild_id: int | None = None) -> QuotaStatus:
    """The user's quota as admission would see it now (same policy resolution, same probe)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.quota_limit, p.quota_window, u.used, u.reset_at"
            " FROM resolve_quota_policy(%s, %s, %s, %s, %s) p,"
            "      quota_usage(%s, p.quota_limit, p.quota_window, clock_timestamp()) u",
            [user_id, guild_id, settings.VEO_QUOTA_LIMIT, settings.VEO_QUOTA_WINDOW,
             settings.VEO_QUOTA_MAX_IN_FLIGHT, user_id],
        )
        limit, window, used, reset_at = cursor.fetchone()
    return QuotaStatus(used=used, limit=limit, remaining=max(limit - used, 0), window=window, reset_at=reset_at)


@dataclass(frozen=True)
class HistoryPage:
    requests: list[VideoRequest]
    next_before_id: int | None  # pass as before_id for the next (older) page


def user_history(*, user_id: int, status: str | None = None, before_id: int | None = None,
                 limit: int = 10) -> HistoryPage:
    """A user's requests, newest first, keyset-paged (stable while new rows arrive)."""
    if status is not None and status not in Status.values:
        raise ValueError(f"unknown status {status!r}")
    limit = max(1, min(limit, 100))
    rows = VideoRequest.objects.filter(user_id=user_id)
    if status:
        rows = rows.filter(status=status)
    if before_id:
        rows = rows.filter(id__lt=before_id)
    page = list(rows.order_by("-id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return HistoryPage(requests=page, next_before_id=page[-1].id if more else None)


# -- analytics ------------------------------------------------------------------------


def _fetch(query: str, params: list | dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def status_counts(*, since: datetime, until: datetime) -> dict[str, int]:
    """Requests created in [since, until) by status; every status present, zeros included."""
    rows = _fetch("SELECT status, count(*) FROM video_requests WHERE created_at >= %s AND created_at < %s"
                  " GROUP BY status", [since, until])
    return {status: 0 for status in Status.values} | dict(rows)


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def generation_time_percentiles(*, since: datetime, until: datetime) -> Percentiles:
    """Generation time (started -> completed) of requests completed in the period."""
    (row,) = _fetch(
        "SELECT count(*),"
        " percentile_cont(0.50) WITHIN GROUP (ORDER BY duration_ms),"
        " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms),"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms)"
        " FROM video_requests WHERE status = 'completed' AND created_at >= %s AND created_at < %s",
        [since, until])
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
    guild_id: int | None  # None: direct messages
    requests: int
    completed: int
    failed: int
    rejected: int
    users: int


def guild_stats(*, since: datetime, until: datetime, limit: int = 20) -> list[GuildStats]:
    rows = _fetch(
        "SELECT guild_id, count(*),"
        " count(*) FILTER (WHERE status = 'completed'),"
        " count(*) FILTER (WHERE status IN ('failed', 'timeout')),"
        " count(*) FILTER (WHERE status = 'rejected'),"
        " count(DISTINCT user_id)"
        " FROM video_requests WHERE created_at >= %s AND created_at < %s"
        " GROUP BY guild_id ORDER BY count(*) DESC, guild_id NULLS LAST LIMIT %s",
        [since, until, limit])
    return [GuildStats(*row) for row in rows]


@dataclass(frozen=True)
class PromptCount:
    prompt: str
    requests: int
    users: int


def top_prompts(*, since: datetime, until: datetime, limit: int = 10) -> list[PromptCount]:
    """Most requested prompts (case and surrounding space ignored)."""
    rows = _fetch(
        "SELECT min(prompt), count(*), count(DISTINCT user_id) FROM video_requests"
        " WHERE created_at >= %s AND created_at < %s"
        " GROUP BY lower(btrim(prompt)) ORDER BY count(*) DESC, min(prompt) LIMIT %s",
        [since, until, limit])
    return [PromptCount(*row) for row in rows]


# -- the bot's queue estimate -------------------------------------------------------------

POSITION_CAP = 1000  # "1000+ ahead" is as useful as an exact count, and stays cheap
ETA_SAMPLE = 20  # recent completions the median is taken over


@dataclass(frozen=True)
class QueueEstimate:
    ahead: int  # pending requests that will be claimed before this one (capped at POSITION_CAP)
    median_generation_ms: int | None  # None: nothing comparable completed yet


def queue_estimate(*, request_id: int, duration_seconds: int, resolution: str) -> QueueEstimate:
    """Where a pending request stands, in one round trip: how many pending rows are ahead of it
    (the queue's partial index, read at most POSITION_CAP entries deep), and the median
    generation time of the latest ETA_SAMPLE completed requests with the same length and
    resolution (video_requests_eta_idx, newest first)."""
    (row,) = _fetch(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM video_requests ahead, video_requests me"
        "         WHERE me.id = %(id)s AND ahead.status = 'pending'"
        "           AND (ahead.available_at, ahead.id) < (me.available_at, me.id) LIMIT %(cap)s) AS a),"
        " (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) FROM ("
        "     SELECT duration_ms FROM video_requests"
        "     WHERE status = 'completed' AND duration_seconds = %(duration)s AND resolution = %(resolution)s"
        "     ORDER BY completed_at DESC LIMIT %(sample)s) AS recent)",
        {"id": request_id, "cap": POSITION_CAP, "duration": duration_seconds, "resolution": resolution,
         "sample": ETA_SAMPLE})
    ahead, median = row
    return QueueEstimate(ahead=ahead, median_generation_ms=round(median) if median is not None else None)
