"""Modals whose submissions any process answers, the one that opened them gone or not.

discord.py answers a modal submission from the Modal object it keeps in memory, so a form
opened before a restart (or in another process) would be submitted into nothing, and the user
would see "This interaction failed". Here the submission itself says everything: its custom_id
names what it is for and which request, its fields carry the values. ``Form`` is only what is
sent; ``ModalRoutes`` answers every submission of ours, from the payload.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import discord

Handler = Callable[[discord.Interaction, re.Match, dict[str, str]], Awaitable[None]]


class Form(discord.ui.Modal):
    """A modal sent to a user; its submission is answered by ModalRoutes, not here."""

    def __init__(self, *, title: str, custom_id: str, fields: list[discord.ui.TextInput]) -> None:
        super().__init__(title=title, custom_id=custom_id, timeout=15 * 60)
        for field in fields:
            self.add_item(field)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        pass  # ModalRoutes.dispatch answers it (it sees every submission, this one included)


class ModalRoutes:
    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern, Handler]] = []

    def add(self, pattern: re.Pattern, handler: Handler) -> None:
        self._routes.append((pattern, handler))

    async def dispatch(self, interaction: discord.Interaction) -> None:
        """discord.py's on_interaction: every interaction passes here; ours are answered."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data = interaction.data or {}
        custom_id = data.get("custom_id")
        for pattern, handler in self._routes:
            match = pattern.fullmatch(custom_id) if isinstance(custom_id, str) else None
            if match:
                await handler(interaction, match, submitted(data.get("components")))
                return


def submitted(components: Any) -> dict[str, str]:
    """custom_id -> value of every text input in a submission, however Discord nests them
    (action rows, or labels around each input)."""
    values: dict[str, str] = {}
    pending = [components]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            if isinstance(item.get("custom_id"), str) and isinstance(item.get("value"), str):
                values[item["custom_id"]] = item["value"]
            pending.extend(item.get(key) for key in ("components", "component") if key in item)
    return values
