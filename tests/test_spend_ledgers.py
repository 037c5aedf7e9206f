"""The guild's spend ledger and the operator's cap split into shard allowances (0022): the
ledger always equals the sum over the guild's requests that count, and the allowances always
add up to the cap, so admission by them never spends past a budget."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from tests.factories import QuotaPolicyFactory
from tests.helpers import admit, sql_rows
from tracking import ledgers, services

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

GUILD = 2001  # tests.helpers.admit's guild
DAY = timedelta(days=1)
VIDEO = Decimal("1.60")  # veo-3.1-generate-001, 720p with audio, 4 s at $0.40


@pytest.fixture(autouse=True)
def priced(settings):
    settings.VEO_MODEL = settings.VEO_RECORDED_MODEL = "veo-3.1-generate-001"
    settings.VEO_MODELS = ("veo-3.1-generate-001", "veo-3.0-generate-001", "offline-sample")
    settings.VEO_QUOTA_LIMIT = 50


def _ledger_against_requests(guild_id: int) -> tuple[list[tuple], list[tuple]]:
    """The guild's ledger rows (hours, starts, usd) and the same figures summed from its requests."""
    ledger = sql_rows(
        "SELECT hours, starts, usd FROM guild_spend_ledger WHERE guild_id = %s AND usd > 0 ORDER BY 1, 2", [guild_id]
    )
    summed = sql_rows(
        "SELECT 1, date_trunc('hour', created_at, 'UTC'), sum(cost_estimated_usd) FROM video_requests"
        " WHERE guild_id = %s AND counts_toward_quota AND cost_estimated_usd > 0 GROUP BY 2"
        " UNION ALL SELECT 24, date_trunc('day', created_at, 'UTC'), sum(cost_estimated_usd) FROM video_requests"
        " WHERE guild_id = %s AND counts_toward_quota AND cost_estimated_usd > 0 GROUP BY 2 ORDER BY 1, 2",
        [guild_id, guild_id],
    )
    return ledger, summed


def test_the_guild_ledger_matches_its_requests_after_admissions_refunds_and_free_or_unpriced_ones(settings):
    kept = admit(user_id=5001)
    failed = admit(user_id=5002)
    cancelled = admit(user_id=5003)
    refunded = admit(user_id=5004)
    assert admit(user_id=5005, model="veo-3.0-generate-001").cost_usd is None  # unpriced: not money
    assert admit(user_id=5006, model="offline-sample").cost_usd == 0  # free: not money
    settings.VEO_QUOTA_LIMIT = 0
    assert admit(user_id=5007).reason_code == "quota_exceeded"  # rejected: costs nothing
    services.mark_failed(request_id=failed.request_id, error_code="backend_error", error_message="500", refund=True)
    services.cancel_requests(request_ids=[cancelled.request_id], actor="mod", reason="test")
    services.refund_requests(request_ids=[refunded.request_id], actor="mod", reason="test")
    services.refund_requests(request_ids=[refunded.request_id], actor="mod", reason="again")  # a no-op

    ledger, summed = _ledger_against_requests(GUILD)
    assert ledger == summed
    assert [usd for _, _, usd in ledger] == [VIDEO, VIDEO]  # only `kept`, in its hour and its day
    assert kept.admitted


def test_a_refund_gives_the_guild_budget_its_money_back():
    QuotaPolicyFactory(guild_id=GUILD, quota_limit=50, guild_budget_usd=Decimal("3.20"), guild_budget_window=DAY)
    first, second = admit(user_id=5011), admit(user_id=5012)
    refused = admit(user_id=5013)
    assert (first.admitted, second.admitted, refused.reason_code) == (True, True, "budget_guild")
    assert "$0.00 of $3.20 per 1 day left" in refused.reason
    services.refund_requests(request_ids=[first.request_id], actor="mod", reason="test")
    assert admit(user_id=5013).admitted


def _spend_since(guild_id: int, since: datetime) -> Decimal:
    return sql_rows("SELECT guild_spend_since(%s, %s)", [guild_id, since])[0][0]


def test_a_window_reads_its_first_day_by_the_hour_then_whole_days_counting_the_first_hour_whole():
    day = datetime(2026, 11, 10, tzinfo=UTC)
    spend = [(day - 2 * DAY + timedelta(hours=10), 1), (day - DAY + timedelta(hours=5), 2)]
    spend += [(day - DAY + timedelta(hours=23), 4), (day + timedelta(hours=1), 8)]
    for at, usd in spend:  # what the trigger writes for one request at `at`
        for hours, starts in ((1, at), (24, at.replace(hour=0))):
            sql_rows(
                "INSERT INTO guild_spend_ledger AS l (guild_id, hours, starts, usd) VALUES (9001, %s, %s, %s)"
                " ON CONFLICT (guild_id, hours, starts) DO UPDATE SET usd = l.usd + EXCLUDED.usd RETURNING 1",
                [hours, starts, usd],
            )
    assert _spend_since(9001, day - DAY + timedelta(hours=4, minutes=30)) == 14  # 2 + 4 by the hour, then 8
    assert _spend_since(9001, day - DAY + timedelta(hours=5, minutes=30)) == 14  # the 05:00 hour counted whole
    assert _spend_since(9001, day - DAY + timedelta(hours=6)) == 12
    assert _spend_since(9001, day) == 8  # from a midnight: whole days only
    assert _spend_since(9001, day - 3 * DAY) == 15
    assert _spend_since(9002, day - 3 * DAY) == 0


def _allowances() -> list[tuple[Decimal | None, Decimal]]:
    return sql_rows("SELECT cap_usd, usd FROM operator_spend_allowances ORDER BY shard")


def _shard_room() -> list[Decimal]:
    """Each shard's allowance minus its spend in the last day (by the ledger's hours)."""
    return [
        room
        for (room,) in sql_rows(
            "SELECT a.usd - COALESCE((SELECT sum(h.usd) FROM operator_spend_hours h WHERE h.shard = a.shard"
            " AND h.hour >= date_trunc('hour', now() - interval '1 day', 'UTC')), 0)"
            " FROM operator_spend_allowances a ORDER BY a.shard"
        )
    ]


def test_the_operators_allowances_add_up_to_the_cap_and_one_user_can_use_all_of_it(settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("5.00")
    answers = [admit(user_id=5021) for _ in range(4)]  # one user: one shard, borrowing from the others
    assert [a.admitted for a in answers] == [True, True, True, False]
    assert answers[3].reason_code == "budget_operator" and "$0.20 of $5.00 per 1 day left" in answers[3].reason
    assert sum(usd for _, usd in _allowances()) == Decimal("5.00")
    assert all(cap == Decimal("5.00") for cap, _ in _allowances())
    assert all(room >= 0 for room in _shard_room())
    assert sql_rows("SELECT operator_spend_shard(5021) <> operator_spend_shard(5022)") == [(True,)]
    assert admit(user_id=5022).reason_code == "budget_operator"  # another shard: the room went to 5021's


def test_a_new_cap_splits_the_allowances_again_from_what_was_spent(settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("100.00")
    for user in (5031, 5032, 5033):
        assert admit(user_id=user).admitted
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("4.00")  # $4.80 already spent: over the new cap
    assert admit(user_id=5034).reason_code == "budget_operator"
    assert sum(usd for _, usd in _allowances()) <= Decimal("4.00")
    assert all(room <= 0 for room in _shard_room())
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("8.00")  # $3.20 left: two more, wherever they come from
    assert [admit(user_id=user).admitted for user in (5035, 5036, 5037)] == [True, True, False]
    assert sum(usd for _, usd in _allowances()) == Decimal("8.00")


def test_lost_allowance_rows_are_put_back_not_read_as_no_limit(settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("2.00")
    lost = sql_rows(
        "DELETE FROM operator_spend_allowances WHERE shard IN (operator_spend_shard(5040), operator_spend_shard(5043))"
        " RETURNING shard"
    )
    assert len(lost) == 2  # two shards
    assert admit(user_id=5040).admitted
    assert admit(user_id=5043).reason_code == "budget_operator"
    assert sum(usd for _, usd in _allowances()) == Decimal("2.00")


OPERATOR_ADMIT = (
    "SELECT admitted, reason_code FROM admit_video_request(%s, %s, NULL, NULL, 'a red fox in snow', NULL,"
    " 4::smallint, '16:9', '720p', true, 'allow_adult', NULL, 'veo-3.1-generate-001', 'discord', 1000,"
    " interval '1 day', 0, p_operator_budget_usd => %s)"
)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("run", range(2))
def test_a_storm_from_every_shard_never_spends_past_the_operators_cap(db_settings, run):
    """16 connections at once, users of all eight shards, a cap with room for ten more videos:
    the day's spend never passes it, and the allowances still add up to it."""
    import threading

    import psycopg
    from psycopg.conninfo import make_conninfo

    from tests.concurrency import conninfo

    info = make_conninfo("", **{k: v for k, v in conninfo(db_settings).items() if v is not None})
    spent = "SELECT COALESCE(sum(usd), 0) FROM operator_spend_hours WHERE hour >= date_trunc('hour', now() - interval '1 day', 'UTC')"
    with psycopg.connect(info, autocommit=True) as conn:
        before = conn.execute(spent).fetchone()[0]
    cap = before + 10 * VIDEO + Decimal("0.80")  # one cap per run: each run splits it afresh
    first = (870_000 + run) * 1000  # users and interactions no other test file uses
    answers: list = []
    together = threading.Barrier(16)

    def lane(number: int) -> None:
        with psycopg.connect(info, autocommit=True) as conn:
            together.wait()
            for n in range(3):
                user = first + number * 3 + n  # 48 users: every shard
                answers.append(conn.execute(OPERATOR_ADMIT, [user, user, cap]).fetchone())

    threads = [threading.Thread(target=lane, args=(number,)) for number in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with psycopg.connect(info, autocommit=True) as conn:
        after = conn.execute(spent).fetchone()[0]
        allowances = conn.execute(
            "SELECT sum(usd), min(cap_usd), max(cap_usd) FROM operator_spend_allowances"
        ).fetchone()
    admitted = sum(1 for ok, _ in answers if ok)
    assert len(answers) == 48 and all(ok or code == "budget_operator" for ok, code in answers)
    assert after <= cap and after - before == admitted * VIDEO
    assert 1 <= admitted <= 10
    assert allowances == (cap, cap, cap)


def test_pruning_deletes_only_ledger_rows_no_budget_window_can_read():
    now = datetime(2027, 6, 1, 12, 30, tzinfo=UTC)
    old, kept = now - ledgers.KEEP - timedelta(hours=1), now - timedelta(days=366) + timedelta(minutes=30)
    with connection.cursor() as cursor:
        for starts, usd in [(old, "5.00"), (kept, "1.00"), (now - DAY, "2.00")]:
            cursor.execute(
                "INSERT INTO guild_spend_ledger (guild_id, hours, starts, usd) VALUES"
                " (%s, 1, date_trunc('hour', %s::timestamptz, 'UTC'), %s),"
                " (%s, 24, date_trunc('day', %s::timestamptz, 'UTC'), %s)",
                [GUILD, starts, usd, GUILD, starts, usd],
            )
            cursor.execute(
                "INSERT INTO operator_spend_hours (hour, shard, usd) VALUES (date_trunc('hour', %s::timestamptz, 'UTC'), 3, %s)",
                [starts, usd],
            )
    # What the longest guild budget (366 days) reads, before and after: the same.
    longest = [now - timedelta(days=366), now - timedelta(days=366) + timedelta(minutes=59)]
    spent = "SELECT guild_spend_since(%s, %s::timestamptz)"
    before = [sql_rows(spent, [GUILD, since])[0][0] for since in longest]

    assert ledgers.prune_spend_ledgers(now=now) == 3  # the old hour and day rows, the old operator hour
    assert [sql_rows(spent, [GUILD, since])[0][0] for since in longest] == before
    assert before[0] == Decimal("3.0000")  # the premise: the kept hour's 1.00 and the last day's 2.00
    assert sql_rows("SELECT count(*) FROM guild_spend_ledger WHERE usd = 5") == [(0,)]
    assert sql_rows("SELECT count(*), sum(usd) FROM operator_spend_hours") == [(2, Decimal("3.0000"))]
    assert ledgers.prune_spend_ledgers(now=now) == 0
