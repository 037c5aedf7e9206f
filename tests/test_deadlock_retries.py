"""A transaction PostgreSQL ends to break a deadlock is done again, not failed in front of a
moderator, and never taken for an outage (tracking.retries).

The deadlock is built, not hoped for: a refund of two requests holds the first one's hour row in
the operator's ledger and waits for the second's, which another transaction holds and which then
asks for the first's. The refund waited first, so PostgreSQL ends the refund."""

import logging
import threading
import time

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from generation.health import DatabaseHealth
from tests.concurrency import conninfo
from tests.helpers import admit, sql_rows
from tracking import services
from tracking.retries import rolled_back

pytestmark = pytest.mark.django_db(transaction=True)

HOUR_ROW = (
    "UPDATE operator_spend_hours SET usd = usd"
    " WHERE hour = date_trunc('hour', now(), 'UTC') AND shard = operator_spend_shard(%s)"
)
BLOCKED = "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))"


@pytest.fixture(autouse=True)
def priced(settings):
    settings.VEO_MODEL = settings.VEO_RECORDED_MODEL = "veo-3.1-generate-001"
    settings.VEO_MODELS = ("veo-3.1-generate-001",)
    settings.VEO_QUOTA_LIMIT = 1000


def _two_requests_in_two_shards() -> list[int]:
    """Two counting requests whose users' ledger rows differ (shards), made in this hour."""
    first = 7_810_001
    second = next(user for user in range(first + 1, first + 100) if _shard(user) != _shard(first))
    return [admit(user_id=user, guild_id=None).request_id for user in (first, second)]


def _shard(user_id: int) -> int:
    return sql_rows("SELECT operator_spend_shard(%s)", [user_id])[0][0]


def _user(request_id: int) -> int:
    return sql_rows("SELECT user_id FROM video_requests WHERE id = %s", [request_id])[0][0]


def _refund_in_a_deadlock(request_ids: list[int], refund) -> list:
    """``refund(request_ids)`` run while another transaction deadlocks with it; what it returned or raised."""
    first, second = (_user(request_id) for request_id in request_ids)
    outcome: list = []

    def refunding():
        try:
            outcome.append(refund(request_ids))
        except Exception as error:
            outcome.append(error)
        finally:
            connection.close()

    with psycopg.connect(**conninfo(dict(connection.settings_dict))) as other:
        other.execute(HOUR_ROW, [second])  # the second request's hour row, before the refund wants it
        refunder = threading.Thread(target=refunding)
        refunder.start()
        deadline = time.monotonic() + 20
        while other.execute(BLOCKED).fetchone()[0] != 1:  # the refund, holding the first's row, waits
            assert time.monotonic() < deadline, "the refund never came to wait for the second row"
            time.sleep(0.05)
        other.execute(HOUR_ROW, [first])  # and now this one waits for the refund: a deadlock
        other.commit()
        refunder.join(30)
    assert not refunder.is_alive()
    return outcome


def _counting(request_ids: list[int]) -> list[bool]:
    rows = sql_rows("SELECT id, counts_toward_quota FROM video_requests WHERE id = ANY(%s) ORDER BY id", [request_ids])
    return [counts for _, counts in rows]


@pytest.mark.parametrize("action", [services.refund_requests, services.cancel_requests])
def test_a_refund_ended_to_break_a_deadlock_is_done_again_and_gives_every_slot_back(action, caplog):
    """A refund gives the slots back one request at a time, a cancellation in one statement: each
    takes the ledgers' rows in its requests' order."""
    caplog.set_level(logging.INFO, logger="tracking.retries")
    request_ids = _two_requests_in_two_shards()
    spent_before = sql_rows("SELECT sum(usd) FROM operator_spend_hours")[0][0]

    outcome = _refund_in_a_deadlock(request_ids, lambda ids: action(request_ids=ids, actor="mod", reason="test"))

    assert outcome == [request_ids]  # both given back, by the second attempt
    assert f"{action.__name__} was ended to break a deadlock; doing it again" in caplog.text
    assert _counting(request_ids) == [False, False]
    cost = sql_rows("SELECT sum(cost_estimated_usd) FROM video_requests WHERE id = ANY(%s)", [request_ids])[0][0]
    assert sql_rows("SELECT sum(usd) FROM operator_spend_hours")[0][0] == spent_before - cost  # given back once


def test_inside_a_callers_transaction_the_deadlock_is_the_callers_and_is_not_an_outage():
    request_ids = _two_requests_in_two_shards()

    def in_a_transaction(ids):
        with transaction.atomic():
            return services.refund_requests(request_ids=ids, actor="mod", reason="test")

    (error,) = _refund_in_a_deadlock(request_ids, in_a_transaction)

    assert isinstance(error, OperationalError) and rolled_back(error)  # not redone: the transaction was lost
    assert _counting(request_ids) == [True, True]  # nothing of it committed
    health = DatabaseHealth()
    health.failed(error)
    assert not health.degraded  # the database answered: nothing degrades for it
