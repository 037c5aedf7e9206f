"""Spend selectors: a user's spend, and the budgets a member is under (what /quota shows). The
dashboard's spend per day and top spenders: tests/test_dashboard_spend.py."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

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
