import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections

from tests import hypothesis_profiles
from tests.concurrency import conninfo
from tracking import routes
from tracking.sql_migrations import DIRECT_DB_ALIAS, Runner

HYPOTHESIS = hypothesis_profiles.install()


def pytest_report_header(config):
    return HYPOTHESIS


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Behind a transaction-pooling PgBouncer (DATABASE_DIRECT_URL set), the test database is
    made and dropped on the server itself: PgBouncer keeps server connections to it open, and
    DROP DATABASE refuses a database others are connected to."""
    routes.take_route(direct=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django made the test database with Django's migrations; add our SQL schema
    with the real runner (psql), exactly as production does: on the direct database. Then the
    tests run through the configured route (PgBouncer, when there is one)."""
    with django_db_blocker.unblock():
        Runner(connections[DIRECT_DB_ALIAS].settings_dict, log=lambda line: None).migrate()
        routes.take_route(direct=False)
        yield
        routes.take_route(direct=True)
        _disconnect_others(connections[DIRECT_DB_ALIAS].settings_dict)


def _disconnect_others(db: dict) -> None:
    """End every other session on the test database (PgBouncer's server connections to it), so
    that it can be dropped."""
    if not settings.DATABASE_POOLED:
        return
    with psycopg.connect(**conninfo(db), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def db_settings(transactional_db):
    """The test database's connection settings, for tests that open their own connections.

    Through transactional_db: pytest-django creates the test database only for tests that ask
    for one, and without it these settings would still name the development database."""
    return dict(connection.settings_dict)


@pytest.fixture
def direct_settings(transactional_db):
    """The test database on the server itself, never through PgBouncer: for what needs a session
    (session advisory locks, LISTEN, creating and dropping databases)."""
    return dict(connections[DIRECT_DB_ALIAS].settings_dict)


@pytest.fixture
def veo_fake(settings):
    """The Veo fake, with the settings pointing at it: bots from tests/bot_harness.py (and anything
    else built from settings.VEO_API_BASE_URL) reach it through the real google-genai client."""
    from tests.bot_harness import fake_veo

    yield from fake_veo(settings)


# -- moderation panel: one account per role ------------------------------------------------

ROLES = ("anonymous", "non_staff", "moderator", "superuser")


@pytest.fixture
def accounts(db):
    """Accounts for every role; the moderator is made exactly as the README says."""
    import io

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    users = get_user_model()
    call_command("create_moderator", "mod", "--random", stdout=io.StringIO())
    return {
        "anonymous": None,
        "non_staff": users.objects.create_user("visitor", password="visitor-pass-123"),
        "moderator": users.objects.get(username="mod"),
        "superuser": users.objects.create_superuser("boss", "", "boss-pass-123"),
    }


@pytest.fixture
def as_role(accounts):
    """as_role("moderator") -> a test client logged in as that role (anonymous: not logged in)."""
    from django.test import Client

    def make(role: str) -> Client:
        client = Client()
        if accounts[role] is not None:
            client.force_login(accounts[role])
        return client

    return make


@pytest.fixture
def media_root(tmp_path, settings):
    settings.VEO_MEDIA_ROOT = tmp_path / "media"
    settings.VEO_MEDIA_ROOT.mkdir()
    return settings.VEO_MEDIA_ROOT


# -- Cloud Storage: the Veo fake's JSON API and a throw-away service account -------------------------


@pytest.fixture
def gcs_api(settings):
    """The Veo fake serving Cloud Storage's JSON API and an OAuth token endpoint."""
    from tests.fakes.veo_server import FakeVeoServer

    with FakeVeoServer() as fake:
        settings.GCS_API_BASE_URL = fake.url
        yield fake


@pytest.fixture
def signing_key(gcs_api, tmp_path, monkeypatch):
    """Application Default Credentials of a service account made for this test (its tokens
    come from the fake), so metadata reads and signed URLs work as in production."""
    from tests.gcs_keys import service_account_key

    key = service_account_key(tmp_path, token_uri=f"{gcs_api.url}/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key.path))
    return key


# -- the bot against the fakes (tests/bot_harness.py) --------------------------------------------------


@pytest.fixture
def bot_settings(settings, tmp_path, veo_fake):
    """Quick settings for a bot test (quick_bot_settings), with the Veo fake up; a bot test module
    uses it for every test (``pytest.mark.usefixtures("bot_settings")``)."""
    from tests.bot_harness import quick_bot_settings

    quick_bot_settings(settings, tmp_path)


@pytest.fixture
def server():
    """The fake Discord, with discord.py pointed at it (tests/bot_harness.py fake_discord)."""
    from tests.bot_harness import fake_discord

    yield from fake_discord()
