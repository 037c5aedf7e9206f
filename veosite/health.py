"""/healthz: 200 with the database round-trip time, or 503 "degraded" with the reason."""

from __future__ import annotations

import time

from django.db import connection
from django.http import JsonResponse


def database_location() -> str:
    """Where the database is expected (host:port/name, or the socket folder), never the password."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    host = db.get("HOST") or "localhost"
    where = host if host.startswith("/") else f"{host}:{db.get('PORT') or 5432}"
    return f"{where}/{db.get('NAME')}"


def database_latency_ms() -> float:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return round((time.perf_counter() - started) * 1000, 2)


def healthz(request):
    try:
        latency = database_latency_ms()
    except Exception as error:  # any failure to reach the database is "degraded"
        reason = f"database unreachable: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return JsonResponse({"status": "degraded", "reason": reason.rstrip(": ")}, status=503)
    return JsonResponse({"status": "ok", "database": {"latency_ms": latency}})
