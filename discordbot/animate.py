""" "Animate with Veo": a message context-menu command on any message that carries an image.

A context menu takes no options, so a modal asks what should happen in the video; the submitted
prompt and the message's first image then go through /veo's path (discordbot.frames, then
admission) with the configured defaults for the rest. The modal names the message and the
image, so whichever process gets the submission finds the image again (discordbot.modals).
"""

import re

import discord
from discord import app_commands
from django.conf import settings

from discordbot import display
from discordbot.answers import refuse_now
from discordbot.commands import parameters_from, prepare_then_handle
from discordbot.discord_delivery import DiscordDelivery
from discordbot.frames import FrameFetcher, first_image
from discordbot.modals import Form, ModalRoutes
from generation.admission import Admitter
from tracking import capabilities

NAME = "Animate with Veo"
TEXT_INPUT_MAX = 4000  # Discord's limit for a modal's text input
PROMPT_TEMPLATE = re.compile(
    r"veo:animate:(?P<channel_id>[0-9]{1,20}):(?P<message_id>[0-9]{1,20}):(?P<attachment_id>[0-9]{1,20})"
)


def animate_menu(
    *, frames: FrameFetcher, admitter: Admitter, replies: DiscordDelivery, queued_view, modals: ModalRoutes
) -> app_commands.ContextMenu:
    async def prompted(interaction: discord.Interaction, match: re.Match, values: dict[str, str]) -> None:
        async def parameters():
            image = await _attachment(interaction, match)
            if image is None:
                return display.IMAGE_GONE
            params = parameters_from(values.get("prompt", ""))
            return await frames.with_frames(params, interaction_id=interaction.id, image=image)

        await prepare_then_handle(
            interaction, parameters(), admitter=admitter, replies=replies, queued_view=queued_view
        )

    modals.add(PROMPT_TEMPLATE, prompted)

    async def animate(interaction: discord.Interaction, message: discord.Message) -> None:
        image = first_image(message)
        if image is None:
            await refuse_now(interaction, display.NO_IMAGE_TO_ANIMATE)
        elif not capabilities.of(settings.VEO_MODEL).image_input:
            await refuse_now(interaction, display.cannot_animate_text(settings.VEO_MODEL))
        else:
            prompt = discord.ui.TextInput(
                label="What should happen in the video?",
                style=discord.TextStyle.paragraph,
                min_length=settings.VEO_PROMPT_MIN_LENGTH,
                max_length=min(settings.VEO_PROMPT_MAX_LENGTH, TEXT_INPUT_MAX),
                custom_id="prompt",
            )
            key = f"veo:animate:{message.channel.id}:{message.id}:{image.id}"
            await interaction.response.send_modal(Form(title=NAME, custom_id=key, fields=[prompt]))

    return app_commands.ContextMenu(name=NAME, callback=animate)


async def _attachment(interaction: discord.Interaction, match: re.Match) -> discord.Attachment | None:
    """The image the modal was opened for, read from its message as it is now (deleted: None)."""
    channel = interaction.client.get_partial_messageable(int(match["channel_id"]), guild_id=interaction.guild_id)
    try:
        message = await channel.fetch_message(int(match["message_id"]))
    except discord.HTTPException:
        return None
    return next((a for a in message.attachments if a.id == int(match["attachment_id"])), None)
