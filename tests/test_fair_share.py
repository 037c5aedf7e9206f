"""The claim's fair-share order: users take turns, guilds interleave within a turn, priority is a
bounded head start, a returning user gets no catch-up burst, and positions follow the order.

The order is stamped on insert and read by the claim; no wall clock takes part, so every
sequence below is exact."""

import random
from datetime import timedelta

import pytest
from django.db import connection, transaction

from tests.factories import snowflake
from tests.workers import truncate_requests
from tracking import selectors, services
from tracking.models import VideoRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sql]

LEASE = timedelta(minutes=5)


@pytest.fixture(autouse=True)
def empty_queue():
    truncate_requests()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE fair_share_clock SET round = 0")


def _queue(user_id: int, count: int = 1, *, guild_id: int | None = None, dm: bool = False, priority: int = 0):
    """Pending requests inserted as admission inserts them (the stamping trigger runs); each user
    in a guild of its own unless told otherwise."""
    return [
        VideoRequest.objects.create(
            interaction_id=snowflake(),
            user_id=user_id,
            guild_id=None if dm else guild_id or user_id + 5000,
            channel_id=3001,
            prompt="a red fox in snow",
            duration_seconds=4,
            aspect_ratio="16:9",
            resolution="720p",
            model="veo-3.1-generate-001",
            status="pending",
            counts_toward_quota=True,
            priority=priority,
        ).id
        for _ in range(count)
    ]


def _claim(limit: int = 1) -> list[VideoRequest]:
    return services.claim_work(
        worker="w1", lease=LEASE, sources=["discord"], max_concurrent=1000, max_starts_per_minute=1000, limit=limit
    )


def _start_order(count: int) -> list[int]:
    """The users of the next ``count`` starts, one claim at a time."""
    users = []
    for _ in range(count):
        (claimed,) = _claim()
        users.append(claimed.user_id)
    return users


H, L1, L2, L3 = 1, 2, 3, 4


def test_a_heavy_user_gets_one_start_per_turn_among_light_users():
    _queue(H, 6)
    for light in (L1, L2, L3):
        _queue(light, 2)
    assert _start_order(12) == [H, L1, L2, L3, H, L1, L2, L3, H, H, H, H]
    assert _claim() == []


def test_a_batch_claim_takes_the_same_requests_as_single_claims():
    heavy = _queue(H, 6)
    light = [_queue(user, 2) for user in (L1, L2, L3)]
    assert {row.id for row in _claim(limit=5)} == {heavy[0], light[0][0], light[1][0], light[2][0], heavy[1]}


def test_within_a_turn_guilds_interleave():
    for user in (11, 12, 13):
        _queue(user, guild_id=9001)
    _queue(21, guild_id=9002)
    _queue(31, dm=True)  # a direct message: a guild of one
    # one turn for all five users; guild 9001's second and third users wait for the other guilds
    assert _start_order(5) == [11, 21, 31, 12, 13]


def test_priority_is_a_head_start_of_that_many_turns():
    normal, favoured, held_back = 41, 42, 43
    _queue(normal, 3)
    _queue(favoured, 3, priority=2)
    _queue(held_back, 1, priority=-1)
    # favoured: turns -2, -1, 0; normal: 0, 1, 2; held back: 1
    assert _start_order(7) == [favoured, favoured, normal, favoured, normal, held_back, normal]


def test_a_user_back_after_a_pause_joins_the_current_turn_without_a_burst():
    returning, heavy = 51, 52
    _queue(returning)
    assert _start_order(1) == [returning]
    _queue(heavy, 10)
    assert _start_order(5) == [heavy] * 5
    _queue(returning, 3)
    assert _start_order(8) == [returning, heavy, returning, heavy, returning, heavy, heavy, heavy]


def test_a_request_backed_off_keeps_its_place():
    (first,) = _queue(H)
    _queue(L1, 3)
    (claimed,) = _claim()
    assert claimed.id == first
    assert services.release(request_id=first, worker="w1", reason="429", retry_at=claimed.created_at + LEASE)
    assert _start_order(2) == [L1, L1]
    VideoRequest.objects.filter(id=first).update(available_at=claimed.created_at)  # due again
    assert _start_order(2) == [H, L1]


def test_positions_follow_the_start_order():
    _queue(H, 6)
    for light in (L1, L2, L3):
        _queue(light, 2)
    pending = VideoRequest.objects.filter(status="pending")
    ahead = {
        row.id: selectors.queue_estimate(request_id=row.id, duration_seconds=4, resolution="720p").ahead
        for row in pending
    }
    starts = []
    while claimed := _claim():
        starts.append(claimed[0].id)
    assert [ahead[request_id] for request_id in starts] == list(range(12))


def test_a_users_next_request_waits_for_at_most_two_starts_of_each_other_user():
    """The bound docs/ARCHITECTURE.md argues ("Why nothing starves"), checked over a seeded mix of
    arrivals and starts: from the moment a request is its user's oldest waiting one until it
    starts, no other user starts more than two (everyone at priority 0)."""
    chance = random.Random(2026)
    users = list(range(61, 69))
    owner: dict[int, int] = {}
    waiting: dict[int, list[int]] = {user: [] for user in users}  # each user's pending ids, oldest first
    starts_seen: dict[int, dict[int, int]] = {}  # a user's oldest waiting request -> starts per other user
    for _ in range(300):
        if chance.random() < 0.45:
            user = chance.choice(users)
            for request_id in _queue(user, chance.randint(1, 3)):
                owner[request_id] = user
                waiting[user].append(request_id)
        else:
            claimed = _claim()
            if not claimed:
                continue
            started = claimed[0].id
            starter = owner[started]
            assert waiting[starter][0] == started  # a user's own requests start in their order
            waiting[starter].pop(0)
            starts_seen.pop(started, None)
            for seen in starts_seen.values():
                seen[starter] = seen.get(starter, 0) + 1
        for queue in waiting.values():
            if queue:
                starts_seen.setdefault(queue[0], {})
        assert all(count <= 2 for seen in starts_seen.values() for count in seen.values()), starts_seen
    assert len(owner) > 100  # the mix really queued and started a good number


# A long queue whose pending rows passed through the partial indexes in numbers, as they do
# between two vacuums of a large table: loaded as a restore would (no per-row triggers).
CHURNED = """
INSERT INTO video_requests (source, interaction_id, user_id, guild_id, channel_id, prompt, duration_seconds,
    aspect_ratio, resolution, model, status, counts_toward_quota, fair_round, fair_turn)
SELECT 'discord', %(base)s + g, 7000 + g, 9000 + g %% 40, 1, 'a fox', 4, '16:9', '720p', 'veo-3.1-generate-001',
       'pending', true, 1, g / 40
FROM generate_series(1, %(rows)s) AS g
"""


def _index_entries_read() -> int:
    """Entries this transaction's index scans of video_requests returned, over all its indexes."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid))::bigint FROM pg_index"
            " WHERE indrelid = 'video_requests'::regclass"
        )
        return cursor.fetchone()[0] or 0


def test_a_long_queue_is_not_read_again_by_each_insert_and_claim():
    """The turn of a new request and the claim's next request read a few entries, not the queue:
    with 20,000 requests gone through the pending indexes and 2,000 waiting since the statistics
    were taken, the plans that read every waiting row (by status, or the whole round) were what
    the planner chose for 0021's look-up and claim (docs/BENCHMARKS.md, 0025)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(CHURNED, {"base": 10**12, "rows": 20000})
        cursor.execute("UPDATE video_requests SET status = 'cancelled', counts_toward_quota = false")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE video_requests")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(CHURNED, {"base": 2 * 10**12, "rows": 2000})
        cursor.execute("UPDATE fair_share_clock SET round = 1")  # round 1 is being started
    with transaction.atomic():
        before = _index_entries_read()
        # Ten new users of one guild the waiting rows do not hold: each joins round 1, the round
        # of all 2,000, as the guild's next turn. PL/pgSQL plans generically from the sixth call.
        for user in range(10):
            _queue(50 + user, guild_id=77)
        inserts = _index_entries_read() - before
        assert sorted(VideoRequest.objects.filter(guild_id=77).values_list("fair_turn", flat=True)) == list(range(10))
        before = _index_entries_read()
        for _ in range(6):
            assert len(_claim()) == 1
        claims = _index_entries_read() - before
    assert inserts < 10 * 20, inserts  # the user's last round and a few entries each, not 2,000
    assert claims < 6 * 50, claims
