"""Running real workers for tests: in a background thread (own event loop) or as a process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, connections
from google.oauth2.credentials import Credentials

from generation.delivery import CliDelivery
from generation.listener import APPLICATION_NAME
from generation.veo import GenaiBackend, make_client
from generation.worker import Worker, standalone_worker
from tracking.models import VideoRequest

ROOT = Path(__file__).resolve().parent.parent
MODEL = "veo-3.1-generate-001"


def genai_worker(fake, settings, *, output_gcs_uri: str = "", model: str = MODEL) -> Worker:
    """A worker driving the real google-genai client against a FakeVeoServer; it delivers
    every source the CLI's way (recorded, nothing sent)."""
    settings.VEO_API_BASE_URL = fake.url
    client = make_client(credentials=Credentials(token="test"))
    backend = GenaiBackend(client, model=model, output_gcs_uri=output_gcs_uri)
    return standalone_worker(backend=backend, deliveries={"discord": CliDelivery(), "cli": CliDelivery()})


@contextmanager
def worker_thread(worker: Worker):
    """Run ``worker`` until the block ends, then stop it the way SIGTERM would."""
    ready = threading.Event()
    state: dict = {}

    def main() -> None:
        async def run() -> None:
            state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await worker.run(state["stop"])

        asyncio.run(run())

    thread = threading.Thread(target=main, name=f"worker-{worker.name}", daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield worker
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop within 30 s"


def wait_for(condition, *, timeout: float = 30, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def database_url(db: dict) -> str:
    """A DATABASE_URL for a child process that points at the test database."""
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or ""
    if host.startswith("/"):
        return f"postgresql://{user}{password}@/{db['NAME']}?host={host}"
    return f"postgresql://{user}{password}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


def start_worker_process(db: dict, log_path: Path, **env: str) -> subprocess.Popen:
    """`manage.py runworker` as a real process on the test database. When the suite's own
    connections go through PgBouncer, so do the worker's, with the server itself for what needs a
    session (its LISTEN), as a deployment behind PgBouncer is configured (docs/OPERATIONS.md)."""
    urls = {"DATABASE_URL": database_url(db)}
    if settings.DATABASE_POOLED:
        urls["DATABASE_DIRECT_URL"] = database_url(connections["direct"].settings_dict)
    return runworker_process({"SECRET_KEY": "tests-only", **urls, **env}, log_path)


def runworker_process(env: dict, log_path: Path) -> subprocess.Popen:
    """`manage.py runworker` as a real process with exactly these settings (DATABASE_URL included)."""
    environment = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    # A journal of the test's own: one left by another test's killed worker names that test's rows.
    environment.update({"VEO_JOURNAL_DIR": str(log_path.parent / "journal"), **env})
    handle = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "manage.py", "runworker"], cwd=ROOT, env=environment, stdout=handle, stderr=subprocess.STDOUT
    )


def truncate_requests() -> None:
    """Workers claim whatever is queued, so worker tests start from an empty queue (and the
    spend ledgers, which sum those requests, and the guilds' fair-share turns from nothing)."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE video_requests, operator_spend_hours, guild_spend_ledger, fair_share_turns CASCADE")


def watch_for_second_deliveries(db: dict, server, *, lease: timedelta, claim_poll: timedelta) -> None:
    """After every request is delivered: fail at any sign of a second delivery, for as long as one
    could still be on its way -- until a full lease and a claim poll have passed since the last.

    A delivery is made by a process holding the request's claim, and recording it frees the claim;
    a delivered request is never claimable again. So a second delivery can only come from
    (a) a process that claimed the request earlier and lost its lease to the one that delivered:
    it finds out at its next renewal, a third of a lease later, and stops -- a post it still makes
    lands within the lease -- or (b) a process claiming a delivered request again, which an idle
    process tries every claim poll (VEO_WORKER_IDLE_POLL). Both would show here within that
    window: a claimed row, a claim counted in ``attempts``, a second 'delivered' event, or a
    message posted or edited in Discord after everything was delivered."""
    from psycopg import connect

    from tests.concurrency import conninfo

    state_sql = (
        "SELECT (SELECT count(*) FROM video_requests WHERE claimed_by IS NOT NULL),"
        " (SELECT coalesce(sum(attempts), 0) FROM video_requests),"
        " (SELECT count(*) FROM video_request_events WHERE kind = 'delivered'),"
        " (SELECT max(delivered_at) FROM video_requests) + %s - clock_timestamp()"
    )

    def discord_writes() -> int:
        return sum(r.method != "GET" for r in server.requests())

    with connect(**conninfo(db), autocommit=True) as conn:
        claimed, attempts, delivered, left = conn.execute(state_sql, [lease + claim_poll]).fetchone()
        writes = discord_writes()
        assert claimed == 0, f"{claimed} requests still claimed after every delivery"
        while left is not None and left.total_seconds() > 0:
            time.sleep(min(0.2, left.total_seconds()))
            now = conn.execute(state_sql, [lease + claim_poll]).fetchone()
            assert now[:3] == (0, attempts, delivered), (
                f"after every delivery: {now[0]} claimed (was 0), {now[1]} claims counted (was {attempts}),"
                f" {now[2]} deliveries recorded (was {delivered})"
            )
            assert discord_writes() == writes, "Discord was written to after every request was delivered"
            left = now[3]


def listeners() -> set[int]:
    """Backends of workers listening for new work on the test database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()"
            " AND query ILIKE 'LISTEN%%'",
            [APPLICATION_NAME],
        )
        return {pid for (pid,) in cursor.fetchall()}


def waited(request_id: int) -> timedelta:
    """From admission to the worker's start of the Veo operation."""
    row = VideoRequest.objects.get(id=request_id)
    return row.started_at - row.created_at


def started(*ids):
    return lambda: VideoRequest.objects.filter(id__in=ids, started_at__isnull=False).count() == len(ids)
