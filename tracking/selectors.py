"""Reads: quota status, a user's history, the queue estimate, the moderation panel's lookups.
Keyword-only and typed; the dashboard's figures are in tracking.analytics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from tracking.durations import humanize_duration
from tracking.models import (
    DiscordAction,
    DiscordActionKind,
    ItemState,
    JournalQuarantine,
    ReviewItem,
    Status,
    UserBan,
    VideoRequest,
    VideoRequestEvent,
)
from tracking.rows import fetch_tuples

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


def quota_status(*, user_id: int, guild_id: int | None = None, role_ids: list[int] | None = None) -> QuotaStatus:
    """The user's quota as admission would see it now (same policy resolution, same probe)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.quota_limit, p.quota_window, u.used, u.reset_at"
            " FROM resolve_quota_policy(%s, %s, %s::bigint[], %s, %s, %s) p,"
            "      quota_usage(%s, p.quota_limit, p.quota_window, clock_timestamp()) u",
            [
                user_id,
                guild_id,
                role_ids or [],
                settings.VEO_QUOTA_LIMIT,
                settings.VEO_QUOTA_WINDOW,
                settings.VEO_QUOTA_MAX_IN_FLIGHT,
                user_id,
            ],
        )
        limit, window, used, reset_at = cursor.fetchone()
    return QuotaStatus(used=used, limit=limit, remaining=max(limit - used, 0), window=window, reset_at=reset_at)


@dataclass(frozen=True)
class HistoryPage:
    requests: list[VideoRequest]
    next_before_id: int | None  # pass as before_id for the next (older) page


def user_history(
    *, user_id: int, status: str | None = None, before_id: int | None = None, limit: int = 10
) -> HistoryPage:
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


# -- the bot's queue estimate -------------------------------------------------------------

POSITION_CAP = 1000  # "1000+ ahead" is as useful as an exact count, and stays cheap
ETA_SAMPLE = 20  # recent completions the median is taken over


@dataclass(frozen=True)
class QueueEstimate:
    ahead: int  # pending requests the claim's order puts before this one now (capped at POSITION_CAP)
    median_generation_ms: int | None  # None: nothing comparable completed yet


def queue_estimate(*, request_id: int, duration_seconds: int, resolution: str) -> QueueEstimate:
    """Where a pending request stands, in one round trip: how many pending rows come before it in
    the claim's fair-share order (fair_round, fair_turn, id) -- video_requests_fair_queue_idx, read
    at most POSITION_CAP entries deep -- and the median generation time of the latest ETA_SAMPLE
    completed requests with the same length and resolution (video_requests_eta_idx, newest
    first). Later requests of users served less may still go before it: the count is of now."""
    (row,) = fetch_tuples(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM video_requests ahead, video_requests me"
        "         WHERE me.id = %(id)s AND ahead.status = 'pending'"
        "           AND (ahead.fair_round, ahead.fair_turn, ahead.id) < (me.fair_round, me.fair_turn, me.id)"
        "         LIMIT %(cap)s) AS a),"
        " (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) FROM ("
        "     SELECT duration_ms FROM video_requests"
        "     WHERE status = 'completed' AND duration_seconds = %(duration)s AND resolution = %(resolution)s"
        "     ORDER BY completed_at DESC LIMIT %(sample)s) AS recent)",
        {
            "id": request_id,
            "cap": POSITION_CAP,
            "duration": duration_seconds,
            "resolution": resolution,
            "sample": ETA_SAMPLE,
        },
    )
    ahead, median = row
    return QueueEstimate(ahead=ahead, median_generation_ms=round(median) if median is not None else None)


# -- moderation panel -------------------------------------------------------------------


def estimated_row_count(table: str) -> int:
    """The planner's row estimate for a table (pg_class.reltuples, kept current by
    autovacuum): what an unfiltered list shows as "about N" instead of a COUNT(*)."""
    (row,) = fetch_tuples("SELECT GREATEST(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass", [table])
    return row[0]


def estimated_request_count() -> int:
    return estimated_row_count("video_requests")


def blocked_term_problem(*, kind: str, pattern: str) -> str | None:
    """Why PostgreSQL would refuse this blocked term (invalid, pathological, matches
    everything), or None: the same check the table's trigger runs on write."""
    (row,) = fetch_tuples("SELECT blocked_term_problem(%s, %s)", [kind, pattern])
    return row[0]


@dataclass(frozen=True)
class UserOverview:
    user_id: int
    quota: QuotaStatus
    bans: list[UserBan]  # newest first, lifted and expired included
    active_ban: UserBan | None
    history: HistoryPage


def user_overview(*, user_id: int, before_id: int | None = None, page_size: int = 25) -> UserOverview:
    """The per-user page: quota as admission sees it, bans, and keyset-paged history."""
    bans = list(UserBan.objects.filter(user_id=user_id).order_by("-created_at")[:50])
    now = timezone.now()
    active = next(
        (ban for ban in bans if ban.lifted_at is None and (ban.expires_at is None or ban.expires_at > now)), None
    )
    return UserOverview(
        user_id=user_id,
        quota=quota_status(user_id=user_id),
        bans=bans,
        active_ban=active,
        history=user_history(user_id=user_id, before_id=before_id, limit=page_size),
    )


def request_timeline(*, request_id: int, limit: int = 500) -> list[VideoRequestEvent]:
    """A request's history, oldest first (video_request_events_request_idx)."""
    return list(VideoRequestEvent.objects.filter(request_id=request_id).order_by("id")[:limit])


@dataclass(frozen=True)
class Family:
    """Where a request sits among the requests made from one another (Re-roll, Edit, Extend)."""

    parent: VideoRequest | None
    children: list[VideoRequest]
    more_children: bool  # more than were listed


def request_family(*, request_id: int, limit: int = 50) -> Family:
    """Its parent and the first ``limit`` of its children, oldest first (video_requests_parent_idx)."""
    fields = ("id", "status", "derived_as", "user_id", "created_at", "prompt", "parent_id")
    request = VideoRequest.objects.filter(id=request_id).only("parent_id").first()
    parent = None
    if request is not None and request.parent_id:
        parent = VideoRequest.objects.filter(id=request.parent_id).only(*fields).first()
    children = list(
        VideoRequest.objects.filter(parent_id=request_id).only(*fields).order_by("created_at", "id")[: limit + 1]
    )
    return Family(parent, children[:limit], len(children) > limit)


@dataclass(frozen=True)
class RemovalStep:
    """Where one queued part of a removal stands, as a moderator reads it."""

    action: str
    state: str  # "done", "pending" or "failed"
    summary: str
    object_uris: tuple[str, ...] = ()


_STEP_NAMES = {
    DiscordActionKind.DELETE_MESSAGE: (
        "Discord message deleted",
        "Discord message deletion pending",
        "could not delete the Discord message",
    ),
    DiscordActionKind.DELETE_GCS_OBJECTS: (
        "bucket object deleted",
        "bucket object deletion pending",
        "could not delete the bucket object",
    ),
}


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


OPEN_REVIEW_COUNT_CAP = 10_000


def open_review_count() -> int:
    """Open review items, counted up to OPEN_REVIEW_COUNT_CAP + 1 (the partial index of open
    items serves it; a flooded queue is not counted to the last item on every index page)."""
    return ReviewItem.objects.filter(state=ItemState.OPEN).order_by()[: OPEN_REVIEW_COUNT_CAP + 1].count()
