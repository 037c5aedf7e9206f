"""Small helpers shared by the tests (no fakes of our own code)."""

from itertools import count

from tracking import services
from tracking.services import VideoParameters

_interactions = count(5 * 10**17)


def next_interaction() -> int:
    return next(_interactions)


def admit(user_id: int = 1001, guild_id: int | None = 2001, prompt: str = "a red fox in snow", **params):
    return services.admit_request(
        interaction_id=params.pop("interaction_id", None) or next_interaction(),
        user_id=user_id,
        guild_id=guild_id,
        channel_id=3001,
        params=VideoParameters(prompt=prompt, **params),
    )


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str) -> int | None:
    """The status of a GET, or None while nothing answers there in time (a server starting up)."""
    import requests

    try:
        return requests.get(url, timeout=10).status_code
    except requests.RequestException:
        return None


def csrf_token(page: str) -> str:
    """The CSRF token of the (first) form on an admin page."""
    import re

    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


UNREACHABLE_PASSWORD = "s3cret-pass"


def get_without_database(path: str) -> tuple[int, float, str, str]:
    """GET ``path`` from the web app in a process of its own whose database is unreachable (nothing
    listens on port 9): the status, the seconds it took, the body, and all the process printed."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import django, time; django.setup(); from django.test import Client; started = time.monotonic();"
        f"r = Client(HTTP_HOST='localhost').get({path!r});"
        "print(r.status_code, time.monotonic() - started); print(r.content.decode())"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        SECRET_KEY="k",
        DATABASE_URL=f"postgresql://veobot:{UNREACHABLE_PASSWORD}@127.0.0.1:9/veobot",
        DJANGO_SETTINGS_MODULE="veosite.settings",
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    first, body = result.stdout.split("\n", 1)
    status, seconds = first.split()
    return int(status), float(seconds), body.strip(), result.stdout + result.stderr


def sql_rows(query: str, params=()) -> list[tuple]:
    """The rows of ``query`` on Django's connection (the test's transaction)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()
