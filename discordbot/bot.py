"""The Discord client: the gateway, our commands, and what runs beside them in one process.

``VeoBot`` needs no privileged intents and no gateway cache: everything it answers comes
with the interaction. It is handed what it runs (discordbot.app builds it all): the Cog of
commands, the chores that run beside the gateway (the worker, the database watch, the
moderators' outbox) and what to close on shutdown. ``login()`` (which runs ``setup_hook``)
adds the Cog and starts the chores; ``close()`` stops taking work, hands leases back and
closes the journal. ``serve()`` is what ``manage.py runbot`` runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands
from django.conf import settings

from discordbot import payloads
from discordbot.answers import refuse_malformed
from discordbot.modals import ModalRoutes
from discordbot.shards import IDENTIFY_INTERVAL, IdentifyPacer, ShardPlan, ShardStates, describe, discover_gateway
from generation.identify_slots import SharedIdentifySlots
from generation.runtime import sleep_unless

log = logging.getLogger(__name__)

Chore = Callable[[asyncio.Event], Awaitable[None]]  # runs until the event is set
RESTART_AFTER = 1  # seconds before a chore that failed starts again


class StartupError(Exception):
    """A one-line reason the bot cannot start; never contains the token."""


def point_at_api(base_url: str) -> None:
    """Route discord.py's REST and webhook calls to ``base_url`` (a local fake in tests)."""
    if base_url:
        discord.http.Route.BASE = base_url.rstrip("/")


class VeoCommandTree(app_commands.CommandTree):
    """Refuses, with the reason, an interaction whose ids or options do not match our commands
    (see discordbot.payloads), before discord.py converts the options."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        problem = payloads.problem(self, interaction)
        if problem is None:
            return True
        await refuse_malformed(interaction, problem)
        return False


class VeoBot(commands.AutoShardedBot):
    def __init__(self, plan: ShardPlan | None = None) -> None:
        # One class whether sharded or not: unsharded is shard 0 of 1 (DISCORD_SHARD_COUNT unset),
        # which Discord treats as an unsharded session; discordbot.shards says why.
        # No privileged intents and no prefix commands; interactions arrive whatever the intents.
        # Nothing we send pings anyone unless a call says so (only channel deliveries mention
        # the requester).
        plan = plan or ShardPlan.from_settings()
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.none(),
            help_command=None,
            tree_cls=VeoCommandTree,
            allowed_mentions=discord.AllowedMentions.none(),
            shard_count=plan.numeric_count,  # None for auto: settled by discover_gateway
            shard_ids=list(plan.ids) if plan.ids is not None else None,
        )
        self.identify_pacer = IdentifyPacer(shared=SharedIdentifySlots(interval=IDENTIFY_INTERVAL))
        self.shard_states = ShardStates(self)
        self.tree.on_error = self._on_command_error
        self._cog: commands.Cog | None = None
        self._chores: Sequence[Chore] = ()
        self._items: Sequence[type[discord.ui.DynamicItem]] = ()
        self._extra_commands: Sequence[app_commands.Command | app_commands.ContextMenu] = ()
        self._closing: Sequence[Callable[[], None]] = ()
        self._started: Callable[[], Awaitable[None]] | None = None
        self.description_of_work = "no worker in this process"
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def install(
        self,
        *,
        cog: commands.Cog,
        slash_commands: Sequence[app_commands.Command] = (),
        items: Sequence[type[discord.ui.DynamicItem]] = (),
        menus: Sequence[app_commands.ContextMenu] = (),
        modals: ModalRoutes | None = None,
        chores: Sequence[Chore],
        closing: Sequence[Callable[[], None]],
        starting: Callable[[], Awaitable[None]] | None = None,
        description: str = "",
    ) -> None:
        """What this bot runs (discordbot.app): ``starting`` before anything (the database probe),
        then the ``cog``, the ``slash_commands`` outside it, its context ``menus``, the buttons' ``items``,
        the answers to its ``modals`` and the ``chores`` (each until the bot stops); ``closing``, in order, once every chore has ended."""
        self._cog, self._chores, self._closing, self._started = cog, tuple(chores), tuple(closing), starting
        self._items, self._extra_commands = tuple(items), (*slash_commands, *menus)
        if modals is not None:
            self.add_listener(modals.dispatch, "on_interaction")  # forms opened by any process
        self.description_of_work = description or self.description_of_work

    async def setup_hook(self) -> None:
        if self._started is not None:
            await self._started()
        if self._cog is not None:
            await self.add_cog(self._cog)
        for command in self._extra_commands:  # beside the Cog's (discord.py keeps context menus out of Cogs)
            self.tree.add_command(command)
        self.add_dynamic_items(*self._items)  # buttons answer clicks on messages of any past process
        self._tasks = [
            asyncio.create_task(self._keep(chore), name=getattr(chore, "__name__", "chore")) for chore in self._chores
        ]
        log.info("bot ready: application %s, %s", self.application_id, self.description_of_work)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Instead of discord.py's flat 5 s before every IDENTIFY but the first: Discord's rule,
        # per max_concurrency bucket (discordbot.shards.IdentifyPacer).
        await self.identify_pacer.wait(shard_id)

    async def close(self) -> None:
        if not self._stop.is_set():
            log.info("bot stopping: no new work; handing leases back")
            self._stop.set()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for close in self._closing:
                close()
        await super().close()

    async def _keep(self, chore: Chore) -> None:
        """Run a chore until the bot stops. One that fails is logged and started again: a task that
        died unnoticed would leave, say, degraded mode without the watch that ends it."""
        while not self._stop.is_set():
            try:
                await chore(self._stop)
                return
            except Exception:
                log.exception(
                    "%s failed; starting it again in %s s", getattr(chore, "__name__", "a chore"), RESTART_AFTER
                )
                await sleep_unless(self._stop, RESTART_AFTER)

    async def _on_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        log.error(
            "command /%s failed for interaction %s",
            getattr(interaction.command, "name", "?"),
            interaction.id,
            exc_info=error,
        )
        if not interaction.response.is_done():
            try:
                await interaction.response.send_message(
                    "Something went wrong on our side; nothing was charged.", ephemeral=True
                )
            except discord.HTTPException:
                pass


async def login(bot: VeoBot, token: str) -> None:
    """Log in over REST, turning every failure into one clear line without the token."""
    try:
        await bot.login(token)
    except discord.LoginFailure:
        raise StartupError(
            "DISCORD_TOKEN was rejected by Discord (401 Unauthorized): "
            "copy the bot token again from the Developer Portal"
        ) from None
    except discord.HTTPException as error:
        raise StartupError(f"Discord refused the login ({error.status} {error.code})") from None
    except aiohttp.ClientError as error:
        raise StartupError(f"could not reach Discord to log in ({type(error).__name__})") from None
    expected = settings.DISCORD_APPLICATION_ID
    if expected and bot.application_id != expected:
        raise StartupError(
            f"DISCORD_TOKEN belongs to application {bot.application_id}, not DISCORD_APPLICATION_ID {expected}"
        )


async def sync_commands(bot: VeoBot, guild_id: int | None) -> int:
    """Register the slash commands with Discord: globally (can take a while to show) or in one guild."""
    if guild_id:
        guild = discord.Object(guild_id)
        bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
    else:
        synced = await bot.tree.sync()
    log.info(
        "registered %s commands %s: %s",
        len(synced),
        f"in guild {guild_id}" if guild_id else "globally",
        ", ".join(f"/{command.name}" for command in synced),
    )
    return len(synced)


async def serve(
    bot: VeoBot,
    token: str,
    stop: asyncio.Event,
    *,
    sync: bool = False,
    guild_id: int | None = None,
    gateway: Callable[[VeoBot], Awaitable[None]] | None = None,
) -> None:
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
        gateway = await discover_gateway(bot)
    except discord.GatewayNotFound:
        raise StartupError("Discord did not say where its gateway is (GET /gateway/bot failed)") from None
    bot.identify_pacer.max_concurrency = gateway.max_concurrency
    owned = bot.shard_ids if bot.shard_ids is not None else range(bot.shard_count)
    bot.shard_states.expect(owned)
    log.info("connecting shard(s) %s of %s", describe(owned), bot.shard_count)
    try:
        await bot.connect(reconnect=True)
    except discord.PrivilegedIntentsRequired:
        raise StartupError("Discord refused the gateway intents (veobot needs none; check the application)") from None
