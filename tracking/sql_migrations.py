"""Applying the hand-written SQL files in migrations_sql/ with psql.

Each file runs through ``psql -v ON_ERROR_STOP=1 --single-transaction`` together with the
statement that records it in ``schema_migrations``, so a file and its record commit or
roll back together. A session-level advisory lock, held on a separate connection for the
whole run, keeps two runners from interleaving: so the runner connects to the server itself
(the "direct" database, DATABASE_DIRECT_URL), never through a transaction-pooling PgBouncer,
where that lock would stay with a server connection the runner no longer holds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations_sql"
SCHEMA_FILE_NAME = "schema.sql"  # the whole schema for reading (tracking/schema_dump.py), not a migration
FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
RUNNER_LOCK_KEY = 1986161409  # pg_advisory_lock key reserved for this runner
DIRECT_DB_ALIAS = "direct"  # the DATABASES entry that reaches the server without a pooler

BOOTSTRAP_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY CONSTRAINT schema_migrations_version_check CHECK (version > 0),
    name        text NOT NULL,
    checksum    text NOT NULL CONSTRAINT schema_migrations_checksum_check CHECK (checksum ~ '^[0-9a-f]{64}$'),
    applied_at  timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


# Files whose comments were edited after release, never their statements: label -> (the
# checksum installations recorded, the checksum of the statements alone, which must not change
# -- tests/test_migrate_sql.py checks that it did not). Those installations have nothing to redo.
COMMENT_EDITS = {
    "0004_bot": (
        "23ae582229ea0ae6638ddea00a36931d4e48003853f03fce7a36a5ef7b04d993",
        "ce963b90871a4d71b1c68acbb3410a74037d4a2fbc8d318a4156d3458852da9e",
    )
}


def statements_checksum(path: Path) -> str:
    """SHA-256 of a file without its comment lines: what an edit of comments leaves unchanged."""
    lines = path.read_bytes().splitlines(keepends=True)
    return hashlib.sha256(b"".join(line for line in lines if not line.lstrip().startswith(b"--"))).hexdigest()


class MigrationError(Exception):
    """A migration could not be applied or rolled back; the message says which and why."""


@dataclass(frozen=True)
class MigrationFile:
    version: int
    name: str
    path: Path

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def down_path(self) -> Path:
        return self.path.with_name(f"{self.label}.down.sql")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def matches(self, recorded: str) -> bool:
        """The file is the one applied: the same bytes, or the same statements under edited comments."""
        return recorded == self.checksum or recorded == COMMENT_EDITS.get(self.label, ("",))[0]


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: datetime


@dataclass(frozen=True)
class MigrationState:
    label: str
    applied_at: datetime | None
    problem: str | None


def discover(directory: Path = MIGRATIONS_DIR) -> list[MigrationFile]:
    files = []
    for path in sorted(directory.glob("*.sql")):
        if path.name.endswith(".down.sql") or path.name == SCHEMA_FILE_NAME:
            continue
        match = FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_lowercase_name.sql")
        files.append(MigrationFile(int(match["version"]), match["name"], path))
    versions = [f.version for f in files]
    if len(versions) != len(set(versions)):
        raise MigrationError("two migration files share a version number")
    return files


def psql_executable() -> str:
    """PSQL if set, else the psql shipped with the embedded server, else the one on PATH."""
    if os.environ.get("PSQL"):
        return os.environ["PSQL"]
    from veosite.embedded_db import bin_dir

    bundled = bin_dir()
    if bundled and (bundled / "psql").exists():
        return str(bundled / "psql")
    found = shutil.which("psql")
    if not found:
        raise MigrationError("psql not found: install the PostgreSQL client or set PSQL=/path/to/psql")
    return found


def libpq_environment(db: dict) -> dict[str, str]:
    """Connection settings for psql as PG* variables: the password never appears in argv."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    fields = {
        "PGHOST": db.get("HOST"),
        "PGPORT": db.get("PORT"),
        "PGUSER": db.get("USER"),
        "PGPASSWORD": db.get("PASSWORD"),
        "PGDATABASE": db.get("NAME"),
    }
    env.update({key: str(value) for key, value in fields.items() if value})
    env["PGCONNECT_TIMEOUT"] = "10"
    env["PGAPPNAME"] = "veobot-migrate-sql"
    return env


class Runner:
    """Applies and rolls back migrations for one database (a Django DATABASES entry)."""

    def __init__(self, db: dict, directory: Path = MIGRATIONS_DIR, log=print):
        self.db = db
        self.directory = directory
        self.log = log
        self.env = libpq_environment(db)

    # -- connection and lock -------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(
            host=self.db.get("HOST") or None,
            port=self.db.get("PORT") or None,
            user=self.db.get("USER") or None,
            password=self.db.get("PASSWORD") or None,
            dbname=self.db["NAME"],
            connect_timeout=10,
            autocommit=True,
        )

    def _locked(self, conn: psycopg.Connection) -> None:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", [RUNNER_LOCK_KEY]).fetchone()[0]
        if not got:
            self.log("another migrate_sql is running; waiting for it to finish...")
            conn.execute("SELECT pg_advisory_lock(%s)", [RUNNER_LOCK_KEY])
        conn.execute(BOOTSTRAP_SQL)

    def applied(self, conn: psycopg.Connection) -> dict[int, AppliedMigration]:
        rows = conn.execute("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
        return {row[0]: AppliedMigration(*row) for row in rows}

    # -- checks ----------------------------------------------------------------------

    def _verify(self, files: list[MigrationFile], applied: dict[int, AppliedMigration]) -> None:
        by_version = {f.version: f for f in files}
        for version, record in applied.items():
            file = by_version.get(version)
            if file is None:
                raise MigrationError(
                    f"{version:04d}_{record.name} is applied but its file is missing from {self.directory.name}/; "
                    "restore it (or roll it back with the old checkout) before migrating"
                )
            if not file.matches(record.checksum):
                raise MigrationError(
                    f"{file.path.name} was edited after it was applied (checksum {record.checksum[:12]} recorded, "
                    f"{file.checksum[:12]} on disk); restore the applied version and put changes in a new migration"
                )

    def _verify_order(self, files: list[MigrationFile], applied: dict[int, AppliedMigration]) -> None:
        """Applying an older file after a newer one could run changes out of order; rolling
        back (the way out of this state) stays allowed."""
        pending = [f.version for f in files if f.version not in applied]
        if applied and pending and min(pending) < max(applied):
            raise MigrationError(
                f"{min(pending):04d} is pending but newer {max(applied):04d} is already applied; "
                f"renumber the new file after the newest applied migration, or roll back to it first "
                f"(migrate_sql --down --to {min(pending) - 1})"
            )

    def status(self) -> list[MigrationState]:
        files = discover(self.directory)
        with self._connect() as conn:
            conn.execute(BOOTSTRAP_SQL)
            applied = self.applied(conn)
        states = []
        for file in files:
            record = applied.get(file.version)
            problem = None
            if record and not file.matches(record.checksum):
                problem = "edited after it was applied (checksum mismatch)"
            states.append(MigrationState(file.label, record.applied_at if record else None, problem))
        on_disk = {f.version for f in files}
        for version, record in applied.items():
            if version not in on_disk:
                states.append(MigrationState(f"{version:04d}_{record.name}", record.applied_at, "file missing"))
        return sorted(states, key=lambda state: state.label)

    # -- up and down ---------------------------------------------------------------

    def migrate(self) -> list[str]:
        files = discover(self.directory)
        done = []
        with self._connect() as conn:
            self._locked(conn)
            applied = self.applied(conn)
            self._verify(files, applied)
            self._verify_order(files, applied)
            for file in files:
                if file.version in applied:
                    continue
                self.log(f"applying {file.path.name}")
                self._run_psql(
                    file.path,
                    record=(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (:'v', :'n', :'c');",
                        {"v": str(file.version), "n": file.name, "c": file.checksum},
                    ),
                    label=file.label,
                )
                done.append(file.label)
        return done

    def rollback(self, *, to_version: int | None = None) -> list[str]:
        """Roll back the newest migration, or every migration above ``to_version``."""
        files = {f.version: f for f in discover(self.directory)}
        done = []
        with self._connect() as conn:
            self._locked(conn)
            applied = self.applied(conn)
            self._verify(list(files.values()), applied)
            newest_first = sorted(applied, reverse=True)
            if to_version is None:
                targets = newest_first[:1]
            else:
                if to_version and to_version not in applied:
                    raise MigrationError(f"--to {to_version:04d} is not an applied version")
                targets = [v for v in newest_first if v > to_version]
            for version in targets:
                file = files[version]
                if not file.down_path.exists():
                    raise MigrationError(f"{file.down_path.name} is missing: cannot roll back {file.label}")
                self.log(f"rolling back {file.label}")
                self._run_psql(
                    file.down_path,
                    record=("DELETE FROM schema_migrations WHERE version = :'v';", {"v": str(version)}),
                    label=file.label,
                )
                done.append(file.label)
        return done

    def _run_psql(self, path: Path, *, record: tuple[str, dict[str, str]], label: str) -> None:
        statement, variables = record
        args = [psql_executable(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-"]
        for key, value in variables.items():
            args += ["-v", f"{key}={value}"]
        # \i runs the file; the bookkeeping statement follows in the same transaction.
        script = f"\\i {_psql_quote(str(path))}\n{statement}\n"
        result = subprocess.run(args, input=script, env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            detail = " ".join(line.strip() for line in result.stderr.strip().splitlines() if line.strip())
            raise MigrationError(
                f"{label} failed and was rolled back: {detail or 'psql exited with ' + str(result.returncode)}"
            )


def _psql_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
