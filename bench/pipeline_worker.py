"""One instrumented worker process for bench/pipeline.py.

Runs the real Worker (as `manage.py runworker` does) and counts, on every database
connection it uses, each statement (one round trip in autocommit) and its client-observed
time. Claims that found nothing are counted apart: they are idle polling, not request cost.
Writes the counts as JSON to BENCH_STATS_FILE when SIGTERM stops it.
"""

import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veosite.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402

from generation.delivery import CliDelivery  # noqa: E402
from generation.runtime import run_until_signalled  # noqa: E402
from generation.veo import configured_backend  # noqa: E402
from generation.worker import serve_standalone, standalone_worker  # noqa: E402

stats = {"statements": 0, "seconds": 0.0, "empty_claims": 0, "empty_claim_seconds": 0.0}
lock = threading.Lock()


def count(execute, sql, params, many, context):
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        elapsed = time.perf_counter() - started
        empty_claim = "claim_video_request" in sql and context["cursor"].cursor.rowcount == 0
        with lock:
            if empty_claim:
                stats["empty_claims"] += 1
                stats["empty_claim_seconds"] += elapsed
            else:
                stats["statements"] += 1
                stats["seconds"] += elapsed


def instrument(sender, connection, **kwargs):
    # Django reconnects (from its pool) after every unit of work; add the counter once.
    if count not in connection.execute_wrappers:
        connection.execute_wrappers.append(count)


connection_created.connect(instrument)
# As runworker runs it: each start written ahead to a journal, which the database watch replays.
worker = standalone_worker(
    backend=configured_backend(), deliveries={"cli": CliDelivery()}, journal_dir=settings.VEO_JOURNAL_DIR
)
run_until_signalled(lambda stop: serve_standalone(worker, stop, journal_dir=settings.VEO_JOURNAL_DIR))
Path(os.environ["BENCH_STATS_FILE"]).write_text(json.dumps(stats))
