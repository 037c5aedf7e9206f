"""manage.py runbot / synccommands as real processes: fail fast with one clear line, never
show the token; register commands only when asked; structured logs."""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.discord_server import BOT_TOKEN, FakeDiscordServer
from tests.fakes.interactions import GUILD_ID
from tests.workers import ROOT, database_url, wait_for
from veosite import logs

WRONG_TOKEN = "MTIzNDU2Nzg5.wrong.token-that-must-never-be-printed"


def manage(*args, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update({"SECRET_KEY": "tests-only", "DISCORD_TOKEN": "", **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def server():
    with FakeDiscordServer() as server:
        yield server
        assert server.internal_errors == []


def test_runbot_without_a_token_stops_with_one_line(db_settings):
    result = manage("runbot", env={"DATABASE_URL": database_url(db_settings)})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "CommandError: DISCORD_TOKEN is not set: put the bot token from the Discord Developer Portal in .env "
        "(see .env.example)"
    ]


def test_runbot_with_a_rejected_token_says_so_without_showing_it(db_settings, server):
    result = manage(
        "runbot",
        env={
            "DATABASE_URL": database_url(db_settings),
            "DISCORD_TOKEN": WRONG_TOKEN,
            "DISCORD_API_BASE_URL": server.base_url,
        },
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("CommandError: DISCORD_TOKEN was rejected by Discord (401 Unauthorized)")
    assert WRONG_TOKEN not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert [r.route for r in server.requests()] == ["/users/@me"]  # nothing registered, nothing else tried


def test_runbot_refuses_a_token_of_another_application(db_settings, server):
    result = manage(
        "runbot",
        env={
            "DATABASE_URL": database_url(db_settings),
            "DISCORD_TOKEN": BOT_TOKEN,
            "DISCORD_API_BASE_URL": server.base_url,
            "DISCORD_APPLICATION_ID": "42",
        },
    )
    assert result.stderr.strip().splitlines()[-1] == (
        f"CommandError: DISCORD_TOKEN belongs to application {server.application_id}, not DISCORD_APPLICATION_ID 42"
    )


def test_synccommands_registers_the_commands_and_the_context_menu_in_a_guild(db_settings, server):
    result = manage(
        "synccommands",
        "--guild",
        str(GUILD_ID),
        env={
            "DATABASE_URL": database_url(db_settings),
            "DISCORD_TOKEN": BOT_TOKEN,
            "DISCORD_API_BASE_URL": server.base_url,
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"registered 5 commands in guild {GUILD_ID}"
    commands = {c["name"]: c for c in server.commands(GUILD_ID)}
    assert sorted(commands) == ["Animate with Veo", "appeal", "history", "quota", "veo"]
    assert commands["Animate with Veo"]["type"] == 3  # on a message
    options = {o["name"]: o for o in commands["veo"]["options"]}
    assert list(options) == ["prompt", "length", "ratio", "hd", "audio", "negative_prompt", "image", "last_frame"]
    assert (options["image"]["type"], options["image"]["required"]) == (11, False)  # an attachment
    assert (options["prompt"]["min_length"], options["prompt"]["max_length"]) == (5, 600)
    assert [c["value"] for c in options["length"]["choices"]] == [4, 6, 8]
    [text] = commands["appeal"]["options"]
    assert (text["name"], text["type"], text["required"], text["max_length"]) == ("text", 3, True, 1000)
    assert server.commands() == []  # nothing global


def run_or_worker_until_the_worker_starts(db_settings, log: Path, **env: str) -> str:
    """`runbot --or-worker` (as `make run` starts it) until the worker's own start line, then
    SIGTERM; what it printed. The earlier notice of why the bot is not running must not count."""
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update(SECRET_KEY="tests-only", DATABASE_URL=database_url(db_settings), **env)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runbot", "--or-worker"],
        cwd=ROOT,
        env=environment,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: " started: backend " in log.read_text(), timeout=60, what="the worker")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text()


def test_runbot_or_worker_without_a_token_says_so_and_runs_the_worker(db_settings, tmp_path):
    text = run_or_worker_until_the_worker_starts(db_settings, tmp_path / "run.log", DISCORD_TOKEN="")
    assert "DISCORD_TOKEN is not set, so the Discord bot is not started" in text


def test_runbot_or_worker_that_discord_refuses_says_why_and_runs_the_worker(db_settings, tmp_path, server):
    text = run_or_worker_until_the_worker_starts(
        db_settings, tmp_path / "run.log", DISCORD_TOKEN="not-the-bot-token", DISCORD_API_BASE_URL=server.base_url
    )
    assert "the Discord bot could not start (DISCORD_TOKEN was rejected by Discord (401 Unauthorized)" in text, text
    assert "running the generation worker alone" in text and "not-the-bot-token" not in text


def test_json_log_lines_carry_the_step_fields():
    captured = []

    class Capture(logging.Handler):
        def emit(self, record):
            captured.append(logs.JsonFormatter().format(record))

    logger = logging.getLogger("tests.json")
    logger.addHandler(Capture())
    logger.setLevel(logging.INFO)
    logs.step(
        logger, "admitted", request_id=7, user_id=1, guild_id=None, admit_ms=3.14159, prompt=logs.preview("x" * 500)
    )
    entry = json.loads(captured[-1])
    assert entry["message"].startswith("request 7 admitted user_id=1 admit_ms=3.1")
    assert (entry["event"], entry["request_id"], entry["admit_ms"], entry["level"]) == ("admitted", 7, 3.1, "INFO")
    assert len(entry["prompt"]) == logs.PREVIEW_CHARS
