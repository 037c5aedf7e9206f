"""Spend selectors: a user's spend, and the budgets a member is under (what /quota shows). The
dashboard's spend per day and top spenders: tests/test_dashboard_spend.py."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from psycopg import sql

from tests.factories import QuotaPolicyFactory, VideoRequestFactory
from tracking import selectors_spend

pytestmark = pytest.mark.django_db

DAY_1 = datetime(2026, 12, 1, 10, tzinfo=UTC)
DAY_2 = DAY_1 + timedelta(days=1)


def _spent(usd: str, **fields):
    return VideoRequestFactory(cost_estimated_usd=Decimal(usd), **fields)


@pytest.fixture
def history():
    _spent("3.20", user_id=1, guild_id=10, model="veo-3.1-generate-001", created_at=DAY_1)
    _spent("0.40", user_id=2, guild_id=10, model="veo-3.1-fast-generate-001", created_at=DAY_1)
    _spent("1.60", user_id=2, guild_id=None, model="veo-3.1-generate-001", created_at=DAY_2)
    _spent("9.99", user_id=3, guild_id=10, status="failed", created_at=DAY_1)  # refunded: not spend
    _spent("0", user_id=3, guild_id=10, status="rejected", created_at=DAY_1)


def test_a_users_spend(history):
    spend = selectors_spend.user_spend(user_id=2, window=timedelta(days=3650))
    assert (spend.total_usd, spend.window_usd, spend.unpriced) == (Decimal("2.0000"), Decimal("2.0000"), 0)


@pytest.mark.sql
@pytest.mark.django_db(transaction=True)  # VACUUM runs outside a transaction
def test_a_users_spend_is_read_from_the_quota_index_alone(history):
    # Vacuumed (the index can then vouch for its pages), with the table's other ways off: the
    # sums come from the index entries, no row read from the table (a heavy user's history).
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) video_requests")
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in ("enable_seqscan", "enable_bitmapscan"):
            cursor.execute("SELECT set_config(%s, 'off', true)", [setting])
        explain = sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) {}").format(sql.SQL(selectors_spend.USER_SPEND))
        cursor.execute(explain, [timedelta(days=30), 2])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Only Scan using video_requests_quota_idx" in plan, plan
    assert "Heap Fetches: 0" in plan, plan


def test_budgets_name_each_scope_with_what_is_left(settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("10")
    QuotaPolicyFactory(guild_id=10, role_id=77, quota_limit=5, budget_usd=Decimal("5"), budget_window=timedelta(days=1))
    QuotaPolicyFactory(
        guild_id=10, quota_limit=5, guild_budget_usd=Decimal("20"), guild_budget_window=timedelta(days=7)
    )
    budgets = selectors_spend.budgets(user_id=1, guild_id=10, role_ids=[77])
    assert [(b.scope, b.budget_usd, b.left_usd) for b in budgets] == [
        ("user", Decimal("5.00"), Decimal("5.00")),
        ("guild", Decimal("20.00"), Decimal("20.00")),
        ("operator", Decimal("10"), Decimal("10")),
    ]
    assert [b.scope for b in selectors_spend.budgets(user_id=1, guild_id=10)] == ["guild", "operator"]  # no role
