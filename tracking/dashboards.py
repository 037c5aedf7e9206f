"""The moderators' dashboard, kept ready by the workers.

Aggregating a day or a week of requests takes 0.5-5 s at millions of rows, so the page does
not compute it on every view: a worker recomputes each period every DASHBOARD_REFRESH and
stores it in dashboard_snapshots; the page shows the stored one with its age. Without a
recent snapshot (no worker running, or DASHBOARD_REFRESH=0) the page computes live.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from tracking import analytics, analytics_spend
from tracking.analytics import Activity, BucketCounts, Dashboard, GuildStats, Percentiles, UserStats
from tracking.analytics_spend import BudgetUse, DaySpend, Spend, Spender
from tracking.models import DashboardSnapshot, VideoRequest

PERIODS = (1, 7)  # the days the page offers
FORMAT = 2  # bumped when Dashboard changes shape; older snapshots are then recomputed
REFRESH_LOCK = 1986161412  # one refreshing worker at a time (advisory lock key)


@dataclass(frozen=True)
class Snapshot:
    dashboard: Dashboard
    computed_at: datetime
    compute_ms: int
    live: bool  # computed for this page view rather than read from a worker's snapshot


def current(*, days: int) -> Snapshot:
    """What the page shows: the stored snapshot when a worker keeps it fresh, else live."""
    refresh = settings.DASHBOARD_REFRESH
    if refresh:
        row = DashboardSnapshot.objects.filter(days=days).first()
        # Twice the interval: a live worker is never that late, so older means none runs.
        if row and row.data.get("format") == FORMAT and timezone.now() - row.computed_at <= 2 * refresh:
            board = _decode(row.data)
            # A snapshot of an empty period (a worker's first, before any request) would show
            # zeros for minutes while requests come in: those are cheap to count now instead.
            empty = not any(board.activity.totals.values())
            if not (empty and VideoRequest.objects.filter(created_at__gt=row.computed_at).exists()):
                return Snapshot(board, row.computed_at, row.compute_ms, live=False)
    return compute(days=days, live=True)


def compute(*, days: int, live: bool = False, budgets: analytics_spend.BudgetsUse | None = None) -> Snapshot:
    """Aggregate the period now, and keep the result for the next page views."""
    started = time.monotonic()
    board = analytics.dashboard(until=timezone.now(), days=days, budgets=budgets)
    took = round((time.monotonic() - started) * 1000)
    computed_at = timezone.now()
    if settings.DASHBOARD_REFRESH:
        DashboardSnapshot.objects.update_or_create(
            days=days,
            defaults={"until": board.until, "computed_at": computed_at, "compute_ms": took, "data": _encode(board)},
        )
    return Snapshot(board, computed_at, took, live=live)


def refresh_due() -> list[int]:
    """Recompute the periods whose snapshot is DASHBOARD_REFRESH old or older. Workers all call
    this; the first takes the lock and the others skip. Returns the periods recomputed."""
    refresh = settings.DASHBOARD_REFRESH
    if not refresh:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [REFRESH_LOCK])
        if not cursor.fetchone()[0]:
            return []
        stored = dict(DashboardSnapshot.objects.filter(days__in=PERIODS).values_list("days", "computed_at"))
        due = [days for days in PERIODS if days not in stored or timezone.now() - stored[days] >= refresh]
        compute_periods(due)
        return due


def compute_periods(periods: list[int] | tuple[int, ...]) -> None:
    """Recompute these periods, the budgets' use read once for all of them (it has no period)."""
    budgets = analytics_spend.budgets_use(now=timezone.now()) if len(periods) > 1 else None
    for days in periods:
        compute(days=days, budgets=budgets)


def _plain(value):
    # Datetimes as full ISO strings (DjangoJSONEncoder would cut them to ms), money as its exact
    # decimal text, windows in seconds.
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} is not kept in a dashboard snapshot")


def _encode(board: Dashboard) -> dict:
    return {"format": FORMAT, **json.loads(json.dumps(asdict(board), default=_plain))}


def _decode_spend(data: dict) -> Spend:
    def days(rows: list[dict]) -> list[DaySpend]:
        return [DaySpend(date.fromisoformat(r["day"]), r["key"], Decimal(r["usd"])) for r in rows]

    def spenders(rows: list[dict]) -> list[Spender]:
        return [Spender(r["key"], Decimal(r["usd"]), r["requests"]) for r in rows]

    def budgets(rows: list[dict]) -> list[BudgetUse]:
        return [
            BudgetUse(
                r["scope"],
                r["key"],
                r["policy_id"],
                r["guild_id"],
                Decimal(r["budget_usd"]),
                timedelta(seconds=r["window"]),
                Decimal(r["spent_usd"]),
            )
            for r in rows
        ]

    return Spend(
        total_usd=Decimal(data["total_usd"]),
        requests=data["requests"],
        open_usd=Decimal(data["open_usd"]),
        by_guild=days(data["by_guild"]),
        by_model=days(data["by_model"]),
        top_users=spenders(data["top_users"]),
        top_guilds=spenders(data["top_guilds"]),
        guild_budgets=budgets(data["guild_budgets"]),
        users_near_budget=budgets(data["users_near_budget"]),
    )


def _decode(data: dict) -> Dashboard:
    when = datetime.fromisoformat
    seen = data["activity"]
    return Dashboard(
        since=when(data["since"]),
        until=when(data["until"]),
        activity=Activity(
            buckets=[BucketCounts(when(bucket["start"]), bucket["by_status"]) for bucket in seen["buckets"]],
            per_hour_of_day=seen["per_hour_of_day"],
            totals=seen["totals"],
            safety_filtered=seen["safety_filtered"],
            top_users=[UserStats(**user) for user in seen["top_users"]],
        ),
        generation_time=Percentiles(**data["generation_time"]),
        failure_rate=data["failure_rate"],
        safety_filter_rate=data["safety_filter_rate"],
        top_users=[UserStats(**user) for user in data["top_users"]],
        top_guilds=[GuildStats(**guild) for guild in data["top_guilds"]],
        spend=_decode_spend(data["spend"]),
    )
