"""Admission-to-start latency of an idle worker: woken by NOTIFY vs polling only.

    .venv/bin/python bench/wake_latency.py --requests 200

One `manage.py runworker` process (offline backend: a start costs nothing) is run twice on a
scratch database: with VEO_WORKER_LISTEN=false (the baseline: it finds work at its next poll,
VEO_WORKER_IDLE_POLL=1s) and with the listener on. This process admits requests one at a
time exactly as `manage.py veo` does (admission, then the wake-up and NOTIFY), waits until each
has started, then pauses a random 50 ms to 1.05 s so the next one finds the worker idle at a
random point of its poll cycle. Latency = started_at - created_at, both stamped by PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import request_history  # noqa: E402
from bench.pipeline import database_url  # noqa: E402
from bench.server import REPO, Server, machine_description, server_description  # noqa: E402
from tracking.sql_migrations import Runner  # noqa: E402

IDLE_POLL = "1s"


def measure(*, listen: bool, requests: int, url: str, scratch: Path) -> list[float]:
    from generation import wakeup
    from tracking import services
    from tracking.models import VideoRequest

    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL=url,
        VEO_BACKEND="offline",
        VEO_OFFLINE_SECONDS="0",
        VEO_WORKER_IDLE_POLL=IDLE_POLL,
        VEO_WORKER_LISTEN="true" if listen else "false",
        VEO_MAX_CONCURRENT="1000",
        VEO_MAX_STARTS_PER_MINUTE="10000",
        VEO_MEDIA_ROOT=str(scratch / "media"),
        LOG_LEVEL="WARNING",
        DASHBOARD_REFRESH="0s",
    )
    worker = subprocess.Popen([sys.executable, "manage.py", "runworker"], cwd=REPO, env=env)
    latencies = []
    try:
        for n in range(requests + 1):  # the first one only shows that the worker is up
            answer = services.admit_request(
                interaction_id=random.getrandbits(62),
                user_id=10_000 + n,
                guild_id=None,
                channel_id=None,
                params=services.VideoParameters(prompt=f"bench {n}"),
                source="cli",
            )
            wakeup.work_admitted()
            deadline = time.monotonic() + 60
            while (row := VideoRequest.objects.filter(id=answer.request_id, started_at__isnull=False).first()) is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"request {answer.request_id} did not start within 60 s")
                time.sleep(0.005)
            if n:
                latencies.append((row.started_at - row.created_at).total_seconds() * 1000)
            time.sleep(random.uniform(0.05, 1.05))  # a uniform phase of the 1 s poll
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    return latencies


def summary(latencies: list[float]) -> dict:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "p50_ms": round(cuts[49], 1),
        "p99_ms": round(cuts[98], 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "max_ms": round(max(latencies), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--dsn", help="libpq DSN of the server (default: the embedded PostgreSQL)")
    parser.add_argument("--dbname", default="veobot_bench_wake")
    args = parser.parse_args()

    server = Server.from_dsn(args.dsn) if args.dsn else Server.embedded()
    request_history.recreate_database(server, args.dbname)
    Runner(server.django_settings(args.dbname), log=lambda line: None).migrate()
    url = database_url(server, args.dbname)
    os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="veosite.settings", LOG_LEVEL="WARNING")
    os.environ.setdefault("SECRET_KEY", "bench-only")
    import django

    django.setup()
    with server.connect(args.dbname) as conn:
        described = server_description(conn)
    print(json.dumps({"machine": machine_description(), "server": described["version"]}, indent=2))
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, listen in (("polling only (baseline)", False), ("LISTEN/NOTIFY wake-up", True)):
            results[name] = summary(measure(listen=listen, requests=args.requests, url=url, scratch=Path(scratch)))
            print(f"{name:24} {json.dumps(results[name])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
