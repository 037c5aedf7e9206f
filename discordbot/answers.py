"""Answering an interaction within Discord's rules: the first answer inside 3 s (deferring in
time when it is not ready), privately or publicly, and never twice.

A deferred reply cannot become private later, so a refusal that arrives after a (public) defer
replaces the placeholder with a private follow-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import discord

from discordbot import display, money, payloads
from generation.admission import Decision
from veosite import logs

log = logging.getLogger(__name__)

# Defer when the answer is not ready by then: the defer itself needs time to reach Discord.
DEFER_AFTER = 1.5
ALREADY_ACKNOWLEDGED, UNKNOWN_INTERACTION = 40060, 10062

SENT, ELSEWHERE, FAILED = "sent", "answered elsewhere", "failed"


async def defer_publicly(interaction: discord.Interaction) -> str:
    try:
        await interaction.response.defer(thinking=True)  # public: an admission is the likely outcome
        return SENT
    except discord.HTTPException as error:
        return not_sent(interaction, error)


def not_sent(interaction: discord.Interaction, error: discord.HTTPException) -> str:
    if error.code == ALREADY_ACKNOWLEDGED:
        log.info("interaction %s was already answered (another instance, or a replay): leaving it", interaction.id)
        return ELSEWHERE
    log.warning("interaction %s: could not answer (%s %s)", interaction.id, error.status, error.code)
    return FAILED


async def answer_decision(
    interaction: discord.Interaction, decision: Decision, deferred: bool, *, view: discord.ui.View | None
) -> str:
    none = discord.AllowedMentions.none()
    try:
        if not decision.admitted:
            text = display.refusal_text(
                decision.reason_code, decision.reason, limit=decision.limit, reset_at=decision.reset_at
            )
            return await refuse_privately(interaction, text, deferred)
        embed = display.queued_embed(
            decision.request,
            ahead=decision.ahead,
            median_ms=decision.median_ms,
            remaining=decision.remaining,
            limit=decision.limit,
            reset_at=decision.reset_at,
            degraded=decision.degraded,
            held=decision.held,
        )
        money.add_cost(embed, decision.cost_usd)
        buttons = {"view": view} if view is not None else {}
        if deferred:
            await interaction.edit_original_response(embed=embed, allowed_mentions=none, **buttons)
        else:
            await interaction.response.send_message(embed=embed, allowed_mentions=none, **buttons)
        return SENT
    except discord.HTTPException as error:
        return not_sent(interaction, error)


async def withdraw(interaction: discord.Interaction) -> None:
    try:
        await interaction.delete_original_response()
    except discord.HTTPException as error:
        not_sent(interaction, error)


async def refuse_privately(interaction: discord.Interaction, text: str, deferred: bool) -> str:
    """Privately; where the answer was deferred (publicly), the placeholder makes way for it.
    Whether it went out (SENT, ELSEWHERE or FAILED)."""
    if not deferred:
        return await refuse_now(interaction, text)
    try:
        await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
        return SENT
    except discord.HTTPException as error:
        return not_sent(interaction, error)


async def refuse_now(interaction: discord.Interaction, text: str) -> str:
    try:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
        return SENT
    except discord.HTTPException as error:
        return not_sent(interaction, error)


async def refuse_malformed(interaction: discord.Interaction, problem: str) -> None:
    """An interaction that does not match the command (discordbot.payloads): say what is wrong."""
    name = (interaction.data or {}).get("name")
    await refuse_now(
        interaction, display.invalid_text(problem) if name == "veo" else display.unanswerable_text(problem)
    )
    logs.step(
        log,
        "refused",
        request_id=None,
        user_id=payloads.user_id(interaction),
        guild_id=interaction.guild_id,
        reason="malformed_interaction",
        interaction_id=interaction.id,
        problem=problem,
    )


async def apologise(interaction: discord.Interaction, deferred: bool) -> None:
    text = "Something went wrong on our side; nothing was charged. Please try again in a minute."
    try:
        if deferred:
            await interaction.edit_original_response(content=text)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        pass


async def answer_privately(interaction: discord.Interaction, make: Callable[[], Awaitable[str]]) -> None:
    """Answer ephemerally; if the text takes long, defer (ephemerally) in time and follow up."""
    making = asyncio.ensure_future(make())
    done, _ = await asyncio.wait({making}, timeout=DEFER_AFTER)
    try:
        if done:
            await interaction.response.send_message(
                await making, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send(await making, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException as error:
        not_sent(interaction, error)
