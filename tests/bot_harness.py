"""Running the real VeoBot (discord.py, worker, degraded mode) against the fake Discord server.

The only stand-ins: Discord itself (tests/fakes/discord_server.py, fed real INTERACTION_CREATE
payloads) and Veo (``ScriptedVeo`` below, a VeoBackend that follows instructions in the
prompt). The database is the real test database.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from django.conf import settings

from discordbot.app import build_bot
from discordbot.bot import VeoBot
from generation.storage import LocalStorage
from generation.veo import SAMPLE_VIDEO, GeneratedVideo, OperationLost, Outcome, VideoJob
from tests.fakes.discord_server import BOT_TOKEN
from tracking import aio

SAMPLE_BYTES = SAMPLE_VIDEO.read_bytes()


class ScriptedVeo:
    """A Veo backend for tests: takes ``seconds`` per video; a prompt containing "[fail]" ends in
    an error from Veo. The operation name carries the start time, so any process can resume it."""

    label = "scripted test backend"

    def __init__(self, *, seconds: float = 0.0, video: bytes | None = None):
        self.seconds = seconds
        self.video = video or SAMPLE_BYTES
        self.starts = 0

    async def start(self, job: VideoJob) -> str:
        self.starts += 1
        kind = "fail" if "[fail]" in job.prompt else "ok"
        return f"scripted/{kind}/{time.time():.3f}/{job.request_id}"

    async def poll(self, operation_name: str) -> Outcome | None:
        try:
            _, kind, started, _ = operation_name.split("/")
        except ValueError:
            raise OperationLost(operation_name) from None
        if time.time() < float(started) + self.seconds:
            return None
        if kind == "fail":
            return Outcome(error_code="operation_failed", error_message="Veo reported an error: internal error")
        return Outcome(videos=[GeneratedVideo(mime_type="video/mp4", data=self.video)])


def new_bot(*, backend=None, **kwargs) -> VeoBot:
    return build_bot(backend=backend or ScriptedVeo(), storage=LocalStorage(Path(settings.VEO_MEDIA_ROOT)), **kwargs)


def run_bot(scenario, *, bot_factory=new_bot, **kwargs):
    """Log a fresh VeoBot in against the fake (REST only) and run ``await scenario(bot)``; then
    close it the way runbot does on SIGTERM."""

    async def main():
        bot = bot_factory(**kwargs)
        await bot.login(BOT_TOKEN)
        try:
            return await scenario(bot)
        finally:
            await bot.close()

    return asyncio.run(main())


async def eventually(check, *, timeout: float = 20, what: str = "condition"):
    """Await until ``check()`` (a sync function, run on the database thread pool) is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await aio.run(check)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def quick_bot_settings(settings, tmp_path) -> None:
    """Fast polling and short leases for bot tests, an empty queue, no bans or policies."""
    from datetime import timedelta

    from django.db import connection

    from tests.workers import truncate_requests

    truncate_requests()
    with connection.cursor() as cursor:  # unmanaged tables: pytest-django does not flush them
        cursor.execute("TRUNCATE user_bans, quota_policies")
    settings.VEO_MEDIA_ROOT = tmp_path / "media"
    settings.VEO_JOURNAL_DIR = tmp_path / "journal"
    settings.VEO_POLL_INITIAL = timedelta(milliseconds=50)
    settings.VEO_POLL_MAX = timedelta(milliseconds=200)
    settings.VEO_WORKER_IDLE_POLL = timedelta(milliseconds=50)
    settings.VEO_LEASE = timedelta(seconds=3)
    settings.VEO_QUOTA_LIMIT = 5
    settings.ALLOWED_CHANNEL_IDS = frozenset()
    settings.VEO_PUBLIC_MEDIA_URL = ""


def fake_discord():
    """A running fake Discord with discord.py pointed at it; fails the test on a fake's own error."""
    from tests.fakes.discord_server import FakeDiscordServer

    with FakeDiscordServer() as server, server.patch_discord():
        yield server
        assert server.internal_errors == []
