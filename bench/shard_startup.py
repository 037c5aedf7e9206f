"""Gateway start-up: how long until every shard a process runs is connected, and what it costs.

``.venv/bin/python bench/shard_startup.py [--runs 5]``. No database: plain discord.py clients
(Intents.none(), as the bot's) against the fake Discord's gateway on loopback
(tests/fakes/discord_gateway.py), each run in a fresh event loop. Compared:

- ``Client``: what runbot ran before sharding (one unsharded connection);
- ``AutoShardedClient`` with one shard: what runbot runs with neither setting;
- four shards in one process, with discord.py's own ``before_identify_hook`` (a flat 5 s before
  every IDENTIFY but the first), and with ``discordbot.shards.IdentifyPacer`` at the fake's
  ``max_concurrency`` of 16 and of 1.

Printed: the median seconds from ``connect()`` to the last shard's READY, and the process's
process's peak resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veosite.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")

import discord  # noqa: E402
import yarl  # noqa: E402
from discord.gateway import DiscordWebSocket  # noqa: E402

from discordbot.shards import IdentifyPacer  # noqa: E402
from tests.fakes.discord_server import BOT_TOKEN, FakeDiscordServer  # noqa: E402


def client_class(base: type[discord.Client], *, concurrency: int | None):
    pacer = None
    if concurrency is not None:  # a fresh pacer per run: the last run's IDENTIFYs count against the next
        pacer = IdentifyPacer()
        pacer.max_concurrency = concurrency

    class Timed(base):
        async def on_connect(self) -> None:  # every shard's READY dispatches it
            self.connects += 1
            if self.connects == self.expected:
                self.all_connected.set()

        async def before_identify_hook(self, shard_id, *, initial=False) -> None:
            if pacer is None:
                await super().before_identify_hook(shard_id, initial=initial)
            else:
                await pacer.wait(shard_id)

    return Timed


async def one_run(cls, *, expected: int, **options) -> float:
    client = cls(intents=discord.Intents.none(), **options)
    client.connects, client.expected, client.all_connected = 0, expected, asyncio.Event()
    await client.login(BOT_TOKEN)
    started = time.perf_counter()
    running = asyncio.create_task(client.connect())
    await asyncio.wait_for(client.all_connected.wait(), 60)
    took = time.perf_counter() - started
    await client.close()
    await asyncio.wait_for(running, 10)
    return took


def measure(server, name: str, base, *, expected: int, runs: int, concurrency: int | None = None, **options) -> None:
    times = [
        asyncio.run(one_run(client_class(base, concurrency=concurrency), expected=expected, **options))
        for _ in range(runs)
    ]
    print(f"{name:<58} {statistics.median(times):7.3f} s  (min {min(times):.3f}, max {max(times):.3f}, n={runs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import django

    django.setup()
    with FakeDiscordServer() as server, server.patch_discord():
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(server.gateway.url)
        print(f"python {sys.version.split()[0]}, discord.py {discord.__version__}, {os.cpu_count()} CPUs")
        measure(server, "Client (unsharded)", discord.Client, expected=1, runs=args.runs)
        measure(
            server,
            "AutoShardedClient, shard 0 of 1",
            discord.AutoShardedClient,
            expected=1,
            runs=args.runs,
            shard_count=1,
        )
        measure(
            server,
            "AutoShardedClient, 4 shards, discord.py's hook",
            discord.AutoShardedClient,
            expected=4,
            runs=max(1, args.runs // 5),
            shard_count=4,
        )
        for concurrency in (16, 1):
            measure(
                server,
                f"AutoShardedClient, 4 shards, IdentifyPacer, max_concurrency {concurrency}",
                discord.AutoShardedClient,
                expected=4,
                runs=max(1, args.runs // 5) if concurrency == 1 else args.runs,
                concurrency=concurrency,
                shard_count=4,
            )
        print(f"max RSS of this process: {_max_rss_mb():.1f} MB")


def _max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
