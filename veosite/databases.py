"""The DATABASES entries, from postgresql:// URLs (veosite.settings says which)."""

from __future__ import annotations

import os
from pathlib import Path

from veosite import config
from veosite.config import ConfigError

CONNECT_TIMEOUT = 10  # seconds
STATEMENT_TIMEOUT_MS = 30_000


def parsed_url(name: str) -> tuple[dict, dict]:
    """The Django DATABASES fields of the postgresql:// URL in variable ``name``, and its OPTIONS."""
    url = config.env.ENVIRON[name]
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        raise ConfigError(f"{name} must be a postgresql:// URL (got a different scheme)")
    try:
        db = config.env.db_url_config(url)
    except Exception:
        raise ConfigError(f"{name} could not be parsed as a postgresql:// URL") from None
    # django-environ leaves ?host=/socket/dir in OPTIONS, where Django ignores it.
    options = db.pop("OPTIONS", {}) or {}
    if "host" in options:
        db["HOST"] = options.pop("host")
    if not db.get("NAME"):
        raise ConfigError(f"{name} must name a database (postgresql://user@host:port/NAME)")
    return db, options


def entry(name: str, *, pooled: bool, max_connections: int, base_dir: Path) -> dict:
    """A DATABASES entry for the URL in ``name`` (unset: the embedded server). ``pooled``: it goes
    through a transaction-pooling PgBouncer, which refuses the `options` startup parameter, so
    the statement timeout comes from PgBouncer's connect_query (docs/OPERATIONS.md) instead.
    A serving process keeps psycopg's pool of connections; a one-shot command does not
    (one_shot)."""
    if config.is_set(name):
        db, options = parsed_url(name)
    else:
        from veosite import embedded_db

        db = embedded_db.settings_dict(base_dir)
        options = {}
    db["ENGINE"] = "django.db.backends.postgresql"
    db["CONN_MAX_AGE"] = 0  # required by the pool: connections go back to it on close
    db["OPTIONS"] = {
        **options,
        "connect_timeout": CONNECT_TIMEOUT,
        # Over TCP, a partition (nothing reset, nothing answered) fails a connection after 20 s
        # of unacknowledged data or a minute of silence, instead of the kernel's 15 minutes; a
        # call a user waits on has its own, shorter deadline (generation.health.ANSWER_TIMEOUT).
        "tcp_user_timeout": 20_000,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        **({} if pooled else {"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"}),
        "application_name": "veobot",
        **({} if one_shot() else {"pool": {"min_size": 1, "max_size": max_connections, "timeout": CONNECT_TIMEOUT}}),
    }
    return db


def one_shot() -> bool:
    """Whether this process is a one-shot command: manage.py marks every command but the serving
    ones (runbot, runworker, runserver). It keeps no pool: the pool retries an unreachable server
    for CONNECT_TIMEOUT and then names no reason, where one connection fails at once with
    PostgreSQL's."""
    return os.environ.get("VEOBOT_ONE_SHOT") == "1"
