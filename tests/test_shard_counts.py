"""Each operator shard's closed hours counted once an hour and kept (0027): the kept count always
equals its shard's ledger, whatever changes the closed hours (a refund, a row inserted with an
earlier created_at, a count left from an earlier hour), so the cap decides by it as by the ledger."""

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import admit, next_interaction, sql_rows
from tests.hypothesis_profiles import examples
from tracking import services

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

VIDEO = Decimal("1.60")  # veo-3.1-generate-001, 720p with audio, 4 s at $0.40
USERS = range(6101, 6125)  # 24 users: every one of the 8 shards


@pytest.fixture(autouse=True)
def priced(settings):
    settings.VEO_MODEL = settings.VEO_RECORDED_MODEL = "veo-3.1-generate-001"
    settings.VEO_MODELS = ("veo-3.1-generate-001",)
    settings.VEO_QUOTA_LIMIT = 1000


@pytest.fixture(autouse=True)
def one_hour():
    """Each test runs inside one UTC hour: the counts are per hour, and a test that crossed into
    the next would see them counted again (rightly, but not what it asserts)."""
    now = datetime.now(UTC)
    if now.minute == 59 and now.second >= 50:
        time.sleep(61 - now.second)


def _shard(user_id: int) -> int:
    return sql_rows("SELECT operator_spend_shard(%s)", [user_id])[0][0]


def _counted_against_ledger() -> list[tuple[int, Decimal, Decimal]]:
    """Every shard counted this hour: its kept count, and its ledger's 24 hours before this one."""
    return sql_rows(
        "SELECT a.shard, a.closed_usd, COALESCE((SELECT sum(h.usd) FROM operator_spend_hours h WHERE h.shard = a.shard"
        " AND h.hour >= a.closed_until - interval '24 hours' AND h.hour < a.closed_until), 0)"
        " FROM operator_spend_allowances a WHERE a.closed_until = date_trunc('hour', now(), 'UTC') ORDER BY 1"
    )


def _window_spend() -> Decimal:
    """Everyone's spend in the operator's window, from the ledger."""
    return sql_rows(
        "SELECT COALESCE(sum(usd), 0) FROM operator_spend_hours"
        " WHERE hour >= date_trunc('hour', now(), 'UTC') - interval '24 hours'"
    )[0][0]


# A request that counts, created `hours_ago` hours before the current one began (a journal
# replay, an import): through the triggers, as any insert.
EARLIER_SQL = (
    "INSERT INTO video_requests (interaction_id, user_id, guild_id, channel_id, prompt, duration_seconds,"
    " aspect_ratio, resolution, generate_audio, model, source, status, counts_toward_quota, created_at)"
    " VALUES (%s, %s, NULL, 3001, 'a red fox in snow', 4, '16:9', '720p', true, 'veo-3.1-generate-001',"
    " 'discord', 'pending', true, date_trunc('hour', now(), 'UTC') - %s * interval '1 hour' + interval '7 minutes')"
    " RETURNING id"
)


def _insert_earlier(user_id: int, hours_ago: int) -> int:
    return sql_rows(EARLIER_SQL, [next_interaction(), user_id, hours_ago])[0][0]


def test_a_shards_first_admission_of_the_hour_counts_its_closed_hours_and_everyone_is_read_from_the_counts(settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("1000.00")
    for hours_ago, usd in ((1, "2.00"), (5, "1.00"), (24, "0.50"), (25, "8.00")):  # the last: out of the window
        for shard in (_shard(6101), (_shard(6101) + 3) % 8):
            sql_rows(
                "INSERT INTO operator_spend_hours (hour, shard, usd) VALUES"
                " (date_trunc('hour', now(), 'UTC') - %s * interval '1 hour', %s, %s) RETURNING 1",
                [hours_ago, shard, usd],
            )
    first = admit(user_id=6101, guild_id=None)
    assert sql_rows(
        "SELECT closed_usd, closed_until = date_trunc('hour', now(), 'UTC') FROM operator_spend_allowances"
        " WHERE shard = %s",
        [_shard(6101)],
    ) == [(Decimal("3.500000"), True)]
    assert first.money_scope == "operator" and first.money_left_usd == 1000 - _window_spend()
    answers = [admit(user_id=user, guild_id=None) for user in USERS]
    assert len({shard for shard, *_ in _counted_against_ledger()}) == 8  # every shard counted: the quick read
    assert all(kept == ledger for _, kept, ledger in _counted_against_ledger())
    assert answers[-1].money_left_usd == 1000 - _window_spend()


def test_a_refund_of_an_earlier_hour_gives_its_money_back_to_the_cap_at_once(settings):
    earlier = _insert_earlier(6101, hours_ago=2)
    settings.VEO_BUDGET_USD_PER_DAY = _window_spend()  # no room: the earlier request took the last
    assert admit(user_id=6101, guild_id=None).reason_code == "budget_operator"  # the count holds the earlier one
    services.refund_requests(request_ids=[earlier], actor="mod", reason="test")
    assert admit(user_id=6101, guild_id=None).admitted
    assert all(kept == ledger for _, kept, ledger in _counted_against_ledger())


def test_a_request_inserted_with_an_earlier_hour_after_the_count_is_counted(settings):
    settings.VEO_BUDGET_USD_PER_DAY = _window_spend() + 2 * VIDEO
    assert admit(user_id=6101, guild_id=None).admitted  # its shard counted this hour
    _insert_earlier(6101, hours_ago=3)
    refused = admit(user_id=6101, guild_id=None)
    assert refused.reason_code == "budget_operator" and "$0.00 of $" in refused.reason
    assert all(kept == ledger for _, kept, ledger in _counted_against_ledger())


def test_a_count_left_from_an_earlier_hour_is_counted_again_not_read(settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("1000.00")
    sql_rows(
        "UPDATE operator_spend_allowances SET closed_until = date_trunc('hour', now(), 'UTC') - interval '1 hour',"
        " closed_usd = 999 WHERE shard = %s RETURNING 1",
        [_shard(6101)],
    )
    assert admit(user_id=6101, guild_id=None).admitted  # 999 of 1000 would have refused it
    assert all(kept == ledger for _, kept, ledger in _counted_against_ledger())


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.sampled_from(USERS)),
        st.tuples(st.just("earlier"), st.sampled_from(USERS), st.integers(1, 26)),
        st.tuples(st.just("refund"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=examples(15))
@given(actions=ACTIONS)
@override_settings(VEO_BUDGET_USD_PER_DAY=Decimal("100000.00"))
def test_the_kept_counts_and_the_cap_agree_with_the_ledger_whatever_changes_it(actions):
    """Admissions, rows of earlier hours and refunds in any order: every count kept this hour
    equals its shard's ledger, and each admission's money left is the cap minus the window's
    spend by the ledger."""
    cap = Decimal("100000.00")
    refundable = []
    for action in actions:
        if action[0] == "admit":
            answer = admit(user_id=action[1], guild_id=None)
            assert answer.admitted and answer.money_left_usd == cap - _window_spend()
            refundable.append(answer.request_id)
        elif action[0] == "earlier":
            refundable.append(_insert_earlier(action[1], hours_ago=action[2]))
        elif refundable:
            services.refund_requests(
                request_ids=[refundable.pop(action[1] % len(refundable))], actor="mod", reason="test"
            )
        assert all(kept == ledger for _, kept, ledger in _counted_against_ledger())


def test_hours_older_than_the_window_never_enter_a_count(settings):
    settings.VEO_BUDGET_USD_PER_DAY = Decimal("1000.00")
    assert admit(user_id=6101, guild_id=None).admitted
    before = sql_rows("SELECT closed_usd FROM operator_spend_allowances WHERE shard = %s", [_shard(6101)])
    _insert_earlier(6101, hours_ago=25)
    assert sql_rows("SELECT closed_usd FROM operator_spend_allowances WHERE shard = %s", [_shard(6101)]) == before
    assert all(kept == ledger for _, kept, ledger in _counted_against_ledger())


CAPPED_ADMIT = (
    "SELECT admitted FROM admit_video_request(%s, %s, NULL, NULL, 'a red fox in snow', NULL, 4::smallint, '16:9',"
    " '720p', true, 'allow_adult', NULL, 'veo-3.1-generate-001', 'discord', 1000, interval '1 day', 0,"
    " p_operator_budget_usd => 100000)"
)


@pytest.mark.django_db(transaction=True)
def test_a_count_waits_for_an_earlier_request_being_recorded_in_its_shard(db_settings):
    """A journal replay inserting a request of an earlier hour, still uncommitted, while the
    shard's first admission of the hour counts: the count waits for it and includes it (read
    without waiting, it would miss it for the rest of the hour and let the cap be passed)."""
    import threading

    import psycopg
    from psycopg.conninfo import make_conninfo

    from tests.concurrency import conninfo

    info = make_conninfo("", **{k: v for k, v in conninfo(db_settings).items() if v is not None})
    user = 6150
    with psycopg.connect(info) as replay, psycopg.connect(info, autocommit=True) as admission:
        admission.execute("UPDATE operator_spend_allowances SET closed_until = NULL")  # every shard counts anew
        replay.execute(EARLIER_SQL, [next_interaction(), user, 2])  # uncommitted: its transaction stays open
        answered = threading.Event()
        admitted = []
        counting = threading.Thread(
            target=lambda: (
                admitted.append(admission.execute(CAPPED_ADMIT, [next_interaction(), user]).fetchone()[0]),
                answered.set(),
            )
        )
        counting.start()
        assert not answered.wait(1.0)  # the count waits for the replay's commit
        replay.commit()
        counting.join(10)
        assert admitted == [True]
        kept, ledger = admission.execute(
            "SELECT a.closed_usd, (SELECT sum(h.usd) FROM operator_spend_hours h WHERE h.shard = a.shard"
            " AND h.hour >= a.closed_until - interval '24 hours' AND h.hour < a.closed_until)"
            " FROM operator_spend_allowances a WHERE a.shard = operator_spend_shard(%s)",
            [user],
        ).fetchone()
    assert kept == ledger and kept >= VIDEO
