"""The fake gateway (tests/fakes/discord_gateway.py) against discord.py's own AutoShardedClient:
the URL from GET /gateway/bot, zlib-stream frames, IDENTIFY per shard, dispatch by guild,
heartbeats, a dropped connection resumed with the missed events, and an invalid session."""

import asyncio
import time

import discord
import pytest
import yarl
from discord.ext import commands
from discord.gateway import DiscordWebSocket

from tests.fakes.discord_gateway import shard_of
from tests.fakes.discord_server import BOT_TOKEN, FakeDiscordServer
from tests.fakes.interactions import slash_command

# One guild on each of 4 shards: a guild's shard is (id >> 22) % count.
GUILDS = [(((1_180_000_000_000_000_100 >> 22) // 4 * 4 + n) << 22) + 100 for n in range(4)]


@pytest.fixture
def server():
    with FakeDiscordServer() as server, server.patch_discord():
        previous = DiscordWebSocket.DEFAULT_GATEWAY
        yield server
        DiscordWebSocket.DEFAULT_GATEWAY = previous
        assert server.internal_errors == []


class Recorder(commands.AutoShardedBot):
    def __init__(self, **options):
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.none(), **options)
        self.seen: list[int] = []  # interaction ids
        self.connected: set[int] = set()

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        self.seen.append(interaction.id)

    async def on_shard_connect(self, shard_id: int) -> None:
        self.connected.add(shard_id)

    async def before_identify_hook(self, shard_id, *, initial=False) -> None:
        pass  # the fake allows every IDENTIFY at once (max_concurrency 16)


async def until(check, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def run(server, scenario, **options):
    async def main():
        client = Recorder(**options)
        await client.login(BOT_TOKEN)
        _, url, _ = await client.http.get_bot_gateway()
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)  # as discordbot.shards.discover_gateway does
        running = asyncio.create_task(client.connect())
        try:
            await scenario(client)
        finally:
            await client.close()
            await asyncio.wait_for(running, 10)

    asyncio.run(main())


def in_guild(guild_id: int | None) -> dict:
    return slash_command("quota", guild_id=guild_id)


def test_each_interaction_arrives_on_the_shard_of_its_guild_and_dms_on_shard_0(server):
    async def scenario(client):
        await until(lambda: client.connected == {0, 1, 2, 3}, "four shards")
        payloads = [in_guild(g) for g in GUILDS] + [in_guild(None)]
        for payload in payloads:
            server.gateway.dispatch_interaction(payload)
        await until(lambda: len(client.seen) == 5, "five interactions")
        assert sorted(client.seen) == sorted(int(p["id"]) for p in payloads)
        assert [shard_of(g, 4) for g in GUILDS] == [0, 1, 2, 3]
        assert [server.gateway.dispatched[int(p["id"])][0] for p in payloads] == [0, 1, 2, 3, 0]

    run(server, scenario, shard_count=4)
    assert sorted(server.gateway.identifies) == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert all(q["compress"] == "zlib-stream" and q["v"] == "10" for q in server.gateway.connect_queries)
    assert server.gateway.heartbeats >= 4  # discord.py beats once on HELLO


def test_a_dropped_shard_resumes_and_gets_what_it_missed_once(server):
    async def scenario(client):
        await until(lambda: client.connected == {0, 1}, "two shards")
        server.gateway.drop(1)
        missed = [in_guild(GUILDS[1]) for _ in range(3)]
        for payload in missed:
            server.gateway.dispatch_interaction(payload)
        await until(lambda: len(client.seen) == 3, "the missed interactions")
        await asyncio.sleep(0.2)  # nothing more arrives
        assert sorted(client.seen) == sorted(int(p["id"]) for p in missed)

    run(server, scenario, shard_count=2, shard_ids=[0, 1])
    [resumed] = [s for s in server.gateway.sessions.values() if s.resumes]
    assert resumed.shard == (1, 2) and resumed.resumes == 1
    assert sorted(server.gateway.identifies) == [(0, 2), (1, 2)]  # resumed, not identified again
    assert any(q["path"] == "/gateway/resume" for q in server.gateway.connect_queries)


def test_an_invalid_session_makes_the_shard_identify_again(server):
    async def scenario(client):
        await until(lambda: client.connected == {0}, "one shard")
        server.gateway.invalidate(0)
        server.gateway.drop(0)
        await until(lambda: len(server.gateway.identifies) == 2, "a second IDENTIFY")
        await until(lambda: 0 in server.gateway.connected_shards(), "shard 0 back")
        payload = in_guild(None)
        server.gateway.dispatch_interaction(payload)
        await until(lambda: client.seen, "the interaction")

    run(server, scenario, shard_count=1)


def test_shard_states_follow_a_disconnect_and_the_resume_in_health_and_logs(server, caplog):
    from discordbot.shards import ShardStates
    from generation import process_health

    process_health.report_degraded(False)  # this test's process has seen outages in other tests

    async def scenario(client):
        states = ShardStates(client)
        states.expect([0, 1])
        assert process_health.health()[0] == 503  # connecting
        await until(lambda: client.connected == {0, 1}, "two shards")
        await until(lambda: process_health.health()[0] == 200, "healthy")
        server.gateway.hold()
        server.gateway.drop(1)
        await until(lambda: states.snapshot()["shards"]["1"]["state"] == "disconnected", "shard 1 down")
        status, body = process_health.health()
        assert (status, body["reason"]) == (503, "shard(s) not connected: 1")
        assert body["gateway"]["shards"]["0"]["state"] == "connected"
        server.gateway.release()
        await until(lambda: process_health.health()[0] == 200, "healthy again")
        assert states.snapshot()["count"] == 2

    caplog.set_level("INFO", logger="discordbot.shards")
    run(server, scenario, shard_count=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "discordbot.shards"]
    assert sorted(lines[:2]) == ["shard 0/2 connected", "shard 1/2 connected"]  # in either order
    assert lines[2:] == ["shard 1/2 disconnected", "shard 1/2 resumed its session"]


def test_auto_takes_discords_recommended_count_and_the_gateway_it_names(server):
    from discordbot.shards import discover_gateway

    server.gateway.recommended_shards, server.gateway.max_concurrency = 3, 2

    async def main():
        client = Recorder()  # shard_count None: DISCORD_SHARD_COUNT=auto
        await client.login(BOT_TOKEN)
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL("wss://gateway.discord.gg/")
        gateway = await discover_gateway(client)
        assert (client.shard_count, gateway.max_concurrency) == (3, 2)
        assert str(DiscordWebSocket.DEFAULT_GATEWAY) == server.gateway.url
        running = asyncio.create_task(client.connect())
        try:
            await until(lambda: client.connected == {0, 1, 2}, "three shards")
        finally:
            await client.close()
            await asyncio.wait_for(running, 10)

    asyncio.run(main())
    assert sorted(server.gateway.identifies) == [(0, 3), (1, 3), (2, 3)]
