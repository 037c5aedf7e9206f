"""Reads: quota status, a user's history, analytics. Keyword-only and typed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from tracking.models import (DiscordAction, DiscordActionKind, JournalQuarantine, Status, UserBan, VideoRequest,
                             VideoRequestEvent)

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
    # Per (guild, user) first, then per guild: counting the users is then a hash aggregate,
    # where count(DISTINCT user_id) would sort every row of the period.
    rows = _fetch(
        "SELECT guild_id, sum(n)::int, sum(completed)::int, sum(failed)::int, sum(rejected)::int, count(*)"
        " FROM (SELECT guild_id, user_id, count(*) AS n,"
        "              count(*) FILTER (WHERE status = 'completed') AS completed,"
        "              count(*) FILTER (WHERE status IN ('failed', 'timeout')) AS failed,"
        "              count(*) FILTER (WHERE status = 'rejected') AS rejected"
        "       FROM video_requests WHERE created_at >= %s AND created_at < %s"
        "       GROUP BY guild_id, user_id) AS per_user"
        " GROUP BY guild_id ORDER BY sum(n) DESC, guild_id NULLS LAST LIMIT %s",
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

# -- moderation panel -------------------------------------------------------------------


def estimated_request_count() -> int:
    """The planner's row estimate for video_requests (pg_class.reltuples, kept current by
    autovacuum): what the unfiltered list shows as "about N" instead of a COUNT(*)."""
    (row,) = _fetch("SELECT GREATEST(reltuples, 0)::bigint FROM pg_class WHERE oid = 'video_requests'::regclass", [])
    return row[0]


def prompt_search(text: str) -> RawSQL:
    """A filter condition: the prompt matches a web-search style query ("quoted phrase",
    or, -word), written exactly like the GIN index expression so that the index is used."""
    return RawSQL("to_tsvector('english'::regconfig, prompt) @@ websearch_to_tsquery('english'::regconfig, %s)",
                  [text], output_field=BooleanField())


def blocked_term_problem(*, kind: str, pattern: str) -> str | None:
    """Why PostgreSQL would refuse this blocked term (invalid, pathological, matches
    everything), or None: the same check the table's trigger runs on write."""
    (row,) = _fetch("SELECT blocked_term_problem(%s, %s)", [kind, pattern])
    return row[0]


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
    per_hour_of_day: list[int]   # 24 counts, UTC: the busiest hours
    totals: dict[str, int]       # by status, every status present
    safety_filtered: int         # generations (completed, failed, timeout) Veo's filter refused
    top_users: list[UserStats]   # most requests first


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
    rows = _fetch(_ACTIVITY_SQL, {"bucket": bucket, "since": since, "until": until, "user_set": _USER, "top": top})
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    first = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    if bucket == "day":
        first = first.replace(hour=0)
    buckets: dict[datetime, dict[str, int]] = {}
    moment = first
    while moment < until.astimezone(UTC).replace(tzinfo=None):
        buckets[moment] = {status: 0 for status in Status.values}
        moment += step
    per_hour = [0] * 24
    totals = {status: 0 for status in Status.values}
    safety = 0
    users = []
    for grouping, start, status, hour, user_id, n, rejected, filtered in rows:
        if grouping == _BUCKET_STATUS:
            buckets.setdefault(start, {s: 0 for s in Status.values})[status] = n
            totals[status] += n
            safety += filtered
        elif grouping == _HOUR:
            per_hour[hour] = n
        elif grouping == _USER:
            users.append(UserStats(user_id, n, rejected, filtered))
    users.sort(key=lambda u: (-u.requests, u.user_id))
    return Activity(buckets=[BucketCounts(start.replace(tzinfo=UTC), counts) for start, counts in sorted(buckets.items())],
                    per_hour_of_day=per_hour, totals=totals, safety_filtered=safety, top_users=users)


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


def dashboard(*, until: datetime, days: int = 1) -> Dashboard:
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
    totals = seen.totals
    finished = totals[Status.COMPLETED] + sum(totals[s] for s in FAILURE_STATUSES)
    return Dashboard(
        since=since, until=until, activity=seen, generation_time=generation_time,
        # failure_rate() would count the statuses a second time; the totals are at hand.
        failure_rate=sum(totals[s] for s in FAILURE_STATUSES) / finished if finished else None,
        safety_filter_rate=seen.safety_filtered / finished if finished else None,
        top_users=seen.top_users,
        top_guilds=guilds,
    )


@dataclass(frozen=True)
class UserOverview:
    user_id: int
    quota: QuotaStatus
    bans: list[UserBan]        # newest first, lifted and expired included
    active_ban: UserBan | None
    history: HistoryPage


def user_overview(*, user_id: int, before_id: int | None = None, page_size: int = 25) -> UserOverview:
    """The per-user page: quota as admission sees it, bans, and keyset-paged history."""
    bans = list(UserBan.objects.filter(user_id=user_id).order_by("-created_at")[:50])
    now = timezone.now()
    active = next((ban for ban in bans if ban.lifted_at is None and (ban.expires_at is None or ban.expires_at > now)),
                  None)
    return UserOverview(user_id=user_id, quota=quota_status(user_id=user_id), bans=bans, active_ban=active,
                        history=user_history(user_id=user_id, before_id=before_id, limit=page_size))


def request_timeline(*, request_id: int, limit: int = 500) -> list[VideoRequestEvent]:
    """A request's history, oldest first (video_request_events_request_idx)."""
    return list(VideoRequestEvent.objects.filter(request_id=request_id).order_by("id")[:limit])


@dataclass(frozen=True)
class RemovalStep:
    """Where one queued part of a removal stands, as a moderator reads it."""

    action: str
    state: str  # "done", "pending" or "failed"
    summary: str
    object_uris: tuple[str, ...] = ()


_STEP_NAMES = {DiscordActionKind.DELETE_MESSAGE: ("Discord message deleted", "Discord message deletion pending",
                                                  "could not delete the Discord message"),
               DiscordActionKind.DELETE_GCS_OBJECTS: ("bucket object deleted", "bucket object deletion pending",
                                                      "could not delete the bucket object")}


def removal_progress(*, request_id: int) -> list[RemovalStep]:
    """The outbox actions a removal queued for a request, oldest first, each with its state."""
    steps = []
    for action in DiscordAction.objects.filter(request_id=request_id).order_by("id"):
        done, pending, failed = _STEP_NAMES.get(action.action, (action.action,) * 3)
        if action.done_at is not None:
            state, summary = "done", done
        elif action.failed_at is not None:
            state, summary = "failed", f"{failed}: {action.last_error}"
        elif action.last_error:
            state, summary = "pending", f"{pending} (attempt {action.attempts} failed: {action.last_error}; retrying)"
        else:
            state, summary = "pending", pending
        steps.append(RemovalStep(action.action, state, summary, tuple(action.object_uris or ())))
    return steps


def open_quarantine_count() -> int:
    """Journal entries a bot could not replay and nobody has resolved yet (a partial index reads them)."""
    return JournalQuarantine.objects.filter(resolved_at__isnull=True).count()
