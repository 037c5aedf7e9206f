"""The durable worker with the offline backend: lifecycle, leases, caps, shutdown, CLI."""

import asyncio
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from generation.delivery import CliDelivery
from generation.veo import OfflineBackend
from generation.worker import Worker, standalone_worker
from tests.factories import VideoRequestFactory
from tests.helpers import admit
from tests.workers import truncate_requests, wait_for, worker_thread
from tracking import services
from tracking.models import VeoStartSlot, VideoRequest, VideoRequestEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sql]


@pytest.fixture(autouse=True)
def quick_worker(settings, tmp_path):
    truncate_requests()
    settings.VEO_MEDIA_ROOT = tmp_path / "media"
    settings.VEO_POLL_INITIAL = timedelta(milliseconds=50)
    settings.VEO_POLL_MAX = timedelta(milliseconds=200)
    settings.VEO_WORKER_IDLE_POLL = timedelta(milliseconds=50)
    settings.VEO_LEASE = timedelta(seconds=3)
    settings.VEO_MAX_CONCURRENT = 50
    settings.VEO_MAX_STARTS_PER_MINUTE = 1000
    settings.VEO_QUOTA_LIMIT = 1000


def offline_worker(seconds: float = 0, **kwargs) -> Worker:
    return standalone_worker(
        backend=OfflineBackend(seconds=seconds), deliveries={"discord": CliDelivery(), "cli": CliDelivery()}, **kwargs
    )


def _finished(*ids):
    return lambda: VideoRequest.objects.filter(id__in=ids, delivered_at__isnull=False).count() == len(ids)


def test_full_lifecycle_to_completed_with_timestamps_events_and_file(settings):
    request_id = admit(user_id=501).request_id
    with worker_thread(offline_worker(seconds=0.2)):
        wait_for(_finished(request_id), what="delivery")
    row = VideoRequest.objects.get(id=request_id)
    assert row.status == "completed" and row.model == "offline-sample"
    assert row.created_at <= row.started_at <= row.completed_at <= row.delivered_at
    assert row.duration_ms >= 150
    assert row.delivery_method == "cli" and row.claimed_by is None and row.attempts == 1
    path = settings.VEO_MEDIA_ROOT / row.output_uris[0].removeprefix("file:")
    assert path.read_bytes()[4:8] == b"ftyp" and row.output_size_bytes == path.stat().st_size
    events = [(e.kind, e.to_status) for e in VideoRequestEvent.objects.filter(request_id=request_id).order_by("id")]
    assert events == [
        ("created", "pending"),
        ("status_changed", "generating"),
        ("status_changed", "completed"),
        ("delivered", None),
    ]


def test_many_requests_two_workers_each_processed_exactly_once():
    ids = [admit(user_id=510 + i % 20).request_id for i in range(200)]
    with worker_thread(offline_worker(slots=8)), worker_thread(offline_worker(slots=8)):
        wait_for(_finished(*ids), timeout=120, what="200 deliveries")
    rows = VideoRequest.objects.filter(id__in=ids)
    assert set(rows.values_list("status", flat=True)) == {"completed"}
    assert set(rows.values_list("attempts", flat=True)) == {1}
    starts = VeoStartSlot.objects.filter(request_id__in=ids).values("request_id").annotate(n=Count("id"))
    assert len(starts) == 200 and {s["n"] for s in starts} == {1}
    assert VideoRequestEvent.objects.filter(request_id__in=ids, to_status="generating").count() == 200
    assert VideoRequestEvent.objects.filter(request_id__in=ids, kind="delivered").count() == 200
    assert set(rows.values_list("claimed_by", flat=True)) == {None}  # every lease released


def test_expired_lease_of_a_dead_worker_is_resumed_not_restarted(settings):
    request_id = admit(user_id=520).request_id
    dead = services.claim_next(
        worker="dead-worker",
        lease=timedelta(seconds=1),
        sources=["discord"],
        max_concurrent=10,
        max_starts_per_minute=10,
    )
    operation = f"offline/{request_id}/0.000/deadbeef"  # started long ago: finished when polled
    services.mark_generating(request_id=request_id, operation_name=operation, worker="dead-worker")
    with worker_thread(offline_worker()):
        wait_for(_finished(request_id), what="recovery")
    row = VideoRequest.objects.get(id=request_id)
    assert dead.id == request_id and row.status == "completed" and row.operation_name == operation
    assert row.attempts == 2 and VeoStartSlot.objects.filter(request_id=request_id).count() == 1


def test_finished_but_undelivered_is_delivered_after_a_crash():
    request_id = admit(user_id=521).request_id
    services.claim_next(
        worker="dead-worker",
        lease=timedelta(seconds=1),
        sources=["discord"],
        max_concurrent=10,
        max_starts_per_minute=10,
    )
    services.mark_generating(request_id=request_id, operation_name="offline/x/0/0", worker="dead-worker")
    services.mark_completed(request_id=request_id, output_uris=["file:000000/x.mp4"], worker="dead-worker")
    with worker_thread(offline_worker()):
        wait_for(_finished(request_id), what="delivery after crash")
    row = VideoRequest.objects.get(id=request_id)
    assert row.delivery_method == "cli" and row.output_uris == ["file:000000/x.mp4"]


def test_graceful_shutdown_hands_leases_back(settings):
    request_id = admit(user_id=530).request_id
    with worker_thread(offline_worker(seconds=60)):
        wait_for(lambda: VideoRequest.objects.get(id=request_id).status == "generating", what="generating")
    row = VideoRequest.objects.get(id=request_id)
    assert row.status == "generating" and row.claimed_by is None and row.lease_expires_at is None
    released = VideoRequestEvent.objects.get(request_id=request_id, kind="released")
    assert "shutting down" in released.detail["reason"]
    # another worker picks it up at once and resumes the same operation
    operation = row.operation_name
    with worker_thread(offline_worker(seconds=0)):
        wait_for(_finished(request_id), what="resume after shutdown")
    assert VideoRequest.objects.get(id=request_id).operation_name == operation


def test_concurrency_cap_is_global(settings):
    settings.VEO_MAX_CONCURRENT = 3
    ids = [admit(user_id=540 + i).request_id for i in range(8)]
    with worker_thread(offline_worker(seconds=60, slots=8)), worker_thread(offline_worker(seconds=60, slots=8)):
        wait_for(lambda: VideoRequest.objects.filter(id__in=ids, status="generating").count() == 3, what="3 generating")
        asyncio.run(asyncio.sleep(0.5))  # let any over-eager claim show itself
        assert VideoRequest.objects.filter(id__in=ids, status="generating").count() == 3


def test_start_rate_cap_is_global(settings):
    settings.VEO_MAX_STARTS_PER_MINUTE = 4
    ids = [admit(user_id=550 + i).request_id for i in range(10)]
    with worker_thread(offline_worker(slots=4)), worker_thread(offline_worker(slots=4)):
        wait_for(lambda: VeoStartSlot.objects.count() == 4, what="4 starts")
        asyncio.run(asyncio.sleep(0.5))
    assert VeoStartSlot.objects.count() == 4
    assert VideoRequest.objects.filter(id__in=ids, status="pending").count() == 6


def test_cli_submits_through_admission_and_waits_for_the_outcome(capsys):
    with worker_thread(offline_worker(seconds=0.1)):
        call_command(
            "veo",
            "a red fox in snow",
            "--user",
            "560",
            "--duration",
            "6",
            "--ratio",
            "9:16",
            "--wait",
            "--timeout",
            "30",
        )
    out = capsys.readouterr().out
    assert "queued" in out and "completed" in out and "SAMPLE video" in out and ".mp4" in out
    row = VideoRequest.objects.get(user_id=560)
    assert (row.source, row.duration_seconds, row.aspect_ratio, row.delivery_method) == ("cli", 6, "9:16", "cli")


def test_cli_refusals_are_clear(settings):
    settings.VEO_QUOTA_LIMIT = 0
    with pytest.raises(Exception, match="refused: quota exceeded"):
        call_command("veo", "a red fox in snow", "--user", "561")
    settings.VEO_QUOTA_LIMIT = 1
    VideoRequestFactory(user_id=562, created_at=timezone.now() - timedelta(hours=21, minutes=45))
    with pytest.raises(Exception, match=r"refused: quota exceeded: 1 of 1 videos .*; next slot in 2h 15m$"):
        call_command("veo", "a red fox in snow", "--user", "562")
    with pytest.raises(Exception, match="prompt must be"):
        call_command("veo", "hi", "--user", "561")


def test_a_request_veo_never_let_start_times_out_refunded(settings):
    settings.VEO_QUEUE_TIMEOUT = timedelta(minutes=30)
    stale, fresh = admit(user_id=580).request_id, admit(user_id=581).request_id
    # As if Veo had answered 429 for the last 31 minutes.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "UPDATE video_requests SET created_at = created_at - interval '31 minutes' WHERE id = %s", [stale]
        )
    backend = OfflineBackend(seconds=0)
    with worker_thread(standalone_worker(backend=backend, deliveries={"cli": CliDelivery(), "discord": CliDelivery()})):
        wait_for(_finished(stale, fresh), what="both requests finished and delivered")
    row = VideoRequest.objects.get(id=stale)
    assert (row.status, row.error_code, row.counts_toward_quota) == ("timeout", "queue_timeout", False)
    assert "too busy to start this video within 30m" in row.error_message
    assert row.operation_name is None and row.started_at is None  # Veo was not asked again
    assert VideoRequest.objects.get(id=fresh).status == "completed"
