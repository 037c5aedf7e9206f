"""Start-up configuration errors and /healthz, through real processes and a real database."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.helpers import UNREACHABLE_PASSWORD, get_without_database
from tracking import health

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")}
    clean.update(VEOBOT_ENV_FILE=os.devnull, **env)  # only what the test sets, not a developer's .env
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "env,variable",
    [
        ({"DEBUG": "false"}, "SECRET_KEY"),
        ({"SECRET_KEY": "k", "DATABASE_MAX_CONNECTIONS": "0"}, "DATABASE_MAX_CONNECTIONS"),
        ({"SECRET_KEY": "k", "DATABASE_MAX_CONNECTIONS": "101"}, "DATABASE_MAX_CONNECTIONS"),
        ({"SECRET_KEY": "k", "DATABASE_MAX_CONNECTIONS": "ten"}, "DATABASE_MAX_CONNECTIONS"),
        ({"SECRET_KEY": "k", "DEBUG": "maybe"}, "DEBUG"),
        ({"SECRET_KEY": "k", "VEO_QUOTA_WINDOW": "forever"}, "VEO_QUOTA_WINDOW"),
        ({"SECRET_KEY": "k", "VEO_QUOTA_LIMIT": "-1"}, "VEO_QUOTA_LIMIT"),
        ({"SECRET_KEY": "k", "DATABASE_URL": "mysql://root@localhost/db"}, "DATABASE_URL"),
        ({"SECRET_KEY": "k", "VEO_GCS_SIGNED_URL_TTL": "8d"}, "VEO_GCS_SIGNED_URL_TTL"),
        ({"SECRET_KEY": "k", "VEO_GCS_SIGNED_URL_TTL": "a week"}, "VEO_GCS_SIGNED_URL_TTL"),
        ({"SECRET_KEY": "k", "GCS_API_BASE_URL": "storage.googleapis.com"}, "GCS_API_BASE_URL"),
        ({"SECRET_KEY": "k", "VEO_MODELS": "veo-3.1-generate-001", "VEO_MODEL": "veo-3.0-generate-001"}, "VEO_MODEL"),
        ({"SECRET_KEY": "k", "VEO_MODELS": " , "}, "VEO_MODELS"),
        ({"SECRET_KEY": "k", "METRICS_PORT": "70000"}, "METRICS_PORT"),
        ({"SECRET_KEY": "k", "METRICS_ADDRESS": "localhost"}, "METRICS_ADDRESS"),
        ({"SECRET_KEY": "k", "METRICS_ALLOWED": "10.0.0.0/33"}, "METRICS_ALLOWED"),
    ],
)
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
    status, _seconds, body, output = get_without_database("/healthz")
    assert status == 503
    payload = json.loads(body)
    assert payload == {"status": "degraded", "reason": f"database unreachable: no connection within {health.TIMEOUT} s"}
    assert health.TIMEOUT < settings.DATABASE_CONNECT_TIMEOUT
    assert UNREACHABLE_PASSWORD not in output


PRODUCTION = {
    "SECRET_KEY": "pr0duction-" + "k3y-" * 12,
    "DEBUG": "false",
    "ALLOWED_HOSTS": "veobot.example.com",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def _production_env(**env: str) -> dict:
    """Only what a production unit would have: no variable of the test run leaks in."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/"),
        "VEOBOT_ENV_FILE": os.devnull,
        **PRODUCTION,
        **env,
    }


def test_check_deploy_is_clean_with_the_documented_production_values():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(DATABASE_URL="postgresql://veobot@127.0.0.1:9/veobot"),
        capture_output=True,
        text=True,
        timeout=120,
    )  # check does not contact the database
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_check_deploy_flags_the_development_defaults():
    result = _manage(
        "check", "--deploy", SECRET_KEY=PRODUCTION["SECRET_KEY"], DATABASE_URL="postgresql://veobot@127.0.0.1:9/veobot"
    )
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr, warning


def test_the_development_defaults_keep_plain_http_working(settings):
    assert not (settings.SECURE_SSL_REDIRECT or settings.SESSION_COOKIE_SECURE or settings.CSRF_COOKIE_SECURE)
    assert settings.SECURE_HSTS_SECONDS == 0 and settings.SECURE_PROXY_SSL_HEADER is None


@pytest.mark.parametrize(
    "env,variable",
    [
        ({"SECURE_PROXY_SSL_HEADER": "https"}, "SECURE_PROXY_SSL_HEADER"),
        ({"SECURE_HSTS_SECONDS": "soon"}, "SECURE_HSTS_SECONDS"),
        ({"CSRF_TRUSTED_ORIGINS": "veobot.example.com"}, "CSRF_TRUSTED_ORIGINS"),
        ({"ADMIN_LOGIN_IP_HEADER": "X Real IP"}, "ADMIN_LOGIN_IP_HEADER"),
        ({"REQUEST_RETENTION_DAYS": "-1"}, "REQUEST_RETENTION_DAYS"),
    ],
)
def test_wrong_security_and_lifecycle_settings_are_named(env, variable):
    result = _manage("check", SECRET_KEY="k", **env)
    assert result.returncode == 2 and result.stderr.startswith("veobot: configuration error: " + variable), (
        result.stderr
    )


@pytest.mark.slow
def test_gunicorn_with_the_production_settings(db_settings, tmp_path):
    """The documented production set-up behind a TLS proxy: plain http is redirected, /healthz
    is not, HSTS and secure cookies are sent, and the sign-in throttle holds across two
    worker processes."""
    import signal

    import requests

    from tests.helpers import csrf_token, free_port, http_status
    from tests.workers import database_url, wait_for

    port = free_port()
    env = _production_env(
        DATABASE_URL=database_url(db_settings),
        ALLOWED_HOSTS="veobot.example.com,127.0.0.1",
        ADMIN_LOGIN_MAX_FAILURES="3",
    )
    log = tmp_path / "gunicorn.log"
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "veosite.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    base, https = f"http://127.0.0.1:{port}", {"Host": "veobot.example.com", "X-Forwarded-Proto": "https"}
    try:
        wait_for(lambda: http_status(f"{base}/healthz") == 200, timeout=60, what="gunicorn")
        plain = requests.get(
            f"{base}/admin/login/", headers={"Host": "veobot.example.com"}, allow_redirects=False, timeout=30
        )
        assert plain.status_code == 301 and plain.headers["Location"] == "https://veobot.example.com/admin/login/"
        secure = requests.get(f"{base}/admin/login/", headers=https, timeout=30)
        assert secure.status_code == 200
        assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
        assert secure.headers["Set-Cookie"].startswith("csrftoken=") and secure.headers["Set-Cookie"].endswith(
            "; Secure"
        )

        answers = set()
        for _ in range(8):  # whichever of the two workers answers, the count is the one in PostgreSQL
            page = requests.get(f"{base}/admin/login/", headers=https, timeout=30)
            cookie = page.cookies["csrftoken"]
            token = csrf_token(page.text)
            response = requests.post(
                f"{base}/admin/login/",
                timeout=30,
                data={"csrfmiddlewaretoken": token, "username": "boss", "password": "wrong"},
                headers={**https, "Cookie": f"csrftoken={cookie}", "Referer": "https://veobot.example.com/admin/"},
            )
            answers.add(response.status_code)
            refused = "Too many failed sign-in attempts" in response.text
        assert answers == {200} and refused
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("args", [("migrate_sql", "--list"), ("migrate", "--noinput"), ("purge_requests",)])
def test_a_command_without_its_database_says_so_in_one_line(args):
    result = _manage(*args, SECRET_KEY="k", DATABASE_URL="postgresql://veobot:s3cret-pass@127.0.0.1:9/veobot")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("veobot: the database at 127.0.0.1:9/veobot is unreachable: ")
    # PostgreSQL's own reason: a one-shot command keeps no pool, which would retry for its
    # timeout and then say only that it got no connection
    assert "Connection refused" in lines[0], lines[0]
    assert "s3cret-pass" not in result.stdout + result.stderr


def test_defaults_the_model_does_not_make_stop_start_up_naming_both(tmp_path):
    env = {
        **os.environ,
        "SECRET_KEY": "tests-only",
        "VEOBOT_ENV_FILE": "/dev/null",
        "VEO_MODEL": "veo-3.1-lite-generate-001",
        "VEO_DEFAULT_RESOLUTION": "1080p",
        "VEO_DEFAULT_DURATION": "4",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert (
        "VEO_DEFAULT_DURATION=4 with VEO_DEFAULT_RESOLUTION=1080p: veo-3.1-lite-generate-001 makes 1080p"
        " videos only 8 seconds long" in done.stderr
    )
