"""The Discord client: app commands, the worker and degraded mode in one asyncio process.

``VeoBot`` needs no privileged intents and no gateway cache: everything it answers comes
with the interaction. ``login()`` (which runs ``setup_hook``) starts the worker, the database
watcher and the moderators' outbox (``generation.outbox``) as tasks on the client's loop;
``close()`` stops taking work, hands leases back and closes the journal. ``serve()`` is what
``manage.py runbot`` runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import discord
from discord import app_commands
from django.conf import settings

from discordbot import commands, payloads
from generation.admission import Admitter
from generation.degraded import DATABASE_DOWN, DatabaseHealth, DirectRunner, JournalReplayer, LocalLimiter
from generation.delivery import CliDelivery
from discordbot.discord_delivery import DiscordDelivery
from generation.journal import Journal
from discordbot.outbox import message_deleter
from generation.outbox import Outbox
from generation.runtime import sleep_unless
from generation.storage import LocalStorage, local_storage
from generation.veo import VeoBackend, configured_backend
from generation.worker import Worker

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A one-line reason the bot cannot start; never contains the token."""


def point_at_api(base_url: str) -> None:
    """Route discord.py's REST and webhook calls to ``base_url`` (a local fake in tests)."""
    if base_url:
        discord.http.Route.BASE = base_url.rstrip("/")


class BotWorker(Worker):
    """The worker inside the bot shares the bot's view of the database: while the bot knows it
    is unreachable, the worker does not try to claim, and a failed claim starts degraded mode."""

    def __init__(self, *, health: DatabaseHealth, **kwargs):
        super().__init__(**kwargs)
        self.health = health

    async def _claim(self, limit: int):
        if self.health.degraded:
            return []
        return await super()._claim(limit)

    def database_unreachable(self, error) -> None:
        if isinstance(error, DATABASE_DOWN):
            self.health.failed(error)
        else:
            super().database_unreachable(error)


class VeoCommandTree(app_commands.CommandTree):
    """Refuses, with the reason, an interaction whose ids or options do not match our commands
    (see discordbot.payloads), before discord.py converts the options."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        problem = payloads.problem(self, interaction)
        if problem is None:
            return True
        await commands.refuse_malformed(interaction, problem)
        return False


class VeoBot(discord.Client):
    def __init__(self, *, backend: VeoBackend | None = None, storage: LocalStorage | None = None,
                 run_worker: bool = True, worker_slots: int | None = None, worker_name: str | None = None):
        # No privileged intents; interactions arrive whatever the intents. Nothing we send
        # pings anyone unless a call says so (only channel deliveries mention the requester).
        super().__init__(intents=discord.Intents.none(), allowed_mentions=discord.AllowedMentions.none())
        self.tree = VeoCommandTree(self)
        self.tree.on_error = self._on_command_error
        self.storage = storage or local_storage()
        self.backend = backend or configured_backend()
        self.delivery = DiscordDelivery(self, storage=self.storage)
        self.health = DatabaseHealth()
        self.limiter = LocalLimiter()
        self.journal = Journal(settings.VEO_JOURNAL_DIR)
        self.runner = DirectRunner(backend=self.backend, delivery=self.delivery, storage=self.storage,
                                   record=self.record, limiter=self.limiter)
        self.admitter = Admitter(health=self.health, limiter=self.limiter, record=self.record, runner=self.runner)
        self.replayer = JournalReplayer(journal=self.journal, runner=self.runner, health=self.health,
                                        written=self.admitter.replayed)
        self.worker = BotWorker(
            health=self.health, backend=self.backend, deliveries={"discord": self.delivery, "cli": CliDelivery()},
            storage=self.storage, slots=worker_slots, name=worker_name) if run_worker else None
        self.outbox = Outbox(performers=message_deleter(self), health=self.health)
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        commands.register(self)

    async def record(self, entry: dict) -> None:
        """Append to the journal (fsync'd) without blocking the loop."""
        await asyncio.to_thread(self.journal.append, entry)

    async def setup_hook(self) -> None:
        self._stop = asyncio.Event()
        # Started during an outage, the bot would otherwise learn of it from the first call that
        # waits out the pool's connect timeout, with every early /veo waiting behind it.
        if not await asyncio.to_thread(self.health.probe):
            self.health.failed(ConnectionError("no answer to the start-up probe"))
        if self.worker is not None:
            self._tasks.append(asyncio.create_task(self.worker.run(self._stop), name="worker"))
        self._tasks.append(asyncio.create_task(self._watch_database(), name="database-watch"))
        self._tasks.append(asyncio.create_task(self.outbox.run(self._stop), name="discord-actions"))
        log.info("bot ready: application %s, backend %s%s", self.application_id, self.backend.label,
                 "" if self.worker else " (no worker in this process)")

    async def _watch_database(self) -> None:
        """While degraded, probe; once the database answers, replay. Otherwise replay what
        finished here or was left behind by a stopped process."""
        interval = settings.DATABASE_PROBE_INTERVAL.total_seconds()
        pool_closed = False
        while not self._stop.is_set():
            try:
                if self.health.degraded:
                    if not pool_closed:
                        await asyncio.to_thread(self.health.reset_pool)
                        pool_closed = True
                    if await asyncio.to_thread(self.health.probe):
                        await asyncio.to_thread(self.health.reset_pool)
                        pool_closed = False
                        self.health.recovered()
                        await self.replayer.replay()
                else:
                    await self.replayer.replay()
            except Exception:
                log.exception("database watch: unexpected error (will retry)")
            await sleep_unless(self._stop, interval)

    async def close(self) -> None:
        if self._stop is not None and not self._stop.is_set():
            log.info("bot stopping: no new work; handing leases back")
            self._stop.set()
            await self.runner.stop()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.journal.close()
        await super().close()

    async def _on_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        log.error("command /%s failed for interaction %s", getattr(interaction.command, "name", "?"), interaction.id,
                  exc_info=error)
        if not interaction.response.is_done():
            try:
                await interaction.response.send_message(
                    "Something went wrong on our side; nothing was charged.", ephemeral=True)
            except discord.HTTPException:
                pass


async def login(bot: VeoBot, token: str) -> None:
    """Log in over REST, turning every failure into one clear line without the token."""
    try:
        await bot.login(token)
    except discord.LoginFailure:
        raise StartupError("DISCORD_TOKEN was rejected by Discord (401 Unauthorized): "
                           "copy the bot token again from the Developer Portal") from None
    except discord.HTTPException as error:
        raise StartupError(f"Discord refused the login ({error.status} {error.code})") from None
    except aiohttp.ClientError as error:
        raise StartupError(f"could not reach Discord to log in ({type(error).__name__})") from None
    expected = settings.DISCORD_APPLICATION_ID
    if expected and bot.application_id != expected:
        raise StartupError(f"DISCORD_TOKEN belongs to application {bot.application_id}, "
                           f"not DISCORD_APPLICATION_ID {expected}")


async def sync_commands(bot: VeoBot, guild_id: int | None) -> int:
    """Register the slash commands with Discord: globally (can take a while to show) or in one guild."""
    if guild_id:
        guild = discord.Object(guild_id)
        bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
    else:
        synced = await bot.tree.sync()
    log.info("registered %s commands %s: %s", len(synced), f"in guild {guild_id}" if guild_id else "globally",
             ", ".join(f"/{command.name}" for command in synced))
    return len(synced)


async def serve(bot: VeoBot, token: str, stop: asyncio.Event, *, sync: bool = False, guild_id: int | None = None,
                gateway: Callable[[VeoBot], Awaitable[None]] | None = None) -> None:
    """Log in, optionally register commands, then receive interactions until ``stop`` is set.

    ``gateway`` replaces Discord's gateway connection (tests feed INTERACTION_CREATE payloads)."""
    try:
        await login(bot, token)
        if sync:
            await sync_commands(bot, guild_id)
        receiving = asyncio.create_task((gateway or _connect)(bot), name="gateway")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if receiving in done:
            receiving.result()  # raises whatever ended the connection
        receiving.cancel()
        stopping.cancel()
    finally:
        await bot.close()


async def _connect(bot: VeoBot) -> None:
    try:
        await bot.connect(reconnect=True)
    except discord.PrivilegedIntentsRequired:
        raise StartupError("Discord refused the gateway intents (veobot needs none; check the application)") from None
