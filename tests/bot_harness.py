"""Running the real VeoBot (discord.py, worker, degraded mode) against the fakes.

The only stand-ins: Discord itself (tests/fakes/discord_server.py, fed real INTERACTION_CREATE
payloads) and the Veo service (tests/fakes/veo_server.py), which the real google-genai client
behind ``GenaiBackend`` talks HTTP to. The database is the real test database.

A bot test asks for the ``veo_fake`` fixture (tests/conftest.py: ``fake_veo`` below); what Veo
does with a prompt is the fake's ``default_scenario`` ("instant" unless the test sets it, e.g.
``scenario("slow", seconds=0.3)``) or a ``[scenario:NAME ...]`` marker in the prompt (the ones
for every outcome are in tests/outcomes.py).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from django.conf import settings

from discordbot.app import build_bot
from discordbot.bot import VeoBot
from generation.storage import LocalStorage
from generation.veo import SAMPLE_VIDEO, GenaiBackend
from tests.fakes.discord_server import BOT_TOKEN
from tests.fakes.veo_server import DEFAULT_API_KEY, FakeVeoServer
from tracking import aio

SAMPLE_BYTES = SAMPLE_VIDEO.read_bytes()


def fake_veo(settings):
    """A running Veo fake with the settings pointing at it (express mode, with a key it accepts).
    Every video it makes is the bundled sample (64 KB), so upload limits in tests apply to a real
    MP4 of a known size."""
    with FakeVeoServer(video_bytes=SAMPLE_BYTES) as veo:
        settings.VEO_BACKEND, settings.VEO_API_KEY = "express", DEFAULT_API_KEY
        settings.VEO_API_BASE_URL = veo.url
        settings.VEO_RECORDED_MODEL = settings.VEO_MODEL  # as with any real backend
        yield veo
        # Refusals no scenario asks for: a route the fake lacks, or a credential it does not take.
        unasked = [(r.method, r.path, r.status) for r in veo.requests if r.kind == "unknown" or r.status in (401, 403)]
        assert unasked == []


def genai_backend() -> GenaiBackend:
    """The production backend for the Veo fake of the ``veo_fake`` fixture: what
    ``configured_backend()`` makes, a google-genai client per event loop, made at the first call
    to Veo (making one loads three TLS contexts, a tenth of a second or more: bots that never call
    Veo skip it) and closed when the worker stops."""
    if not settings.VEO_API_BASE_URL:
        raise RuntimeError("no Veo fake to talk to: ask for the veo_fake fixture (tests/conftest.py)")
    return GenaiBackend(None, model=settings.VEO_MODEL, output_gcs_uri=settings.VEO_OUTPUT_GCS_URI)


def new_bot(*, backend=None, **kwargs) -> VeoBot:
    return build_bot(backend=backend or genai_backend(), storage=LocalStorage(Path(settings.VEO_MEDIA_ROOT)), **kwargs)


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
        cursor.execute("TRUNCATE user_bans, quota_policies, reply_tokens CASCADE")
    settings.VEO_MEDIA_ROOT = tmp_path / "media"
    settings.VEO_JOURNAL_DIR = tmp_path / "journal"
    settings.VEO_POLL_INITIAL = timedelta(milliseconds=50)
    settings.VEO_POLL_MAX = timedelta(milliseconds=200)
    settings.VEO_WORKER_IDLE_POLL = timedelta(milliseconds=50)
    settings.VEO_LEASE = timedelta(seconds=3)
    settings.VEO_QUOTA_LIMIT = 5
    settings.ALLOWED_CHANNEL_IDS = frozenset()
    settings.VEO_PUBLIC_MEDIA_URL = ""


def delivered(interaction_id):
    """For ``eventually``: the request of that interaction once it has been delivered."""
    from tracking.models import VideoRequest

    return lambda: VideoRequest.objects.filter(interaction_id=interaction_id, delivered_at__isnull=False).first()


def run_to_delivery(server, payload: dict, **kwargs) -> dict:
    """``payload`` answered and its outcome delivered by one bot process; the original reply."""
    from tests.fakes.interactions import deliver_and_wait

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        await eventually(delivered(int(payload["id"])), what="delivery")

    run_bot(scenario, **kwargs)
    return server.original_response(payload["id"])


def veo_command(prompt="a red fox running through fresh snow", **options) -> dict:
    """A /veo payload; ``opts`` are its options beside the prompt, the rest as for slash_command."""
    from tests.fakes.interactions import slash_command

    return slash_command("veo", {"prompt": prompt, **options.pop("opts", {})}, **options)


def fake_discord():
    """A running fake Discord with discord.py pointed at it; fails the test on a fake's own error."""
    from tests.fakes.discord_server import FakeDiscordServer

    with FakeDiscordServer() as server, server.patch_discord():
        yield server
        assert server.internal_errors == []
