"""``python -m tests.bot_process``: the real bot (VeoBot, worker, journal) in its own process.

Exactly what ``manage.py runbot`` runs (``discordbot.bot.serve`` of ``discordbot.app.build_bot``,
with ``configured_backend()``), except that the gateway is stdin: each line is an
INTERACTION_CREATE payload, handed to discord.py the way the gateway would
(tests/fakes/interactions.py). REST calls go to DISCORD_API_BASE_URL (the fake); Veo calls go
through google-genai to VEO_API_BASE_URL, which must name a Veo fake (tests/fakes/veo_server.py).
Tests use it to kill a bot for real.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path


async def stdin_gateway(bot) -> None:
    from tests.fakes.interactions import deliver

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        deliver(bot, json.loads(line))
    await asyncio.Event().wait()  # stdin closed: keep serving until signalled


def main(backend=None) -> None:
    """Serve until SIGTERM. ``backend`` None: the configured one, which must be google-genai talking
    to a local fake (never Google itself); otherwise a callable making the backend (bench/)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veosite.settings")
    import django

    django.setup()
    from django.conf import settings

    from discordbot.app import build_bot
    from discordbot.bot import point_at_api, serve
    from generation.runtime import run_until_signalled
    from generation.veo import configured_backend

    point_at_api(settings.DISCORD_API_BASE_URL)
    if backend is None:
        if settings.VEO_BACKEND == "offline" or not settings.VEO_API_BASE_URL:
            sys.exit("tests.bot_process needs VEO_BACKEND=express (or vertex) and VEO_API_BASE_URL of a Veo fake")
        made = configured_backend()  # the real google-genai client, against the Veo fake
    else:
        made = backend()
    bot = build_bot(backend=made)
    run_until_signalled(lambda stop: serve(bot, settings.DISCORD_TOKEN, stop, gateway=stdin_gateway))


def bot_environment(*, database_url: str, server, veo_fake, tmp_path: Path, **env: str) -> dict:
    """The settings of a bot process against the fakes (``server``: Discord's, ``veo_fake``: Veo's),
    its media and journal in ``tmp_path``; ``env`` adds to them or overrides them."""
    from tests.fakes.discord_server import BOT_TOKEN
    from tests.fakes.veo_server import DEFAULT_API_KEY

    return {
        "SECRET_KEY": "tests-only",
        "DATABASE_URL": database_url,
        "DISCORD_TOKEN": BOT_TOKEN,
        "DISCORD_API_BASE_URL": server.base_url,
        "VEO_MEDIA_ROOT": str(tmp_path / "media"),
        "VEO_JOURNAL_DIR": str(tmp_path / "journal"),
        "VEO_BACKEND": "express",
        "VEO_API_KEY": DEFAULT_API_KEY,
        "VEO_API_BASE_URL": veo_fake.url,
        "DATABASE_PROBE_INTERVAL": "1s",
        **env,
    }


class BotProcess:
    """``python -m tests.bot_process`` started from a test: feed it interactions, kill it, stop it.
    With ``command=("manage.py", "runbot")``: runbot itself, whose gateway is the fake's
    (tests/fakes/discord_gateway.py)."""

    def __init__(self, env: dict, log_path: Path, *, command: tuple[str, ...] = ("-m", "tests.bot_process")):
        from tests.workers import ROOT, wait_for

        self.log_path = log_path
        environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        environment.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=open(log_path, "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: "bot ready" in self.log() or self.proc.poll() is not None, timeout=60, what="bot start")
        assert self.proc.poll() is None, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, server, payload: dict) -> None:
        server.register_interaction(payload)  # Discord's 3 s clock starts now
        self.proc.stdin.write(json.dumps(payload).encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


if __name__ == "__main__":
    main()
