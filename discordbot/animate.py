""" "Animate with Veo": a message context-menu command on any message that carries an image.

A context menu takes no options, so a modal asks what should happen in the video; the submitted
prompt and the message's first image then go through /veo's path (discordbot.frames, then
admission) with the configured defaults for the rest.
"""

import discord
from discord import app_commands
from django.conf import settings

from discordbot import display
from discordbot.answers import refuse_now
from discordbot.commands import parameters_from, prepare_then_handle
from discordbot.discord_delivery import DiscordDelivery
from discordbot.frames import FrameFetcher, first_image
from generation.admission import Admitter
from tracking import capabilities

NAME = "Animate with Veo"
TEXT_INPUT_MAX = 4000  # Discord's limit for a modal's text input


def animate_menu(
    *, frames: FrameFetcher, admitter: Admitter, replies: DiscordDelivery, queued_view
) -> app_commands.ContextMenu:
    class AnimatePrompt(discord.ui.Modal, title=NAME):
        def __init__(self, image: discord.Attachment) -> None:
            super().__init__(custom_id=f"veo:animate:{image.id}", timeout=15 * 60)
            self.image = image
            self.prompt = discord.ui.TextInput(
                label="What should happen in the video?",
                style=discord.TextStyle.paragraph,
                min_length=settings.VEO_PROMPT_MIN_LENGTH,
                max_length=min(settings.VEO_PROMPT_MAX_LENGTH, TEXT_INPUT_MAX),
            )
            self.add_item(self.prompt)

        async def on_submit(self, interaction: discord.Interaction) -> None:
            params = parameters_from(self.prompt.value)
            fetching = frames.with_frames(params, interaction_id=interaction.id, image=self.image)
            await prepare_then_handle(
                interaction, fetching, admitter=admitter, replies=replies, queued_view=queued_view
            )

    async def animate(interaction: discord.Interaction, message: discord.Message) -> None:
        image = first_image(message)
        if image is None:
            await refuse_now(interaction, display.NO_IMAGE_TO_ANIMATE)
        elif not capabilities.of(settings.VEO_MODEL).image_input:
            await refuse_now(interaction, display.cannot_animate_text(settings.VEO_MODEL))
        else:
            await interaction.response.send_modal(AnimatePrompt(image))

    return app_commands.ContextMenu(name=NAME, callback=animate)
