"""/healthz: 200 with the database round-trip time, or 503 "degraded" with the reason.

A 200 also counts the degraded-mode journal entries that could not be replayed and wait in
quarantine for an operator (``manage.py replay_journal``): "warnings" names them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection
from django.http import JsonResponse
from psycopg_pool import PoolTimeout

from tracking import selectors

# A health check answers promptly: it does not wait out the pool's own connect timeout
# (DATABASE_CONNECT_TIMEOUT) when the database is down.
TIMEOUT = 2  # seconds


def database_location(alias: str = "default") -> str:
    """Where the database is expected (host:port/name, or the socket folder), never the password."""
    from django.conf import settings

    db = settings.DATABASES[alias]
    host = db.get("HOST") or "localhost"
    where = host if host.startswith("/") else f"{host}:{db.get('PORT') or 5432}"
    return f"{where}/{db.get('NAME')}"


@contextmanager
def pooled_connection() -> Iterator[psycopg.Connection]:
    """A connection from Django's pool within TIMEOUT, or PoolTimeout: what answers a probe must
    answer promptly while the database is down."""
    pool = connection.pool
    pool.open()  # as Django does on first use; a no-op once open
    with pool.connection(timeout=TIMEOUT) as conn:
        yield conn


def database_latency_ms() -> float:
    started = time.perf_counter()
    with pooled_connection() as conn:
        conn.execute("SELECT 1").fetchone()
    return round((time.perf_counter() - started) * 1000, 2)


def healthz(request):
    try:
        latency = database_latency_ms()
        quarantined = selectors.open_quarantine_count()
    except PoolTimeout:
        return degraded(f"database unreachable: no connection within {TIMEOUT} s")
    except Exception as error:  # any other failure to reach the database is "degraded" too
        reason = f"database unreachable: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return degraded(reason.rstrip(": "))
    answer = {"status": "ok", "database": {"latency_ms": latency}, "journal": {"quarantined": quarantined}}
    if quarantined:
        answer["warnings"] = [f"journal: {quarantined} quarantined (see manage.py replay_journal)"]
    return JsonResponse(answer)


def degraded(reason: str) -> JsonResponse:
    return JsonResponse({"status": "degraded", "reason": reason}, status=503)
