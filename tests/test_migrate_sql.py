"""manage.py migrate_sql against a scratch database: up, down, up; checksums; two runners."""

import shutil
import threading

import psycopg
import pytest
from django.core.management import CommandError, call_command
from psycopg import sql

from tests.concurrency import conninfo
from tracking.sql_migrations import COMMENT_EDITS, MIGRATIONS_DIR, MigrationError, Runner, discover, statements_checksum

pytestmark = pytest.mark.sql


@pytest.fixture
def scratch_db(direct_settings):
    """A brand-new empty database on the same server, dropped afterwards; reached directly, as
    migrations are (never through PgBouncer)."""
    name = f"{direct_settings['NAME']}_migrations"
    admin = {**conninfo(direct_settings), "dbname": "postgres"}
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield {**direct_settings, "NAME": name}
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _tables(db: dict) -> set[str]:
    with psycopg.connect(**conninfo(db)) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        return {row[0] for row in rows}


def _applied(db: dict) -> list[int]:
    with psycopg.connect(**conninfo(db)) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


CORE = {"video_requests", "video_request_events", "quota_policies", "user_bans"}


def test_up_down_up_round_trip(scratch_db):
    runner = Runner(scratch_db, log=lambda line: None)
    every = [f.version for f in discover()]
    assert runner.migrate() and _applied(scratch_db) == every
    assert CORE | {"schema_migrations"} <= _tables(scratch_db)

    runner.rollback(to_version=0)
    assert _applied(scratch_db) == []
    assert _tables(scratch_db) == {"schema_migrations"}

    runner.migrate()
    assert _applied(scratch_db) == every
    assert runner.migrate() == []  # nothing pending: a no-op


def test_down_without_target_rolls_back_only_the_newest(scratch_db, tmp_path):
    directory = tmp_path / "migrations_sql"
    shutil.copytree(MIGRATIONS_DIR, directory)
    newest = max(f.version for f in discover(directory)) + 1
    (directory / f"{newest:04d}_add_note.sql").write_text("CREATE TABLE extra_note (id int);\n")
    (directory / f"{newest:04d}_add_note.down.sql").write_text("DROP TABLE extra_note;\n")
    runner = Runner(scratch_db, directory, log=lambda line: None)
    runner.migrate()
    assert "extra_note" in _tables(scratch_db)
    assert runner.rollback() == [f"{newest:04d}_add_note"]
    assert "extra_note" not in _tables(scratch_db) and _tables(scratch_db) >= CORE


def test_a_failing_file_leaves_nothing_behind(scratch_db, tmp_path):
    directory = tmp_path / "migrations_sql"
    shutil.copytree(MIGRATIONS_DIR, directory)
    bad = max(f.version for f in discover(directory)) + 1
    (directory / f"{bad:04d}_broken.sql").write_text("CREATE TABLE half_done (id int);\nSELECT no_such_function();\n")
    runner = Runner(scratch_db, directory, log=lambda line: None)
    with pytest.raises(MigrationError, match=f"{bad:04d}_broken failed and was rolled back.*no_such_function"):
        runner.migrate()
    assert "half_done" not in _tables(scratch_db)
    assert bad not in _applied(scratch_db)


def test_edited_applied_file_is_refused(scratch_db, tmp_path):
    directory = tmp_path / "migrations_sql"
    shutil.copytree(MIGRATIONS_DIR, directory)
    runner = Runner(scratch_db, directory, log=lambda line: None)
    runner.migrate()
    first = discover(directory)[0]
    first.path.write_text(first.path.read_text() + "\n-- a later edit\n")
    with pytest.raises(MigrationError, match=f"{first.path.name} was edited after it was applied"):
        runner.migrate()
    with pytest.raises(MigrationError, match="edited after it was applied"):
        runner.rollback()
    assert any(state.problem for state in runner.status())


def test_two_runners_at_once_apply_each_file_once(scratch_db):
    errors, logs = [], []
    start = threading.Barrier(3)

    def run():
        start.wait()
        try:
            Runner(scratch_db, log=logs.append).migrate()
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _applied(scratch_db) == [f.version for f in discover()]
    assert sum(line.startswith("applying") for line in logs) == len(discover())


def test_command_lists_and_explains_errors(db_settings, capsys):
    call_command("migrate_sql", "--list")
    out = capsys.readouterr().out
    assert "0001_core_schema" in out and "applied" in out
    with pytest.raises(CommandError, match="--to only makes sense with --down"):
        call_command("migrate_sql", "--to", "1")


def test_psql_never_sees_the_password_on_its_command_line(db_settings):
    from tracking.sql_migrations import libpq_environment

    env = libpq_environment({**db_settings, "PASSWORD": "hunter2-secret"})
    assert env["PGPASSWORD"] == "hunter2-secret"


def test_out_of_order_file_is_refused_but_rolling_back_gets_out(scratch_db, tmp_path):
    directory = tmp_path / "migrations_sql"
    shutil.copytree(MIGRATIONS_DIR, directory)
    newest = max(f.version for f in discover(directory))
    (directory / f"{newest + 2:04d}_later.sql").write_text("CREATE TABLE later_one (id int);\n")
    (directory / f"{newest + 2:04d}_later.down.sql").write_text("DROP TABLE later_one;\n")
    runner = Runner(scratch_db, directory, log=lambda line: None)
    runner.migrate()
    (directory / f"{newest + 1:04d}_merged_late.sql").write_text("CREATE TABLE merged_late (id int);\n")
    (directory / f"{newest + 1:04d}_merged_late.down.sql").write_text("DROP TABLE merged_late;\n")
    with pytest.raises(MigrationError, match=f"{newest + 1:04d} is pending but newer {newest + 2:04d}"):
        runner.migrate()
    assert runner.rollback(to_version=newest) == [f"{newest + 2:04d}_later"]
    runner.migrate()
    assert {"later_one", "merged_late"} <= _tables(scratch_db)


@pytest.mark.parametrize("label", sorted(COMMENT_EDITS))
def test_a_file_whose_comments_were_edited_only_kept_its_statements(label):
    [file] = [f for f in discover() if f.label == label]
    assert statements_checksum(file.path) == COMMENT_EDITS[label][1]


def test_an_installation_that_applied_a_file_before_its_comments_changed_migrates_as_before(scratch_db):
    runner = Runner(scratch_db, log=lambda line: None)
    runner.migrate()
    recorded, _ = COMMENT_EDITS["0004_bot"]
    with psycopg.connect(**conninfo(scratch_db), autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = 4", [recorded])
    runner.migrate()  # no "edited after it was applied"
    assert [state.problem for state in runner.status()] == [None] * len(discover())
    with psycopg.connect(**conninfo(scratch_db), autocommit=True) as conn:  # any other checksum still stops it
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = 4", ["0" * 64])
    with pytest.raises(MigrationError, match="0004_bot.sql was edited after it was applied"):
        runner.migrate()
