"""Nothing the application runs keeps state in a database session beyond one transaction.

Behind PgBouncer in transaction pooling mode the next transaction may run on another server
connection, and what a session kept lands in someone else's: a plain SET, set_config(..., false),
a session advisory lock, a prepared statement, a temporary table, a WITH HOLD cursor, a LISTEN.
The code and the SQL migrations are read as text; every such use must be on the direct database
(named below, with why) or it fails this test. Transaction-scoped forms (SET LOCAL,
set_config(..., true), pg_advisory_xact_lock) are what to use instead.

A queryset's .iterator() opens a server-side cursor, which Django declares WITH HOLD outside a
transaction: the application's must run inside ``transaction.atomic()``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = ("veosite", "tracking", "generation", "discordbot", "tests")
SESSION_STATE = {
    "a plain SET (use SET LOCAL in a transaction)": re.compile(
        r"""["']\s*(SET|RESET)\s+(?!LOCAL\b)(SESSION\s+)?[a-z_.]+\s*(=|TO\b|;|["'])""", re.I
    ),
    "set_config(..., false) (use true: for the transaction)": re.compile(r"set_config\([^()]*,\s*false\s*\)", re.I),
    "a session advisory lock (use pg_advisory_xact_lock)": re.compile(
        r"pg_(try_)?advisory_(un)?lock(_shared)?\(", re.I
    ),
    "a prepared statement": re.compile(r"""["']\s*PREPARE\s""", re.I),
    "a temporary table": re.compile(r"CREATE\s+(TEMP|TEMPORARY)\s+TABLE", re.I),
    "a WITH HOLD cursor": re.compile(r"WITH\s+HOLD", re.I),
    "a LISTEN": re.compile(r"""SQL\(\s*["']LISTEN\b|["']LISTEN\s""", re.I),
}
# Files allowed one of these, because they use it on a direct connection (never the pooler).
ON_THE_DIRECT_DATABASE = {
    "tracking/sql_migrations.py": "the runner's lock, on its own direct connection for the run",
    "generation/listener.py": "LISTEN, on a connection to the direct database",
    "tests/test_dashboards.py": "holds the refresh lock as another worker would, on a direct connection",
    "tests/test_worker_wake.py": "LISTENs as a worker would, on a connection to the direct database",
    "tests/test_session_state.py": "this test's own patterns",
    "tests/test_schema_file.py": "pg_dump's output as text to clean, never run",
}


def findings() -> list[str]:
    found = []
    paths = [path for package in CODE for path in sorted((ROOT / package).rglob("*.py"))]
    paths += sorted((ROOT / "migrations_sql").glob("*.sql"))
    for path in paths:
        relative = path.relative_to(ROOT).as_posix()
        if relative in ON_THE_DIRECT_DATABASE:
            continue
        text = path.read_text()
        for what, pattern in SESSION_STATE.items():
            for match in pattern.finditer(text):
                found.append(f"{relative}:{text.count(chr(10), 0, match.start()) + 1}: {what}")
    return found


def test_no_session_state_outlives_a_transaction():
    assert findings() == []


def test_the_patterns_catch_what_they_name():
    for line in (
        'cursor.execute("SET session_replication_role = replica")',
        'cursor.execute("RESET enable_seqscan")',
        "SELECT set_config('veobot.moderator', %s, false)",
        'conn.execute("SELECT pg_advisory_lock(%s)", [1])',
        "CREATE TEMP TABLE x (a int)",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        'conn.execute(sql.SQL("LISTEN {}").format(channel))',
    ):
        assert any(pattern.search(line) for pattern in SESSION_STATE.values()), line
    for line in (
        'cursor.execute("SET LOCAL statement_timeout = %s", ["1s"])',
        "UPDATE video_requests SET status = 'failed'",
        "SELECT set_config('veobot.actor', %(actor)s, true)",
        "PERFORM pg_advisory_xact_lock(1986161410, hashint8(p_user_id))",
    ):
        assert not any(pattern.search(line) for pattern in SESSION_STATE.values()), line


def iterators_outside_a_transaction() -> list[str]:
    """Calls of ``.iterator(`` in the application not lexically inside ``with transaction.atomic()``."""
    found = []
    for package in CODE[:-1]:  # the application, not the tests
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            inside = [
                range(node.lineno, node.end_lineno + 1)
                for node in ast.walk(tree)
                if isinstance(node, ast.With)
                and any(
                    isinstance(item.context_expr, ast.Call)
                    and getattr(item.context_expr.func, "attr", getattr(item.context_expr.func, "id", "")) == "atomic"
                    for item in node.items
                )
            ]
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", "") == "iterator"
                    and not any(node.lineno in lines for lines in inside)
                ):
                    found.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    return found


def test_querysets_are_iterated_inside_a_transaction():
    assert iterators_outside_a_transaction() == []
