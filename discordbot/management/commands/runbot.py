"""manage.py runbot: the Discord bot (gateway, /veo, /quota, /history) and the worker, in one process."""

import logging

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from discordbot.app import build_bot
from discordbot.bot import StartupError, point_at_api, serve
from generation.runtime import run_until_signalled

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Run the Discord bot with the generation worker until SIGTERM/SIGINT. Commands are registered "
        "with Discord only with --sync (once after install or after changing them)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sync", action="store_true", help="register the slash commands with Discord first")
        parser.add_argument("--guild", type=int, help="with --sync: register in this guild only (shows at once)")
        parser.add_argument("--slots", type=int, help="requests the worker handles at once (VEO_WORKER_SLOTS)")
        parser.add_argument(
            "--or-worker",
            action="store_true",
            help="without DISCORD_TOKEN, or when Discord refuses it, say so and run the worker alone (`make run`)",
        )

    def handle(self, *args, sync: bool, guild: int | None, slots: int | None, or_worker: bool, **options):
        if not settings.DISCORD_TOKEN:
            if or_worker:
                self.stdout.write(
                    "DISCORD_TOKEN is not set, so the Discord bot is not started: running the "
                    "generation worker alone (requests from `manage.py veo`). Put the bot token in "
                    ".env and run `make run` again to start the bot."
                )
                call_command("runworker", slots=slots)
                return
            raise CommandError(
                "DISCORD_TOKEN is not set: put the bot token from the Discord Developer Portal "
                "in .env (see .env.example)"
            )
        if guild and not sync:
            raise CommandError("--guild only makes sense with --sync")
        point_at_api(settings.DISCORD_API_BASE_URL)
        bot = build_bot(worker_slots=slots)
        try:
            run_until_signalled(lambda stop: serve(bot, settings.DISCORD_TOKEN, stop, sync=sync, guild_id=guild))
        except StartupError as error:
            if not or_worker:
                raise CommandError(str(error)) from None
            # Under `make run` the admin keeps serving: without a worker beside it, requests
            # would wait with nobody to run them. The bot's problem is said; the work goes on.
            log.error("the Discord bot could not start (%s): running the generation worker alone", error)
            call_command("runworker", slots=slots)
