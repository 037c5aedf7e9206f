"""Admission's server work counted in instructions: bench/admission_budgets.py's three variants
and today's function with nothing configured, the same admissions for each, counted by callgrind
in the backend that runs them. Server CPU time from /proc moves with the machine's load by more
than the 10% being measured; instructions do not.

    .venv/bin/python bench/admission_instructions.py --pg-bin /usr/lib/postgresql/15/bin \\
        --datadir /srv/bench-cluster --port 5433 --as-user postgres --rows 1000000

--datadir is a cluster of its own (made with initdb; stopped, or running on --port): it is
stopped, given admission_budgets' priced history if it lacks it (database
veobot_bench_costs_<rows>), then started under valgrind --tool=callgrind, collecting only inside
PortalRun and CommitTransactionCommand: the admission's execution and its commit, not the
protocol, nor parsing and planning the top-level call (the same for every variant). Each
variant's admissions run twice, each time in a backend of its own from the same data: --warmup
calls (the backend starts, the function's plans are made and cached), then those and --calls
more; the difference divided by --calls is the figure. Between variants the admitted rows are deleted and the tables vacuumed,
so each starts from the same data; every other round runs the variants backwards. The cluster is
left stopped, or running (normally) if it was. Needs valgrind (apt-get install valgrind).

To weigh a change to admission before writing its migration, --compare FILE NAME [NAME ...]
counts functions FILE installs beside today's (each with admit_video_request's signature, e.g.
a copy of it under another name) instead of the variants above: the same admissions, "budgets +
roles" (or, with --unconfigured, nothing configured), every round in the other order. Counts of
one function move by up to ~60,000 instructions between counts in one run, so a difference is
a finding only when it is larger than each function's own spread, which it prints.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bench import admission_budgets, request_history  # noqa: E402
from bench.admission_plans import KNOWN_USERS, PROMPT, QUOTA_LIMIT  # noqa: E402
from bench.server import Server, machine_description, server_description  # noqa: E402

# admission_budgets' pgbench script (CALL) as one parameterised statement.
CALL = (
    "SELECT request_id, admitted, reason_code FROM {function}("
    "nextval('bench_interaction_ids'), %(user)s, %(guild)s, %(channel)s, %(prompt)s, NULL, 8::smallint, '16:9',"
    " '720p', true, 'allow_adult', NULL, 'veo-3.1-fast-generate-001', 'discord', %(limit)s, interval '1 day', 0{extra})"
)
# What each variant passes beyond the 17 arguments, by admission_budgets' pgbench form of it.
EXTRA = {"": "", admission_budgets.ROLES_AND_CAP: ", NULL, NULL, NULL, NULL, NULL, %(roles)s::bigint[], 1000000"}
COLLECTED = ("PortalRun", "CommitTransactionCommand")
# Today's function with nothing configured: the same admissions in guilds without a policy (their
# ids moved past the 2,000 that have one), no roles, no cap. Against "previous admission" it is
# what admission costs without budgets; against "budgets + roles", what the budgets' reads cost.
UNCONFIGURED = ("current, nothing configured", "admit_video_request", "")
UNCONFIGURED_GUILDS = 100_000
TOTALS = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


class Cluster:
    """One PostgreSQL data directory this benchmark starts and stops, plain or under callgrind."""

    def __init__(self, pg_bin: Path, datadir: Path, port: int, as_user: str | None, traces: Path):
        self.pg_bin, self.datadir, self.port, self.as_user, self.traces = pg_bin, datadir, port, as_user, traces
        self.server = Server.from_dsn(f"host=127.0.0.1 port={port} user=postgres")

    def running(self) -> bool:
        return subprocess.run(self._as_owner(self._pg_ctl("status")), capture_output=True).returncode == 0

    def start(self, *, counted: bool) -> None:
        postgres = [str(self.pg_bin / "postgres"), "-D", str(self.datadir), "-p", str(self.port), "-k", "/tmp"]
        postgres += ["-c", "autovacuum=off", "-c", "listen_addresses=127.0.0.1"]
        if counted:
            valgrind = ["valgrind", "--tool=callgrind", "--collect-atstart=no"]
            valgrind += [f"--toggle-collect={name}" for name in COLLECTED]
            valgrind += [f"--callgrind-out-file={self.traces}/callgrind.%p", "--log-file=/dev/null"]
            postgres = valgrind + postgres
        subprocess.Popen(self._as_owner(postgres), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_up(seconds=300 if counted else 60)

    def stop(self) -> None:
        subprocess.run(self._as_owner(self._pg_ctl("stop", "-m", "fast", "-t", "600")), check=True, capture_output=True)

    def instructions(self, pid: int) -> int:
        """What the backend ``pid`` executed where collected, once it has ended (callgrind writes
        a backend's counts when it exits; its file is there, empty, from the start)."""
        path = self.traces / f"callgrind.{pid}"
        for _ in range(1200):
            written = TOTALS.search(path.read_text()) if path.exists() else None
            if written:
                return int(written.group(1))
            time.sleep(0.1)
        raise RuntimeError(f"callgrind wrote no counts for backend {pid}")

    def _pg_ctl(self, *args: str) -> list[str]:
        return [str(self.pg_bin / "pg_ctl"), "-D", str(self.datadir), *args]

    def _as_owner(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", self.as_user, "--", *command] if self.as_user else command

    def _wait_until_up(self, *, seconds: int) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                psycopg.connect(self.server.conninfo("postgres"), connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def admissions(count: int, seed: int, guild_offset: int = 0) -> list[dict]:
    """The same admissions for every variant: known users, guilds 1..2,000 (plus guild_offset), as
    the pgbench script draws them."""
    draw = random.Random(seed)
    calls = []
    for _ in range(count):
        guild = draw.randint(1, admission_budgets.GUILDS) + guild_offset
        user = KNOWN_USERS.step * draw.randint(1, KNOWN_USERS.count)
        channel = guild * 100 + draw.randint(1, 20)
        roles = [guild * 10 + 1, guild * 10 + 2, 99]
        calls.append(
            {"user": user, "guild": guild, "channel": channel, "prompt": PROMPT, "limit": QUOTA_LIMIT, "roles": roles}
        )
    return calls


def prepare(cluster: Cluster, rows: int) -> request_history.Dataset:
    """The priced history and the variants' functions and policies, vacuumed, ready to count."""
    cluster.start(counted=False)
    data = request_history.prepare(cluster.server, dbname=f"veobot_bench_costs_{rows}", rows=rows, reload=False)
    with cluster.server.connect(data.dbname) as conn:
        admission_budgets.price_history(conn)
        admission_budgets.remove_variants(conn)
        admission_budgets.install_variants(conn)
        back_to_history(conn, data)
        conn.execute("ANALYZE")
        print("machine:", ", ".join(f"{k} {v}" for k, v in machine_description().items()))
        print("server: ", ", ".join(f"{k} {v}" for k, v in server_description(conn).items()))
        conn.execute("CHECKPOINT")
    cluster.stop()
    return data


def back_to_history(conn: psycopg.Connection, data: request_history.Dataset) -> None:
    """The admitted rows deleted and every table they touched vacuumed: each variant starts the
    same. (No ANALYZE: a few hundred rows move no statistic, and under callgrind it takes minutes.)"""
    request_history.remove_benchmark_rows(conn, data.last_loaded_id)
    conn.execute("VACUUM video_requests, operator_spend_hours, guild_spend_ledger, fair_share_turns")


def count(
    cluster: Cluster, data: request_history.Dataset, function: str, extra: str, *, warmup: list, calls: list
) -> float:
    """Instructions per admission: a backend making the warm-up calls, then one making them and the
    measured calls, each from the loaded history; the difference is the measured calls' (the
    backend's start, the function's first plans and the warm-up's calls are in both)."""
    statement = CALL.format(function=function, extra=EXTRA[extra])
    warm = _admit(cluster, data, statement, warmup)
    both = _admit(cluster, data, statement, warmup + calls)
    return (both - warm) / len(calls)


def _admit(cluster: Cluster, data: request_history.Dataset, statement: str, calls: list) -> int:
    with psycopg.connect(cluster.server.conninfo(data.dbname), autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        for call in calls:
            if not conn.execute(statement, call).fetchone()[1]:
                raise RuntimeError("an admission was refused: only the admitted path is measured")
    executed = cluster.instructions(pid)
    with cluster.server.connect(data.dbname) as conn:
        back_to_history(conn, data)
    return executed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-bin", type=Path, required=True, help="the server's binaries (postgres, pg_ctl)")
    parser.add_argument("--datadir", type=Path, required=True, help="a cluster of the benchmark's own")
    parser.add_argument("--port", type=int, default=5433)
    parser.add_argument("--as-user", help="the cluster's owner, when run as root")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare", nargs="+", metavar=("FILE", "NAME"), help="SQL installing functions, their names")
    parser.add_argument("--unconfigured", action="store_true", help="with --compare: nothing configured")
    args = parser.parse_args()
    if args.compare and len(args.compare) < 2:
        parser.error("--compare needs the SQL file and at least one function name")

    traces = Path(tempfile.mkdtemp(prefix="veobot-callgrind-"))
    traces.chmod(0o777)  # the server, run as its owner, writes here
    cluster = Cluster(args.pg_bin, args.datadir, args.port, args.as_user, traces)
    was_running = cluster.running()
    if was_running:
        cluster.stop()
    data = prepare(cluster, args.rows)
    if args.compare:
        return compare(cluster, data, Path(args.compare[0]), args.compare[1:], args, was_running=was_running)
    draws = {
        offset: (
            admissions(args.warmup, seed=1, guild_offset=offset),
            admissions(args.calls, seed=2, guild_offset=offset),
        )
        for offset in (0, UNCONFIGURED_GUILDS)
    }
    variants = (*admission_budgets.VARIANTS, UNCONFIGURED)
    print(f"dataset: {data.dbname}, {data.rows:,} rows; {args.calls} admissions per variant after {args.warmup}")
    per_call: dict[str, list[float]] = {}
    cluster.start(counted=True)
    try:
        for number in range(1, args.rounds + 1):
            for label, function, extra in variants if number % 2 else variants[::-1]:
                warmup, calls = draws[UNCONFIGURED_GUILDS if label == UNCONFIGURED[0] else 0]
                instructions = count(cluster, data, function, extra, warmup=warmup, calls=calls)
                per_call.setdefault(label, []).append(instructions)
                print(f"round {number}: {label}: {instructions:,.0f} instructions per admission", flush=True)
    finally:
        cluster.stop()
    leave(cluster, data, was_running=was_running)

    previous = min(per_call[admission_budgets.VARIANTS[0][0]])
    print(f"\n{'variant':22} {'instructions per admission (per round)':>40} {'min/previous':>13}")
    for label, *_ in variants:
        rounds = " ".join(f"{value:,.0f}" for value in per_call[label])
        print(f"{label:22} {rounds:>40} {min(per_call[label]) / previous:>13.3f}")
    return 0


def leave(cluster: Cluster, data, *, was_running: bool) -> None:
    """The benchmark's policies and functions removed, and the cluster as it was found."""
    cluster.start(counted=False)
    with cluster.server.connect(data.dbname) as conn:
        admission_budgets.remove_variants(conn)
    if not was_running:
        cluster.stop()


def compare(cluster: Cluster, data, variants_sql: Path, names: list[str], args, *, was_running: bool) -> int:
    """--compare: each named function counted once a round, every round in the other order."""
    cluster.start(counted=False)
    with cluster.server.connect(data.dbname) as conn:
        conn.execute(variants_sql.read_text())
    cluster.stop()
    offset, extra = (UNCONFIGURED_GUILDS, "") if args.unconfigured else (0, admission_budgets.ROLES_AND_CAP)
    warmup, calls = (
        admissions(args.warmup, seed=1, guild_offset=offset),
        admissions(args.calls, seed=2, guild_offset=offset),
    )
    print(f"dataset: {data.dbname}, {data.rows:,} rows; {args.calls} admissions per count after {args.warmup}")
    counts: dict[str, list[float]] = {name: [] for name in names}
    cluster.start(counted=True)
    try:
        for number in range(1, args.rounds + 1):
            for name in names if number % 2 else names[::-1]:
                counts[name].append(count(cluster, data, name, extra, warmup=warmup, calls=calls))
                print(f"round {number}: {name}: {counts[name][-1]:,.0f} instructions per admission", flush=True)
    finally:
        cluster.stop()
    leave(cluster, data, was_running=was_running)
    print(f"\n{'function':30} {'mean':>12} {'spread':>10}  per round")
    for name, values in counts.items():
        rounds = " ".join(f"{value:,.0f}" for value in values)
        print(f"{name:30} {sum(values) / len(values):>12,.0f} {max(values) - min(values):>10,.0f}  {rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
