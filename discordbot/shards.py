"""The gateway shards this process runs: which, where their gateway is, how they identify, how they are.

Discord splits a bot's guilds over shards (guild ``(id >> 22) % count``; DMs on shard 0), one
gateway connection each. ``DISCORD_SHARD_COUNT`` and ``DISCORD_SHARD_IDS`` say how many there
are and which of them this process runs; several ``runbot`` processes, each with its own ids,
share one database, and any worker may run what any of them admitted. Neither set: one shard
of one, which is what an unsharded connection is to Discord.

``discover_gateway`` asks ``GET /gateway/bot`` (as Discord asks every bot to) for the gateway's
URL, the recommended count (``auto``) and ``session_start_limit.max_concurrency``. discord.py
reads that endpoint only when it picks the count itself, and otherwise connects to its built-in
``wss://gateway.discord.gg/``; it never reads ``max_concurrency``: before every IDENTIFY but a
process's first it sleeps 5 s, and processes know nothing of each other. ``IdentifyPacer``
replaces that sleep with Discord's rule: one IDENTIFY per 5 s per bucket ``shard_id %
max_concurrency``, in this process and, through a PostgreSQL advisory lock
(generation.identify_slots), across all of them.

``ShardStates`` logs each shard's connects, resumes and disconnects and reports them (and each
one's heartbeat latency) to /healthz and /metrics on the process's METRICS_PORT.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

import discord
import yarl
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from django.conf import settings

from generation import process_health
from generation.identify_slots import SharedIdentifySlots

log = logging.getLogger(__name__)

IDENTIFY_INTERVAL = 5.0  # seconds between two IDENTIFYs of one bucket (Discord's rule)


@dataclass(frozen=True)
class ShardPlan:
    """How many shards there are (``auto``: Discord's recommendation) and which this process runs
    (None: all of them)."""

    count: int | str
    ids: tuple[int, ...] | None = None

    @classmethod
    def from_settings(cls) -> ShardPlan:
        return cls(count=settings.DISCORD_SHARD_COUNT or 1, ids=settings.DISCORD_SHARD_IDS)

    @property
    def numeric_count(self) -> int | None:
        return self.count if isinstance(self.count, int) else None


@dataclass(frozen=True)
class Gateway:
    """What ``GET /gateway/bot`` says."""

    url: str
    recommended_shards: int
    max_concurrency: int


async def discover_gateway(bot: discord.AutoShardedClient) -> Gateway:
    """Ask Discord where the gateway is, point discord.py there, and settle an ``auto`` count."""
    recommended, url, limits = await bot.http.get_bot_gateway()
    gateway = Gateway(url=url, recommended_shards=recommended, max_concurrency=limits.get("max_concurrency", 1))
    # discord.py connects to DEFAULT_GATEWAY unless it chose the count itself, and goes back to it
    # after an invalid session: the class attribute is the one place that covers both.
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
    if bot.shard_count is None:  # auto
        bot.shard_count = recommended
    log.info(
        "gateway %s: %s shard(s), this process runs %s; Discord recommends %s; identify concurrency %s",
        yarl.URL(url).with_query(None),
        bot.shard_count,
        describe(bot.shard_ids if bot.shard_ids is not None else range(bot.shard_count)),
        recommended,
        gateway.max_concurrency,
    )
    if limits.get("remaining", 1) == 0:
        log.warning("Discord allows no more session starts until %s ms from now", limits.get("reset_after"))
    return gateway


def shard_of(client: discord.Client, guild_id: int | None) -> int:
    """The shard an interaction from ``guild_id`` came on (DMs: shard 0)."""
    return 0 if guild_id is None else (guild_id >> 22) % (client.shard_count or 1)


def describe(ids) -> str:
    """[0, 1, 2, 3, 6] -> '0-3,6'."""
    ids, runs = sorted(ids), []
    for shard in ids:
        if runs and runs[-1][1] == shard - 1:
            runs[-1][1] = shard
        else:
            runs.append([shard, shard])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class IdentifyPacer:
    """At most one IDENTIFY per IDENTIFY_INTERVAL in each bucket ``shard_id % max_concurrency``:
    in this process, and with ``shared`` (generation.identify_slots) in every process of the bot."""

    def __init__(self, *, shared: SharedIdentifySlots | None = None) -> None:
        self.max_concurrency = 1
        self.shared = shared
        self._last: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def wait(self, shard_id: int | None) -> None:
        bucket = (shard_id or 0) % self.max_concurrency
        lock = self._locks.setdefault(bucket, asyncio.Lock())
        async with lock:
            since = time.monotonic() - self._last.get(bucket, -math.inf)
            if since < IDENTIFY_INTERVAL:
                await asyncio.sleep(IDENTIFY_INTERVAL - since)
            if self.shared is not None:
                await self.shared.take(bucket)
            self._last[bucket] = time.monotonic()


class ShardStates:
    """Each shard's state (connecting, connected, disconnected) and latency, as the bot's
    events tell them, in the logs, /healthz and /metrics."""

    def __init__(self, bot: commands.AutoShardedBot) -> None:
        self._bot = bot
        self._states: dict[int, str] = {}
        self._since: dict[int, float] = {}
        for event, state, word in (
            ("on_shard_connect", "connected", "connected"),
            ("on_shard_resumed", "connected", "resumed its session"),
            ("on_shard_disconnect", "disconnected", "disconnected"),
        ):
            bot.add_listener(self._recorder(state, word), event)
        process_health.watch_shards(self.snapshot)

    def expect(self, ids) -> None:
        for shard in ids:
            self._set(shard, "connecting")

    def _recorder(self, state: str, word: str):
        async def record(shard_id: int) -> None:
            # discord.py says "disconnected" more than once per drop; a resume is always worth a line.
            if self._states.get(shard_id) != state or word != state:
                self._set(shard_id, state)
                log.info("shard %s/%s %s", shard_id, self._bot.shard_count, word)

        return record

    def _set(self, shard_id: int, state: str) -> None:
        self._states[shard_id] = state
        self._since[shard_id] = time.time()

    def latency(self, shard_id: int) -> float | None:
        info = self._bot.get_shard(shard_id)
        value = info.latency if info is not None and not info.is_closed() else math.inf
        return None if math.isinf(value) else round(value, 4)

    def snapshot(self) -> dict:
        """{"count": 4, "shards": {"0": {"state": "connected", "latency_s": 0.04, "since": ...}, ...}}"""
        return {
            "count": self._bot.shard_count,
            "shards": {
                str(shard): {"state": state, "latency_s": self.latency(shard), "since": round(self._since[shard], 3)}
                for shard, state in sorted(self._states.items())
            },
        }
