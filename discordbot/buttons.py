"""Buttons on the bot's messages, persistent across restarts: discord.py ``DynamicItem`` classes
whose ``custom_id`` names the request by its interaction id (which names it in degraded mode
too), so any process, started at any time, answers a click. Each click is checked against the
request as it is then, never against the message it was on."""

from __future__ import annotations

import re

import discord
from discord.ui import Button, DynamicItem

from discordbot import display
from discordbot.answers import answer_privately
from discordbot.modals import Form, ModalRoutes
from generation.degraded import DegradedRunner
from generation.health import ANSWER_TIMEOUT, DATABASE_DOWN, DatabaseHealth
from tracking import aio, services
from tracking.errors import InvalidInput
from tracking.models import Status
from tracking.services import REPORT_REASON_MAX, Cancelled, Removed

CANCEL_TEMPLATE = re.compile(r"veo:cancel:(?P<interaction_id>[0-9]{1,20})")
DELETE_TEMPLATE = re.compile(r"veo:delete:(?P<interaction_id>[0-9]{1,20})")
REPORT_TEMPLATE = re.compile(r"veo:report:(?P<interaction_id>[0-9]{1,20})")
REPORT_REASON_TEMPLATE = re.compile(r"veo:report-reason:(?P<interaction_id>[0-9]{1,20})")  # its modal
REQUESTER_CANCELLED = "cancelled by its requester before it started"


class KeyedByInteraction:
    """What every button here shares: its custom_id is ``veo:<ACTION>:<interaction id>``."""

    ACTION: str
    LABEL: str
    STYLE: discord.ButtonStyle

    def __init__(self, interaction_id: int) -> None:
        button = Button(label=self.LABEL, style=self.STYLE, custom_id=f"veo:{self.ACTION}:{interaction_id}")
        super().__init__(button)  # DynamicItem's
        self.interaction_id = interaction_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: Button, match: re.Match):
        return cls(int(match["interaction_id"]))


def cancel_button(*, health: DatabaseHealth, runner: DegradedRunner) -> type[DynamicItem]:
    """The Cancel button of a queued request, for its requester, until Veo starts it."""

    class CancelButton(KeyedByInteraction, DynamicItem[Button], template=CANCEL_TEMPLATE):
        ACTION, LABEL, STYLE = "cancel", "Cancel", discord.ButtonStyle.secondary

        async def callback(self, interaction: discord.Interaction) -> None:
            async def answer() -> str:
                return await cancel(self.interaction_id, user_id=interaction.user.id, health=health, runner=runner)

            await answer_privately(interaction, answer)

    return CancelButton


async def cancel(interaction_id: int, *, user_id: int, health: DatabaseHealth, runner: DegradedRunner) -> str:
    """Cancel for its requester; what to tell whoever clicked."""
    run = runner.runs.get(interaction_id)
    if run is not None:  # admitted while the database was away: it runs here
        request = run.request
        if request.user_id != user_id:
            return display.cancel_text(Cancelled.NOT_YOURS, request.status)
        if request.status != Status.PENDING:
            return display.cancel_text(Cancelled.STARTED, request.status)
        runner.cancel(interaction_id, reason=REQUESTER_CANCELLED)
        return display.cancel_text(Cancelled.DONE, Status.CANCELLED)
    if health.degraded:
        return display.CANCEL_UNREACHABLE
    try:
        answer, status = await aio.run_within(
            ANSWER_TIMEOUT, services.cancel_by_requester, interaction_id=interaction_id, user_id=user_id
        )
    except DATABASE_DOWN as error:
        health.failed(error)
        return display.CANCEL_UNREACHABLE
    return display.cancel_text(answer, status)


def delete_button(*, health: DatabaseHealth) -> type[DynamicItem]:
    """The Delete button of a result, for its requester or anyone who may manage the channel's messages."""

    class DeleteButton(KeyedByInteraction, DynamicItem[Button], template=DELETE_TEMPLATE):
        ACTION, LABEL, STYLE = "delete", "Delete", discord.ButtonStyle.danger

        async def callback(self, interaction: discord.Interaction) -> None:
            async def answer() -> str:
                return await delete(self.interaction_id, interaction=interaction, health=health)

            await answer_privately(interaction, answer)

    return DeleteButton


async def delete(interaction_id: int, *, interaction: discord.Interaction, health: DatabaseHealth) -> str:
    """Remove the output for its requester (or a moderator of the channel); what to tell them."""
    if health.degraded:
        return display.DELETE_UNREACHABLE
    moderator = interaction.guild_id is not None and interaction.permissions.manage_messages
    try:
        answer = await aio.run_within(
            ANSWER_TIMEOUT,
            services.remove_by_requester,
            interaction_id=interaction_id,
            user_id=interaction.user.id,
            moderator=moderator,
        )
    except DATABASE_DOWN as error:
        health.failed(error)
        return display.DELETE_UNREACHABLE
    if answer == Removed.DONE and interaction.message is not None:
        # At once, here; the outbox action queued with the removal finds it gone (or retries).
        try:
            await interaction.message.delete()
        except discord.HTTPException:
            pass
    return display.delete_text(answer)


def report_button(*, health: DatabaseHealth, modals: ModalRoutes) -> type[DynamicItem]:
    """The Report button of a result, for anyone: a modal asks why, and moderators get the report."""

    async def reason_given(interaction: discord.Interaction, match: re.Match, values: dict[str, str]) -> None:
        async def answer() -> str:
            return await report(
                int(match["interaction_id"]), interaction=interaction, reason=values.get("reason", ""), health=health
            )

        await answer_privately(interaction, answer)

    modals.add(REPORT_REASON_TEMPLATE, reason_given)

    class ReportButton(KeyedByInteraction, DynamicItem[Button], template=REPORT_TEMPLATE):
        ACTION, LABEL, STYLE = "report", "Report", discord.ButtonStyle.secondary

        async def callback(self, interaction: discord.Interaction) -> None:
            reason = discord.ui.TextInput(
                label="What is wrong with it?",
                style=discord.TextStyle.paragraph,
                max_length=REPORT_REASON_MAX,
                custom_id="reason",
            )
            form = Form(
                title="Report this video", custom_id=f"veo:report-reason:{self.interaction_id}", fields=[reason]
            )
            await interaction.response.send_modal(form)

    return ReportButton


async def report(interaction_id: int, *, interaction: discord.Interaction, reason: str, health: DatabaseHealth) -> str:
    if health.degraded:
        return display.REPORT_UNREACHABLE
    try:
        answer = await aio.run_within(
            ANSWER_TIMEOUT,
            services.report_request,
            interaction_id=interaction_id,
            reporter_id=interaction.user.id,
            guild_id=interaction.guild_id,
            reason=reason,
        )
    except InvalidInput as error:
        return display.invalid_report_text(str(error))
    except DATABASE_DOWN as error:
        health.failed(error)
        return display.REPORT_UNREACHABLE
    return display.report_text(answer)


def view_of(*buttons: DynamicItem) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(button)
    return view


def queued_view(button: type[DynamicItem], *, interaction_id: int) -> discord.ui.View:
    return view_of(button(interaction_id))
