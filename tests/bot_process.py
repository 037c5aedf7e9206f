"""``python -m tests.bot_process``: the real bot (VeoBot, worker, journal) in its own process.

Exactly what ``manage.py runbot`` runs (``discordbot.bot.serve``), except that the gateway is
stdin: each line is an INTERACTION_CREATE payload, handed to discord.py the way the gateway
would (tests/fakes/interactions.py). REST calls go to DISCORD_API_BASE_URL (the fake); Veo is
``ScriptedVeo`` taking SCRIPTED_VEO_SECONDS per video (of SCRIPTED_VEO_VIDEO_BYTES bytes, or the sample). Tests use it to kill a bot for real.
"""

import asyncio
import json
import os
import sys


async def stdin_gateway(bot) -> None:
    from tests.fakes.interactions import deliver

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        deliver(bot, json.loads(line))
    await asyncio.Event().wait()  # stdin closed: keep serving until signalled


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veosite.settings")
    import django

    django.setup()
    from django.conf import settings

    from discordbot.bot import VeoBot, point_at_api, serve
    from discordbot.runtime import run_until_signalled
    from tests.bot_harness import ScriptedVeo

    point_at_api(settings.DISCORD_API_BASE_URL)
    size = int(os.environ.get("SCRIPTED_VEO_VIDEO_BYTES", "0"))  # 0: the bundled sample
    backend = ScriptedVeo(seconds=float(os.environ.get("SCRIPTED_VEO_SECONDS", "0")),
                          video=(b"\0" * size) if size else None)
    bot = VeoBot(backend=backend)
    run_until_signalled(lambda stop: serve(bot, settings.DISCORD_TOKEN, stop, gateway=stdin_gateway))


if __name__ == "__main__":
    main()
