"""The dashboard snapshots: what the page shows, how old it may be, who recomputes it."""

import re
from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone

from generation.delivery import CliDelivery
from generation.veo import OfflineBackend
from generation.worker import standalone_worker
from tests.concurrency import conninfo
from tests.factories import VideoRequestFactory
from tests.workers import truncate_requests, wait_for, worker_thread
from tracking import analytics, dashboards
from tracking.models import DashboardSnapshot

pytestmark = pytest.mark.sql

DASHBOARD = "/admin/tracking/videorequest/dashboard/"


@pytest.fixture
def snapshots(settings, transactional_db):
    """Snapshots on (every 5 minutes, the default), none stored yet."""
    settings.DASHBOARD_REFRESH = timedelta(minutes=5)
    DashboardSnapshot.objects.all().delete()
    truncate_requests()
    yield settings
    DashboardSnapshot.objects.all().delete()


def test_first_view_computes_and_stores_later_views_read_the_snapshot(snapshots):
    VideoRequestFactory(user_id=31337, status="failed")
    first = dashboards.current(days=1)
    assert first.live and first.dashboard.activity.totals["failed"] == 1
    assert DashboardSnapshot.objects.get(days=1).until == first.dashboard.until

    VideoRequestFactory(user_id=31338, status="failed")
    second = dashboards.current(days=1)
    assert not second.live and second.computed_at == first.computed_at
    assert second.dashboard == first.dashboard  # stored and read back unchanged, new row not yet in

    recomputed = dashboards.compute(days=1)
    assert recomputed.dashboard.activity.totals["failed"] == 2
    assert dashboards.current(days=1).dashboard.activity.totals["failed"] == 2


def test_the_snapshot_round_trips_every_figure(snapshots):
    for status in ("completed", "completed", "failed", "rejected", "timeout"):
        VideoRequestFactory(status=status, guild_id=4242, safety_filtered_count=1 if status == "failed" else 0)
    for days in (1, 7):
        live = analytics.dashboard(until=timezone.now(), days=days)
        assert dashboards._decode(dashboards._encode(live)) == live
        assert live.top_guilds and live.generation_time.p50_ms is not None


def test_a_snapshot_nobody_refreshes_is_not_shown(snapshots):
    dashboards.current(days=1)
    DashboardSnapshot.objects.filter(days=1).update(computed_at=timezone.now() - timedelta(minutes=11))
    VideoRequestFactory(status="timeout")
    again = dashboards.current(days=1)
    assert again.live and again.dashboard.activity.totals["timeout"] == 1


def test_refresh_due_recomputes_old_periods_once_and_one_worker_at_a_time(snapshots, direct_settings):
    assert dashboards.refresh_due() == [1, 7]
    assert dashboards.refresh_due() == []
    DashboardSnapshot.objects.filter(days=7).update(computed_at=timezone.now() - timedelta(minutes=5))
    with psycopg.connect(**conninfo(direct_settings), autocommit=True) as other:  # a session lock: direct
        other.execute("SELECT pg_advisory_lock(%s)", [dashboards.REFRESH_LOCK])
        assert dashboards.refresh_due() == []  # another worker is at it
        other.execute("SELECT pg_advisory_unlock(%s)", [dashboards.REFRESH_LOCK])  # not left to the disconnect
    assert dashboards.refresh_due() == [7]


def test_turned_off_nothing_is_stored(snapshots):
    snapshots.DASHBOARD_REFRESH = timedelta(0)
    assert dashboards.current(days=7).live
    assert dashboards.refresh_due() == []
    assert not DashboardSnapshot.objects.exists()


def test_page_says_how_old_the_figures_are_and_recomputes_on_request(snapshots, as_role):
    moderator = as_role("moderator")
    VideoRequestFactory(user_id=31337)
    page = moderator.get(DASHBOARD).content.decode()
    assert "Computed for this view" in page and "31337" in page
    VideoRequestFactory(user_id=42424)
    page = moderator.get(DASHBOARD).content.decode()
    assert "Figures as of" in page and "every 5m" in page and "42424" not in page
    assert re.search(r"UTC \(\d+s ago\)", page)  # written as every duration is, not "0 minutes ago"
    assert "42424" not in moderator.get(f"{DASHBOARD}?days=1&recompute=1").content.decode()  # a GET changes nothing
    moderator.get(f"{DASHBOARD}?days=7")
    week_before = DashboardSnapshot.objects.get(days=7).computed_at
    response = moderator.post(f"{DASHBOARD}?days=1")
    assert response.status_code == 302 and response["Location"] == "?days=1"
    assert "42424" in moderator.get(DASHBOARD).content.decode()
    assert DashboardSnapshot.objects.get(days=7).computed_at > week_before  # both periods, not one


def test_recompute_is_a_form_behind_csrf(snapshots, accounts):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(accounts["moderator"])
    page = client.get(DASHBOARD).content.decode()
    assert '<form method="post" action="?days=1" id="vb-recompute">' in page and "csrfmiddlewaretoken" in page
    assert client.post(f"{DASHBOARD}?days=1").status_code == 403  # no token, nothing recomputed


def test_a_running_worker_keeps_the_snapshots(snapshots):
    # The worker looks every second (generation.housekeeping: a quarter of this, at least 1 s) and
    # recomputes a snapshot 2 s old: the recompute comes 2-3 s after the first.
    snapshots.DASHBOARD_REFRESH = timedelta(seconds=2)
    VideoRequestFactory(user_id=31337)
    worker = standalone_worker(backend=OfflineBackend(seconds=0), deliveries={"cli": CliDelivery()})
    with worker_thread(worker):
        wait_for(
            lambda: DashboardSnapshot.objects.filter(days__in=[1, 7]).count() == 2,
            timeout=20,
            what="both periods computed by the worker",
        )
        first = DashboardSnapshot.objects.get(days=1).computed_at
        wait_for(
            lambda: DashboardSnapshot.objects.get(days=1).computed_at > first,
            timeout=20,
            what="the 1-day snapshot recomputed",
        )
    assert DashboardSnapshot.objects.get(days=1).data["top_users"][0]["user_id"] == 31337


def test_direct_messages_and_the_command_line_are_counted_apart(snapshots, as_role):
    VideoRequestFactory(guild_id=None, user_id=1)
    VideoRequestFactory(guild_id=None, user_id=2, source="cli")
    VideoRequestFactory(guild_id=None, user_id=2, source="cli")
    VideoRequestFactory(guild_id=55, user_id=1)
    now = timezone.now()
    stats = analytics.guild_stats(since=now - timedelta(hours=1), until=now + timedelta(minutes=1))
    assert [(g.guild_id, g.from_cli, g.requests) for g in stats] == [(None, True, 2), (55, False, 1), (None, False, 1)]
    page = as_role("moderator").get(DASHBOARD).content.decode()
    assert "command line</td><td>2</td>" in page and "direct messages</td><td>1</td>" in page


def test_a_snapshot_of_an_empty_period_does_not_hide_the_first_requests(snapshots, as_role):
    moderator = as_role("moderator")
    assert "Computed for this view" in moderator.get(DASHBOARD).content.decode()  # nothing yet: stored empty
    VideoRequestFactory(user_id=27182)
    page = moderator.get(DASHBOARD).content.decode()
    assert "27182" in page and "Computed for this view" in page  # counted now, not zeros for minutes
    VideoRequestFactory(user_id=31415)
    assert "31415" not in moderator.get(DASHBOARD).content.decode()  # a snapshot with figures stands
