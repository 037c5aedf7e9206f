"""The floor for bench/bot_latency.py: discord.py answering /veo at once, with no database.

    python -m bench.echo_bot     (started by bench/bot_latency.py, which feeds its stdin)

Same gateway (stdin, tests/bot_process.py), same fake Discord, same login as the real bot; it
answers every /veo with an embed the size of the real "queued" one and does nothing else.
What it takes to answer 100 interactions at once is what discord.py, the fake and this
machine cost before veobot does any work.
"""

import asyncio
import os
import signal

import discord
from discord import app_commands

from tests.bot_process import stdin_gateway


async def serve() -> None:
    client = discord.Client(intents=discord.Intents.none())
    tree = app_commands.CommandTree(client)

    @tree.command(name="veo", description="Generate a short video with Google Veo")
    async def veo(interaction: discord.Interaction, prompt: str):
        embed = discord.Embed(title="Queued: your video is on its way", description=prompt[:300])
        embed.add_field(name="Position", value="1 ahead of you")
        embed.add_field(name="Quota", value="4 of 5 left; resets in 23h 59m")
        await interaction.response.send_message(embed=embed, allowed_mentions=discord.AllowedMentions.none())

    base = os.environ.get("DISCORD_API_BASE_URL", "")
    if base:
        discord.http.Route.BASE = base.rstrip("/")
    await client.login(os.environ["DISCORD_TOKEN"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    gateway = asyncio.create_task(stdin_gateway(client))
    await stop.wait()
    gateway.cancel()
    await client.close()


if __name__ == "__main__":
    asyncio.run(serve())
