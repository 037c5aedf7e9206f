"""Secrets never appear in logs, errors, Discord messages or admin pages.

The bot, the worker and the admin run as real processes with known secret values — the
Discord token, the Veo express key, SECRET_KEY and a database password in DATABASE_URL —
at LOG_LEVEL=DEBUG, through their normal paths, their failure paths (bad settings, a
database that is down or goes down) and their pages; everything they print, send or serve
is scanned for those values.
"""

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model

from tests.factories import VideoRequestFactory
from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.interactions import slash_command
from tests.fakes.veo_server import FakeVeoServer, scenario
from tests.helpers import csrf_token, free_port, http_status, next_interaction
from tests.tcp_proxy import TcpProxy
from tests.test_bot_processes import BotProcess
from tests.workers import ROOT, truncate_requests, wait_for
from tracking import services
from tracking.models import VideoRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.processes]

TOKEN = f"scan-discord-token.{secrets.token_hex(12)}"
VEO_KEY = f"scan-veo-key-{secrets.token_hex(12)}"
SECRET_KEY = f"scan-secret-key-{secrets.token_hex(24)}"
SECRETS = [TOKEN, VEO_KEY, SECRET_KEY]


@pytest.fixture
def db_password(db_settings):
    """The test database's real password, or (trusted local socket) one that is sent but not needed."""
    return db_settings.get("PASSWORD") or f"scan-db-pass-{secrets.token_hex(12)}"


def url_with_password(db: dict, password: str, *, host: str | None = None, port: int | None = None) -> str:
    user = db.get("USER") or "postgres"
    if host is None and (db.get("HOST") or "").startswith("/"):
        return f"postgresql://{user}:{password}@/{db['NAME']}?host={db['HOST']}"
    return (
        f"postgresql://{user}:{password}@{host or db.get('HOST') or '127.0.0.1'}:{port or db.get('PORT') or 5432}"
        f"/{db['NAME']}"
    )


def secret_env(database_url: str, tmp_path: Path, **extra) -> dict:
    return {
        "SECRET_KEY": SECRET_KEY,
        "DISCORD_TOKEN": TOKEN,
        "VEO_API_KEY": VEO_KEY,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "DEBUG",
        "VEOBOT_ENV_FILE": os.devnull,
        "VEO_MEDIA_ROOT": str(tmp_path / "media"),
        "VEO_JOURNAL_DIR": str(tmp_path / "journal"),
        **extra,
    }


def assert_no_secrets(text: str, where: str, *extra: str) -> None:
    for value in [*SECRETS, *extra]:
        assert value not in text, f"{where} shows a secret ({value[:12]}...)"


def manage(*args: str, env: dict, timeout: float = 60) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout
    )
    return result.stdout + result.stderr


# -- start-up and database-down failures ------------------------------------------------------------

DOWN = "postgresql://veobot:{password}@127.0.0.1:9/veobot"


@pytest.mark.parametrize(
    ("args", "overrides"),
    [
        (("check",), {"DATABASE_URL": "mysql://veobot:{password}@127.0.0.1/veobot"}),
        (("check",), {"DATABASE_URL": "postgresql://veobot:{password}@127.0.0.1:notaport/veobot"}),
        (("check",), {"DATABASE_URL": "postgresql://veobot:{password}@127.0.0.1:5432/"}),
        (("check",), {"VEO_BACKEND": "sideways"}),
        (("check",), {"SECRET_KEY": "", "DEBUG": "false"}),
        (("check",), {"DATABASE_DIRECT_URL": "mysql://veobot:{password}@127.0.0.1/veobot"}),
        (("migrate_sql", "--list"), {"DATABASE_URL": DOWN}),
        (("migrate_sql",), {"DATABASE_DIRECT_URL": DOWN}),
        (("migrate", "--noinput"), {"DATABASE_DIRECT_URL": DOWN}),
        (("migrate_sql",), {"DATABASE_URL": DOWN}),
        (("veo", "a red fox in snow", "--user", "1"), {"DATABASE_URL": DOWN}),
        (("purge_requests",), {"DATABASE_URL": DOWN}),
        (("erase_user", "1", "--yes"), {"DATABASE_URL": DOWN}),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, tuple) else None,
)
def test_failing_commands_name_the_problem_without_the_secrets(db_password, tmp_path, args, overrides):
    env = secret_env(DOWN.format(password=db_password), tmp_path)
    env.update({key: value.format(password=db_password) for key, value in overrides.items()})
    output = manage(*args, env=env)
    assert output.strip(), "the failure should say something"
    assert_no_secrets(output, " ".join(args), db_password)
    assert "Traceback" not in output, output


def test_a_worker_without_its_database_warns_without_the_secrets(db_password, tmp_path):
    log = tmp_path / "worker.log"
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update(secret_env(DOWN.format(password=db_password), tmp_path, VEO_WORKER_IDLE_POLL="0s"))
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runworker"],
        cwd=ROOT,
        env=environment,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    warning = "WARNING generation.health DEGRADED: PostgreSQL is unreachable"

    def warned() -> bool:
        # A worker that exits (silently or not) before warning fails here, not by timing out.
        assert proc.poll() is None, f"the worker exited ({proc.returncode}) instead of warning:\n{log.read_text()}"
        return warning in log.read_text()

    try:
        wait_for(warned, timeout=60, what="the worker's database warning")
        assert proc.poll() is None, "the worker should keep running (degraded) after warning"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    text = log.read_text()
    assert text.count(warning) == 1, text  # one warning per outage, not one per poll
    assert "Traceback" not in text, text
    assert_no_secrets(text, "runworker log", db_password)


# -- the bot: a video, the commands, bad input, a database outage ---------------------------------------


def test_the_bot_through_success_refusal_and_outage(db_settings, db_password, tmp_path):
    truncate_requests()
    with (
        FakeDiscordServer(bot_token=TOKEN) as server,
        FakeVeoServer(api_keys=[VEO_KEY], default_scenario=scenario("slow", seconds=0.5)) as veo,
        TcpProxy(host=db_settings["HOST"] or "127.0.0.1", port=int(db_settings["PORT"] or 5432)) as proxy,
    ):
        database_url = url_with_password(db_settings, db_password, host="127.0.0.1", port=proxy.port)
        bot = BotProcess(
            secret_env(
                database_url,
                tmp_path,
                DISCORD_API_BASE_URL=server.base_url,
                VEO_BACKEND="express",
                VEO_API_BASE_URL=veo.url,
                VEO_LEASE="2s",
                DATABASE_PROBE_INTERVAL="1s",
            ),
            tmp_path / "bot.log",
        )
        try:
            first = slash_command("veo", {"prompt": "a red fox running through fresh snow"})
            bot.send(server, first)
            wait_for(
                lambda: VideoRequest.objects.filter(interaction_id=first["id"], delivered_at__isnull=False).exists(),
                timeout=60,
                what="the first video",
            )
            for payload in (slash_command("quota"), slash_command("history"), slash_command("veo", {"prompt": "x"})):
                bot.send(server, payload)
                wait_for(lambda payload=payload: server.original_response(payload["id"]), what=payload["data"]["name"])
            proxy.cut()
            during = slash_command("veo", {"prompt": "a heron at dawn, during the outage"})
            bot.send(server, during)
            wait_for(
                lambda: (reply := server.original_response(during["id"])) and reply["attachments"],
                timeout=60,
                what="a video during the outage",
            )
            proxy.restore()
            wait_for(
                lambda: VideoRequest.objects.filter(interaction_id=during["id"]).exists(), timeout=60, what="the replay"
            )
            assert bot.stop() == 0
        finally:
            bot.cleanup()
        sent = "\n".join(repr(call.json) for call in server.requests())
        assert {r.auth for r in veo.creates()} == {"api_key"} and len(veo.creates()) == 2  # the key was in use
    log = bot.log()
    assert "DEGRADED" in log and "database reachable again" in log  # the paths were really taken
    assert_no_secrets(log, "bot log", db_password)
    assert_no_secrets(sent, "messages sent to Discord", db_password)
    # Interaction tokens are kept in the database for a while (reply_tokens): never logged either.
    assert first["token"] not in log and during["token"] not in log


# -- the worker: Veo succeeding and failing ----------------------------------------------------------


def test_the_worker_through_veo_success_and_failures(db_settings, db_password, tmp_path):
    truncate_requests()
    prompts = [
        "a red fox in snow",
        "a fox [scenario:http_error status=400]",
        "a fox [scenario:error_operation]",
        "a fox [scenario:server_error times=9]",
    ]
    with FakeVeoServer(api_keys=[VEO_KEY]) as fake:
        ids = [
            services.admit_request(
                interaction_id=next_interaction(),
                user_id=700 + n,
                guild_id=None,
                channel_id=None,
                params=services.VideoParameters(prompt=prompt),
                source="cli",
            ).request_id
            for n, prompt in enumerate(prompts)
        ]
        log = tmp_path / "worker.log"
        environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        environment.update(
            secret_env(
                url_with_password(db_settings, db_password),
                tmp_path,
                VEO_BACKEND="express",
                VEO_API_BASE_URL=fake.url,
                VEO_POLL_INITIAL="0s",
                VEO_POLL_MAX="1s",
                VEO_RETRY_BACKOFF="0s",
                VEO_WORKER_IDLE_POLL="0s",
                VEO_HTTP_RETRIES="1",
            )
        )
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runworker"],
            cwd=ROOT,
            env=environment,
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                lambda: VideoRequest.objects.filter(id__in=ids, delivered_at__isnull=False).count() == 4,
                timeout=90,
                what="four finished requests",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        assert {r.auth for r in fake.creates()} == {"api_key"}  # the key was really in use
    rows = VideoRequest.objects.filter(id__in=ids).order_by("id")
    assert [r.status for r in rows] == ["completed", "failed", "failed", "failed"]
    assert_no_secrets(log.read_text(), "worker log", db_password)
    assert_no_secrets(" ".join(f"{r.error_code} {r.error_message}" for r in rows), "stored errors", db_password)


# -- the admin: every page, signed in, over HTTP ---------------------------------------------------------


def test_admin_pages_show_no_secrets(db_settings, db_password, tmp_path, settings):
    from django.conf import global_settings

    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS  # the server's, not the tests' fast one
    get_user_model().objects.create_superuser("boss", "", "boss-pass-123")
    row = VideoRequestFactory(status="failed", error_message="backend said no")
    services.ban_user(user_id=row.user_id, reason="spam", actor="boss")
    port, log = free_port(), tmp_path / "admin.log"
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environment.update(secret_env(url_with_password(db_settings, db_password), tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=environment,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    pages = []
    try:
        wait_for(lambda: http_status(f"{base}/healthz") == 200, timeout=60, what="the admin")
        browser = requests.Session()
        login = browser.get(f"{base}/admin/login/", timeout=30)
        token = csrf_token(login.text)
        signed_in = browser.post(
            f"{base}/admin/login/?next=/admin/",
            timeout=30,
            data={"csrfmiddlewaretoken": token, "username": "boss", "password": "boss-pass-123", "next": "/admin/"},
        )
        assert signed_in.url.endswith("/admin/") and "Log out" in signed_in.text
        listing = "/admin/tracking/videorequest/"
        paths = [
            "/healthz",
            "/metrics",
            "/admin/",
            "/no-such-page",
            listing,
            f"{listing}{row.id}/change/",
            f"{listing}999999/change/",
            f"{listing}dashboard/",
            f"{listing}user/{row.user_id}/",
            f"{listing}export/",
            "/admin/tracking/userban/",
            "/admin/tracking/quotapolicy/",
            "/admin/tracking/blockedterm/",
            "/admin/tracking/discordaction/",
            "/admin/tracking/schemamigration/",
            "/admin/tracking/datalifecycleaudit/",
            "/admin/auth/user/",
            "/admin/auth/group/",
            f"{listing}?q=%27%22%3C",
            f"{listing}?created_at__gte=not-a-date",
        ]
        for path in paths:
            response = browser.get(base + path, timeout=30)
            pages.append((path, response.status_code, response.text, str(response.headers)))
        throttled = requests.Session()
        for _ in range(6):
            page = throttled.get(f"{base}/admin/login/", timeout=30).text
            token = csrf_token(page)
            response = throttled.post(
                f"{base}/admin/login/",
                timeout=30,
                data={"csrfmiddlewaretoken": token, "username": "boss", "password": "wrong"},
            )
        pages.append(("throttled login", response.status_code, response.text, ""))
        assert "Too many failed sign-in attempts" in response.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert {status for path, status, *_ in pages if path not in ("/no-such-page", f"{listing}999999/change/")} == {200}
    for path, _status, body, headers in pages:
        assert_no_secrets(body + headers, path, db_password)
    assert_no_secrets(log.read_text(), "admin server log", db_password)
