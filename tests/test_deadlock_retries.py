"""A transaction PostgreSQL ends to break a deadlock is done again, not failed in front of a
moderator, and never taken for an outage (tracking.retries).

The deadlock is built, not hoped for: the write under test holds one ledger row and waits for a
second, which another transaction holds and which then asks for the first. The write waited
first, so PostgreSQL ends it."""

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

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sql]

GUILD = 7_810_900
# The current hour's rows a refund changes, in the order it changes them: the operator's ledger
# (by the user's shard), then the guild's.
OPERATOR_HOUR = (
    "UPDATE operator_spend_hours SET usd = usd"
    " WHERE hour = date_trunc('hour', now(), 'UTC') AND shard = operator_spend_shard(%s)"
)
GUILD_HOUR = (
    "UPDATE guild_spend_ledger SET usd = usd"
    " WHERE guild_id = %s AND hours = 1 AND starts = date_trunc('hour', now(), 'UTC')"
)
BLOCKED = "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))"


@pytest.fixture(autouse=True)
def priced(settings):
    settings.VEO_MODEL = settings.VEO_RECORDED_MODEL = "veo-3.1-generate-001"
    settings.VEO_MODELS = ("veo-3.1-generate-001",)
    settings.VEO_QUOTA_LIMIT = 1000


def _two_requests_in_two_shards() -> tuple[list[int], list[int]]:
    """Two counting requests of this hour whose users' ledger rows differ (shards); and the users."""
    first = 7_810_001
    second = next(user for user in range(first + 1, first + 100) if _shard(user) != _shard(first))
    return [admit(user_id=user, guild_id=None).request_id for user in (first, second)], [first, second]


def _shard(user_id: int) -> int:
    return sql_rows("SELECT operator_spend_shard(%s)", [user_id])[0][0]


def _in_a_deadlock(write, *, held: tuple[str, list], then: tuple[str, list]) -> list:
    """``write()`` run while another transaction holds the row ``held`` changes, waits until the
    write waits for it, and then asks for the row ``then`` changes: what the write returned or raised."""
    outcome: list = []

    def writing():
        try:
            outcome.append(write())
        except Exception as error:
            outcome.append(error)
        finally:
            connection.close()

    with psycopg.connect(**conninfo(dict(connection.settings_dict))) as other:
        other.execute(*held)
        writer = threading.Thread(target=writing)
        writer.start()
        deadline = time.monotonic() + 20
        while other.execute(BLOCKED).fetchone()[0] != 1:
            assert time.monotonic() < deadline, "the write never came to wait for the held row"
            time.sleep(0.05)
        other.execute(*then)  # now this one waits for the write: a deadlock
        other.commit()
        writer.join(30)
    assert not writer.is_alive()
    return outcome


def _counting(request_ids: list[int]) -> list[bool]:
    rows = sql_rows("SELECT id, counts_toward_quota FROM video_requests WHERE id = ANY(%s) ORDER BY id", [request_ids])
    return [counts for _, counts in rows]


def _spent() -> tuple:
    return sql_rows("SELECT (SELECT sum(usd) FROM operator_spend_hours), (SELECT sum(usd) FROM guild_spend_ledger)")[0]


def test_a_refund_ended_to_break_a_deadlock_is_done_again_and_gives_every_slot_back(caplog):
    """A refund gives the slots back one request at a time, in id order, so the deadlock can be
    built. (A cancellation, done again the same way, changes its rows in one statement, in an order
    that depends on the plan: a test of it could not say which row to hold.)"""
    caplog.set_level(logging.INFO, logger="tracking.retries")
    request_ids, (first, second) = _two_requests_in_two_shards()
    spent_before = _spent()[0]

    outcome = _in_a_deadlock(
        lambda: services.refund_requests(request_ids=request_ids, actor="mod", reason="test"),
        held=(OPERATOR_HOUR, [second]),
        then=(OPERATOR_HOUR, [first]),
    )

    assert outcome == [request_ids]  # both given back, by the second attempt
    assert "refund_requests was ended to break a deadlock; doing it again" in caplog.text
    assert _counting(request_ids) == [False, False]
    cost = sql_rows("SELECT sum(cost_estimated_usd) FROM video_requests WHERE id = ANY(%s)", [request_ids])[0][0]
    assert _spent()[0] == spent_before - cost  # given back once


def test_a_workers_failure_ended_to_break_a_deadlock_is_recorded_and_refunded_once(caplog):
    """The worker's write that ends a request as failed gives its slot back (the operator's row,
    then the guild's): ended by a deadlock, it is written again, once."""
    caplog.set_level(logging.INFO, logger="tracking.retries")
    user = 7_810_201
    request_id = admit(user_id=user, guild_id=GUILD).request_id
    services.mark_generating(request_id=request_id, operation_name="operations/deadlock")
    spent_before = _spent()

    (moved,) = _in_a_deadlock(
        lambda: services.mark_failed(request_id=request_id, error_code="backend_error", error_message="500 from Veo"),
        held=(GUILD_HOUR, [GUILD]),
        then=(OPERATOR_HOUR, [user]),
    )

    assert not isinstance(moved, Exception), moved
    assert moved.changed and moved.status == "failed"
    assert "_transition was ended to break a deadlock; doing it again" in caplog.text
    assert _counting([request_id]) == [False]
    cost = sql_rows("SELECT cost_estimated_usd FROM video_requests WHERE id = %s", [request_id])[0][0]
    assert _spent() == (spent_before[0] - cost, spent_before[1] - 2 * cost)  # its hour and its day, once each


def test_inside_a_callers_transaction_the_deadlock_is_the_callers_and_is_not_an_outage():
    request_ids, (first, second) = _two_requests_in_two_shards()

    def in_a_transaction():
        with transaction.atomic():
            return services.refund_requests(request_ids=request_ids, actor="mod", reason="test")

    (error,) = _in_a_deadlock(in_a_transaction, held=(OPERATOR_HOUR, [second]), then=(OPERATOR_HOUR, [first]))

    assert isinstance(error, OperationalError) and rolled_back(error)  # not redone: the transaction was lost
    assert _counting(request_ids) == [True, True]  # nothing of it committed
    health = DatabaseHealth()
    health.failed(error)
    assert not health.degraded  # the database answered: nothing degrades for it
