"""Money in the bot's messages: the member's role ids for admission, a request's estimated cost
(on the "queued" message when VEO_SHOW_COST is on) and the budgets /quota shows."""

from __future__ import annotations

from decimal import Decimal

import discord
from django.conf import settings

from tracking.durations import humanize_duration
from tracking.selectors_spend import Budget

SCOPES = {"user": "Your budget", "guild": "This server's budget", "operator": "The bot's daily budget"}


def member_role_ids(interaction: discord.Interaction) -> list[int]:
    """The Discord roles the member holds in this guild; none in DMs.

    From the interaction's own member payload (``Member._roles``), not ``Member.roles``: the
    bot runs without the guild cache (Intents.none()), where ``roles`` knows only @everyone."""
    if interaction.guild_id is None:
        return []
    ids = getattr(interaction.user, "_roles", None) or ()
    return sorted({int(role_id) for role_id in ids if int(role_id) != interaction.guild_id})


def usd(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def add_cost(embed: discord.Embed, cost_usd: Decimal | None) -> None:
    """The estimated cost, when the operator has chosen to show it (VEO_SHOW_COST)."""
    if settings.VEO_SHOW_COST:
        embed.add_field(name="Cost", value=f"~{usd(cost_usd)} (estimated)" if cost_usd is not None else "unknown")


def budget_lines(budgets: list[Budget]) -> list[str]:
    lines = []
    for budget in budgets:
        lines.append(
            f"{SCOPES[budget.scope]}: {usd(budget.left_usd)} of {usd(budget.budget_usd)} left"
            f" in the last {humanize_duration(budget.window)}."
        )
    return lines
