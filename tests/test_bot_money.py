"""Money through the real discord.py client and the fake Discord: the member's roles choose the
policy, budgets refuse privately with their message, /quota shows the money left, and the
queued message shows the estimated cost only when VEO_SHOW_COST is on."""

from datetime import timedelta
from decimal import Decimal

import pytest

from tests.bot_harness import run_bot
from tests.bot_harness import veo_command as veo
from tests.factories import QuotaPolicyFactory
from tests.fakes import discord_server as fake
from tests.fakes.interactions import GUILD_ID, deliver_and_wait, slash_command
from tracking.models import VideoRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("bot_settings")]

PATRON = 1_180_000_000_000_000_777  # a role id, as Discord sends it in the member payload


def _answer(server, payload) -> dict:
    run_bot(lambda bot: deliver_and_wait(bot, payload, server=server), run_worker=False)
    return server.original_response(payload["id"])


def test_a_role_policy_applies_to_its_members_with_its_priority_and_budget(server):
    QuotaPolicyFactory(
        guild_id=GUILD_ID, role_id=PATRON, role_label="Patron", quota_limit=9, priority=5,
        budget_usd=Decimal("0.01"), budget_window=timedelta(days=1),
    )  # fmt: skip
    QuotaPolicyFactory(guild_id=GUILD_ID, role_id=PATRON + 1, quota_limit=9, priority=2)
    member = veo(roles=(PATRON + 1,))
    reply = _answer(server, member)
    assert reply["embeds"][0]["title"] == "Queued"
    assert VideoRequest.objects.get(interaction_id=member["id"]).priority == 2
    patron = veo(roles=(PATRON,))
    refused = _answer(server, patron)
    assert refused["flags"] & fake.EPHEMERAL
    # The user's spend counts whichever policy admitted it: the first video took it all.
    assert refused["content"].startswith("Your spending budget is reached: $0.00 of $0.01 per 1 day left")
    assert "it costs more than the whole budget. Nothing was charged." in refused["content"]
    row = VideoRequest.objects.get(interaction_id=patron["id"])
    assert (row.status, row.error_code, row.cost_estimated_usd) == ("rejected", "budget_user", 0)


def test_quota_shows_the_money_left_in_each_budget(server, settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("100")
    QuotaPolicyFactory(
        guild_id=GUILD_ID, quota_limit=5, guild_budget_usd=Decimal("50"), guild_budget_window=timedelta(days=30)
    )
    reply = _answer(server, slash_command("quota"))
    lines = reply["content"].splitlines()
    assert "This server's budget: $50.00 of $50.00 left in the last 30d." in lines
    assert "The bot's daily budget: $100.00 of $100.00 left in the last 24h." in lines


@pytest.mark.parametrize("show", [False, True])
def test_the_queued_message_shows_the_estimated_cost_only_when_asked(server, settings, show):
    settings.VEO_SHOW_COST = show
    payload = veo()
    fields = {f["name"]: f["value"] for f in _answer(server, payload)["embeds"][0]["fields"]}
    cost = VideoRequest.objects.get(interaction_id=payload["id"]).cost_estimated_usd
    assert cost > 0
    assert fields.get("Cost") == (f"~${cost:.2f} (estimated)" if show else None)
