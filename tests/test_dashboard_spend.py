"""The dashboard's spend: per day by guild and by model at final cost (estimate while not ended,
0 once refunded), top spenders, budget use, and who sees it. Requests go through admission and
the worker's transitions, so their costs are the ones the database sets."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from tests.factories import QuotaPolicyFactory, VideoRequestFactory, snowflake
from tracking import analytics, analytics_spend, dashboards, services
from tracking.admin import spend_tables
from tracking.outcomes import Ending
from tracking.services import VideoParameters

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/tracking/videorequest/dashboard/"
STANDARD, FAST = "veo-3.1-generate-001", "veo-3.1-fast-generate-001"


def _admit(*, user_id: int, guild_id: int | None, model: str, seconds: int, audio: bool = True) -> int:
    answer = services.admit_request(
        interaction_id=snowflake(),
        user_id=user_id,
        guild_id=guild_id,
        channel_id=None if guild_id is None else guild_id + 1,
        params=VideoParameters(
            prompt="a paper boat on a rainy street", duration_seconds=seconds, model=model, generate_audio=audio
        ),
    )
    assert answer.admitted, answer
    return answer.request_id


def _completed(request_id: int) -> None:
    services.mark_generating(request_id=request_id, operation_name=f"operations/{request_id}")
    services.mark_completed(request_id=request_id, output_uris=[f"gs://b/{request_id}.mp4"])


@pytest.fixture
def spending(settings):
    """Today: guild 500 completes $3.20 (user 11) and has $0.40 pending (user 12); guild 600's
    $1.60 failed on Veo's side (refunded: 0); a DM completes $0.64 (user 14); a refused request.
    The UTC day before: user 12 spent $2.00 in guild 600."""
    settings.VEO_QUOTA_LIMIT = 100
    settings.VEO_MODELS = [STANDARD, FAST]
    settings.VEO_MODEL = settings.VEO_RECORDED_MODEL = STANDARD  # as with a real backend
    _completed(_admit(user_id=11, guild_id=500, model=STANDARD, seconds=8))  # 0.40/s with audio
    _admit(user_id=12, guild_id=500, model=FAST, seconds=4)  # 0.10/s, still pending
    failed = _admit(user_id=13, guild_id=600, model=STANDARD, seconds=4)
    services.mark_generating(request_id=failed, operation_name="operations/failed")
    services.mark_ended(request_id=failed, ending=Ending("operation_failed", "Veo reported an error"))
    _completed(_admit(user_id=14, guild_id=None, model=FAST, seconds=8, audio=False))  # 0.08/s
    VideoRequestFactory(user_id=15, guild_id=500, status="rejected", cost_estimated_usd=0, cost_final_usd=0)
    yesterday = timezone.now() - timedelta(hours=25)
    yesterday = max(yesterday, datetime.combine(timezone.now().date() - timedelta(days=1), datetime.min.time(), UTC))
    VideoRequestFactory(
        user_id=12, guild_id=600, created_at=yesterday, cost_estimated_usd=Decimal(2), cost_final_usd=Decimal(2)
    )
    return yesterday.date()


def _period(**kwargs) -> analytics_spend.Spend:
    now = timezone.now()
    return analytics_spend.spend(since=now - timedelta(days=7), until=now + timedelta(minutes=1), now=now, **kwargs)


def test_spend_per_day_by_guild_and_model_at_final_cost_or_estimate(spending):
    day_before, today = spending, timezone.now().date()
    money = _period()
    assert [(d.day, d.key, d.usd) for d in money.by_guild] == [
        (day_before, "600", Decimal("2.0000")),
        (today, "500", Decimal("3.6000")),  # 3.20 completed + 0.40 estimated
        (today, "dm", Decimal("0.6400")),
    ]  # guild 600's refunded $1.60 and the refused request are not spend
    assert [(d.day, d.key, d.usd) for d in money.by_model] == [
        (day_before, STANDARD, Decimal("2.0000")),
        (today, STANDARD, Decimal("3.2000")),
        (today, FAST, Decimal("1.0400")),
    ]
    assert (money.total_usd, money.requests, money.open_usd) == (Decimal("6.2400"), 4, Decimal("0.4000"))
    table = spend_tables.per_day(money.by_guild)
    assert table.columns == ["500", "600", "dm"]
    assert table.rows == [
        (day_before, [None, Decimal("2.0000"), None], Decimal("2.0000")),
        (today, [Decimal("3.6000"), None, Decimal("0.6400")], Decimal("4.2400")),
    ]


def test_guilds_outside_the_top_are_summed_as_other(spending):
    money = _period(top=1)
    assert [s.key for s in money.top_guilds] == [500]
    assert {(d.key, d.usd) for d in money.by_guild} == {
        ("other", Decimal("2.0000")),
        ("500", Decimal("3.6000")),
        ("other", Decimal("0.6400")),
    }
    assert spend_tables.per_day(money.by_guild).columns == ["500", "other"]  # other last, though not least


def test_top_spenders_most_first(spending):
    money = _period()
    assert [(s.key, s.usd, s.requests) for s in money.top_users] == [
        (11, Decimal("3.2000"), 1),
        (12, Decimal("2.4000"), 2),
        (14, Decimal("0.6400"), 1),
    ]
    assert [(s.key, s.usd, s.requests) for s in money.top_guilds] == [
        (500, Decimal("3.6000"), 2),
        (600, Decimal("2.0000"), 1),
        (None, Decimal("0.6400"), 1),
    ]


def test_budget_use_of_guilds_users_and_the_operator(spending, settings):
    QuotaPolicyFactory(
        guild_id=500,
        guild_budget_usd=10,
        guild_budget_window=timedelta(days=1),
        budget_usd=1,
        budget_window=timedelta(days=1),
    )
    QuotaPolicyFactory(guild_id=600, guild_budget_usd=Decimal("2.50"), guild_budget_window=timedelta(days=7))
    QuotaPolicyFactory(user_id=11, budget_usd=4, budget_window=timedelta(days=1))
    QuotaPolicyFactory(guild_id=600, role_id=77, budget_usd=Decimal("0.01"), budget_window=timedelta(days=1))
    money = _period()
    assert [(b.key, b.spent_usd, round(b.share, 3)) for b in money.guild_budgets] == [
        (600, Decimal("2.0000"), 0.8),  # the refunded request gives its money back
        (500, Decimal("3.6000"), 0.36),
    ]
    # User 11 is under their own policy, not the guild's; user 12 under guild 500's (the day
    # before is outside its one-day window); role policies are not resolved here.
    assert [(b.key, b.guild_id, b.budget_usd, b.spent_usd, round(b.share, 3)) for b in money.users_near_budget] == [
        (11, None, Decimal("4.00"), Decimal("3.2000"), 0.8),
        (12, 500, Decimal("1.00"), Decimal("0.4000"), 0.4),
    ]
    # The operator's rolling day, from the ledger admission keeps: the refund subtracted.
    operator = analytics_spend.operator_spend(cap_usd=Decimal(10))
    assert (operator.spent_usd, operator.share) == (Decimal("4.2400"), pytest.approx(0.424))


def test_the_snapshot_keeps_the_spend_exactly(spending):
    QuotaPolicyFactory(guild_id=600, guild_budget_usd=Decimal("2.50"), guild_budget_window=timedelta(days=7))
    board = analytics.dashboard(until=timezone.now() + timedelta(minutes=1), days=7)
    assert board.spend.top_users and board.spend.guild_budgets
    assert dashboards._decode(dashboards._encode(board)) == board


def test_moderators_see_the_spend_and_staff_without_the_policies_do_not(spending, as_role, settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal(20)
    QuotaPolicyFactory(guild_id=600, guild_budget_usd=Decimal("2.50"), guild_budget_window=timedelta(days=7))
    page = as_role("moderator").get(f"{DASHBOARD}?days=7").content.decode()
    assert 'id="vb-money"' in page
    assert "$6.24" in page and "$0.40 of it estimated (not ended)" in page
    assert "$4.24</b>of the $20.00 daily cap (21.2 %)" in page
    assert "<td>$2.00</td><td>80.0 %</td>" in page  # guild 600's budget
    assert "final cost once it has ended" in page

    staff = get_user_model().objects.create_user("clerk", password="clerk-pass-123", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_videorequest"))
    from django.test import Client

    clerk = Client()
    clerk.force_login(staff)
    response = clerk.get(DASHBOARD)
    assert response.status_code == 200 and 'id="vb-money"' not in response.content.decode()
    assert "$6.24" not in response.content.decode()

    staff.user_permissions.clear()
    clerk.force_login(get_user_model().objects.get(pk=staff.pk))
    assert clerk.get(DASHBOARD).status_code == 403
    visitor = as_role("non_staff").get(DASHBOARD)
    assert visitor.status_code == 302 and visitor["Location"].startswith("/admin/login/")


def test_money_is_written_to_the_cent():
    from tracking.templatetags.vb_admin import usd

    assert [usd(Decimal("1234.5650")), usd(Decimal("0.004")), usd(None)] == ["$1,234.57", "$0.00", "–"]
