"""migrations_sql/schema.sql is exactly what the SQL migrations build, on whichever server runs the tests.

pg_dump prints the same schema differently from one server version to the next, so the file is not
compared with a dump made here. As Procrastinate checks its schema.sql against its migrations, two
scratch databases are built on this server, one by the migrations and one by loading the file with
psql, and both are dumped by the same pg_dump: any difference is a difference in the schema. Loading
the file on the oldest supported server (CI's PostgreSQL 14 pass) also shows it uses no newer syntax.
"""

import difflib
import subprocess

import pytest

from tracking.schema_dump import HEADER, SCHEMA_FILE, dump, normalise, scratch_database
from tracking.sql_migrations import Runner, libpq_environment, psql_executable

pytestmark = pytest.mark.sql

STALE = "migrations_sql/schema.sql does not match migrations_sql/NNNN_*.sql: run make schema and commit it"


def _load_schema_file(*, db: dict) -> None:
    """As someone reading the file would run it: psql, one transaction, stop at the first error."""
    args = [psql_executable(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", str(SCHEMA_FILE)]
    result = subprocess.run(args, env=libpq_environment(db), capture_output=True, text=True)
    assert result.returncode == 0, f"{STALE} (psql could not load it: {result.stderr.strip()})"


def test_schema_file_is_what_the_migrations_build(db_settings):
    assert SCHEMA_FILE.read_text().startswith(HEADER), STALE
    name = db_settings["NAME"]
    with (
        scratch_database(server=db_settings, name=f"{name}_migrated") as migrated,
        scratch_database(server=db_settings, name=f"{name}_from_file") as from_file,
    ):
        Runner(migrated, log=lambda line: None).migrate()
        _load_schema_file(db=from_file)
        built, loaded = normalise(text=dump(db=migrated)), normalise(text=dump(db=from_file))
    diff = list(
        difflib.unified_diff(loaded.splitlines(), built.splitlines(), "schema.sql", "the migrations", lineterm="")
    )
    assert not diff, "\n".join([STALE, *diff[:80]])


def test_normalise_drops_pg_dump_noise_and_keeps_function_bodies_verbatim():
    body = "-- a comment in the body\nSET LOCAL lock_timeout = '1s';\n\n\nBEGIN\nEND;\n"
    raw = (
        "--\n-- PostgreSQL database dump\n--\n\n\\restrict Xy12\n\nSET statement_timeout = 0;\n"
        "SELECT pg_catalog.set_config('search_path', '', false);\n\n--\n-- Name: f(); Type: FUNCTION\n--\n\n"
        f"CREATE FUNCTION public.f() RETURNS void\n    LANGUAGE plpgsql\n    AS $$\n{body}$$;\n\n\n\n"
        "CREATE TABLE public.t (\n    a integer\n);\nALTER TABLE ONLY public.t ALTER COLUMN a SET (pg_attver=42);\n"
        "ALTER TABLE ONLY public.t ALTER COLUMN a SET (n_distinct=5);\n\n\\unrestrict Xy12\n"
    )
    assert normalise(text=raw) == HEADER + (
        f"CREATE FUNCTION public.f() RETURNS void\n    LANGUAGE plpgsql\n    AS $$\n{body}$$;\n\n"
        "CREATE TABLE public.t (\n    a integer\n);\nALTER TABLE ONLY public.t ALTER COLUMN a SET (n_distinct=5);\n"
    )
