"""Django's migrations of the tracking app: in step with the models, one straight line, and the
squash of the first seven is a no-op for a database that had applied those seven."""

import io
import os
import subprocess
import sys

import psycopg
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader

from tests.concurrency import conninfo
from tests.workers import ROOT, database_url
from tracking.roles import MODERATOR_PERMISSIONS, MODERATORS
from tracking.schema_dump import scratch_database

SQUASHED = ("tracking", "0001_squashed_0006_lifecycle_models")


def test_models_need_no_new_migration(db):
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # exits 1 when a model changed
    assert "No changes detected" in out.getvalue()


def test_tracking_migrations_form_one_line_without_merges():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    leaves = loader.graph.leaf_nodes("tracking")
    assert len(leaves) == 1, f"the tracking migrations branch ({leaves}): make the newer depend on the other"
    on_disk = {name: migration for (app, name), migration in loader.disk_migrations.items() if app == "tracking"}
    for name, migration in on_disk.items():
        parents = [dependency for dependency in migration.dependencies if dependency[0] == "tracking"]
        assert len(parents) <= 1, f"{name} merges {parents}: depend on the newest migration instead"
    numbers = [name[:4] for name in on_disk]
    assert len(numbers) == len(set(numbers)), f"tracking migrations share a number: {sorted(on_disk)}"


def _manage(*args: str, db: dict) -> str:
    """manage.py on another database, as a deployment runs it."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.update(SECRET_KEY="tests-only", DATABASE_URL=database_url(db), VEOBOT_ENV_FILE=os.devnull)
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _query(db: dict, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(**conninfo(db), autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def _recorded(db: dict) -> set[str]:
    return {name for (name,) in _query(db, "SELECT name FROM django_migrations WHERE app = 'tracking'")}


def _moderator_permissions(db: dict) -> set[str]:
    return {
        codename
        for (codename,) in _query(
            db,
            "SELECT p.codename FROM auth_group g JOIN auth_group_permissions gp ON gp.group_id = g.id"
            " JOIN auth_permission p ON p.id = gp.permission_id WHERE g.name = %s",
            (MODERATORS,),
        )
    }


def test_a_database_that_applied_the_seven_replaced_migrations_sees_migrate_as_a_no_op(db_settings):
    loader = MigrationLoader(None)
    replaced = {name for _, name in loader.disk_migrations[SQUASHED].replaces}
    on_disk = {name for app, name in loader.disk_migrations if app == "tracking"}  # the squash and those after it
    expected = {f"{action}_{model}" for model, actions in MODERATOR_PERMISSIONS.items() for action in actions}
    with scratch_database(server=db_settings, name=f"{db_settings['NAME']}_django") as db:
        assert f"Applying tracking.{SQUASHED[1]}... OK" in _manage("migrate", "--noinput", db=db)
        assert _recorded(db) == replaced | on_disk
        assert _moderator_permissions(db) == expected

        # A database migrated before the squash existed records the seven names and not the squash's.
        _query(db, "DELETE FROM django_migrations WHERE app = 'tracking' AND name = %s", (SQUASHED[1],))
        assert "No migrations to apply." in _manage("migrate", "--noinput", db=db)
        assert f"[X] {SQUASHED[1]}" in _manage("showmigrations", "tracking", db=db)
        assert _recorded(db) == replaced | on_disk  # Django recorded the squash, nothing else
        assert _moderator_permissions(db) == expected
