"""manage.py synccommands [--guild ID]: register /veo, /quota and /history with Discord, then exit."""

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from discordbot.app import build_bot
from discordbot.bot import StartupError, login, point_at_api, sync_commands


class Command(BaseCommand):
    help = "Register the bot's slash commands with Discord (globally, or in one guild for testing)."

    def add_arguments(self, parser):
        parser.add_argument("--guild", type=int, help="register in this guild only (shows at once)")

    def handle(self, *args, guild: int | None, **options):
        if not settings.DISCORD_TOKEN:
            raise CommandError("DISCORD_TOKEN is not set: put the bot token in .env (see .env.example)")
        point_at_api(settings.DISCORD_API_BASE_URL)

        async def main() -> int:
            bot = build_bot(run_worker=False)
            try:
                await login(bot, settings.DISCORD_TOKEN)
                return await sync_commands(bot, guild)
            finally:
                await bot.close()

        try:
            count = asyncio.run(main())
        except StartupError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"registered {count} commands " + (f"in guild {guild}" if guild else "globally"))
