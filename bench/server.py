"""Which PostgreSQL server the benchmark talks to, and what it runs on."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Server:
    """libpq connection parameters for one server; the database name is chosen per call."""

    params: dict[str, str]

    @classmethod
    def from_dsn(cls, dsn: str) -> Server:
        params = {key: str(value) for key, value in conninfo_to_dict(dsn).items()}
        params.pop("dbname", None)
        return cls(params)

    @classmethod
    def embedded(cls) -> Server:
        """The project's embedded PostgreSQL 16 (started if it is not running)."""
        from veosite.embedded_db import settings_dict

        settings = settings_dict(REPO)
        return cls({"host": settings["HOST"], "user": settings["USER"]})

    def conninfo(self, dbname: str, *, with_password: bool = True) -> str:
        params = dict(self.params, dbname=dbname)
        if not with_password:
            params.pop("password", None)
        return make_conninfo("", **params)

    def connect(self, dbname: str) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(dbname), autocommit=True)

    def django_settings(self, dbname: str) -> dict:
        """The DATABASES-style entry that tracking.sql_migrations.Runner expects."""
        return {
            "NAME": dbname,
            "USER": self.params.get("user", ""),
            "PASSWORD": self.params.get("password", ""),
            "HOST": self.params.get("host", ""),
            "PORT": self.params.get("port", ""),
        }

    def client_env(self) -> dict[str, str]:
        """Environment for pgbench: the password travels here rather than in argv."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        if "password" in self.params:
            env["PGPASSWORD"] = self.params["password"]
        env["PGAPPNAME"] = self.application_name
        return env

    def backend_pids(self, conn: psycopg.Connection, dbname: str) -> list[int]:
        """The server processes serving this benchmark's pgbench clients in ``dbname``."""
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            [self.application_name, dbname],
        )
        return [pid for (pid,) in rows]

    @property
    def application_name(self) -> str:
        """Tells this benchmark's connections apart from anyone else's on a shared server."""
        return f"veobot-bench-{os.getpid()}"

    def upstream_address(self) -> str:
        """Where the delay proxy should forward to: a Unix socket path or host:port."""
        host = self.params.get("host") or "/var/run/postgresql"
        port = self.params.get("port") or "5432"
        if host.startswith("/"):
            return str(Path(host) / f".s.PGSQL.{port}")
        return f"{host}:{port}"


def machine_description() -> dict[str, str]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": cpu_model,
        "ram": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or "unknown",
    }


SERVER_SETTINGS = (
    "shared_buffers",
    "synchronous_commit",
    "fsync",
    "wal_sync_method",
    "max_wal_size",
    "max_connections",
)


def server_description(conn: psycopg.Connection) -> dict[str, str]:
    description = {"version": conn.execute("SELECT version()").fetchone()[0]}
    rows = conn.execute("SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name", [list(SERVER_SETTINGS)])
    description.update(dict(rows.fetchall()))
    return description
