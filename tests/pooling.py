"""The test database's two routes when DATABASE_URL goes through PgBouncer (DATABASE_DIRECT_URL
set): the tests run through PgBouncer, but the test database is created, migrated and dropped
on the server itself. Without a direct URL both routes are the same and nothing here changes."""

from __future__ import annotations

import copy

import psycopg
from django.conf import settings
from django.db import connections

from tracking.sql_migrations import DIRECT_DB_ALIAS

ROUTE = ("HOST", "PORT", "USER", "PASSWORD", "OPTIONS")  # what differs between the two routes
_through_pgbouncer: dict | None = None  # the default database's route as configured


def pooled() -> bool:
    return settings.DATABASE_POOLED


def route_default(*, direct: bool) -> None:
    """Point the default database at the server itself, or back through PgBouncer; its open
    connections and pool are closed first, so that nothing keeps using the other route."""
    global _through_pgbouncer
    if not pooled():
        return
    default = connections["default"]
    if _through_pgbouncer is None:
        _through_pgbouncer = {field: copy.deepcopy(default.settings_dict[field]) for field in ROUTE}
    default.close()
    default.close_pool()
    source = connections[DIRECT_DB_ALIAS].settings_dict if direct else _through_pgbouncer
    default.settings_dict.update({field: copy.deepcopy(source[field]) for field in ROUTE})


def disconnect_others(db: dict) -> None:
    """End every other session on the test database (PgBouncer's server connections), so that
    it can be dropped."""
    if not pooled():
        return
    with psycopg.connect(
        dbname=db["NAME"],
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        autocommit=True,
    ) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
