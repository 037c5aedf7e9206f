"""The embedded PostgreSQL used when DATABASE_URL is unset.

A real PostgreSQL 16 server from the ``pgserver`` wheel, data under ``.data/postgres``,
listening only on a Unix socket inside that folder. It is started on first use and
left running, so later commands and test runs reuse it; ``make db-stop`` stops it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

DATABASE_NAME = "veobot"


def data_dir(base_dir: Path) -> Path:
    return Path(os.environ.get("EMBEDDED_DB_DIR", base_dir / ".data" / "postgres"))


def settings_dict(base_dir: Path) -> dict:
    """Start (or reuse) the server and return the fields of a Django DATABASES entry."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver only keeps a lock file there.
        warnings.simplefilter("ignore")
        import pgserver

    pgdata = data_dir(base_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    _ensure_database(str(info.socket_dir))
    return {"NAME": DATABASE_NAME, "USER": "postgres", "PASSWORD": "", "HOST": str(info.socket_dir), "PORT": ""}


def _ensure_database(socket_dir: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))


def bin_dir() -> Path | None:
    """Where the pgserver wheel keeps psql, pg_ctl and friends (None if not installed)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    return Path(POSTGRES_BIN_PATH)


def stop(base_dir: Path) -> bool:
    """Stop the embedded server if it is running. Returns True if it was."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import pg_ctl
        from pgserver.utils import PostmasterInfo

    pgdata = data_dir(base_dir)
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    # As root, pgserver runs the server as its own 'pgserver' user; pg_ctl must match.
    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "stop"], pgdata=pgdata, user=user)
    return True


if __name__ == "__main__":
    import sys

    root = Path(__file__).resolve().parent.parent
    if sys.argv[1:] == ["stop"]:
        print("embedded PostgreSQL stopped" if stop(root) else "embedded PostgreSQL was not running")
    elif sys.argv[1:] == ["start"]:
        print(f"embedded PostgreSQL running, socket in {settings_dict(root)['HOST']}")
    else:
        sys.exit("usage: python -m veosite.embedded_db start|stop")
