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
def db_settings(django_db_setup):
    """The test database's connection settings, for tests that open their own connections."""
    return dict(connection.settings_dict)
