"""The worker driving the real google-genai client against the local Veo fake: every outcome
maps to the right status, code and refund; a killed worker's operation is resumed, not redone."""

import asyncio
import os
import signal
from datetime import timedelta

import pytest

from tests.fakes.veo_server import FakeClock, FakeVeoServer, scenario
from tests.helpers import admit, next_interaction
from tests.workers import MODEL, genai_worker, start_worker_process, truncate_requests, wait_for, worker_thread
from tracking import services
from tracking.models import VideoRequest, VideoRequestEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake_veo():
    with FakeVeoServer() as server:
        yield server


@pytest.fixture(autouse=True)
def pipeline_settings(settings, tmp_path):
    truncate_requests()
    settings.VEO_MEDIA_ROOT = tmp_path / "media"
    settings.VEO_BACKEND = "vertex"
    settings.VEO_RECORDED_MODEL = MODEL
    settings.GOOGLE_CLOUD_PROJECT = "veobot-test"
    settings.VEO_POLL_INITIAL = timedelta(milliseconds=20)
    settings.VEO_POLL_MAX = timedelta(milliseconds=100)
    settings.VEO_WORKER_IDLE_POLL = timedelta(milliseconds=50)
    settings.VEO_RETRY_BACKOFF = timedelta(0)
    settings.VEO_HTTP_RETRIES = 1
    settings.VEO_LEASE = timedelta(seconds=5)
    settings.VEO_QUOTA_LIMIT = 100


def run_to_the_end(fake, settings, *request_ids, **worker_options) -> list[VideoRequest]:
    with worker_thread(genai_worker(fake, settings, **worker_options)):
        wait_for(
            lambda: (
                VideoRequest.objects.filter(id__in=request_ids, delivered_at__isnull=False).count() == len(request_ids)
            ),
            what="delivery",
        )
    return [VideoRequest.objects.get(id=i) for i in request_ids]


def test_completed_with_every_parameter_sent(fake_veo, settings):
    request_id = admit(
        user_id=601,
        prompt="a red fox in snow",
        duration_seconds=8,
        aspect_ratio="9:16",
        resolution="1080p",
        generate_audio=False,
        negative_prompt="blurry",
        seed=42,
    ).request_id
    fake_veo.default_scenario = scenario("multi_poll", polls=3)
    (row,) = run_to_the_end(fake_veo, settings, request_id)

    assert row.status == "completed" and row.counts_toward_quota
    assert row.output_uris[0].startswith("file:") and row.output_size_bytes > 0
    (create,) = fake_veo.creates()
    assert create.prompt == "a red fox in snow" and create.auth == "bearer"
    # Billing labels (Vertex): the fake refuses values that break Vertex's label rules.
    assert create.labels == {"veobot_request": str(request_id), "veobot_user": "601", "veobot_guild": "2001"}
    assert create.parameters == {
        "sampleCount": 1,
        "durationSeconds": 8,
        "aspectRatio": "9:16",
        "resolution": "1080p",
        "generateAudio": False,
        "negativePrompt": "blurry",
        "seed": 42,
        "personGeneration": "allow_adult",
    }
    assert len(fake_veo.polls(row.operation_name)) == 3
    kinds = list(VideoRequestEvent.objects.filter(request_id=request_id).values_list("kind", "to_status"))
    assert kinds == [
        ("created", "pending"),
        ("status_changed", "generating"),
        ("status_changed", "completed"),
        ("delivered", None),
    ]


def test_gcs_output_is_recorded_with_its_public_url(fake_veo, settings):
    settings.VEO_GCS_PUBLIC_URLS = True
    request_id = admit(user_id=602).request_id
    (row,) = run_to_the_end(fake_veo, settings, request_id, output_gcs_uri="gs://veobot-out/videos")
    (create,) = fake_veo.creates()
    assert create.parameters["storageUri"] == f"gs://veobot-out/videos/{request_id}/"
    assert row.output_uris[0].startswith(f"gs://veobot-out/videos/{request_id}/")
    assert row.public_urls[0].startswith(f"https://storage.googleapis.com/veobot-out/videos/{request_id}/")
    assert fake_veo.gcs_object(row.output_uris[0])  # the object exists where we say it is


def test_gcs_output_size_is_read_from_the_bucket_when_it_completes(fake_veo, settings, tmp_path, monkeypatch):
    from tests.gcs_keys import service_account_key

    key = service_account_key(tmp_path, token_uri=f"{fake_veo.url}/token")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key.path))
    settings.GCS_API_BASE_URL = fake_veo.url
    request_id = admit(user_id=603).request_id
    (row,) = run_to_the_end(fake_veo, settings, request_id, output_gcs_uri="gs://veobot-out/videos")
    assert row.status == "completed" and row.public_urls == []
    assert row.output_size_bytes == len(fake_veo.gcs_object(row.output_uris[0]))
    (metadata,) = [r for r in fake_veo.requests if r.kind == "metadata"]
    assert metadata.auth == "bearer" and "alt" not in metadata.query  # metadata only, no download


@pytest.mark.parametrize("problem", ["403", "404", "timeout", "no credentials", "garbled token"])
def test_gcs_output_whose_size_cannot_be_read_still_completes(
    fake_veo, settings, tmp_path, monkeypatch, caplog, problem
):
    from generation import storage
    from tests.gcs_keys import service_account_key

    key = service_account_key(tmp_path, token_uri=f"{fake_veo.url}/token")
    missing = tmp_path / "no-such-key.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(missing if problem == "no credentials" else key.path))
    monkeypatch.setattr(storage, "_problems_logged", set())  # a fresh process, as far as logging goes
    settings.GCS_API_BASE_URL, settings.VEO_HTTP_TIMEOUT = fake_veo.url, timedelta(seconds=1)
    fake_veo.gcs_metadata_status = {"403": 403, "404": 404}.get(problem)
    fake_veo.gcs_metadata_stall = 3 if problem == "timeout" else 0
    fake_veo.token_body = b"<html>proxy maintenance</html>" if problem == "garbled token" else None
    first, second = admit(user_id=604).request_id, admit(user_id=604).request_id
    rows = run_to_the_end(fake_veo, settings, first, second, output_gcs_uri="gs://veobot-out/videos")

    assert [(row.status, row.output_size_bytes) for row in rows] == [("completed", None)] * 2
    reason = {
        "403": "Cloud Storage answered 403",
        "404": "Cloud Storage answered 404",
        "timeout": "Cloud Storage unreachable (ReadTimeout)",
        "garbled token": "Cloud Storage unreachable (TypeError)",
        "no credentials": "no Google credentials (Application Default Credentials)",
    }[problem]
    unknown = [r for r in caplog.records if "size of the GCS output unknown" in r.getMessage()]
    assert [(r.levelname, reason in r.getMessage()) for r in unknown] == [("WARNING", True), ("INFO", True)]
    assert "BEGIN PRIVATE KEY" not in caplog.text and "fake-access-token" not in caplog.text


@pytest.mark.parametrize(
    "name,params,status,code,refunded",
    [
        ("error_operation", {}, "failed", "operation_failed", True),
        ("safety_filtered", {}, "failed", "content_filtered", False),
        ("http_error", {"status": 400}, "failed", "backend_rejected", True),
        ("http_error", {"status": 403}, "failed", "backend_rejected", True),
        ("server_error", {}, "failed", "backend_error", True),
        ("server_error", {"on": "poll"}, "failed", "backend_error", True),
        ("lost", {}, "timeout", "operation_lost", True),
    ],
)
def test_outcome_mapping(fake_veo, settings, name, params, status, code, refunded):
    request_id = admit(user_id=610).request_id
    fake_veo.default_scenario = scenario(name, **params)
    (row,) = run_to_the_end(fake_veo, settings, request_id)
    assert (row.status, row.error_code) == (status, code)
    assert row.error_message
    assert row.counts_toward_quota is not refunded
    assert VideoRequestEvent.objects.filter(request_id=request_id, kind="refunded").count() == int(refunded)


def test_a_model_veo_does_not_know_fails_the_request_once_refunded(fake_veo, settings):
    """Vertex answers 404 to a start on an unknown (or misspelt) model: a refusal, not a lost operation
    to retry until the queue deadline."""
    request_id = admit(user_id=609).request_id
    (row,) = run_to_the_end(fake_veo, settings, request_id, model="veo-9-generate")
    assert (row.status, row.error_code, row.counts_toward_quota) == ("failed", "backend_rejected", False)
    assert "404" in row.error_message and "veo-9-generate" in row.error_message
    assert [r.status for r in fake_veo.creates()] == [404] and row.attempts == 1


def test_safety_filter_reasons_are_kept_for_moderators(fake_veo, settings):
    request_id = admit(user_id=611).request_id
    fake_veo.default_scenario = scenario("safety_filtered", reason="prompt mentions a real person")
    (row,) = run_to_the_end(fake_veo, settings, request_id)
    assert row.safety_filtered_count == 1 and row.safety_filtered_reasons == ["prompt mentions a real person"]


def test_generation_deadline_times_out_and_refunds(fake_veo, settings):
    settings.VEO_GENERATION_TIMEOUT = timedelta(seconds=1)
    request_id = admit(user_id=612).request_id
    fake_veo.default_scenario = scenario("hang")
    (row,) = run_to_the_end(fake_veo, settings, request_id)
    assert (row.status, row.error_code, row.counts_toward_quota) == ("timeout", "timeout", False)


def test_transient_5xx_on_start_is_retried_then_succeeds(fake_veo, settings):
    settings.VEO_HTTP_RETRIES = 3
    request_id = admit(user_id=613).request_id
    fake_veo.default_scenario = scenario("server_error", times=2)
    (row,) = run_to_the_end(fake_veo, settings, request_id)
    assert row.status == "completed"
    assert [r.status for r in fake_veo.creates()] == [500, 500, 200]


def test_start_without_an_answer_is_failed_and_refunded_not_sent_twice(fake_veo, settings):
    """The create timed out but Veo made the operation: a second create would be a second video."""
    settings.VEO_HTTP_TIMEOUT = timedelta(seconds=1)
    settings.VEO_HTTP_RETRIES = 3
    request_id = admit(user_id=615).request_id
    fake_veo.default_scenario = scenario("stall", seconds=1.6, times=1)  # only the first create is slow
    (row,) = run_to_the_end(fake_veo, settings, request_id)
    assert (row.status, row.error_code, row.counts_toward_quota) == ("failed", "backend_error", False)
    assert "not sent again" in row.error_message
    assert fake_veo.create_count() == 1 and len(fake_veo.operations) == 1


def test_rate_limited_start_stays_pending_then_completes(fake_veo, settings):
    request_id = admit(user_id=614).request_id
    fake_veo.default_scenario = scenario("rate_limited", times=2)
    (row,) = run_to_the_end(fake_veo, settings, request_id)
    assert row.status == "completed" and row.attempts == 3
    assert [r.status for r in fake_veo.creates()] == [429, 429, 200]
    released = VideoRequestEvent.objects.filter(request_id=request_id, kind="released")
    assert released.count() == 2 and "rate limited" in released.first().detail["reason"]
    assert not VideoRequestEvent.objects.filter(request_id=request_id, to_status="failed").exists()


def test_429_storm_respects_the_start_rate_cap(fake_veo, settings):
    settings.VEO_MAX_STARTS_PER_MINUTE = 3
    ids = [admit(user_id=620 + i).request_id for i in range(6)]
    fake_veo.default_scenario = scenario("rate_limited")  # every start refused
    with worker_thread(genai_worker(fake_veo, settings)), worker_thread(genai_worker(fake_veo, settings)):
        wait_for(lambda: len(fake_veo.creates()) >= 3, what="three start attempts")
        wait_for(
            lambda: VideoRequest.objects.filter(id__in=ids, claimed_by__isnull=True).count() == 6,
            what="leases released",
        )
    assert len(fake_veo.creates()) == 3  # the budget, not one more, however often 429 came back
    assert set(VideoRequest.objects.filter(id__in=ids).values_list("status", flat=True)) == {"pending"}


@pytest.mark.parametrize("round_number", range(2))
def test_killed_worker_is_resumed_by_another_with_exactly_one_create(db_settings, tmp_path, round_number):
    clock = FakeClock()
    with FakeVeoServer(clock=clock, default_scenario=scenario("slow", seconds=60)) as fake:
        request_id = services.admit_request(
            interaction_id=next_interaction(),
            user_id=630 + round_number,
            guild_id=None,
            channel_id=None,
            params=services.VideoParameters(prompt="a red fox in snow"),
            source="cli",
        ).request_id
        env = {
            "VEO_BACKEND": "express",
            "VEO_API_KEY": "test-key",
            "VEO_API_BASE_URL": fake.url,
            "VEO_LEASE": "2s",
            "VEO_POLL_INITIAL": "0s",
            "VEO_POLL_MAX": "1s",
            "VEO_WORKER_IDLE_POLL": "0s",
            "VEO_MEDIA_ROOT": str(tmp_path / "media"),
        }
        first = start_worker_process(db_settings, tmp_path / "first.log", **env)
        try:
            wait_for(
                lambda: VideoRequest.objects.get(id=request_id).status == "generating",
                timeout=60,
                what="first worker generating",
            )
            wait_for(lambda: len(fake.polls()) >= 1, what="first worker polling")
        finally:
            os.kill(first.pid, signal.SIGKILL)  # no cleanup, no lease hand-back
            first.wait(10)
        operation = VideoRequest.objects.get(id=request_id).operation_name
        assert VideoRequest.objects.get(id=request_id).claimed_by is not None  # still "held" by the dead worker

        clock.advance(61)  # Veo finishes while nobody is watching
        second = start_worker_process(db_settings, tmp_path / "second.log", **env)
        try:
            wait_for(
                lambda: VideoRequest.objects.get(id=request_id).delivered_at is not None,
                timeout=60,
                what="second worker delivery",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)

        row = VideoRequest.objects.get(id=request_id)
        assert row.status == "completed" and row.operation_name == operation
        assert fake.create_count() == 1
        assert {p.operation_name for p in fake.polls()} == {operation}
        assert row.attempts == 2
        assert VideoRequestEvent.objects.filter(request_id=request_id, to_status="generating").count() == 1


def test_the_configured_client_reads_the_environment_per_request_only_where_it_matters(monkeypatch):
    """Without proxy or netrc settings the backend's own session skips aiohttp's per-request
    lookup of them; with one, the SDK's session (which trusts the environment) is kept."""
    from generation.veo import _quiet_session

    async def session_kind(**environment):
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        session = _quiet_session()
        if session is not None:
            await session.close()
        return "own" if session is not None else "sdk"

    monkeypatch.delenv("NETRC", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")
    assert asyncio.run(session_kind()) == "own"
    assert asyncio.run(session_kind(HTTPS_PROXY="http://proxy.example:3128")) == "sdk"
