"""Pipeline overhead: requests through real worker processes against the Veo fake (instant).

    .venv/bin/python bench/pipeline.py --rows 1000000 --requests 1000 --workers 1,4

For each worker count: start that many instrumented `runworker`-equivalent processes
(bench/pipeline_worker.py), wait until each is connected and the machine is quiet again (a
worker's start-up is not the pipeline), then release N admitted requests (CLI source,
queued beforehand but not yet claimable) in a table that already holds `--rows` of history,
and time from the first operation start to the last delivery. CPU figures count from the
moment the requests are released.
Reports requests/s, and per request the database statements (round trips: every statement
runs in autocommit), the time PostgreSQL spent executing them (pg_stat_database.active_time,
which also counts waiting for a lock or a CPU), the CPU time of the workers' backends (from
/proc: the database's own work), the workers' CPU time, and how many cores the whole machine
kept busy; and the time the worker waited for the database (which includes its own thread
and GIL contention).
Idle claims are reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veosite.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")

from bench import cpu, request_history  # noqa: E402
from bench.server import REPO, Server, machine_description, server_description  # noqa: E402
from tests.fakes.veo_server import FakeVeoServer  # noqa: E402

ADMIT = (
    "SELECT admitted FROM admit_video_request(nextval('bench_interaction_ids'), %s, NULL, NULL, %s, NULL,"
    " 4::smallint, '16:9', '720p', true, 'allow_adult', NULL, 'veo-3.1-generate-001', 'cli', 1000,"
    " interval '24 hours', 0)"
)


def settle_history(conn) -> None:
    """A live table's history is finished and delivered; the loader leaves a few rows in flight
    and some failures undelivered, which the workers would otherwise pick up."""
    conn.execute("SET session_replication_role = replica")
    conn.execute("DELETE FROM video_requests WHERE status IN ('pending', 'generating')")
    conn.execute(
        "UPDATE video_requests SET delivered_at = completed_at, delivery_method = 'channel'"
        " WHERE delivered_at IS NULL AND status IN ('completed', 'failed', 'timeout', 'cancelled')"
    )
    conn.execute("RESET session_replication_role")
    conn.execute("VACUUM (ANALYZE) video_requests")


def reset_runs(conn, last_loaded_id: int) -> None:
    conn.execute("SET session_replication_role = replica")
    conn.execute("TRUNCATE video_request_events, veo_start_slots")
    conn.execute("DELETE FROM video_requests WHERE id > %s", [last_loaded_id])
    conn.execute("RESET session_replication_role")


def queue_requests(conn, count: int) -> None:
    for n in range(count):
        # Users with no history (ids between the loaded ones): every request is admitted.
        admitted = conn.execute(
            ADMIT, [request_history.USER_ID_STEP * (n % 50_000) + 7, f"bench prompt {n}"]
        ).fetchone()[0]
        assert admitted


def database_url(server: Server, dbname: str) -> str:
    params = server.params
    host = params.get("host", "")
    if host.startswith("/"):
        return f"postgresql://{params.get('user', 'postgres')}@/{dbname}?host={host}"
    auth = params.get("user", "postgres") + (f":{params['password']}" if params.get("password") else "")
    return f"postgresql://{auth}@{host}:{params.get('port', '5432')}/{dbname}"


def run(
    server: Server,
    dbname: str,
    last_loaded_id: int,
    *,
    workers: int,
    requests: int,
    slots: int,
    veo: FakeVeoServer,
    scratch: Path,
) -> dict:
    with server.connect(dbname) as conn:
        reset_runs(conn, last_loaded_id)
        queue_requests(conn, requests)
        # Parked until every worker is up: starting one (Django, the SDK) costs about a second
        # of CPU, and the pipeline, not start-up, is what is measured.
        conn.execute("UPDATE video_requests SET available_at = 'infinity' WHERE id > %s", [last_loaded_id])
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL=database_url(server, dbname),
        VEO_BACKEND="express",
        VEO_API_KEY="bench-key",
        VEO_API_BASE_URL=veo.url,
        VEO_MAX_CONCURRENT="1000",
        VEO_MAX_STARTS_PER_MINUTE="10000",
        VEO_POLL_INITIAL="0s",
        VEO_WORKER_IDLE_POLL="1s",
        VEO_WORKER_SLOTS=str(slots),
        VEO_MEDIA_ROOT=str(scratch / "media"),
        VEO_JOURNAL_DIR=str(scratch / "journal"),
        LOG_LEVEL="WARNING",
        DASHBOARD_REFRESH="0s",  # the dashboard chore is not the pipeline
        # The release below is an UPDATE, not an admission: nothing notifies, and a
        # listener connection would only blur the one-connection-per-worker count.
        VEO_WORKER_LISTEN="false",
    )
    processes = []
    for index in range(workers):
        stats_file = scratch / f"stats-{workers}-{index}.json"
        processes.append(
            (
                subprocess.Popen(
                    [sys.executable, str(REPO / "bench" / "pipeline_worker.py")],
                    cwd=REPO,
                    env={**env, "BENCH_STATS_FILE": str(stats_file)},
                ),
                stats_file,
            )
        )
    worker_pids = [process.pid for process, _ in processes]
    with server.connect(dbname) as conn:
        backends = wait_for_workers(conn, dbname, workers)
        cpu.wait_until_quiet(max_seconds=15)
        active_before = server_active_ms(server, dbname)
        backend_before, worker_before = cpu.process_seconds(backends), cpu.process_seconds(worker_pids)
        fake_before = cpu.process_seconds([os.getpid()])
        started, busy_before = time.monotonic(), cpu.machine_busy_seconds()
        conn.execute("UPDATE video_requests SET available_at = clock_timestamp() WHERE id > %s", [last_loaded_id])
        while conn.execute(
            "SELECT count(*) FROM video_requests WHERE id > %s AND delivered_at IS NULL", [last_loaded_id]
        ).fetchone()[0]:
            backends |= worker_backends(conn, dbname)  # a worker may open another connection
            time.sleep(0.2)
        first_start, last_delivery, failed = conn.execute(
            "SELECT min(started_at), max(delivered_at), count(*) FILTER (WHERE status <> 'completed')"
            " FROM video_requests WHERE id > %s",
            [last_loaded_id],
        ).fetchone()
    # Read before the workers exit: a backend's CPU time goes with its process.
    backend_cpu = cpu.process_seconds(backends) - backend_before
    worker_cpu = cpu.process_seconds(worker_pids) - worker_before
    fake_cpu = cpu.process_seconds([os.getpid()]) - fake_before  # the Veo fake's threads, and this poller
    machine_cpu, elapsed = cpu.machine_busy_seconds() - busy_before, time.monotonic() - started
    for process, _ in processes:
        process.send_signal(signal.SIGTERM)
    totals = {"statements": 0, "seconds": 0.0, "empty_claims": 0, "empty_claim_seconds": 0.0}
    for process, stats_file in processes:
        process.wait(60)
        for key, value in json.loads(stats_file.read_text()).items():
            totals[key] += value
    window = (last_delivery - first_start).total_seconds()
    server_ms = server_active_ms(server, dbname) - active_before
    return {
        "workers": workers,
        "requests": requests,
        "not_completed": failed,
        "seconds": window,
        "requests_per_second": requests / window,
        "round_trips_per_request": totals["statements"] / requests,
        "server_db_ms_per_request": server_ms / requests,
        "server_cpu_ms_per_request": backend_cpu * 1000 / requests,
        "worker_cpu_ms_per_request": worker_cpu * 1000 / requests,
        "veo_fake_cpu_ms_per_request": fake_cpu * 1000 / requests,
        "machine_cpu_ms_per_request": machine_cpu * 1000 / requests,
        "machine_cores_busy": machine_cpu / elapsed,
        "client_db_ms_per_request": totals["seconds"] * 1000 / requests,
        "idle_claims": totals["empty_claims"],
    }


def worker_backends(conn, dbname: str) -> set[int]:
    """The workers' own backends (not this one): their CPU time is the database's work."""
    return {
        pid
        for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()",
            [dbname],
        )
    }


def wait_for_workers(conn, dbname: str, workers: int, timeout: float = 60) -> set[int]:
    """Wait until every worker has connected (its first, idle, claim): then it is up."""
    deadline = time.monotonic() + timeout
    while len(backends := worker_backends(conn, dbname)) < workers:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(backends)} of {workers} workers connected within {timeout:.0f} s")
        time.sleep(0.2)
    return backends


def server_active_ms(server: Server, dbname: str) -> float:
    """Time PostgreSQL spent executing statements in this database (pg_stat_database.active_time,
    PostgreSQL 14+). Sessions report it when they end, so read it after the workers exit."""
    time.sleep(1.5)
    with server.connect("postgres") as conn:
        return conn.execute("SELECT active_time FROM pg_stat_database WHERE datname = %s", [dbname]).fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="history rows in video_requests")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--workers", default="1,4", help="comma-separated worker process counts")
    parser.add_argument("--slots", type=int, default=16, help="VEO_WORKER_SLOTS per worker")
    parser.add_argument("--dsn", help="libpq DSN of the server (default: the embedded PostgreSQL)")
    parser.add_argument("--dbname", default="veobot_bench_pipeline")
    parser.add_argument("--reload", action="store_true", help="reload the history even if reusable")
    args = parser.parse_args()

    server = Server.from_dsn(args.dsn) if args.dsn else Server.embedded()
    loaded = request_history.prepare(server, dbname=args.dbname, rows=args.rows, reload=args.reload)
    with server.connect(args.dbname) as conn:
        settle_history(conn)
        described = server_description(conn)
    print(json.dumps({"machine": machine_description(), "server": described, "rows": args.rows}, indent=2))
    results = []
    with FakeVeoServer(api_keys=["bench-key"]) as veo, tempfile.TemporaryDirectory() as scratch:
        for workers in [int(n) for n in args.workers.split(",")]:
            result = run(
                server,
                args.dbname,
                loaded.last_loaded_id,
                workers=workers,
                requests=args.requests,
                slots=args.slots,
                veo=veo,
                scratch=Path(scratch),
            )
            results.append(result)
            print(
                f"{workers} worker(s): {result['requests_per_second']:.1f} req/s over {result['seconds']:.1f} s;"
                f" per request {result['round_trips_per_request']:.2f} round trips,"
                f" {result['server_db_ms_per_request']:.2f} ms executing in PostgreSQL"
                f" ({result['server_cpu_ms_per_request']:.2f} ms of its CPU),"
                f" {result['worker_cpu_ms_per_request']:.2f} ms of worker CPU,"
                f" {result['veo_fake_cpu_ms_per_request']:.2f} ms of the Veo fake's,"
                f" machine {result['machine_cores_busy']:.2f} cores busy"
                f" ({result['client_db_ms_per_request']:.2f} ms as the worker saw it);"
                f" {result['not_completed']} not completed, {result['idle_claims']} idle claims",
                flush=True,
            )
    if len(results) > 1:
        print(
            f"scaling {results[-1]['workers']} vs {results[0]['workers']} workers: "
            f"{results[-1]['requests_per_second'] / results[0]['requests_per_second']:.2f}x"
        )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
