"""Real bot and worker processes for the fault-injection runs, and what users ended up with.

The bot is ``tests.bot_process`` (stdin gateway, REST to the fake Discord); workers are
``manage.py runworker``. Both talk to the Veo fake through the real google-genai client.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from discordbot.display import inert
from tests.bot_process import BotProcess
from tests.fakes.discord_server import BOT_TOKEN, FakeDiscordServer
from tests.fakes.interactions import CHANNEL_ID
from tests.workers import runworker_process, wait_for, watch_for_second_deliveries
from veosite.config import parse_duration

# Titles of a reply that is still waiting for its outcome.
IN_PROGRESS = {"Queued", "Generating…"}


def process_env(*, database: str, veo_url: str, tmp_path: Path, quota_limit: int) -> dict:
    """Settings shared by every process of a run: one database, one Veo fake, one media folder,
    short leases so a killed process's work is picked up within seconds."""
    return {
        "SECRET_KEY": "tests-only",
        "DATABASE_URL": database,
        "VEOBOT_ENV_FILE": "/dev/null",
        "VEO_BACKEND": "express",
        "VEO_API_KEY": "test-key",
        "VEO_API_BASE_URL": veo_url,
        "VEO_MEDIA_ROOT": str(tmp_path / "media"),
        "VEO_JOURNAL_DIR": str(tmp_path / "journal"),
        "VEO_LEASE": "5s",
        "VEO_POLL_INITIAL": "1s",
        "VEO_POLL_MAX": "2s",
        "VEO_WORKER_IDLE_POLL": "1s",
        "VEO_MAX_CONCURRENT": "1000",
        "VEO_MAX_STARTS_PER_MINUTE": "10000",
        "VEO_QUOTA_LIMIT": str(quota_limit),
        "DATABASE_PROBE_INTERVAL": "1s",
    }


class Fleet:
    """One bot and any number of workers, each killable (-9) and restartable by name."""

    def __init__(self, *, env: dict, server: FakeDiscordServer, tmp_path: Path, workers: int = 0):
        self.env = env
        self.server = server
        self.tmp_path = tmp_path
        self.starts: Counter[str] = Counter()
        self.bot: BotProcess | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.start("bot")
        for number in range(1, workers + 1):
            self.start(f"worker-{number}")

    @property
    def names(self) -> list[str]:
        return ["bot", *self.workers]

    def start(self, name: str) -> None:
        self.starts[name] += 1
        log_path = self.tmp_path / f"{name}.{self.starts[name]}.log"
        if name == "bot":
            self.bot = BotProcess(
                {**self.env, "DISCORD_TOKEN": BOT_TOKEN, "DISCORD_API_BASE_URL": self.server.base_url}, log_path
            )
        else:
            self.workers[name] = runworker_process(self.env, log_path)

    def kill(self, name: str) -> None:
        if name == "bot":
            self.bot.kill()
        else:
            self.workers[name].kill()
            self.workers[name].wait(30)

    def send(self, payload: dict) -> None:
        """Hand one interaction to the bot and wait until Discord has its first answer."""
        self.bot.send(self.server, payload)
        wait_for(
            lambda: self.server.interaction(payload["id"]).acknowledged_at is not None,
            timeout=30,
            what=f"an answer to interaction {payload['id']}",
        )

    def watch_for_second_deliveries(self, db: dict) -> None:
        """Once every request is delivered: fail at any sign of a second delivery until none could
        still come, a full lease and a claim poll of these processes after the last delivery
        (tests/workers.py says why that is long enough)."""
        watch_for_second_deliveries(
            db,
            self.server,
            lease=parse_duration(self.env["VEO_LEASE"]),
            claim_poll=parse_duration(self.env["VEO_WORKER_IDLE_POLL"]),
        )

    def stop(self) -> None:
        """SIGTERM everything still running (as a deploy would); kill what does not stop."""
        if self.bot is not None:
            self.bot.stop()
        for proc in self.workers.values():
            proc.terminate()
        for proc in self.workers.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()

    def cleanup(self) -> None:
        if self.bot is not None:
            self.bot.cleanup()
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.tmp_path.glob("*.log")))


def final_answers(server: FakeDiscordServer, payloads: dict[str, dict]) -> dict[str, int]:
    """prompt -> how many final answers its user got: the original reply once it holds an
    outcome or a refusal, plus every channel post about that prompt (a delivery after a
    restart mentions the user and shows the prompt)."""
    posts = Counter(
        message["embeds"][0]["description"]
        for message in server.messages_in(CHANNEL_ID)
        if message["content"].startswith("<@") and message["embeds"]
    )
    answers = {}
    for prompt, payload in payloads.items():
        original = server.original_response(payload["id"])
        embeds = original["embeds"] if original else []
        final_reply = original is not None and not (embeds and embeds[0]["title"] in IN_PROGRESS)
        answers[prompt] = int(final_reply) + posts[inert(prompt)]  # the embed shows the prompt escaped
    return answers
