"""Discord bot benchmark: time to the first answer of /veo, and the bot's memory under load.

    .venv/bin/python bench/bot_latency.py                 # 1M rows, 1 and 100 concurrent, 50 in flight
    .venv/bin/python bench/bot_latency.py --rows 100000 --bursts 3 --json /tmp/bot.json

The bot runs as its own process (bench/scripted_bot.py: tests/bot_process.py, discordbot.bot.serve
with stdin as the gateway) against the fake Discord server (tests/fakes/discord_server.py, in this
process, on loopback) and a scripted Veo backend in the bot's process (why: bench/scripted_bot.py). Each /veo payload is registered with the fake (its
clock starts: "INTERACTION_CREATE received") and written to the bot's stdin; the fake stamps
the first interaction callback it receives. Latency = callback received - registered.

The database is a separate one on the embedded PostgreSQL 16 (or DATABASE_URL's server):
veobot_bench_bot_<rows>, loaded once with --rows historical requests (INSERT ... SELECT over
generate_series, triggers off, delivered so the worker leaves them alone) and reused.

Memory: with the backend taking minutes per video and the global caps raised, 50 /veo are
sent and the bot's VmRSS is read once all 50 are generating; then the backend is switched
to finish at once with 5 MB videos, all 50 are attached to their replies (uploaded from the
files, streamed), and the peak (VmHWM) is reported. Not a test: prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench.cpu import process_seconds  # noqa: E402

USERS = 100_000
LOAD_SQL = """
SET session_replication_role = replica;
INSERT INTO video_requests (
    interaction_id, user_id, guild_id, channel_id, prompt, duration_seconds, aspect_ratio, resolution, model,
    status, operation_name, created_at, available_at, started_at, completed_at, output_uris, output_size_bytes,
    error_code, error_message, delivered_at, delivery_method, counts_toward_quota)
SELECT n, 1 + n % {users}, 1000 + n % 500, 5000 + n % 2000, 'a bench prompt number ' || n,
       (ARRAY[4, 6, 8])[1 + n % 3]::smallint, '16:9', CASE WHEN n % 4 = 0 THEN '1080p' ELSE '720p' END,
       'veo-3.1-generate-001', st, CASE WHEN st <> 'rejected' THEN 'operations/' || n END,
       at, at, CASE WHEN st <> 'rejected' THEN at + interval '5 s' END,
       CASE WHEN st = 'rejected' THEN at ELSE at + interval '5 s' + make_interval(secs => 30 + n % 60) END,
       CASE WHEN st = 'completed' THEN ARRAY['file:bench/' || n || '.mp4'] ELSE '{{}}' END,
       CASE WHEN st = 'completed' THEN 4000000 END,
       CASE st WHEN 'failed' THEN 'backend_error' WHEN 'rejected' THEN 'quota_exceeded' END,
       CASE st WHEN 'failed' THEN 'bench' WHEN 'rejected' THEN 'bench' END,
       CASE WHEN st <> 'rejected' THEN at + interval '2 min' END,
       CASE WHEN st <> 'rejected' THEN 'channel' END,
       st = 'completed'
FROM (SELECT n, CASE WHEN n % 20 = 0 THEN 'failed' WHEN n % 20 = 1 THEN 'rejected' ELSE 'completed' END AS st,
             now() - make_interval(secs => (n * 2.6) % 2592000) AS at
      FROM generate_series({start}, {stop}) AS n) AS g;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sequential", type=int, default=200, help="single /veo invocations, one at a time")
    parser.add_argument("--bursts", type=int, default=5, help="bursts of 100 concurrent /veo")
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logs", type=Path, help="keep the bot's logs in this folder")
    parser.add_argument("--database", help="database name (default veobot_bench_bot_<rows>)")
    parser.add_argument("--no-memory", action="store_true", help="latency and CPU only")
    args = parser.parse_args()

    os.environ.setdefault("SECRET_KEY", "bench-only")
    base = base_dsn()
    name = args.database or f"veobot_bench_bot_{args.rows}"
    prepare(base, name, args.rows)
    database_url = url_for(base, name)

    from tests.fakes.discord_server import FakeDiscordServer

    results: dict = {"machine": machine(), "rows": args.rows}
    with tempfile.TemporaryDirectory() as tmp, FakeDiscordServer() as server:
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            tmp = str(args.logs)
        results["postgres"] = server_version(base, name)
        env = bot_env(database_url, server.base_url, Path(tmp), seconds=3600)
        # The floor first, in the same run: discord.py and the fake alone (bench/echo_bot.py).
        with bot(env, Path(tmp) / "floor.log", module="bench.echo_bot") as proc:
            results["floor_latency_1"] = measure(server, proc, concurrent=1, rounds=args.sequential, user_base=1)
            results["floor_latency_100"] = measure(server, proc, concurrent=100, rounds=args.bursts, user_base=20_000)
        with bot(env, Path(tmp) / "latency.log") as proc:
            results["latency_1"] = measure(server, proc, concurrent=1, rounds=args.sequential, user_base=1)
            results["latency_100"] = measure(server, proc, concurrent=100, rounds=args.bursts, user_base=20_000)
        reset_pending(base, name)
        if not args.no_memory:
            results["memory"] = memory(server, database_url, Path(tmp), in_flight=args.in_flight)
            reset_pending(base, name)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


# -- database ---------------------------------------------------------------------------------------


def base_dsn() -> dict:
    if os.environ.get("DATABASE_URL"):
        return {"conninfo": os.environ["DATABASE_URL"]}
    from veosite import embedded_db

    db = embedded_db.settings_dict(REPO)
    return {"host": db["HOST"], "user": db["USER"], "dbname": "postgres"}


def connect(base: dict, dbname: str, **kwargs) -> psycopg.Connection:
    if "conninfo" in base:
        return psycopg.connect(base["conninfo"], dbname=dbname, **kwargs)
    return psycopg.connect(**{**base, "dbname": dbname}, **kwargs)


def url_for(base: dict, dbname: str) -> str:
    if "conninfo" in base:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(base["conninfo"])
        user = info.get("user", "postgres")
        password = f":{info['password']}" if info.get("password") else ""
        return f"postgresql://{user}{password}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{dbname}"
    return f"postgresql://{base['user']}@/{dbname}?host={base['host']}"


def prepare(base: dict, name: str, rows: int) -> None:
    with connect(base, "postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["DATABASE_URL"] = url_for(base, name)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veosite.settings")
    django.setup()
    from django.db import connection

    from tracking.sql_migrations import Runner

    Runner(connection.settings_dict, log=lambda line: None).migrate()
    with connect(base, name, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM video_requests").fetchone()[0]
        if have >= rows:
            return
        print(f"loading {rows - have} rows into {name} ...", file=sys.stderr)
        started = time.monotonic()
        for start in range(have + 1, rows + 1, 250_000):
            conn.execute(
                sql.SQL(LOAD_SQL).format(
                    users=sql.Literal(USERS), start=sql.Literal(start), stop=sql.Literal(min(start + 249_999, rows))
                )
            )
        conn.execute("VACUUM ANALYZE video_requests")
        print(f"loaded in {time.monotonic() - started:.0f} s", file=sys.stderr)


def reset_pending(base: dict, name: str) -> None:
    """The runs' own requests go, so every run starts from the same 1M historical rows."""
    with connect(base, name, autocommit=True) as conn:
        conn.execute("DELETE FROM video_requests WHERE interaction_id > 1000000000")


def server_version(base: dict, name: str) -> str:
    with connect(base, name) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{platform.platform()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


# -- the bot process ------------------------------------------------------------------------------


def bot_env(database_url: str, discord_url: str, tmp: Path, *, seconds: float, **extra) -> dict:
    from tests.fakes.discord_server import BOT_TOKEN

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        {
            "SECRET_KEY": "bench-only",
            "DATABASE_URL": database_url,
            "DISCORD_TOKEN": BOT_TOKEN,
            "DISCORD_API_BASE_URL": discord_url,
            "VEO_MEDIA_ROOT": str(tmp / "media"),
            "VEO_JOURNAL_DIR": str(tmp / "journal"),
            "SCRIPTED_VEO_SECONDS": str(seconds),
            "VEO_QUOTA_LIMIT": "1000",
            "LOG_LEVEL": os.environ.get("BENCH_BOT_LOG_LEVEL", "WARNING"),
            **extra,
        }
    )
    return env


class bot:
    def __init__(self, env: dict, log: Path, module: str = "bench.scripted_bot"):
        self.env, self.log, self.module = env, log, module

    def __enter__(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise SystemExit(f"bot did not start:\n{self.log.read_text()}")
        return self.proc  # logged in once the fake has seen its GET /oauth2/applications/@me

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout} s")


def send(server, proc, payloads: list[dict]) -> dict[int, float]:
    """Register (the fake's clock starts: the gateway delivered it) and write to the bot's stdin;
    returns each interaction's registration time on the fake's clock."""
    lines, registered = b"", {}
    for payload in payloads:
        registered[int(payload["id"])] = server.register_interaction(payload).created_at
        lines += json.dumps(payload).encode() + b"\n"
    proc.stdin.write(lines)
    proc.stdin.flush()
    return registered


def first_callbacks(server) -> dict[int, tuple[float, int]]:
    """interaction id -> (when the fake received its first callback, the callback type)."""
    seen: dict[int, tuple[float, int]] = {}
    for request in server.requests("POST /interactions/*/callback"):
        interaction_id = int(request.path.split("/")[2])
        if interaction_id not in seen:
            seen[interaction_id] = (request.at, (request.json or {}).get("type"))
    return seen


def wait_answered(server, ids, timeout: float = 60) -> dict[int, tuple[float, int]]:
    # Cheap polling (no deep copies): the fake shares the bench's interpreter, so a busy
    # wait here would slow the fake down and inflate the figures.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = first_callbacks(server)
        if all(i in seen for i in ids):
            return seen
        time.sleep(0.2)
    raise SystemExit("timed out waiting for answers")


def measure(server, proc, *, concurrent: int, rounds: int, user_base: int) -> dict:
    from tests.fakes.interactions import slash_command, user

    wait(lambda: server.requests("GET /oauth2/applications/@me"), 60)
    # Warm-up: first use of the pool, imports, plan caches.
    warm = [slash_command("veo", {"prompt": "warm-up video of a fox"}, author=user(90_000 + i)) for i in range(5)]
    wait_answered(server, send(server, proc, warm))

    idle_rate = idle_cpu_rate(proc.pid)
    latencies, deferred = [], 0
    cpu_start, wall_start = process_seconds([proc.pid]), time.monotonic()
    for round_ in range(rounds):
        payloads = [
            slash_command(
                "veo",
                {"prompt": f"a red fox in snow, round {round_} take {i}"},
                author=user(user_base + round_ * concurrent + i),
            )
            for i in range(concurrent)
        ]
        registered = send(server, proc, payloads)
        answered = wait_answered(server, registered)
        for interaction_id, at in registered.items():
            callback_at, kind = answered[interaction_id]
            latencies.append((callback_at - at) * 1000)
            deferred += kind == 5
        time.sleep(0.5 if concurrent > 1 else 0.02)
    cpu, wall = process_seconds([proc.pid]) - cpu_start, time.monotonic() - wall_start
    latencies.sort()
    return {
        "invocations": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "max_ms": round(latencies[-1], 1),
        "deferred": deferred,
        # The bot process's CPU (user + system, all threads, from /proc) over the rounds, per
        # interaction; "net" takes off what the process spends idle (heartbeat, worker polls)
        # at the rate measured just before, over the rounds' wall time.
        "cpu_ms_per_interaction": round(cpu * 1000 / len(latencies), 2),
        "idle_cpu_ms_per_s": round(idle_rate * 1000, 2),
        "net_cpu_ms_per_interaction": round(max(cpu - idle_rate * wall, 0) * 1000 / len(latencies), 2),
    }


def idle_cpu_rate(pid: int, seconds: float = 3.0) -> float:
    """CPU seconds per second the process spends with nothing to answer."""
    time.sleep(1)  # let the warm-up's own work finish
    before = process_seconds([pid])
    time.sleep(seconds)
    return (process_seconds([pid]) - before) / seconds


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory(server, database_url: str, tmp: Path, *, in_flight: int) -> dict:
    """RSS with ``in_flight`` generations running, then the peak while all of them are
    delivered with 5 MB videos attached."""
    from django.db import connection

    from tests.fakes.interactions import slash_command, user

    env = bot_env(
        database_url,
        server.base_url,
        tmp,
        seconds=20,
        SCRIPTED_VEO_VIDEO_BYTES=str(5 * 1024 * 1024),
        VEO_MAX_CONCURRENT=str(in_flight + 10),
        VEO_MAX_STARTS_PER_MINUTE="1000",
        VEO_WORKER_SLOTS=str(in_flight + 10),
        DATABASE_MAX_CONNECTIONS="20",
    )
    with bot(env, tmp / "memory.log") as proc:
        wait(lambda: len(server.requests("GET /oauth2/applications/@me")) >= 2, 60)
        idle = rss_kb(proc.pid)
        payloads = [
            slash_command(
                "veo",
                {"prompt": f"a heavy video number {i}"},
                author=user(60_000 + i),
                attachment_size_limit=25 * 1024 * 1024,
            )
            for i in range(in_flight)
        ]
        send(server, proc, payloads)

        def generating() -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM video_requests WHERE interaction_id > 1000000000 AND status = 'generating'"
                )
                return cursor.fetchone()[0]

        wait(lambda: generating() >= in_flight, 120)
        during = rss_kb(proc.pid)
        wait(lambda: all((server.original_response(p["id"]) or {}).get("attachments") for p in payloads), 180)
        peak = rss_kb(proc.pid, "VmHWM")
        uploaded = sum(server.original_response(p["id"])["attachments"][0]["size"] for p in payloads)
    return {
        "idle_rss_mb": round(idle / 1024, 1),
        f"rss_with_{in_flight}_generating_mb": round(during / 1024, 1),
        "peak_rss_mb_after_delivering_all": round(peak / 1024, 1),
        "uploaded_mb": round(uploaded / 1024 / 1024, 1),
    }


if __name__ == "__main__":
    main()
