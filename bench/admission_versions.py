"""What the newest admission migration saves: the previous admit_video_request against the
current one and the bare INSERT floor, alternating, on the admission benchmark's database.

    .venv/bin/python bench/admission_versions.py --rows 1000000 --rounds 3

The previous version is the body of the newest `*admission*.down.sql` in migrations_sql/,
installed for the run as admit_video_request_previous (and dropped afterwards). Every
measurement is pgbench with prepared statements and new users (the admitted path); the figure
that matters is the server CPU per transaction, read from /proc, which moves far less than
latency on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cpu, pgbench_driver, request_history  # noqa: E402
from bench.admission_plans import NEW_USERS, Plan  # noqa: E402
from bench.pgbench_driver import SCRIPTS  # noqa: E402
from bench.server import REPO, Server, machine_description, server_description  # noqa: E402

PREVIOUS = "admit_video_request_previous"


def variants(scratch: Path) -> tuple[tuple[str, str], ...]:
    """(label, pgbench script): the floor, the previous admission (admission.sql calling the
    previous function, written to ``scratch``) and the current one."""
    previous = scratch / "admission_previous.sql"
    previous.write_text((SCRIPTS / "admission.sql").read_text().replace("admit_video_request(", f"{PREVIOUS}(", 1))
    return (("(a) INSERT", "floor.sql"), ("previous admission", str(previous)), ("current admission", "admission.sql"))


def previous_admission_sql(source: str | None = None) -> tuple[str, str]:
    """The previous admit_video_request as a CREATE statement for PREVIOUS: from ``source`` (a
    migration file: only its admit_video_request definition is taken, never the rest, which may
    drop columns), else the newest *admission*.down.sql."""
    if source is None:
        down = sorted((REPO / "migrations_sql").glob("*admission*.down.sql"))[-1]
        return down.name, down.read_text().replace("FUNCTION admit_video_request(", f"FUNCTION {PREVIOUS}(", 1)
    path = REPO / "migrations_sql" / source
    text = path.read_text()
    start = text.index("FUNCTION admit_video_request(")
    start = text.rindex("CREATE", 0, start)
    end = text.index("$$;", text.index("BEGIN", start)) + 3
    return path.name, text[start:end].replace("FUNCTION admit_video_request(", f"FUNCTION {PREVIOUS}(", 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dsn", help="libpq connection string (default: the embedded PostgreSQL)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--previous",
        help="migration file (in migrations_sql/) whose admit_video_request is the previous one,"
        " e.g. 0015_lineage_and_inputs.down.sql (default: the newest *admission*.down.sql)",
    )
    args = parser.parse_args()

    server = Server.from_dsn(args.dsn) if args.dsn else Server.embedded()
    data = request_history.prepare(server, dbname=f"veobot_bench_{args.rows}", rows=args.rows, reload=False)
    source, body = previous_admission_sql(args.previous)
    results: dict[tuple[str, int], list[pgbench_driver.Result]] = {}
    scratch = tempfile.TemporaryDirectory(prefix="veobot-admission-versions-")
    variant_scripts = variants(Path(scratch.name))  # absolute paths pass through SCRIPTS / script
    with scratch, server.connect(data.dbname) as conn:
        print("machine:", ", ".join(f"{k} {v}" for k, v in machine_description().items()))
        print("server: ", ", ".join(f"{k} {v}" for k, v in server_description(conn).items()))
        print(f"dataset: {data.dbname}, {data.rows:,} rows; previous admission from {source}")
        conn.execute(body)
        try:
            for number in range(1, args.rounds + 1):
                for clients in args.clients:
                    for label, script in variant_scripts:
                        cpu.wait_until_quiet(max_seconds=5)
                        plan = Plan(label, script, "local", clients, NEW_USERS)
                        result = pgbench_driver.run(
                            script=script,
                            conninfo=server.conninfo(data.dbname, with_password=False),
                            env=server.client_env(),
                            clients=clients,
                            seconds=args.duration,
                            variables=plan.script_variables(),
                            backend_pids=lambda: server.backend_pids(conn, data.dbname),
                            own_pids=[],
                        )
                        results.setdefault((label, clients), []).append(result)
                        print(
                            f"round {number}: {label}, {clients} client(s): {result.tps:.0f} tps, "
                            f"p50 {result.p50_ms:.3f} ms, server cpu {result.server_cpu_us or 0:.0f} us",
                            flush=True,
                        )
        finally:
            conn.execute(f"DROP FUNCTION IF EXISTS {PREVIOUS}")
            request_history.prepare(server, dbname=data.dbname, rows=args.rows, reload=False)  # drop the rows added

    print(
        f"\nmedians of {args.rounds} round(s)\n{'variant':20} {'clients':>7} {'tps':>7} {'p50 ms':>7} "
        f"{'cpu us':>7} {'cpu/(a)':>7} {'tps/(a)':>7}"
    )
    for clients in args.clients:
        floor = results[(variant_scripts[0][0], clients)]
        floor_cpu, floor_tps = (
            statistics.median(r.server_cpu_us or 0 for r in floor),
            statistics.median(r.tps for r in floor),
        )
        for label, _ in variant_scripts:
            rs = results[(label, clients)]
            cpu_us, tps = statistics.median(r.server_cpu_us or 0 for r in rs), statistics.median(r.tps for r in rs)
            print(
                f"{label:20} {clients:>7} {tps:>7.0f} {statistics.median(r.p50_ms for r in rs):>7.3f} "
                f"{cpu_us:>7.0f} {cpu_us / floor_cpu if floor_cpu else float('nan'):>7.2f} {tps / floor_tps:>7.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
