"""The admission batches' own connection (generation.admission_conn): their statement on the event
loop, with what the database thread's path did -- an outage (refused, reset or unanswered) takes
the degraded path, the connection is made again after it, and behind a transaction-pooling
PgBouncer (.ci/run's pass) nothing relies on a session.
"""

import asyncio

import psycopg
import pytest
from django.conf import settings as django_settings

from generation.admission import Admitter
from generation.admission_batch import AdmissionBatches
from generation.health import DatabaseHealth
from tests.bot_harness import eventually
from tests.concurrency import conninfo
from tests.degraded_harness import Degraded
from tests.helpers import next_interaction
from tests.tcp_proxy import TcpProxy
from tests.test_transaction_pooling import several_server_connections
from tracking import services
from tracking.models import VideoRequest
from tracking.services.burst import AdmissionCall

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("bot_settings")]

USERS = range(4_400_000_001, 4_400_000_006)


def params() -> services.VideoParameters:
    return services.clean_parameters(services.VideoParameters(prompt="a red fox in snow"))


def test_an_outage_mid_batch_takes_the_degraded_path_and_the_connection_is_made_again_after_it(
    settings, db_settings, monkeypatch
):
    settings.VEO_QUOTA_LIMIT = 100
    here = Degraded(settings.VEO_JOURNAL_DIR, settings.VEO_MEDIA_ROOT)
    health = DatabaseHealth(meanwhile="admissions go to the journal")
    admitter = Admitter(health=health, limiter=here.limiter, runner=here.runner)
    first, reset, again, unanswered, last = USERS

    def admit(user_id: int):
        return admitter.admit(
            interaction_id=next_interaction(), user_id=user_id, guild_id=None, channel_id=8, params=params()
        )

    def lock_waits() -> int:
        with psycopg.connect(**conninfo(db_settings)) as conn:
            return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[
                0
            ]

    async def scenario(proxy: TcpProxy, blocker: psycopg.Connection) -> dict:
        answers = {"first": await admit(first)}
        # Mid-batch: the statement waits in the database (on its user's lock) when the server goes.
        blocker.execute("SELECT pg_advisory_xact_lock(1986161410, hashint8(%s::bigint))", [reset])
        in_flight = asyncio.ensure_future(admit(reset))
        await eventually(lock_waits, what="the batch waiting in the database")
        proxy.cut()
        answers["reset"] = await in_flight
        answers["degraded"] = health.degraded
        await asyncio.to_thread(blocker.rollback)
        proxy.restore()
        health.recovered()
        answers["again"] = await admit(again)  # a new connection
        # A partition: the statement is sent and nothing comes back before ANSWER_TIMEOUT.
        proxy.partition()
        answers["unanswered"] = await admit(unanswered)
        proxy.restore()
        health.recovered()
        answers["last"] = await admit(last)
        return answers

    server = django_settings.DATABASES["default"]
    with TcpProxy(host=server["HOST"] or "127.0.0.1", port=int(server["PORT"] or 5432)) as proxy:
        through_proxy = {**server, "HOST": "127.0.0.1", "PORT": proxy.port}
        # The batches' connection only: Django's own (the rare redo one by one) stay direct.
        monkeypatch.setattr(django_settings, "DATABASES", {**django_settings.DATABASES, "default": through_proxy})
        try:
            with psycopg.connect(**conninfo(db_settings)) as blocker:
                answers = asyncio.run(scenario(proxy, blocker))
        finally:
            admitter.batches.close()
            if health.degraded:
                health.recovered()
            here.journal.close()

    outcome = {name: (d.degraded, d.held, d.admitted) for name, d in answers.items() if name != "degraded"}
    assert outcome == {
        "first": (False, False, True),
        "reset": (True, False, True),  # the connection reset: admitted here, journaled
        "again": (False, False, True),
        "unanswered": (True, True, True),  # perhaps admitted there: held for the replay
        "last": (False, False, True),
    }
    assert answers["degraded"]  # the outage was declared
    assert VideoRequest.objects.filter(user_id__in=[first, again, last], status="pending").count() == 3


@pytest.mark.sql  # .ci/run's PgBouncer pass: where it matters
def test_the_batches_connection_prepares_nothing_and_keeps_each_statement_to_itself(settings, db_settings):
    """Behind a transaction-pooling PgBouncer (round robin) each statement may run on another
    server connection: a prepared statement, or anything left open, would fail the next one."""
    settings.VEO_QUOTA_LIMIT = 100
    several_server_connections(db_settings)
    batches = AdmissionBatches()

    async def admit_many() -> list:
        answers = []
        for n in range(12):  # psycopg prepares from the fifth run on, unless told not to
            call = AdmissionCall(
                interaction_id=next_interaction(),
                user_id=USERS[n % len(USERS)],
                guild_id=None,
                channel_id=None,
                params=params(),
            )
            answers.append(await batches.admit(call))
        return answers

    try:
        answers = asyncio.run(admit_many())
    finally:
        batches.close()
    assert [a.admission.admitted for a in answers] == [True] * 12
