"""/appeal: a banned user asks the moderators to lift the ban (services.appeals.file_appeal).

Every answer is private. The appeal lands in the review queue; the decision comes back by DM,
or at the user's next command (discordbot.notices). While the database is unreachable the
appeal is not taken, and the user is told so: nothing is kept to send later.
"""

import discord
from discord import app_commands

from discordbot.answers import answer_privately
from discordbot.display import CONTENT_MAX, fit
from generation.health import ANSWER_TIMEOUT, DATABASE_DOWN, DatabaseHealth
from tracking import aio, services
from tracking.aio import NoAnswer
from tracking.errors import InvalidInput
from tracking.services.appeals import APPEAL_MAX, NotBanned

UNREACHABLE = (
    "Appeals cannot be taken right now (the database is unreachable), so yours was not sent. Please try again later."
)
NO_ANSWER = (
    "The database did not answer in time, so your appeal may not have been sent. Please try again later: "
    "if it did arrive, you will be told it is already open."
)


def appeal_command(*, health: DatabaseHealth) -> app_commands.Command:
    @app_commands.command(name="appeal", description="Ask the moderators to lift your veobot ban")
    @app_commands.describe(text=f"Why the ban should be lifted (at most {APPEAL_MAX} characters)")
    async def appeal(interaction: discord.Interaction, text: app_commands.Range[str, 1, APPEAL_MAX]):
        await answer_privately(interaction, lambda: appeal_text(interaction, text, health=health))

    return appeal


async def appeal_text(interaction: discord.Interaction, text: str, *, health: DatabaseHealth) -> str:
    if health.degraded:
        return UNREACHABLE
    try:
        filed = await aio.run_within(
            ANSWER_TIMEOUT,
            services.appeals.file_appeal,
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            interaction_id=interaction.id,
            body=text,
        )
    except NoAnswer as error:
        health.failed(error)
        return NO_ANSWER
    except DATABASE_DOWN as error:
        health.failed(error)
        return UNREACHABLE
    except NotBanned as error:
        return f"{_sentence(str(error))}."
    except InvalidInput as error:
        return fit(f"Your appeal was not sent: {error}.", CONTENT_MAX)
    if filed.new:
        return f"Your appeal #{filed.appeal_id} was sent to the moderators; you will hear back here or by DM."
    sent = discord.utils.format_dt(filed.created_at, "R")
    return f"You already have an open appeal (#{filed.appeal_id}, sent {sent}); one at a time per ban."


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
