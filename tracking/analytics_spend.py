"""Reads for the dashboard's money: spend per UTC day by guild and by model, the top spenders,
and how much of each budget is used. tracking.dashboards keeps them in its snapshots.

What a request cost here is its final cost once it has ended (the estimate if it still counts
toward quota, 0 if refunded) and its estimate while it is pending or generating. Requests with
no known price (cost unknown, never 0) are not in the sums. Budgets are read as admission reads
them (spend_in_window in migrations_sql/0020_costs_budgets_roles.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from tracking.rows import fetch_tuples

OPERATOR_WINDOW = timedelta(days=1)  # VEO_BUDGET_USD_PER_DAY is a rolling day


@dataclass(frozen=True)
class DaySpend:
    day: date  # UTC
    key: str  # a guild id, "dm" (direct messages and the command line), "other", or a model
    usd: Decimal


@dataclass(frozen=True)
class Spender:
    key: int | None  # a user id or a guild id; None: direct messages and the command line
    usd: Decimal
    requests: int  # requests that cost something (refused and refunded ones cost 0: not counted)


@dataclass(frozen=True)
class BudgetUse:
    scope: str  # "guild" (the whole guild together) or "user" (one user under a policy)
    key: int  # the guild id or the user id
    policy_id: int
    guild_id: int | None  # the policy's guild (None: a user's policy everywhere)
    budget_usd: Decimal
    window: timedelta
    spent_usd: Decimal

    @property
    def share(self) -> float:
        """Spent / budget; a budget of 0 is wholly used."""
        return float(self.spent_usd / self.budget_usd) if self.budget_usd else 1.0


@dataclass(frozen=True)
class Spend:
    total_usd: Decimal
    requests: int
    open_usd: Decimal  # of the total: the estimates of requests not ended yet
    by_guild: list[DaySpend]  # the top guilds of the period, the others together as "other"
    by_model: list[DaySpend]
    top_users: list[Spender]
    top_guilds: list[Spender]
    guild_budgets: list[BudgetUse]  # every guild budget, most used first
    users_near_budget: list[BudgetUse]  # the users closest to (or past) their budget


# One pass over video_requests_spend_idx (index-only where the visibility map allows) over the
# requests that cost something (refunded ones cost 0 and are left out with the refused). The
# sets are told apart by GROUPING() (a bit per column, 1 = not grouped by it); the guilds are
# cut to the period's top ones before leaving the database, the rest summed as "other". Sums
# are of ten-thousandths of a dollar as bigint (costs are numeric(10, 4): exact), which the
# hash aggregates add faster than numeric (per user, a week at 10M rows' density: 1.1 -> 0.65 s).
_SPEND_SQL = """
WITH sets AS MATERIALIZED (
    SELECT GROUPING(day, guild_id, model, user_id) AS g, day, guild_id, model, user_id,
           (sum(units) / 10000.0)::numeric(16, 4) AS usd, count(*) AS n,
           (COALESCE(sum(units) FILTER (WHERE open), 0) / 10000.0)::numeric(16, 4) AS open_usd
    FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, guild_id, model, user_id,
                 (COALESCE(cost_final_usd, cost_estimated_usd) * 10000)::bigint AS units, cost_final_usd IS NULL AS open
          FROM video_requests
          WHERE cost_estimated_usd > 0 AND created_at >= %(since)s AND created_at < %(until)s
            AND COALESCE(cost_final_usd, cost_estimated_usd) > 0) AS r
    GROUP BY GROUPING SETS ((), (day, guild_id), (day, model), (user_id), (guild_id))
), top_guilds AS (
    SELECT guild_id, usd, n FROM sets WHERE g = %(guild)s ORDER BY usd DESC, guild_id NULLS LAST LIMIT %(top)s
)
SELECT 'total', NULL::date, NULL, usd, n, open_usd FROM sets WHERE g = %(total)s
UNION ALL
SELECT 'model', day, model, usd, n, 0 FROM sets WHERE g = %(day_model)s
UNION ALL
(SELECT 'user', NULL, user_id::text, usd, n, 0 FROM sets WHERE g = %(user)s ORDER BY usd DESC, user_id LIMIT %(top)s)
UNION ALL
SELECT 'guild', NULL, COALESCE(guild_id::text, 'dm'), usd, n, 0 FROM top_guilds
UNION ALL
SELECT 'day_guild', s.day,
       CASE WHEN t.usd IS NULL THEN 'other' ELSE COALESCE(s.guild_id::text, 'dm') END, sum(s.usd), sum(s.n)::bigint, 0
FROM sets s LEFT JOIN top_guilds t ON t.guild_id IS NOT DISTINCT FROM s.guild_id
WHERE s.g = %(day_guild)s
GROUP BY 2, 3
"""
# GROUPING(day, guild_id, model, user_id): 1 = not grouped by that column.
_TOTAL, _DAY_GUILD, _DAY_MODEL, _USER, _GUILD = 0b1111, 0b0011, 0b0101, 0b1110, 0b1011


def _key(text: str) -> int | None:
    return None if text == "dm" else int(text)


def spend_query(*, since: datetime, until: datetime, top: int = 10) -> tuple[str, dict]:
    """The period's spend pass and its parameters (bench/spend_dashboard.py runs it as is)."""
    return _SPEND_SQL, {
        "since": since,
        "until": until,
        "top": top,
        "total": _TOTAL,
        "day_guild": _DAY_GUILD,
        "day_model": _DAY_MODEL,
        "user": _USER,
        "guild": _GUILD,
    }


@dataclass(frozen=True)
class BudgetsUse:
    guilds: list[BudgetUse]
    users: list[BudgetUse]


def budgets_use(*, now: datetime, top: int = 10) -> BudgetsUse:
    """Every guild budget's use and the ``top`` users nearest theirs, at ``now``: the same for
    every period, so a refresh of several periods reads it once."""
    return BudgetsUse(guilds=guild_budgets(now=now), users=users_near_budget(now=now, limit=top))


def spend(
    *, since: datetime, until: datetime, now: datetime, top: int = 10, budgets: BudgetsUse | None = None
) -> Spend:
    """Spend of the requests created in [since, until), and the budgets' use at ``now``
    (``budgets``, when already read for another period)."""
    rows = fetch_tuples(*spend_query(since=since, until=until, top=top))
    total, requests, open_usd = Decimal(0), 0, Decimal(0)
    by_guild, by_model, users, guilds = [], [], [], []
    for kind, day, key, usd, n, still_open in rows:
        if kind == "total":
            total, requests, open_usd = usd or Decimal(0), n, still_open
        elif kind == "model":
            by_model.append(DaySpend(day, key, usd))
        elif kind == "day_guild":
            by_guild.append(DaySpend(day, key, usd))
        elif kind == "user":
            users.append(Spender(int(key), usd, n))
        else:
            guilds.append(Spender(_key(key), usd, n))
    budgets = budgets or budgets_use(now=now, top=top)
    order = lambda s: (-s.usd, s.key is None, s.key or 0)  # noqa: E731 - the same order as the SQL's
    return Spend(
        total_usd=total,
        requests=requests,
        open_usd=open_usd,
        by_guild=sorted(by_guild, key=lambda d: (d.day, -d.usd, d.key)),
        by_model=sorted(by_model, key=lambda d: (d.day, -d.usd, d.key)),
        top_users=sorted(users, key=order),
        top_guilds=sorted(guilds, key=order),
        guild_budgets=budgets.guilds,
        users_near_budget=budgets.users,
    )


def guild_budgets(*, now: datetime) -> list[BudgetUse]:
    """Every guild budget with what the guild has spent in its window, most used first."""
    rows = fetch_tuples(
        "SELECT q.id, q.guild_id, q.guild_budget_usd, q.guild_budget_window,"
        " spend_in_window('guild', q.guild_id, %(now)s - q.guild_budget_window)"
        " FROM quota_policies q WHERE q.guild_budget_usd IS NOT NULL",
        {"now": now},
    )
    found = [
        BudgetUse("guild", guild, policy, guild, budget, window, spent) for policy, guild, budget, window, spent in rows
    ]
    return sorted(found, key=lambda b: (-b.share, b.key))


# Who is under a per-user budget can be told without the member's roles only for a user's own
# policy and a guild's policy: role policies are resolved at admission from the roles Discord
# sends then, which are not stored. A guild policy's users are those who spent in that guild in
# the window and have no policy of their own there (theirs would apply instead). Spent is the
# user's spend everywhere, as admission counts it.
_USERS_NEAR_BUDGET_SQL = """
WITH candidates AS (
    SELECT q.user_id, q.id AS policy_id, q.guild_id, q.budget_usd, q.budget_window
    FROM quota_policies q WHERE q.budget_usd IS NOT NULL AND q.user_id IS NOT NULL
    UNION
    SELECT DISTINCT r.user_id, q.id, q.guild_id, q.budget_usd, q.budget_window
    FROM quota_policies q
    JOIN video_requests r ON r.guild_id = q.guild_id AND r.counts_toward_quota AND r.cost_estimated_usd > 0
                         AND r.created_at > %(now)s - q.budget_window
    WHERE q.budget_usd IS NOT NULL AND q.user_id IS NULL AND q.role_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM quota_policies own
                      WHERE own.user_id = r.user_id AND (own.guild_id = q.guild_id OR own.guild_id IS NULL))
), spent AS MATERIALIZED (  -- each user's spend summed once, not again by the ORDER BY
    SELECT c.*, spend_in_window('user', c.user_id, %(now)s - c.budget_window) AS spent FROM candidates c
)
SELECT user_id, policy_id, guild_id, budget_usd, budget_window, spent FROM spent
ORDER BY CASE WHEN budget_usd = 0 THEN 1 ELSE spent / budget_usd END DESC, spent DESC, user_id, policy_id
LIMIT %(limit)s
"""


def users_near_budget(*, now: datetime, limit: int = 10) -> list[BudgetUse]:
    """The users who have used the largest share of their per-user budget."""
    rows = fetch_tuples(_USERS_NEAR_BUDGET_SQL, {"now": now, "limit": limit})
    return [
        BudgetUse("user", user, policy, guild, budget, window, spent)
        for user, policy, guild, budget, window, spent in rows
    ]


@dataclass(frozen=True)
class OperatorSpend:
    spent_usd: Decimal  # the last 24 hours, as VEO_BUDGET_USD_PER_DAY counts it
    cap_usd: Decimal | None  # None: no cap set

    @property
    def share(self) -> float | None:
        if self.cap_usd is None:
            return None
        return float(self.spent_usd / self.cap_usd) if self.cap_usd else 1.0


def operator_spend(*, cap_usd: Decimal | None) -> OperatorSpend:
    """The bot's spend over the rolling day, from the hourly ledger admission reads (a few
    dozen rows, so read on each view rather than kept in a snapshot)."""
    ((spent,),) = fetch_tuples("SELECT spend_in_window('operator', 0, clock_timestamp() - %s)", [OPERATOR_WINDOW])
    return OperatorSpend(spent_usd=spent, cap_usd=cap_usd)
