"""Admission benchmark: admit_video_request against a bare INSERT and the three statements it replaces.

    .venv/bin/python bench/admission.py --rows 1000000
    .venv/bin/python bench/admission.py --rows 10000000 --rounds 3 --duration 10 --json /tmp/admission-10m.json
    .venv/bin/python bench/admission.py --rows 1000000 --dsn "host=127.0.0.1 port=5432 user=postgres"

Without --dsn it uses the embedded PostgreSQL 16. It loads (or reuses) a database of
`--rows` requests, drives pgbench with the scripts in bench/scripts/ locally and through
bench/delay_proxy.py, checks every run for over-admission, and prints the figures and the
issue's targets. Exit status 1 if admission ever over-admitted. docs/BENCHMARKS.md has the
method and the results.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import psycopg  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from bench import admission_report as report  # noqa: E402
from bench import cpu, pgbench_driver, quota_check, request_history  # noqa: E402
from bench.admission_plans import (  # noqa: E402
    ADMISSION,
    KNOWN_USERS,
    LOCAL,
    PROXY,
    PROXY_DELAY_MS,
    PROXY_NO_DELAY,
    QUOTA_LIMIT,
    Plan,
    all_plans,
)
from bench.server import Server, machine_description, server_description  # noqa: E402


@contextlib.contextmanager
def delay_proxy(upstream: str, delay_ms: float):
    """Run bench/delay_proxy.py in its own process (its own core time, not pgbench's); yield pid and port."""
    proxy = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("delay_proxy.py")),
            "--upstream",
            upstream,
            "--delay-ms",
            str(delay_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = proxy.stdout.readline()
        if not ready.startswith("listening on "):
            raise pgbench_driver.BenchmarkError(f"delay proxy did not start: {ready!r}")
        yield proxy.pid, int(ready.rsplit(":", 1)[1])
    finally:
        proxy.terminate()
        proxy.wait()


@dataclasses.dataclass(frozen=True)
class Bench:
    server: Server
    data: request_history.Dataset
    ports: dict[str, int]
    proxy_pids: list[int]
    duration: int
    quiet_wait: int
    conn: psycopg.Connection

    def backend_pids(self) -> list[int]:
        return self.server.backend_pids(self.conn, self.data.dbname)

    def measure(self, plan: Plan) -> report.Measurement:
        conninfo = self.server.conninfo(self.data.dbname, with_password=False)
        if plan.route != LOCAL:
            conninfo = make_conninfo(conninfo, host="127.0.0.1", port=str(self.ports[plan.route]))
        after_id = quota_check.newest_id(self.conn)
        if self.quiet_wait:
            cpu.wait_until_quiet(max_seconds=self.quiet_wait)
        result = pgbench_driver.run(
            script=plan.script,
            conninfo=conninfo,
            env=self.server.client_env(),
            clients=plan.clients,
            seconds=plan.seconds or self.duration,
            variables=plan.script_variables(),
            backend_pids=self.backend_pids,
            own_pids=self.proxy_pids,
        )
        m = report.Measurement(plan, result)
        if plan.writes_requests:
            m.admitted, m.rejected = quota_check.admitted_and_rejected(self.conn, after_id=after_id)
        if plan.enforces_quota:
            m.over_admitted = quota_check.over_admissions(
                self.conn, after_id=after_id, limit=QUOTA_LIMIT, window=plan.window
            )
        return m


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="requests in the loaded history")
    parser.add_argument("--dsn", help="libpq connection string of the server (default: the embedded PostgreSQL)")
    parser.add_argument("--database", help="benchmark database name (default: veobot_bench_<rows>)")
    parser.add_argument("--reload", action="store_true", help="reload the history even if it could be reused")
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat every measurement this many times, interleaved; report medians"
    )
    parser.add_argument("--warmup", type=int, default=10, help="seconds of unreported admission load first")
    parser.add_argument(
        "--quiet-wait",
        type=int,
        default=20,
        help="before each measurement, wait up to this many seconds for other work to pause",
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16], help="pgbench client counts")
    parser.add_argument("--json", type=Path, help="also write every figure, round by round, to this file")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    server = Server.from_dsn(args.dsn) if args.dsn else Server.embedded()
    data = request_history.prepare(
        server, dbname=args.database or f"veobot_bench_{args.rows}", rows=args.rows, reload=args.reload
    )
    with server.connect(data.dbname) as conn:
        about_server = server_description(conn)
    about_machine = machine_description()
    print("machine:", ", ".join(f"{key} {value}" for key, value in about_machine.items()))
    print("server: ", ", ".join(f"{key} {value}" for key, value in about_server.items()))
    print(
        f"dataset: {data.dbname}, {data.rows:,} rows, {request_history.USERS:,} users, "
        f"{'reused' if data.reused else 'loaded'}, history ends {data.loaded_at:%Y-%m-%d %H:%M %Z}"
    )

    plans = all_plans(args.clients)
    rounds: list[report.Measurement] = []
    upstream = server.upstream_address()
    with (
        delay_proxy(upstream, PROXY_DELAY_MS) as (delayed_pid, delayed_port),
        delay_proxy(upstream, 0) as (undelayed_pid, undelayed_port),
        server.connect(data.dbname) as conn,
    ):
        bench = Bench(
            server,
            data,
            {PROXY: delayed_port, PROXY_NO_DELAY: undelayed_port},
            [delayed_pid, undelayed_pid],
            args.duration,
            args.quiet_wait,
            conn,
        )
        if args.warmup:
            print(f"warming up for {args.warmup} s ...", flush=True)
            bench.measure(Plan(ADMISSION, "admission.sql", LOCAL, max(args.clients), KNOWN_USERS, seconds=args.warmup))
        for number in range(1, args.rounds + 1):
            for plan in plans:
                m = bench.measure(plan)
                rounds.append(m)
                print(
                    f"round {number}: {plan.label}: {m.result.tps:.0f} tps, p50 {m.result.p50_ms:.3f} ms, "
                    f"p99 {m.result.p99_ms:.3f} ms, server cpu {m.result.server_cpu_us or 0:.0f} us, "
                    f"over-admitted {m.over_admitted}, other load {m.result.other_cores or 0:.2f} cores",
                    flush=True,
                )

    combined = [report.combine([m for m in rounds if m.plan == plan]) for plan in plans]
    report.add_ratios(combined)
    checks = report.targets(combined, data.rows)
    report.print_table(combined, args.rounds)
    report.print_targets(checks)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": about_machine,
                    "server": about_server,
                    "dataset": {
                        "database": data.dbname,
                        "rows": data.rows,
                        "users": request_history.USERS,
                        "reused": data.reused,
                    },
                    "duration_seconds": args.duration,
                    "rounds": args.rounds,
                    "combined": [report.as_json(m) for m in combined],
                    "raw": [report.as_json(m) for m in rounds],
                    "targets": [dataclasses.asdict(check) for check in checks],
                },
                indent=2,
            )
        )
    over_admitted = sum(m.over_admitted for m in rounds if m.plan.variant == ADMISSION)
    return 1 if over_admitted else 0


if __name__ == "__main__":
    sys.exit(main())
