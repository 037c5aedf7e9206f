"""Re-roll, Edit and Extend: buttons on a result that make a new request from it, without
retyping. Persistent like the others (discordbot.buttons): the custom_id names the parent by
its interaction id, and the parent is read from the database on every click.

The new request belongs to whoever clicked and goes through the same admission as /veo
(quota, bans, blocked terms), answered the same way: publicly when queued, privately when
refused. It needs the database (to read the parent), so while it is away the click is
refused, charging nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace

import discord
from discord.ui import Button, DynamicItem

from discordbot import display
from discordbot.answers import refuse_privately
from discordbot.buttons import KeyedByInteraction
from discordbot.commands import prepare_then_handle
from discordbot.discord_delivery import DiscordDelivery
from discordbot.modals import Form, ModalRoutes
from generation.admission import Admitter, Decision
from generation.health import ANSWER_TIMEOUT, DATABASE_DOWN, DatabaseHealth
from generation.storage import LocalStorage, StorageError
from tracking import aio, services
from tracking.models import DerivedAs, VideoRequest
from tracking.services import Derivable, VideoParameters

REROLL_TEMPLATE = re.compile(r"veo:reroll:(?P<interaction_id>[0-9]{1,20})")
EDIT_TEMPLATE = re.compile(r"veo:edit:(?P<interaction_id>[0-9]{1,20})")
EXTEND_TEMPLATE = re.compile(r"veo:extend:(?P<interaction_id>[0-9]{1,20})")
EDIT_PROMPT_TEMPLATE = re.compile(r"veo:edit-prompt:(?P<interaction_id>[0-9]{1,20})")  # the Edit modal
# A modal must be the first answer, within Discord's 3 s, and cannot be deferred: the parent's
# text for it is read with this much patience, and a slower database gets "try again".
MODAL_LOOKUP_TIMEOUT = 2.0
TEXT_INPUT_MAX = 4000  # Discord's limit for a modal's text input


class Deriver:
    """Makes a child request from a click (or an Edit's submitted modal) and answers it."""

    def __init__(
        self,
        *,
        health: DatabaseHealth,
        admitter: Admitter,
        replies: DiscordDelivery,
        queued_view: Callable[[Decision], discord.ui.View | None],
        storage: LocalStorage,
    ):
        self.health = health
        self.admitter = admitter
        self.replies = replies
        self.queued_view = queued_view
        self.storage = storage  # a child gets its own copy of the parent's frames

    def _own_frames(self, params: VideoParameters, *, interaction_id: int) -> VideoParameters:
        """The parent's frames copied for the child (StorageError when they are gone): each
        request owns its inputs, so deleting one request never takes another's frames."""
        frames = {
            field: self.storage.copy_input(uri, interaction_id=interaction_id, name=name)
            for field, name in (("image_uri", "image"), ("last_frame_uri", "last_frame"))
            if (uri := getattr(params, field))
        }
        return replace(params, **frames)

    async def parent(
        self, parent_interaction_id: int, derived_as: str, *, timeout: float = ANSWER_TIMEOUT
    ) -> tuple[VideoRequest | None, str | None]:
        """The parent, or what to tell the clicker instead."""
        if self.health.degraded:
            return None, display.DERIVE_UNREACHABLE
        try:
            answer, parent = await aio.run_within(
                timeout, services.derivation_source, interaction_id=parent_interaction_id, derived_as=derived_as
            )
        except aio.NoAnswer:
            return None, display.DERIVE_SLOW  # slow is not down: the watch decides that
        except DATABASE_DOWN as error:
            self.health.failed(error)
            return None, display.DERIVE_UNREACHABLE
        if answer != Derivable.YES:
            return None, display.derive_text(answer)
        return parent, None

    async def derive(
        self,
        interaction: discord.Interaction,
        *,
        parent_interaction_id: int,
        derived_as: str,
        prompt: str | None = None,
        negative_prompt: str | None = None,
    ) -> None:
        async def parameters() -> VideoParameters | str:
            parent, problem = await self.parent(parent_interaction_id, derived_as)
            if parent is None:
                return problem
            params = services.derived_parameters(
                parent, derived_as=derived_as, prompt=prompt, negative_prompt=negative_prompt
            )
            try:
                return await asyncio.to_thread(self._own_frames, params, interaction_id=interaction.id)
            except StorageError as error:
                return display.frames_gone_text(str(error))

        await prepare_then_handle(
            interaction, parameters(), admitter=self.admitter, replies=self.replies, queued_view=self.queued_view
        )


def derive_buttons(
    deriver: Deriver, modals: ModalRoutes
) -> tuple[type[DynamicItem], type[DynamicItem], type[DynamicItem]]:
    """The Re-roll, Edit and Extend buttons, answering through ``deriver``."""

    class RerollButton(KeyedByInteraction, DynamicItem[Button], template=REROLL_TEMPLATE):
        ACTION, LABEL, STYLE = "reroll", "Re-roll", discord.ButtonStyle.primary

        async def callback(self, interaction: discord.Interaction) -> None:
            await deriver.derive(interaction, parent_interaction_id=self.interaction_id, derived_as=DerivedAs.REROLL)

    class ExtendButton(KeyedByInteraction, DynamicItem[Button], template=EXTEND_TEMPLATE):
        ACTION, LABEL, STYLE = "extend", "Extend", discord.ButtonStyle.secondary

        async def callback(self, interaction: discord.Interaction) -> None:
            await deriver.derive(interaction, parent_interaction_id=self.interaction_id, derived_as=DerivedAs.EXTEND)

    async def edited(interaction: discord.Interaction, match: re.Match, values: dict[str, str]) -> None:
        await deriver.derive(
            interaction,
            parent_interaction_id=int(match["interaction_id"]),
            derived_as=DerivedAs.EDIT,
            prompt=values.get("prompt", ""),
            negative_prompt=values.get("negative_prompt") or None,
        )

    modals.add(EDIT_PROMPT_TEMPLATE, edited)

    class EditButton(KeyedByInteraction, DynamicItem[Button], template=EDIT_TEMPLATE):
        ACTION, LABEL, STYLE = "edit", "Edit", discord.ButtonStyle.secondary

        async def callback(self, interaction: discord.Interaction) -> None:
            parent, problem = await deriver.parent(self.interaction_id, DerivedAs.EDIT, timeout=MODAL_LOOKUP_TIMEOUT)
            if parent is None:
                await refuse_privately(interaction, problem, deferred=False)
                return
            await interaction.response.send_modal(edit_form(parent, self.interaction_id))

    return RerollButton, EditButton, ExtendButton


def edit_form(parent: VideoRequest, parent_interaction_id: int) -> Form:
    """The Edit modal, prefilled with the parent's text (ModalRoutes answers its submission)."""
    prompt = discord.ui.TextInput(
        label="Prompt",
        style=discord.TextStyle.paragraph,
        default=parent.prompt[:TEXT_INPUT_MAX],
        max_length=TEXT_INPUT_MAX,
        custom_id="prompt",
    )
    negative = discord.ui.TextInput(
        label="Avoid (optional)",
        style=discord.TextStyle.paragraph,
        default=(parent.negative_prompt or "")[:TEXT_INPUT_MAX] or None,
        max_length=TEXT_INPUT_MAX,
        required=False,
        custom_id="negative_prompt",
    )
    return Form(
        title="Edit and generate", custom_id=f"veo:edit-prompt:{parent_interaction_id}", fields=[prompt, negative]
    )
