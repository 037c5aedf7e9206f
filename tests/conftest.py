import pytest
from django.db import connection

from tracking.sql_migrations import Runner


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django made the test database with Django's migrations; add our SQL schema
    with the real runner (psql), exactly as production does."""
    with django_db_blocker.unblock():
        Runner(connection.settings_dict, log=lambda line: None).migrate()


@pytest.fixture
def db_settings(transactional_db):
    """The test database's connection settings, for tests that open their own connections.

    Through transactional_db: pytest-django creates the test database only for tests that ask
    for one, and without it these settings would still name the development database."""
    return dict(connection.settings_dict)


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
