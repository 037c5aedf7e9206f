"""Money budgets in admission (per user, per guild, the operator's day) and policies by role."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from tests.factories import QuotaPolicyFactory
from tests.helpers import admit
from tracking import services
from tracking.errors import InvalidInput
from tracking.models import VideoRequest

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

GUILD = 2001  # tests.helpers.admit's guild
DAY = timedelta(days=1)
VIDEO = Decimal("1.60")  # veo-3.1-generate-001, 720p with audio, 4 s at $0.40


@pytest.fixture(autouse=True)
def priced(settings):
    settings.VEO_MODEL = settings.VEO_RECORDED_MODEL = "veo-3.1-generate-001"
    settings.VEO_MODELS = ("veo-3.1-generate-001", "veo-3.0-generate-001")
    settings.VEO_QUOTA_LIMIT = 50


def test_user_budget_refuses_with_its_own_code_what_is_left_and_when_it_frees():
    QuotaPolicyFactory(user_id=4201, quota_limit=50, budget_usd=Decimal("4.00"), budget_window=DAY)
    first, second, third = (admit(user_id=4201) for _ in range(3))
    assert first.admitted and second.admitted and not third.admitted
    assert (first.money_scope, first.money_left_usd, second.money_left_usd) == (
        "user",
        Decimal("2.40"),
        Decimal("0.80"),
    )
    assert third.reason_code == "budget_user"
    assert "your spending budget is reached: $0.80 of $4.00 per 1 day left" in third.reason
    assert "this video costs $1.60" in third.reason
    opened = VideoRequest.objects.get(id=first.request_id).created_at
    assert third.money_frees_at == opened + DAY and third.money_left_usd == Decimal("0.80")
    assert admit(user_id=4202).admitted  # another user is not under this budget


def test_guild_budget_is_shared_by_everyone_in_the_guild():
    QuotaPolicyFactory(guild_id=GUILD, quota_limit=50, guild_budget_usd=Decimal("3.20"), guild_budget_window=DAY)
    answers = [admit(user_id=user) for user in (4211, 4212, 4213)]
    assert [a.admitted for a in answers] == [True, True, False]
    assert answers[2].reason_code == "budget_guild" and "this server's spending budget" in answers[2].reason
    assert admit(user_id=4213, guild_id=GUILD + 1).admitted  # another guild spends its own money


def test_operator_budget_caps_the_whole_bot_per_day(settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("2.00")
    first = admit(user_id=4221)
    refused = admit(user_id=4222, guild_id=None)  # in DMs too
    assert first.admitted and first.money_scope == "operator"
    assert refused.reason_code == "budget_operator" and "the bot's daily spending budget" in refused.reason
    assert "$0.40 of $2.00 per 1 day left" in refused.reason


def test_an_admitted_answer_names_the_cap_only_where_no_other_budget_applies(settings):
    """Everyone's spend is read where an answer names the cap (0029): with a user's budget too,
    an admitted answer says what is left of that one, even with less left of the cap; the cap's
    refusal still says what is left of it."""
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("4.00")
    QuotaPolicyFactory(user_id=4241, quota_limit=50, budget_usd=Decimal("10.00"), budget_window=DAY)
    budgeted = admit(user_id=4241)
    alone = admit(user_id=4242)
    refused = admit(user_id=4241)
    assert budgeted.admitted and (budgeted.money_scope, budgeted.money_left_usd) == ("user", Decimal("8.40"))
    assert alone.admitted and (alone.money_scope, alone.money_left_usd) == ("operator", Decimal("0.80"))
    assert refused.reason_code == "budget_operator" and refused.money_scope == "operator"
    assert "$0.80 of $4.00 per 1 day left" in refused.reason


def test_the_tightest_budget_names_the_refusal_and_each_message_differs(settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("100.00")
    QuotaPolicyFactory(user_id=4231, quota_limit=50, budget_usd=Decimal("1.00"), budget_window=DAY)
    QuotaPolicyFactory(guild_id=GUILD, quota_limit=50, guild_budget_usd=Decimal("1.00"), guild_budget_window=DAY)
    user = admit(user_id=4231)
    guild = admit(user_id=4232)
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("1.00")
    operator = admit(user_id=4233, guild_id=None)
    assert [a.reason_code for a in (user, guild, operator)] == ["budget_user", "budget_guild", "budget_operator"]
    assert len({a.reason.split(" is reached")[0] for a in (user, guild, operator)}) == 3
    # More than the whole budget never fits: no time is promised.
    assert user.money_frees_at is None and "costs more than the whole budget" in user.reason


def test_refunds_give_money_back_to_the_budget():
    QuotaPolicyFactory(user_id=4241, quota_limit=50, budget_usd=Decimal("1.60"), budget_window=DAY)
    spent = admit(user_id=4241)
    assert admit(user_id=4241).reason_code == "budget_user"
    services.mark_failed(request_id=spent.request_id, error_code="backend_error", error_message="Veo 500", refund=True)
    assert admit(user_id=4241).admitted


def test_unpriced_model_is_refused_only_while_a_budget_applies(settings):
    assert admit(user_id=4251, model="veo-3.0-generate-001").admitted  # no budget: cost unknown, admitted
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("50")
    refused = admit(user_id=4251, model="veo-3.0-generate-001")
    assert refused.reason_code == "budget_unpriced" and "no price is known for veo-3.0-generate-001" in refused.reason


# -- policies by Discord role --------------------------------------------------------------------


def _admit_as_member(user_id: int, roles: list, guild_id: int | None = GUILD) -> services.Admission:
    """An admission of a guild member holding ``roles`` (as /veo passes them)."""
    return services.admit_request(
        interaction_id=next(_ids),
        user_id=user_id,
        guild_id=guild_id,
        channel_id=3001,
        params=services.VideoParameters(prompt="a red fox in snow"),
        role_ids=roles,
    )


def _limit(user_id: int, roles: list, guild_id: int | None = GUILD) -> int:
    return _admit_as_member(user_id, roles, guild_id).limit


_ids = iter(range(7 * 10**17, 8 * 10**17))


def test_role_precedence_user_over_role_over_guild_over_default_and_the_most_generous_role():
    QuotaPolicyFactory(guild_id=GUILD, quota_limit=2)
    QuotaPolicyFactory(guild_id=GUILD, role_id=501, role_label="Supporter", quota_limit=4, priority=3)
    QuotaPolicyFactory(guild_id=GUILD, role_id=502, role_label="Patron", quota_limit=6, priority=7)
    QuotaPolicyFactory(guild_id=GUILD, role_id=503, quota_limit=6, quota_window=timedelta(hours=1))
    QuotaPolicyFactory(guild_id=GUILD + 1, role_id=504, quota_limit=9)  # another guild's role
    QuotaPolicyFactory(user_id=4261, guild_id=GUILD, quota_limit=1)
    assert _limit(4261, [501, 502]) == 1  # the user's own policy wins
    assert _limit(4262, [501]) == 4  # a role over the guild
    assert _limit(4262, [501, 502]) == 6  # the most generous role: the highest limit
    # Equal limits: the shorter window frees slots sooner, so it is the more generous.
    answer = _admit_as_member(4263, [502, 503])
    assert answer.limit == 6 and VideoRequest.objects.get(id=answer.request_id).priority == 0  # 503's
    assert _limit(4264, [504]) == 2  # a role of another guild counts nowhere else
    assert _limit(4264, []) == 2  # the guild's policy
    assert _limit(4264, [501], guild_id=None) == 50  # DMs: no roles, the default


def test_admission_copies_the_resolved_policys_priority():
    QuotaPolicyFactory(guild_id=GUILD, role_id=511, quota_limit=5, priority=7)
    answer = _admit_as_member(4271, [511])
    assert VideoRequest.objects.get(id=answer.request_id).priority == 7


def test_a_role_policy_with_a_budget_applies_to_its_members():
    QuotaPolicyFactory(guild_id=GUILD, role_id=521, quota_limit=50, budget_usd=Decimal("1.60"), budget_window=DAY)
    _admit_as_member(4281, [521])
    assert admit(user_id=4281).admitted  # without the role: the default, no budget
    refused = _admit_as_member(4281, [521])
    assert refused.reason_code == "budget_user"


@pytest.mark.parametrize("roles", [[0], [-5], [2**63], ["501"], [True], [1] * 251])
def test_role_ids_must_be_snowflakes(roles):
    with pytest.raises(InvalidInput, match="role"):
        _limit(4291, roles)
    assert not VideoRequest.objects.filter(user_id=4291).exists()


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"guild_id": None, "user_id": 7, "role_id": 5}, "quota_policies_role_needs_guild"),
        ({"guild_id": GUILD, "role_id": 0}, "quota_policies_role_id_check"),
        ({"guild_id": GUILD, "role_label": "Mods"}, "quota_policies_label_needs_role"),
        ({"user_id": 7, "budget_usd": Decimal("-1"), "budget_window": DAY}, "quota_policies_budget_usd_check"),
        ({"user_id": 7, "budget_usd": Decimal("5")}, "quota_policies_budget_pair"),
        ({"user_id": 7, "budget_usd": 5, "budget_window": timedelta(seconds=5)}, "quota_policies_budget_window_check"),
        ({"user_id": 7, "guild_budget_usd": 5, "guild_budget_window": DAY}, "quota_policies_guild_budget_scope"),
    ],
)
def test_budget_and_role_values_are_checked_by_the_schema(fields, constraint):
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        QuotaPolicyFactory(**{"quota_limit": 3, **fields})


def test_while_degraded_the_operators_cap_holds_per_process(settings):
    from django.utils import timezone

    from generation.limiter import LocalLimiter

    settings.VEO_BUDGET_USD_PER_DAY = Decimal("4.00")
    limiter = LocalLimiter()
    params = services.VideoParameters(prompt="a fox", model="veo-3.1-generate-001", duration_seconds=4)
    unseen = limiter.admit(user_id=4301, at=timezone.now(), params=params)
    assert unseen.reason_code == "budget_unpriced"  # no price seen from the database yet
    limiter.remember_price(params=params, cost_usd=Decimal("1.60"))
    first_at = timezone.now()
    first = limiter.admit(user_id=4302, at=first_at, params=params)
    second = limiter.admit(user_id=4303, at=timezone.now(), params=params)
    third = limiter.admit(user_id=4304, at=timezone.now(), params=params)
    assert first.admitted and second.admitted and first.cost_usd == Decimal("1.60")
    assert third.reason_code == "budget_operator" and "$0.80 of $4.00" in third.reason
    limiter.refund(user_id=4302, created_at=first_at)  # a refund gives the money back here too
    assert limiter.admit(user_id=4304, at=timezone.now(), params=params).admitted
    settings.VEO_BUDGET_USD_PER_DAY = None
    assert limiter.admit(user_id=4305, at=timezone.now(), params=params).admitted  # no cap: videos only


def test_the_operators_ledger_follows_admissions_and_refunds(settings):
    from tracking.models import OperatorSpendHour

    settings.VEO_BUDGET_USD_PER_DAY = Decimal("1.60")
    spent = admit(user_id=4311)
    assert sum(h.usd for h in OperatorSpendHour.objects.all()) == VIDEO
    assert admit(user_id=4312).reason_code == "budget_operator"
    services.cancel(request_id=spent.request_id, actor="mod", reason="test")  # refunded
    assert sum(h.usd for h in OperatorSpendHour.objects.all()) == 0
    assert admit(user_id=4312).admitted
