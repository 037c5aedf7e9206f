"""Start-up configuration errors and /healthz, through real processes and a real database."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from veosite import health

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    clean.update(VEOBOT_ENV_FILE=os.devnull, **env)  # only what the test sets, not a developer's .env
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("env,variable", [
    ({"DEBUG": "false"}, "SECRET_KEY"),
    ({"SECRET_KEY": "k", "DATABASE_MAX_CONNECTIONS": "0"}, "DATABASE_MAX_CONNECTIONS"),
    ({"SECRET_KEY": "k", "DATABASE_MAX_CONNECTIONS": "101"}, "DATABASE_MAX_CONNECTIONS"),
    ({"SECRET_KEY": "k", "DATABASE_MAX_CONNECTIONS": "ten"}, "DATABASE_MAX_CONNECTIONS"),
    ({"SECRET_KEY": "k", "DEBUG": "maybe"}, "DEBUG"),
    ({"SECRET_KEY": "k", "VEO_QUOTA_WINDOW": "forever"}, "VEO_QUOTA_WINDOW"),
    ({"SECRET_KEY": "k", "VEO_QUOTA_LIMIT": "-1"}, "VEO_QUOTA_LIMIT"),
    ({"SECRET_KEY": "k", "DATABASE_URL": "mysql://root@localhost/db"}, "DATABASE_URL"),
])
def test_wrong_setting_stops_start_up_with_one_line_naming_it(env, variable):
    result = _manage("check", **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("veobot: configuration error: " + variable)
    assert "Traceback" not in result.stderr


def test_debug_mode_runs_without_a_secret_key():
    assert _manage("check", DEBUG="true").returncode == 0


def test_database_max_connections_sizes_the_pool(settings):
    assert settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"] == settings.DATABASE_MAX_CONNECTIONS == 10
    assert "statement_timeout=30000" in settings.DATABASES["default"]["OPTIONS"]["options"]
    assert settings.DATABASES["default"]["OPTIONS"]["connect_timeout"] == 10


@pytest.mark.django_db
def test_healthz_reports_database_latency(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"]["latency_ms"] >= 0


def test_healthz_is_503_degraded_when_the_database_is_unreachable():
    """Promptly: within its own short timeout, not the pool's 10 s connect timeout."""
    script = ("import django, json; django.setup(); from django.test import Client;"
              "r = Client(HTTP_HOST='localhost').get('/healthz'); print(r.status_code, r.content.decode())")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(SECRET_KEY="k", DATABASE_URL="postgresql://veobot:s3cret-pass@127.0.0.1:9/veobot",
               DJANGO_SETTINGS_MODULE="veosite.settings")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    status, body = result.stdout.strip().split(" ", 1)
    assert status == "503"
    payload = json.loads(body)
    assert payload == {"status": "degraded", "reason": f"database unreachable: no connection within {health.TIMEOUT} s"}
    assert health.TIMEOUT < settings.DATABASE_CONNECT_TIMEOUT
    assert "s3cret-pass" not in result.stdout + result.stderr
