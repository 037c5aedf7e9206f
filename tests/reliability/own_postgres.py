"""A PostgreSQL server of a run's own, which the run really stops and starts.

Built from the pgserver wheel's binaries (the same PostgreSQL 16 as the embedded server),
with its data under .data/chaos-postgres so it survives between runs, and stopped and
started with pg_ctl. Stopping the suite's own server instead would pull the database from
under every other test; a TCP proxy would only imitate an outage (the bot's probe and pool
would never see a refused connection on the Unix socket, nor a server restart's effects).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from tracking.sql_migrations import Runner

PGDATA = Path(__file__).resolve().parents[2] / ".data" / "chaos-postgres"
_migrated_templates: set[str] = set()  # by this process, on the server under PGDATA


class OwnPostgres:
    def __init__(self, pgdata: Path = PGDATA):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
            import pgserver
            from pgserver._commands import pg_ctl
            from pgserver.utils import PostmasterInfo

        self._pg_ctl = pg_ctl
        self._postmaster = PostmasterInfo.read_from_pgdata
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode=None)  # initdb on first use, then start
        self.pgdata = pgdata
        self.socket_dir = str(server.get_postmaster_info().socket_dir)
        # As root, pgserver runs the server as its own 'pgserver' user; pg_ctl must match.
        self.system_user = "pgserver" if os.geteuid() == 0 else None
        if not self.running:  # pgserver hands out its cached handle without checking: stopped by a last run
            self.start()
        self.version = server.psql("SHOW server_version;").split("\n")[2].strip()

    @property
    def running(self) -> bool:
        info = self._postmaster(self.pgdata)
        return info is not None and info.is_running()

    def fresh_database(self, name: str) -> dict:
        """(Re)create ``name`` with our SQL schema; returns its Django-style settings. The migrations
        run once per test process, into ``<name>_template`` (made again: one left by an earlier
        run may predate a migration); each fresh database after is a copy of it."""
        template = f"{name}_template"
        if template not in _migrated_templates:
            self._recreate(template)
            Runner(self._settings(template), log=lambda line: None).migrate()
            _migrated_templates.add(template)
        self._recreate(name, template=template)
        return self._settings(name)

    def _settings(self, name: str) -> dict:
        return {"NAME": name, "USER": "postgres", "PASSWORD": "", "HOST": self.socket_dir, "PORT": ""}

    def _recreate(self, name: str, *, template: str = "template1") -> None:
        with psycopg.connect(host=self.socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
            )

    def stop(self) -> None:
        """A fast shutdown: connections are cut, new ones refused until start()."""
        if not self.running:
            return
        self._pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user)

    def start(self) -> None:
        """Start again on the same socket, as pgserver first started it."""
        self._pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log"), "start"],
            pgdata=self.pgdata,
            user=self.system_user,
        )
