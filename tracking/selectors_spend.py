"""Reads about money: the budgets a member is under and what is left of them (/quota), and a
user's spend (the moderation panel; the dashboard's spend is tracking.analytics_spend). Amounts are the estimated costs of requests that count toward quota, as admission
counts them (migrations_sql/0020_costs_budgets_roles.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection

OPERATOR_WINDOW = timedelta(days=1)  # VEO_BUDGET_USD_PER_DAY is a rolling day


@dataclass(frozen=True)
class Budget:
    scope: str  # "user" (the member's policy), "guild" (the whole server), "operator" (the whole bot)
    budget_usd: Decimal
    window: timedelta
    spent_usd: Decimal

    @property
    def left_usd(self) -> Decimal:
        return max(self.budget_usd - self.spent_usd, Decimal(0))


_BUDGETS_SQL = """
SELECT p.budget_usd, p.budget_window,
       CASE WHEN p.budget_usd IS NOT NULL THEN spend_in_window('user', %(user)s, clock_timestamp() - p.budget_window) END,
       g.guild_budget_usd, g.guild_budget_window,
       CASE WHEN g.guild_budget_usd IS NOT NULL
            THEN spend_in_window('guild', %(guild)s, clock_timestamp() - g.guild_budget_window) END,
       CASE WHEN %(operator)s::numeric IS NOT NULL
            THEN spend_in_window('operator', 0, clock_timestamp() - %(operator_window)s) END
FROM resolve_quota_policy(%(user)s, %(guild)s, %(roles)s::bigint[], 0, interval '1 day', 0) p
LEFT JOIN quota_policies g ON g.guild_id = %(guild)s AND g.user_id IS NULL AND g.role_id IS NULL
                          AND g.guild_budget_usd IS NOT NULL
"""


def budgets(*, user_id: int, guild_id: int | None, role_ids: list[int] | None = None) -> list[Budget]:
    """The money budgets admission would hold this member to now, with what each has spent."""
    with connection.cursor() as cursor:
        cursor.execute(
            _BUDGETS_SQL,
            {
                "user": user_id,
                "guild": guild_id,
                "roles": role_ids or [],
                "operator": settings.VEO_BUDGET_USD_PER_DAY,
                "operator_window": OPERATOR_WINDOW,
            },
        )
        user_budget, user_window, user_spent, guild_budget, guild_window, guild_spent, operator_spent = (
            cursor.fetchone()
        )
    found = []
    if user_budget is not None:
        found.append(Budget("user", user_budget, user_window, user_spent))
    if guild_budget is not None:
        found.append(Budget("guild", guild_budget, guild_window, guild_spent))
    if settings.VEO_BUDGET_USD_PER_DAY is not None:
        found.append(Budget("operator", settings.VEO_BUDGET_USD_PER_DAY, OPERATOR_WINDOW, operator_spent))
    return found


@dataclass(frozen=True)
class UserSpend:
    total_usd: Decimal  # every request that counted, ever
    window_usd: Decimal  # in the last `window`
    window: timedelta
    unpriced: int  # requests that counted with no known price (not in the sums)


# From video_requests_quota_idx alone, which holds each counted row's cost (0026): a heavy user's
# whole history is index entries, not table rows.
USER_SPEND = (
    "SELECT COALESCE(sum(cost_estimated_usd), 0),"
    " COALESCE(sum(cost_estimated_usd) FILTER (WHERE created_at > clock_timestamp() - %s), 0),"
    " count(*) FILTER (WHERE cost_estimated_usd IS NULL)"
    " FROM video_requests WHERE user_id = %s AND counts_toward_quota"
)


def user_spend(*, user_id: int, window: timedelta = timedelta(days=30)) -> UserSpend:
    with connection.cursor() as cursor:
        cursor.execute(USER_SPEND, [window, user_id])
        total, recent, unpriced = cursor.fetchone()
    return UserSpend(total_usd=total, window_usd=recent, window=window, unpriced=unpriced)
