"""Working through PgBouncer in transaction pooling mode, where each transaction may run on
another server connection and nothing may outlive one.

These run in every pass. In .ci/run's PgBouncer pass DATABASE_URL goes through a PgBouncer that
hands each transaction the server connection idle the longest (server_round_robin), so anything
that relies on a session -- a prepared statement, a holdable cursor, a LISTEN on the pooled
route -- fails there every time; with DATABASE_URL direct they check that nothing else broke.
"""

import csv
import io
import threading
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.db.models.signals import pre_migrate
from psycopg import sql

from generation.delivery import CliDelivery
from generation.health import connection_parameters
from generation.veo import OfflineBackend
from generation.worker import standalone_worker
from tests.concurrency import conninfo
from tests.factories import VideoRequestFactory
from tests.helpers import admit
from tests.workers import listeners, started, truncate_requests, wait_for, waited, worker_thread
from tracking import services
from tracking.models import ModerationLogEntry

pytestmark = [pytest.mark.sql, pytest.mark.django_db(transaction=True)]

LIST = "/admin/tracking/videorequest/"


def several_server_connections(db: dict, count: int = 3) -> None:
    """Make PgBouncer open ``count`` server connections (transactions at once), so that with
    round robin the next transactions of one client land on different ones."""
    barrier = threading.Barrier(count)

    def hold() -> None:
        with psycopg.connect(**conninfo(db)) as conn:  # one transaction, open until all are
            conn.execute("SELECT 1")
            barrier.wait(10)

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_the_statement_timeout_holds_on_both_routes():
    # Direct, veobot sets it as a startup option; PgBouncer refuses those, and its connect_query
    # sets it instead (docs/OPERATIONS.md).
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "30s"
    with psycopg.connect(**connection_parameters(application_name="veobot-test", alias="direct")) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"


def test_our_own_connections_prepare_nothing(db_settings):
    """The heartbeat runs one statement every half second on a connection outside Django's; a
    prepared one would be missing on the next server connection."""
    several_server_connections(db_settings)
    with psycopg.connect(**connection_parameters(application_name="veobot-test"), autocommit=True) as conn:
        for n in range(12):  # psycopg prepares from the fifth run on, unless told not to
            assert conn.execute("SELECT %s::int", [n]).fetchone() == (n,)


def test_the_export_streams_more_than_one_chunk_outside_a_transaction(db_settings, as_role):
    truncate_requests()
    VideoRequestFactory(prompt="the first of many", status="failed")
    with connection.cursor() as cursor:  # 2,500 copies: the export fetches 2,000 at a time
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'video_requests'"
            " AND column_name NOT IN ('id', 'interaction_id') AND is_generated = 'NEVER'"
        )
        columns = sql.SQL(", ").join(sql.Identifier(name) for (name,) in cursor.fetchall())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")  # as the factory: no lifecycle checks
        cursor.execute(
            sql.SQL(
                "INSERT INTO video_requests (interaction_id, {columns})"
                " SELECT interaction_id + n, {columns} FROM video_requests, generate_series(1, 2500) AS n"
            ).format(columns=columns)
        )
    several_server_connections(db_settings)
    response = as_role("moderator").get(f"{LIST}export/?status__exact=failed")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    truncate_requests()  # committed rows outlive the test: not 2,501 of them
    assert len(rows) == 2501 and {row["prompt"] for row in rows} == {"the first of many"}


@pytest.fixture
def idle_worker(settings, tmp_path):
    truncate_requests()
    settings.VEO_MEDIA_ROOT = tmp_path / "media"
    settings.VEO_LEASE = timedelta(seconds=3)
    settings.VEO_MAX_STARTS_PER_MINUTE = 1000
    settings.VEO_QUOTA_LIMIT = 1000
    deliveries = {"discord": CliDelivery(), "cli": CliDelivery()}
    return lambda: standalone_worker(backend=OfflineBackend(seconds=0), deliveries=deliveries)


def test_a_notify_through_the_pooled_route_wakes_a_worker_listening_directly(settings, idle_worker):
    settings.VEO_WORKER_IDLE_POLL = timedelta(seconds=60)  # a start well inside it is the wake-up's doing
    settings.VEO_WORKER_LISTEN = True
    with worker_thread(idle_worker()):
        wait_for(listeners, timeout=60, what="the worker listening")
        request_id = admit(user_id=701).request_id  # admitted and notified as another process would be
        services.notify_work()
        wait_for(started(request_id), timeout=30, what="the start")
    assert waited(request_id) < settings.VEO_WORKER_IDLE_POLL / 20


def test_database_listen_url_names_where_the_worker_listens(settings, idle_worker):
    """A LISTEN-only role, say: the worker listens as it, and the NOTIFY still wakes it."""
    direct = connection_parameters(application_name="test", alias="direct")
    with psycopg.connect(**direct, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'veobot_listen_test')"
            " THEN CREATE ROLE veobot_listen_test LOGIN; END IF; END $$"
        )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO veobot_listen_test").format(sql.Identifier(direct["dbname"]))
        )
    where = f"host={direct['host']}" + (f"&port={direct['port']}" if direct.get("port") else "")
    settings.DATABASE_LISTEN_URL = f"postgresql://veobot_listen_test@/{direct['dbname']}?{where}"
    settings.VEO_WORKER_IDLE_POLL = timedelta(seconds=60)
    settings.VEO_WORKER_LISTEN = True
    with worker_thread(idle_worker()):
        wait_for(listeners, timeout=60, what="the worker listening")
        with connection.cursor() as cursor:
            cursor.execute("SELECT usename FROM pg_stat_activity WHERE pid = ANY(%s)", [list(listeners())])
            assert {name for (name,) in cursor.fetchall()} == {"veobot_listen_test"}
        request_id = admit(user_id=703).request_id
        services.notify_work()
        wait_for(started(request_id), timeout=30, what="the start")
    assert waited(request_id) < settings.VEO_WORKER_IDLE_POLL / 20


def test_without_listen_a_worker_finds_work_by_polling(settings, idle_worker):
    settings.VEO_WORKER_IDLE_POLL = timedelta(seconds=1)
    settings.VEO_WORKER_LISTEN = False
    with worker_thread(idle_worker()):
        request_id = admit(user_id=702).request_id
        services.notify_work()  # heard by nobody
        wait_for(started(request_id), timeout=30, what="the start")
        assert not listeners()
    assert waited(request_id) < 3 * settings.VEO_WORKER_IDLE_POLL


def test_the_direct_route_is_the_server_itself():
    """Where the test database was made and the listener connects: never the pooler."""
    direct = django_settings.DATABASES["direct"]
    assert "statement_timeout" in direct["OPTIONS"]["options"]  # a startup option: PgBouncer refuses it
    if django_settings.DATABASE_POOLED:
        assert "options" not in connection.settings_dict["OPTIONS"]
        assert (direct["HOST"], direct["PORT"]) != (connection.settings_dict["HOST"], connection.settings_dict["PORT"])


def test_django_migrate_runs_on_the_server_itself_and_leaves_the_route_as_it_was():
    configured = (connection.settings_dict["HOST"], connection.settings_dict["PORT"])
    during = []

    def seen(sender, using, **kwargs):
        during.append((connections[using].settings_dict["HOST"], connections[using].settings_dict["PORT"]))

    pre_migrate.connect(seen)
    try:
        call_command("migrate", verbosity=0)
    finally:
        pre_migrate.disconnect(seen)
    direct = django_settings.DATABASES["direct"]
    assert set(during) == {(direct["HOST"], direct["PORT"])}
    assert (connection.settings_dict["HOST"], connection.settings_dict["PORT"]) == configured


def test_the_panel_signs_in_searches_and_names_the_moderator_in_the_audit_log(client):
    """Outside a test transaction, as in production: the session is a row written by one request
    and read by the next; the search's budgets and the moderator's name are transaction-local."""
    truncate_requests()
    get_user_model().objects.create_superuser("boss", "", "boss-pass-123")
    row = VideoRequestFactory(prompt="a grey heron crossing the river")
    signed_in = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": "boss-pass-123"})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/admin/"
    found = client.get(LIST, {"q": "heron"})
    assert found.status_code == 200 and [obj.id for obj in found.context["cl"].result_list] == [row.id]
    flagged = {"action": "flag_requests", "_selected_action": [row.id], "apply": "1", "reason": "looks off"}
    assert client.post(LIST, flagged).status_code == 302
    logged = ModerationLogEntry.objects.filter(target_table="video_requests", target_id=row.id)
    assert [(entry.actor, entry.reason) for entry in logged] == [("boss", "looks off")]
