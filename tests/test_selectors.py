"""Reads: quota status, history paging, analytics, and the async bridge."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from tests.factories import VideoRequestFactory
from tests.helpers import admit
from tracking import aio, analytics, selectors, services
from tracking.durations import humanize_duration

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

# Analytics fixtures live in a past period no other test writes to.
PERIOD_START = datetime(2021, 3, 1, tzinfo=UTC)
PERIOD_END = datetime(2021, 3, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    "delta,text",
    [
        (timedelta(hours=2, minutes=15), "2h 15m"),
        (timedelta(hours=2), "2h"),
        (timedelta(hours=2, minutes=1), "2h 1m"),
        (timedelta(days=1), "24h"),
        (timedelta(hours=23, minutes=59), "23h 59m"),
        (timedelta(days=1, hours=3, minutes=20), "27h 20m"),
        (timedelta(days=2), "2d"),
        (timedelta(days=3, hours=4, minutes=20), "3d 4h"),
        (timedelta(minutes=15, seconds=30), "15m 30s"),
        (timedelta(seconds=40), "40s"),
        (timedelta(seconds=0.2), "1s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=-5), "0s"),
    ],
)
def test_humanize_duration(delta, text):
    assert humanize_duration(delta) == text


def test_quota_status_matches_admission():
    now = timezone.now()
    oldest = now - timedelta(hours=21, minutes=45)
    VideoRequestFactory(user_id=300, created_at=oldest)
    VideoRequestFactory(user_id=300, created_at=now - timedelta(hours=1))
    status = selectors.quota_status(user_id=300, guild_id=2001)
    assert (status.used, status.limit, status.remaining) == (2, 5, 3)
    assert status.reset_at == oldest + timedelta(hours=24)
    assert status.resets_in(now=now) == "2h 15m"
    answer = admit(user_id=300)
    assert answer.remaining == 2 and answer.reset_at == status.reset_at


def test_quota_status_of_a_new_user():
    status = selectors.quota_status(user_id=301)
    assert (status.used, status.remaining, status.reset_at) == (0, 5, None)
    assert status.resets_in(now=timezone.now()) == "now"


def test_history_pages_newest_first_with_status_filter():
    ids = [VideoRequestFactory(user_id=302, status="completed" if i % 2 else "failed").id for i in range(25)]
    VideoRequestFactory(user_id=303)  # someone else
    first = selectors.user_history(user_id=302, limit=10)
    assert [r.id for r in first.requests] == ids[::-1][:10]
    second = selectors.user_history(user_id=302, limit=10, before_id=first.next_before_id)
    third = selectors.user_history(user_id=302, limit=10, before_id=second.next_before_id)
    assert [r.id for r in second.requests] == ids[::-1][10:20]
    assert [r.id for r in third.requests] == ids[::-1][20:] and third.next_before_id is None

    failed = selectors.user_history(user_id=302, status="failed", limit=100)
    assert len(failed.requests) == 13 and {r.status for r in failed.requests} == {"failed"}
    with pytest.raises(ValueError):
        selectors.user_history(user_id=302, status="exploded")


@pytest.fixture
def week_of_traffic():
    day = PERIOD_START + timedelta(days=1)
    durations = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]  # seconds, completed
    for seconds in durations:
        VideoRequestFactory(
            user_id=400,
            guild_id=1,
            status="completed",
            created_at=day,
            started_at=day,
            completed_at=day + timedelta(seconds=seconds),
            prompt="A cat surfing",
        )
    VideoRequestFactory.create_batch(
        3, user_id=401, guild_id=1, status="failed", created_at=day, prompt="a cat surfing "
    )
    VideoRequestFactory(user_id=402, guild_id=2, status="timeout", created_at=day)
    VideoRequestFactory.create_batch(2, user_id=402, guild_id=None, status="rejected", created_at=day)
    VideoRequestFactory(user_id=403, guild_id=2, status="pending", created_at=day)
    VideoRequestFactory(user_id=404, status="completed", created_at=PERIOD_END + timedelta(hours=1))  # outside


def test_status_counts(week_of_traffic):
    counts = analytics.status_counts(since=PERIOD_START, until=PERIOD_END)
    assert counts == {
        "pending": 1,
        "generating": 0,
        "completed": 10,
        "failed": 3,
        "timeout": 1,
        "cancelled": 0,
        "rejected": 2,
    }


def test_generation_time_percentiles(week_of_traffic):
    result = analytics.generation_time_percentiles(since=PERIOD_START, until=PERIOD_END)
    assert result.count == 10
    assert result.p50_ms == pytest.approx(55_000)
    assert result.p95_ms == pytest.approx(95_500)
    assert result.p99_ms == pytest.approx(99_100)


def test_failure_rate(week_of_traffic):
    assert analytics.failure_rate(since=PERIOD_START, until=PERIOD_END) == pytest.approx(4 / 14)
    assert analytics.failure_rate(since=PERIOD_END + timedelta(days=30), until=PERIOD_END + timedelta(days=31)) is None


def test_guild_stats(week_of_traffic):
    stats = {row.guild_id: row for row in analytics.guild_stats(since=PERIOD_START, until=PERIOD_END)}
    assert (stats[1].requests, stats[1].completed, stats[1].failed, stats[1].users) == (13, 10, 3, 2)
    assert (stats[2].requests, stats[2].failed) == (2, 1)
    assert stats[None].rejected == 2


def test_top_prompts_ignore_case_and_spacing(week_of_traffic):
    top = analytics.top_prompts(since=PERIOD_START, until=PERIOD_END, limit=1)
    assert top[0].requests == 13 and top[0].users == 2
    assert top[0].prompt.lower().strip() == "a cat surfing"


@pytest.mark.django_db(transaction=True)
def test_async_bridge_runs_services_off_the_event_loop():
    async def main():
        answers = await asyncio.gather(
            *[
                aio.run(
                    services.admit_request,
                    interaction_id=9_000_000 + i,
                    user_id=310,
                    guild_id=None,
                    channel_id=None,
                    params=services.VideoParameters(prompt="a red fox in snow"),
                )
                for i in range(8)
            ]
        )
        status = await aio.run(selectors.quota_status, user_id=310)
        return answers, status

    answers, status = asyncio.run(main())
    assert sum(a.admitted for a in answers) == 5
    assert status.used == 5
