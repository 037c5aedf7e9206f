"""Loading millions of requests as a restore would, for the benchmarks' datasets.

Maintaining every secondary index row by row makes a 10M-row load several times slower than
building them afterwards, and the user triggers (the guard refuses finished rows at birth; the
event trigger would double the load) have no business with history: both are off while loading.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

BATCH_ROWS = 1_000_000

SECONDARY_INDEXES = (
    "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
    " WHERE x.indrelid = 'video_requests'::regclass"
    " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
)


def load_requests(
    conn: psycopg.Connection, load_sql: str, *, rows: int, params: dict, log, maintenance_work_mem: str = "512MB"
) -> None:
    """Runs ``load_sql`` (an INSERT ... SELECT over generate_series(%(first)s, %(last)s)) for
    rows 1 to ``rows``, BATCH_ROWS at a time, with ``params`` and %(rows)s, as a restore would."""
    started = time.monotonic()
    with _loading(conn, log=log, maintenance_work_mem=maintenance_work_mem):
        for first in range(1, rows + 1, BATCH_ROWS):
            last = min(first + BATCH_ROWS - 1, rows)
            conn.execute(load_sql, {"first": first, "last": last, "rows": rows, **params})
            log(f"loaded {last:,} / {rows:,} rows ({time.monotonic() - started:.0f} s)")


@contextmanager
def _loading(conn: psycopg.Connection, *, log, maintenance_work_mem: str) -> Iterator[None]:
    """video_requests without its secondary indexes and with user triggers off inside; after,
    the triggers on again and the indexes built anew (the indexes of a freshly restored database)."""
    secondary = conn.execute(SECONDARY_INDEXES).fetchall()
    for name, _ in secondary:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    conn.execute("SET session_replication_role = replica")
    yield
    conn.execute("RESET session_replication_role")
    conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", [maintenance_work_mem])
    for name, definition in secondary:
        log(f"building {name}")
        conn.execute(definition)
