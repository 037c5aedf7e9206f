"""The Veo fake, driven by the real google-genai SDK.

Each flow is written once as a coroutine and runs four ways (the ``sdk`` fixture): Vertex
project/location and express (api key) clients, each through ``client.models`` /
``client.operations`` (sync) and ``client.aio`` (async). The assertions double as the
reference for what the SDK sends, returns and raises (see docs/VEO_FAKE.md).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import re
import shutil
import struct
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import aiohttp
import google.oauth2.credentials
import httpx2
import pytest
from google import genai
from google.genai import errors, types

from tests.fakes.veo_server import (
    DEFAULT_RAI_REASON,
    MODEL_CAPABILITIES,
    FakeClock,
    FakeVeoServer,
    ModelCapabilities,
    scenario,
    tiny_mp4,
)
from tests.image_files import jpeg, png, webp_lossy
from tracking.errors import InvalidInput
from tracking.services import VideoParameters, clean_parameters

MODEL = "veo-3.1-generate-001"
OP_ID = r"[0-9a-f-]{36}"
OPERATION_NAME = {
    "vertex": re.compile(rf"^projects/p/locations/us-central1/publishers/google/models/{MODEL}/operations/{OP_ID}$"),
    # Express requests carry no project; the fake names operations like the service does.
    "express": re.compile(
        rf"^projects/veo-fake-express/locations/us-central1/publishers/google/models/{MODEL}/operations/{OP_ID}$"
    ),
}
CREATE_PATH = {
    "vertex": f"/v1beta1/projects/p/locations/us-central1/publishers/google/models/{MODEL}:predictLongRunning",
    "express": f"/v1beta1/publishers/google/models/{MODEL}:predictLongRunning",
}
FAST_RETRY = types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.01, jitter=0)


@pytest.fixture(autouse=True)
def _no_google_environment(monkeypatch):
    """The SDK reads these; a developer's shell must not redirect or re-authenticate tests."""
    for name in (
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_GENAI_USE_ENTERPRISE",
        "GOOGLE_GENAI_API_VERSION",
        "GOOGLE_VERTEX_BASE_URL",
        "GOOGLE_GENAI_HTTP_CLIENT",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def veo(clock):
    with FakeVeoServer(clock=clock) as server:
        yield server


def make_client(mode: str, url: str, **http_options: Any) -> genai.Client:
    options = types.HttpOptions(base_url=url, **http_options)
    if mode == "vertex":
        return genai.Client(
            vertexai=True,
            project="p",
            location="us-central1",
            credentials=google.oauth2.credentials.Credentials(token="test"),
            http_options=options,
        )
    return genai.Client(vertexai=True, api_key="test-key", http_options=options)


class Veo:
    """One face for both SDK flavours, so each flow is written once. The sync client's
    calls just block inside the coroutine, which is fine in a test."""

    def __init__(self, client: genai.Client, flavor: str):
        self.client = client
        self.flavor = flavor

    async def generate(
        self,
        prompt: str,
        model: str = MODEL,
        *,
        image: types.Image | None = None,
        video: types.Video | None = None,
        **config: Any,
    ) -> types.GenerateVideosOperation:
        kwargs = {
            "model": model,
            "source": types.GenerateVideosSource(prompt=prompt, image=image, video=video),
            "config": types.GenerateVideosConfig(**config),
        }
        if self.flavor == "async":
            return await self.client.aio.models.generate_videos(**kwargs)
        return self.client.models.generate_videos(**kwargs)

    async def get(self, operation: types.GenerateVideosOperation) -> types.GenerateVideosOperation:
        if self.flavor == "async":
            return await self.client.aio.operations.get(operation)
        return self.client.operations.get(operation)

    async def resume(self, name: str) -> types.GenerateVideosOperation:
        """What the bot does after a restart: only the stored name is left."""
        return await self.get(types.GenerateVideosOperation(name=name))

    async def wait(self, operation, max_polls: int = 10) -> types.GenerateVideosOperation:
        for _ in range(max_polls):
            operation = await self.get(operation)
            if operation.done:
                return operation
        raise AssertionError(f"{operation.name} not done after {max_polls} polls")

    async def finish(self, prompt: str, **config: Any) -> types.GenerateVideosOperation:
        return await self.wait(await self.generate(prompt, **config))

    async def start(self, prompt: str) -> str:
        """Create and keep only the operation name, as the bot stores it."""
        return (await self.generate(prompt)).name

    async def aclose(self) -> None:
        self.client.close()
        await self.client.aio.aclose()


@dataclass
class Sdk:
    mode: str  # "vertex" or "express"
    flavor: str  # "sync" or "async"
    url: str

    def open(self, url: str | None = None, **http_options: Any) -> Veo:
        return Veo(make_client(self.mode, url or self.url, **http_options), self.flavor)

    def run(self, flow: Callable[[Veo], Awaitable[Any]], url: str | None = None, **http_options: Any) -> Any:
        """Run ``flow`` with a fresh client, closed afterwards (a "bot process")."""

        async def main():
            api = self.open(url, **http_options)
            try:
                return await flow(api)
            finally:
                await api.aclose()

        return asyncio.run(main())


@pytest.fixture(
    params=[("vertex", "sync"), ("vertex", "async"), ("express", "sync"), ("express", "async")],
    ids=lambda p: "-".join(p),
)
def sdk(request, veo):
    mode, flavor = request.param
    return Sdk(mode, flavor, veo.url)


def only_video(operation: types.GenerateVideosOperation) -> types.Video:
    assert operation.done is True and operation.error is None
    [generated] = operation.response.generated_videos
    return generated.video


# --- what the SDK sends -------------------------------------------------------------------


def test_create_maps_every_config_field_and_returns_a_pending_operation(sdk, veo):
    operation = sdk.run(
        lambda api: api.generate(
            "a red fox in snow",
            negative_prompt="blurry",
            duration_seconds=8,
            aspect_ratio="9:16",
            resolution="1080p",
            generate_audio=True,
            seed=42,
            person_generation="allow_adult",
            number_of_videos=2,
            output_gcs_uri="gs://bucket/veo/",
            enhance_prompt=True,
        )
    )

    # Nothing is finished at create time; `done` is None (not False) until the end.
    assert OPERATION_NAME[sdk.mode].match(operation.name)
    assert operation.done is None and operation.response is None and operation.error is None
    [create] = veo.creates()
    assert (create.method, create.path, create.status) == ("POST", CREATE_PATH[sdk.mode], 200)
    assert create.auth == ("bearer" if sdk.mode == "vertex" else "api_key")
    assert "authorization" not in create.headers and "x-goog-api-key" not in create.headers
    assert create.body == {
        "instances": [{"prompt": "a red fox in snow"}],
        "parameters": {
            "sampleCount": 2,
            "storageUri": "gs://bucket/veo/",
            "durationSeconds": 8,
            "seed": 42,
            "aspectRatio": "9:16",
            "resolution": "1080p",
            "personGeneration": "allow_adult",
            "negativePrompt": "blurry",
            "enhancePrompt": True,
            "generateAudio": True,
        },
    }


def test_unset_config_fields_are_not_sent(sdk, veo):
    sdk.run(lambda api: api.generate("a cat"))

    assert veo.creates()[0].body == {"instances": [{"prompt": "a cat"}]}


def test_poll_posts_the_operation_name_to_its_model(sdk, veo):
    async def flow(api):
        return await api.get(await api.generate("a cat"))

    operation = sdk.run(flow)

    [poll] = veo.polls()
    resource = operation.name.rpartition("/operations/")[0]
    assert (poll.method, poll.path) == ("POST", f"/v1beta1/{resource}:fetchPredictOperation")
    assert poll.body == {"operationName": operation.name}


# --- how operations finish ----------------------------------------------------------------


def test_instant_without_storage_uri_returns_inline_bytes(sdk, veo):
    async def flow(api):
        return await api.get(await api.generate("a cat [scenario:instant]"))

    operation = sdk.run(flow)

    video = only_video(operation)
    assert video.uri is None and video.mime_type == "video/mp4"
    assert video.video_bytes == veo.operation(operation.name).videos[0]
    assert video.video_bytes[4:8] == b"ftyp"
    assert operation.result == operation.response  # the SDK fills both
    assert operation.response.rai_media_filtered_count is None


def test_storage_uri_returns_gcs_uris_and_the_fake_keeps_the_objects(sdk, veo):
    async def flow(api):
        return await api.get(await api.generate("a cat", output_gcs_uri="gs://bucket/veo", number_of_videos=2))

    operation = sdk.run(flow)

    op_id = operation.name.rpartition("/")[2]
    videos = [g.video for g in operation.response.generated_videos]
    assert [v.uri for v in videos] == [f"gs://bucket/veo/{op_id}/sample_{i}.mp4" for i in range(2)]
    assert all(v.video_bytes is None and v.mime_type == "video/mp4" for v in videos)
    stored = [veo.gcs_object(v.uri) for v in videos]
    assert stored == veo.operation(operation.name).videos and stored[0] != stored[1]


def test_delivery_can_be_forced(sdk, veo):
    async def flow(api):
        inline = await api.finish("[scenario:inline_bytes]", output_gcs_uri="gs://bucket/x/")
        gcs = await api.finish("[scenario:gcs]")
        return inline, gcs

    inline, gcs = sdk.run(flow)

    assert only_video(inline).video_bytes and only_video(inline).uri is None
    assert only_video(gcs).uri.startswith("gs://veo-fake-output/")


def test_test_supplied_video_bytes_come_back_byte_for_byte(sdk, veo):
    payload = bytes(range(256)) * 40  # base64 with '+' and '/': catches urlsafe mix-ups
    veo.queue(dataclasses.replace(scenario("instant"), video_bytes=payload))

    operation = sdk.run(lambda api: api.finish("a cat"))

    assert only_video(operation).video_bytes == payload


def test_multi_poll_finishes_on_the_nth_poll(sdk, veo):
    async def flow(api):
        operation = await api.generate("a cat [scenario:multi_poll polls=3]")
        states = []
        for _ in range(3):
            operation = await api.get(operation)
            states.append(operation.done)
        return operation, states

    operation, states = sdk.run(flow)

    assert states == [None, None, True]
    assert only_video(operation).video_bytes
    assert len(veo.polls(operation.name)) == 3


def test_slow_finishes_when_the_fake_clock_says_so(sdk, veo, clock):
    async def flow(api):
        operation = await api.generate("a cat [scenario:slow seconds=120]")
        first = await api.get(operation)
        clock.advance(119)
        second = await api.get(operation)
        clock.advance(1)
        return first.done, second.done, await api.get(operation)

    first, second, operation = sdk.run(flow)

    assert (first, second, operation.done) == (None, None, True)


def test_hang_never_finishes(sdk, veo, clock):
    async def flow(api):
        operation = await api.generate("a cat [scenario:hang]")
        for _ in range(5):
            clock.advance(3600)
            operation = await api.get(operation)
            assert operation.done is None
        return operation

    sdk.run(flow)


def test_error_operation_finishes_with_an_error_dict_and_raises_nothing(sdk, veo):
    veo.queue(scenario("error_operation", code=3, message="The prompt could not be processed."))

    operation = sdk.run(lambda api: api.finish("a cat"))

    assert operation.done is True
    assert operation.error == {"code": 3, "message": "The prompt could not be processed."}
    assert operation.response is None and operation.result is None


def test_safety_filtered_finishes_without_videos(sdk, veo):
    operation = sdk.run(lambda api: api.finish("a cat [scenario:safety_filtered]"))

    assert operation.done is True and operation.error is None
    assert operation.response.generated_videos is None
    assert operation.response.rai_media_filtered_count == 1
    assert operation.response.rai_media_filtered_reasons == [DEFAULT_RAI_REASON]


def test_safety_filter_can_drop_some_samples(sdk, veo):
    operation = sdk.run(lambda api: api.finish("a cat [scenario:safety_filtered count=1]", number_of_videos=2))

    assert len(operation.response.generated_videos) == 1
    assert operation.response.rai_media_filtered_count == 1


# --- what the SDK raises ------------------------------------------------------------------


def test_rate_limited_create_raises_client_error_429_then_succeeds(sdk, veo):
    prompt = "a cat [scenario:rate_limited times=2]"

    async def flow(api):
        for _ in range(2):
            with pytest.raises(errors.ClientError) as raised:
                await api.generate(prompt)
            error = raised.value
            assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
            assert error.message == "Resource exhausted. Please try again later."
            assert error.details == {"error": {"code": 429, "message": error.message, "status": "RESOURCE_EXHAUSTED"}}
        return await api.generate(prompt)

    operation = sdk.run(flow)

    assert operation.name
    assert [c.status for c in veo.creates(prompt)] == [429, 429, 200]
    assert veo.create_count(prompt) == 3 and len(veo.operations) == 1


def test_sdk_retry_options_absorb_429s(sdk, veo):
    prompt = "a cat [scenario:rate_limited times=2]"

    operation = sdk.run(lambda api: api.generate(prompt), retry_options=FAST_RETRY)

    assert operation.name and veo.create_count(prompt) == 3


def test_sdk_retry_gives_up_with_the_last_error(sdk, veo):
    async def flow(api):
        with pytest.raises(errors.ClientError) as raised:
            await api.generate(
                "a cat [scenario:rate_limited]",
                http_options=types.HttpOptions(retry_options=FAST_RETRY),  # per call
            )
        return raised.value.code

    assert sdk.run(flow) == 429
    assert veo.create_count() == 3


def test_server_error_on_create_raises_server_error_500(sdk, veo):
    prompt = "a cat [scenario:server_error times=1]"

    async def flow(api):
        with pytest.raises(errors.ServerError) as raised:
            await api.generate(prompt)
        assert (raised.value.code, raised.value.status) == (500, "INTERNAL")
        assert isinstance(raised.value, errors.APIError)
        return await api.generate(prompt)

    assert sdk.run(flow).name
    assert [c.status for c in veo.creates(prompt)] == [500, 200]


def test_server_error_on_poll_then_recovers(sdk, veo):
    async def flow(api):
        operation = await api.generate("a cat [scenario:server_error on=poll times=1]")
        with pytest.raises(errors.ServerError) as raised:
            await api.get(operation)
        assert raised.value.code == 500
        return await api.get(operation)

    assert only_video(sdk.run(flow)).video_bytes
    assert [p.status for p in veo.polls()] == [500, 200]


def test_lost_operation_polls_raise_client_error_404(sdk, veo):
    async def flow(api):
        operation = await api.generate("a cat [scenario:lost]")
        with pytest.raises(errors.ClientError) as raised:
            await api.get(operation)
        return raised.value

    error = sdk.run(flow)

    assert (error.code, error.status) == (404, "NOT_FOUND")


def test_timeouts_raise_transport_errors_not_api_errors(sdk, veo):
    prompt = "a cat [scenario:stall seconds=2]"
    expected = httpx2.TimeoutException if sdk.flavor == "sync" else TimeoutError

    async def flow(api):
        with pytest.raises(expected):
            await api.generate(prompt)

    sdk.run(flow, timeout=300)  # HttpOptions.timeout is in milliseconds

    [create] = veo.creates(prompt)
    assert create.headers["x-server-timeout"] == "1"  # ceil(seconds), added by the SDK
    assert create.status == 200  # the operation exists although the client gave up


def test_retry_options_retry_sync_timeouts_but_not_async_ones(sdk, veo):
    """A create that timed out may still have started a (billed) video: retrying it
    duplicates the work. The sync (httpx2) path retries timeouts, the aiohttp one does not."""
    prompt = "a cat [scenario:stall seconds=1]"

    async def flow(api):
        with pytest.raises((httpx2.TimeoutException, TimeoutError)):
            await api.generate(prompt)

    sdk.run(flow, timeout=200, retry_options=FAST_RETRY)

    expected = 3 if sdk.flavor == "sync" else 1
    assert veo.create_count(prompt) == expected and len(veo.operations) == expected


def test_stall_times_stalls_only_the_first_calls(sdk, veo):
    prompt = "a cat [scenario:stall seconds=1 times=1]"

    async def flow(api):
        with pytest.raises((httpx2.TimeoutException, TimeoutError)):
            await api.generate(prompt)
        await api.generate(prompt)  # the second create answers at once

    sdk.run(flow, timeout=200)
    assert [c.status for c in veo.creates(prompt)] == [200, 200] and len(veo.operations) == 2


def test_connection_refused_raises_transport_errors(sdk, veo):
    veo.stop()
    expected = httpx2.ConnectError if sdk.flavor == "sync" else aiohttp.ClientConnectorError

    async def flow(api):
        with pytest.raises(expected):
            await api.generate("a cat")

    # Without retry_options the async client sleeps 1-10 s and retries once on its own.
    sdk.run(flow, url=f"http://127.0.0.1:{veo.port}", retry_options=types.HttpRetryOptions(attempts=1))


# --- resuming after restarts --------------------------------------------------------------


def test_resume_by_name_from_a_new_client(sdk, veo):
    async def first_process(api):
        operation = await api.get(await api.generate("a cat [scenario:multi_poll polls=2]"))
        assert operation.done is None
        return operation.name

    name = sdk.run(first_process)
    operation = sdk.run(lambda api: api.resume(name))

    assert operation.name == name and only_video(operation).video_bytes


def test_resume_after_the_fake_restarts(sdk, veo):
    name = sdk.run(lambda api: api.start("a cat [scenario:multi_poll polls=2]"))

    veo.restart()  # same port and state
    assert sdk.run(lambda api: api.resume(name)).done is None

    veo.stop()
    with FakeVeoServer(state=veo.state) as moved:  # a new instance on a new port
        assert only_video(sdk.run(lambda api: api.resume(name), url=moved.url))


def test_a_client_survives_a_fake_restart(sdk, veo):
    async def flow(api):
        operation = await api.generate("a cat [scenario:multi_poll polls=2]")
        veo.restart()  # drops the client's kept-alive connection
        return await api.wait(operation)

    assert only_video(sdk.run(flow))


def test_forgotten_operations_raise_404_on_resume(sdk, veo):
    name = sdk.run(lambda api: api.start("a cat"))
    veo.forget_operations()

    async def flow(api):
        with pytest.raises(errors.ClientError) as raised:
            await api.resume(name)
        return raised.value.code

    assert sdk.run(flow) == 404


# --- concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["vertex", "express"])
def test_many_concurrent_async_polls(veo, mode, caplog):
    veo.default_scenario = scenario("multi_poll", polls=3)

    async def main():
        api = Veo(make_client(mode, veo.url), "async")
        try:
            return await asyncio.gather(*(api.finish(f"cat {i}") for i in range(100)))
        finally:
            await api.aclose()

    with caplog.at_level("INFO", logger="google_genai._api_client"):
        operations = asyncio.run(main())

    assert len({op.name for op in operations}) == 100
    assert all(only_video(op).video_bytes for op in operations)
    assert len(veo.polls()) == 100 * 3 and len(veo.operations) == 100
    # A refused connection would make the SDK sleep 1-10 s and retry without telling us.
    assert "Retrying due to aiohttp error" not in caplog.text


def test_many_threads_share_one_sync_client(veo):
    veo.default_scenario = scenario("multi_poll", polls=2)
    api = Veo(make_client("vertex", veo.url), "sync")

    with ThreadPoolExecutor(max_workers=16) as pool:
        operations = list(pool.map(lambda i: asyncio.run(api.finish(f"cat {i}")), range(32)))

    api.client.close()
    assert all(only_video(op).video_bytes for op in operations)
    assert len({op.name for op in operations}) == 32 and len(veo.polls()) == 64


# --- the fake's own API -------------------------------------------------------------------


def test_scenario_precedence_marker_then_prompt_rule_then_queue_then_default(veo):
    veo.default_scenario = "hang"
    veo.on_prompt("fox", scenario("safety_filtered"))
    veo.queue("multi_poll", scenario("rate_limited", times=1))
    client = make_client("vertex", veo.url)

    def create(prompt):
        return client.models.generate_videos(model=MODEL, source=types.GenerateVideosSource(prompt=prompt))

    def scenario_of(operation):
        return veo.operation(operation.name).scenario.name

    assert scenario_of(create("a fox [scenario:lost]")) == "lost"  # marker beats the rule
    assert scenario_of(create("a fox")) == "safety_filtered"  # rule beats the queue
    assert scenario_of(create("a cat")) == "multi_poll"  # queue head, used up
    with pytest.raises(errors.ClientError):
        create("a dog")  # the queued rate_limited refuses once ...
    assert scenario_of(create("a dog")) == "rate_limited"  # ... and is used up by the success
    assert scenario_of(create("a cow")) == "hang"  # queue empty: the default
    client.close()


def test_a_bad_marker_is_a_400(veo):
    client = make_client("express", veo.url)

    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_videos(model=MODEL, source=types.GenerateVideosSource(prompt="[scenario:nope]"))

    assert (raised.value.code, raised.value.status) == (400, "INVALID_ARGUMENT")
    assert "bad scenario marker" in raised.value.message
    client.close()


def _raw(veo, path, body=None, headers=None):
    request = urllib.request.Request(
        veo.url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_unknown_routes_and_missing_credentials_get_google_error_bodies(veo):
    status, body = _raw(veo, "/v1beta1/models/x:generateContent", {})
    assert status == 404 and json.loads(body)["error"]["status"] == "NOT_FOUND"

    status, body = _raw(veo, CREATE_PATH["express"], {"instances": [{"prompt": "x"}]})
    assert status == 401 and json.loads(body)["error"] == {
        "code": 401,
        "message": "Request is missing required authentication credential.",
        "status": "UNAUTHENTICATED",
    }


def _error(body: bytes) -> dict:
    return json.loads(body)["error"]


def _denied(resource: str) -> dict:
    return {
        "code": 403,
        "message": f"Permission 'aiplatform.endpoints.predict' denied on resource "
        f"'//aiplatform.googleapis.com/{resource}' (or it may not exist).",
        "status": "PERMISSION_DENIED",
    }


@pytest.mark.parametrize("mode", ["vertex", "express"])
def test_a_wrong_credential_is_refused_with_403_permission_denied(veo, mode):
    options = types.HttpOptions(base_url=veo.url)
    if mode == "vertex":
        client = genai.Client(
            vertexai=True,
            project="p",
            location="us-central1",
            http_options=options,
            credentials=google.oauth2.credentials.Credentials(token="someone-elses-token"),
        )
    else:
        client = genai.Client(vertexai=True, api_key="someone-elses-key", http_options=options)

    with pytest.raises(errors.ClientError) as raised:
        client.models.generate_videos(model=MODEL, source=types.GenerateVideosSource(prompt="a cat"))
    client.close()

    resource = CREATE_PATH[mode].removeprefix("/v1beta1/").removesuffix(":predictLongRunning")
    assert (raised.value.code, raised.value.status) == (403, "PERMISSION_DENIED")
    assert raised.value.details == {"error": _denied(resource)}
    assert veo.operations == {} and veo.creates()[0].auth == ("bearer" if mode == "vertex" else "api_key")


def test_the_api_key_is_accepted_as_header_or_key_parameter_and_kept_out_of_the_record(veo):
    body = {"instances": [{"prompt": "a cat"}]}

    by_header = _raw(veo, CREATE_PATH["express"], body, headers={"x-goog-api-key": "test-key"})
    by_query = _raw(veo, CREATE_PATH["express"] + "?key=test-key", body)
    wrong = _raw(veo, CREATE_PATH["express"] + "?key=nope", body)

    assert (by_header[0], by_query[0]) == (200, 200) and len(veo.operations) == 2
    resource = CREATE_PATH["express"].removeprefix("/v1beta1/").removesuffix(":predictLongRunning")
    assert wrong[0] == 403 and _error(wrong[1]) == _denied(resource)
    assert [r.auth for r in veo.creates()] == ["api_key"] * 3
    assert all("key" not in r.query for r in veo.creates())


def test_the_accepted_credentials_are_configurable(clock):
    with FakeVeoServer(clock=clock, api_keys=["key-2"], bearer_tokens=["token-2"]) as veo:
        body = {"instances": [{"prompt": "a cat"}]}
        statuses = [
            _raw(veo, CREATE_PATH["express"], body, headers={"x-goog-api-key": key})[0] for key in ("key-2", "test-key")
        ] + [
            _raw(veo, CREATE_PATH["vertex"], body, headers={"Authorization": f"Bearer {token}"})[0]
            for token in ("token-2", "test", "fake-access-token")  # the last one: issued by the fake's /token
        ]

    assert statuses == [200, 403, 200, 403, 200]


def test_cloud_storage_needs_an_accepted_bearer_token(veo):
    api = Veo(make_client("vertex", veo.url), "sync")
    uri = only_video(asyncio.run(api.finish("a cat [scenario:gcs]"))).uri
    api.client.close()
    bucket, _, obj = uri.removeprefix("gs://").partition("/")
    path = f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(obj, safe='')}?alt=media"

    key_only = _raw(veo, path, headers={"x-goog-api-key": "test-key"})
    wrong = _raw(veo, path, headers={"Authorization": "Bearer nope"})
    issued = _raw(veo, path, headers={"Authorization": "Bearer fake-access-token"})

    assert key_only[0] == 401 and _error(key_only[1]) == {
        "code": 401,
        "message": "Request is missing required authentication credential.",
        "status": "UNAUTHENTICATED",
    }
    assert wrong[0] == 403 and _error(wrong[1]) == {
        "code": 403,
        "message": f"The caller does not have storage.objects.get access to the Google Cloud Storage object {uri}."
        " Permission 'storage.objects.get' denied on resource (or it may not exist).",
        "status": "PERMISSION_DENIED",
    }
    assert issued == (200, veo.gcs_object(uri))


# Each documented parameter: a value the model accepts, and one it refuses with this message.
PARAMETER_CASES = [
    (
        "durationSeconds",
        6,
        5,
        f"Unsupported output video duration 5 seconds for model {MODEL}; supported durations are [4, 6, 8].",
    ),
    (
        "durationSeconds",
        4,
        "8",
        f"Unsupported output video duration 8 seconds for model {MODEL}; supported durations are [4, 6, 8].",
    ),
    (
        "aspectRatio",
        "9:16",
        "1:1",
        f"Unsupported aspectRatio \"1:1\" for model {MODEL}; supported values are ['16:9', '9:16'].",
    ),
    (
        "resolution",
        "1080p",
        "4k",
        f"Unsupported resolution \"4k\" for model {MODEL}; supported values are ['720p', '1080p'].",
    ),
    (
        "personGeneration",
        "allow_all",
        "ALLOW_ADULT",
        f'Unsupported personGeneration "ALLOW_ADULT" for model {MODEL}; supported values are'
        " ['allow_adult', 'dont_allow', 'allow_all'].",
    ),
    ("sampleCount", 4, 5, f"sampleCount must be between 1 and 4 for model {MODEL}, got 5."),
    ("sampleCount", 1, 0, f"sampleCount must be between 1 and 4 for model {MODEL}, got 0."),
    ("seed", 4294967295, 4294967296, "seed must be an integer between 0 and 4294967295, got 4294967296."),
    ("seed", 0, -1, "seed must be an integer between 0 and 4294967295, got -1."),
    ("negativePrompt", "blurry", ["blurry"], 'negativePrompt must be a string, got ["blurry"].'),
]


def _create_with(veo, parameters: dict, model: str = MODEL) -> tuple[int, bytes]:
    path = CREATE_PATH["vertex"].replace(MODEL, model)
    return _raw(
        veo,
        path,
        {"instances": [{"prompt": "a cat"}], "parameters": parameters},
        headers={"Authorization": "Bearer test"},
    )


@pytest.mark.parametrize(
    ("name", "accepted", "refused", "message"),
    PARAMETER_CASES,
    ids=[f"{case[0]}={case[2]!r}" for case in PARAMETER_CASES],
)
def test_parameter_values_outside_the_documented_sets_are_400_invalid_argument(veo, name, accepted, refused, message):
    ok_status, _ = _create_with(veo, {name: accepted})
    status, body = _create_with(veo, {name: refused})

    assert ok_status == 200 and len(veo.operations) == 1
    assert status == 400 and _error(body) == {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}
    assert [c.status for c in veo.creates()] == [200, 400]


def test_a_model_where_1080p_needs_8_seconds_refuses_it_at_4(veo):
    veo.models["veo-strict"] = ModelCapabilities(resolutions={"720p": (4, 6, 8), "1080p": (8,)})

    statuses = [
        _create_with(veo, {"resolution": "1080p", "durationSeconds": seconds}, model="veo-strict") for seconds in (8, 4)
    ] + [_create_with(veo, {"resolution": "1080p"}, model="veo-strict")]

    assert [status for status, _ in statuses] == [200, 400, 200]  # left out, the duration is 8 s
    assert (
        _error(statuses[1][1])["message"] == "Resolution 1080p is only supported with durations [8] for model"
        " veo-strict."
    )


@pytest.mark.parametrize("model", sorted(MODEL_CAPABILITIES))
def test_what_the_bot_admits_for_a_model_is_what_veo_accepts_and_no_more(veo, model, settings):
    settings.VEO_MODELS = (model,)  # offered
    # The bot's check before admission (clean_parameters) and the fake read the same table
    # (tracking.capabilities): every combination one lets through, the other accepts.
    agreed = []
    for seconds, resolution, ratio in itertools.product((4, 5, 6, 8), ("720p", "1080p"), ("16:9", "9:16", "1:1")):
        wanted = VideoParameters(
            prompt="a red fox", duration_seconds=seconds, resolution=resolution, aspect_ratio=ratio, model=model
        )
        try:
            clean_parameters(wanted)
            admitted = True
        except InvalidInput:
            admitted = False
        parameters = {
            "sampleCount": 1,
            "durationSeconds": seconds,
            "aspectRatio": ratio,
            "resolution": resolution,
            "personGeneration": "allow_adult",
            "generateAudio": True,
            "seed": 7,
            "negativePrompt": "blur",
        }
        status = _create_with(veo, parameters, model=model)[0]
        agreed.append((seconds, resolution, ratio, admitted, status == 200))
    assert [case for case in agreed if case[3] != case[4]] == []
    assert any(case[3] for case in agreed) and not all(case[3] for case in agreed)


def test_an_unknown_model_is_404_not_found_through_the_sdk(sdk, veo):
    async def flow(api):
        with pytest.raises(errors.ClientError) as raised:
            await api.generate("a cat", model="veo-9-generate")
        return raised.value

    error = sdk.run(flow)

    resource = CREATE_PATH[sdk.mode].replace(MODEL, "veo-9-generate")
    resource = resource.removeprefix("/v1beta1/").removesuffix(":predictLongRunning")
    assert (error.code, error.status) == (404, "NOT_FOUND")
    assert error.message == (
        f"Publisher Model `{resource}` was not found or your project does not have access to"
        " it. Please ensure you are using a valid model version."
    )
    assert veo.operations == {}


def test_an_invalid_parameter_raises_client_error_400_through_the_sdk(sdk, veo):
    async def flow(api):
        with pytest.raises(errors.ClientError) as raised:
            await api.generate("a cat", duration_seconds=5)
        return raised.value

    error = sdk.run(flow)

    assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
    assert error.message.startswith("Unsupported output video duration 5 seconds")


def test_gcs_objects_can_be_downloaded_over_the_json_api(veo):
    client = make_client("vertex", veo.url)
    operation = client.models.generate_videos(
        model=MODEL,
        source=types.GenerateVideosSource(prompt="a cat"),
        config=types.GenerateVideosConfig(output_gcs_uri="gs://bucket/out/"),
    )
    uri = only_video(client.operations.get(operation)).uri
    client.close()
    bucket, _, obj = uri.removeprefix("gs://").partition("/")

    status, data = _raw(
        veo,
        f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(obj, safe='')}?alt=media",
        headers={"Authorization": "Bearer test"},
    )

    assert status == 200 and data == veo.gcs_object(uri)
    assert veo.requests[-1].kind == "download"


# --- media inputs: a first frame, a last frame, a video to extend -----------------------------

FIRST_FRAME = png(16, 9)
LAST_FRAME = jpeg(16, 9)
PNG_FRAME = types.Image(image_bytes=FIRST_FRAME, mime_type="image/png")
JPEG_FRAME = types.Image(image_bytes=LAST_FRAME, mime_type="image/jpeg")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _create_instance(veo, instance: dict, model: str = MODEL) -> tuple[int, bytes]:
    path = CREATE_PATH["vertex"].replace(MODEL, model)
    # An extension is asked at the one length and resolution extensions are made at.
    parameters = {"durationSeconds": 8, "resolution": "720p"} if "video" in instance else {}
    body = {"instances": [instance], "parameters": parameters}
    return _raw(veo, path, body, headers={"Authorization": "Bearer test"})


def test_a_first_frame_is_sent_inline_and_recorded_decoded(sdk, veo):
    operation = sdk.run(lambda api: api.finish("a fox wakes up", image=PNG_FRAME))

    [create] = veo.creates()
    assert create.status == 200
    assert create.instance == {
        "prompt": "a fox wakes up",
        "image": {"bytesBase64Encoded": _b64(FIRST_FRAME), "mimeType": "image/png"},
    }
    assert create.image_bytes == FIRST_FRAME and create.inputs.image.mime_type == "image/png"
    assert create.inputs.image.gcs_uri is None
    assert (create.last_frame_bytes, create.video_bytes, create.video_uri) == (None, None, None)
    assert veo.operation(operation.name).inputs == create.inputs
    assert only_video(operation).video_bytes


def test_a_last_frame_from_the_config_joins_the_first_in_the_one_instance(sdk, veo):
    sdk.run(lambda api: api.generate("a fox runs", image=PNG_FRAME, last_frame=JPEG_FRAME))

    [create] = veo.creates()
    assert create.body == {
        "instances": [
            {
                "prompt": "a fox runs",
                "image": {"bytesBase64Encoded": _b64(FIRST_FRAME), "mimeType": "image/png"},
                "lastFrame": {"bytesBase64Encoded": _b64(LAST_FRAME), "mimeType": "image/jpeg"},
            }
        ]
    }
    assert (create.image_bytes, create.last_frame_bytes) == (FIRST_FRAME, LAST_FRAME)


def test_a_first_frame_can_be_named_by_its_gcs_uri(sdk, veo):
    veo.put_gcs_object("gs://inputs/fox.png", FIRST_FRAME)

    sdk.run(lambda api: api.generate("a fox", image=types.Image(gcs_uri="gs://inputs/fox.png", mime_type="image/png")))

    [create] = veo.creates()
    assert create.instance["image"] == {"gcsUri": "gs://inputs/fox.png", "mimeType": "image/png"}
    assert create.image_bytes == FIRST_FRAME and create.inputs.image.gcs_uri == "gs://inputs/fox.png"


def test_a_video_veo_made_is_extended_from_its_gcs_uri(sdk, veo):
    async def flow(api):
        made = only_video(await api.finish("a fox", output_gcs_uri="gs://bucket/out/"))
        video = types.Video(uri=made.uri, mime_type="video/mp4")
        extended = await api.finish(
            "the fox runs on", video=video, output_gcs_uri="gs://bucket/out/", duration_seconds=8
        )
        return made, only_video(extended)

    made, extended = sdk.run(flow)

    create = veo.creates()[1]
    assert create.instance == {"prompt": "the fox runs on", "video": {"gcsUri": made.uri, "mimeType": "video/mp4"}}
    assert create.video_uri == made.uri and create.video_bytes == veo.gcs_object(made.uri)
    assert create.image_bytes is None
    assert f"extends {made.uri}".encode() in veo.gcs_object(extended.uri)
    assert b"extends" not in veo.gcs_object(made.uri)


def test_a_video_can_be_sent_inline(sdk, veo):
    clip = tiny_mp4("the clip to extend")

    clip_input = types.Video(video_bytes=clip, mime_type="video/mp4")
    operation = sdk.run(lambda api: api.finish("on and on", video=clip_input, duration_seconds=8))

    [create] = veo.creates()
    assert create.instance["video"] == {"bytesBase64Encoded": _b64(clip), "mimeType": "video/mp4"}
    assert create.video_bytes == clip and create.video_uri is None
    assert b"extends an inline video" in only_video(operation).video_bytes


# Models that take less than any in the table, so these cases hold whatever the table says.
TEXT_ONLY = ModelCapabilities(image_input=False)
FIRST_FRAME_ONLY = ModelCapabilities(image_input=True, last_frame=False, extension=False)
UNSUPPORTED = 'Unsupported {name} mimeType "{type}" for model {model}; supported values are {accepted}.'
MEDIA_REFUSALS = [
    ("veo-text-only", {"image": PNG_FRAME}, "Image input is not supported for model veo-text-only."),
    (
        "veo-first-frame-only",
        {"image": PNG_FRAME, "last_frame": JPEG_FRAME},
        "lastFrame is not supported for model veo-first-frame-only.",
    ),
    (MODEL, {"last_frame": JPEG_FRAME}, "lastFrame needs image: a last frame is given with a first frame."),
    (
        "veo-first-frame-only",
        {"video": types.Video(uri="gs://bucket/made.mp4", mime_type="video/mp4")},
        "Video extension is not supported for model veo-first-frame-only.",
    ),
    (
        MODEL,
        {"image": types.Image(image_bytes=webp_lossy(16, 9), mime_type="image/webp")},
        UNSUPPORTED.format(name="image", type="image/webp", model=MODEL, accepted=["image/jpeg", "image/png"]),
    ),
    (
        MODEL,
        {"image": PNG_FRAME, "last_frame": types.Image(image_bytes=b"GIF89a", mime_type="image/gif")},
        UNSUPPORTED.format(name="lastFrame", type="image/gif", model=MODEL, accepted=["image/jpeg", "image/png"]),
    ),
    (
        MODEL,
        {"video": types.Video(video_bytes=tiny_mp4(), mime_type="video/webm")},
        UNSUPPORTED.format(name="video", type="video/webm", model=MODEL, accepted=["video/mp4"]),
    ),
    (
        MODEL,
        {"video": types.Video(uri="gs://bucket/made.mp4", mime_type="video/mp4"), "image": PNG_FRAME},
        "video and image cannot both be given: an extension continues a video.",
    ),
    (
        MODEL,
        {"video": types.Video(uri="gs://bucket/made.mp4", mime_type="video/mp4"), "resolution": "1080p"},
        f"Video extension for model {MODEL} needs resolution 720p and durationSeconds 8 (got 1080p, None).",
    ),
    (MODEL, {"image": types.Image(image_bytes=FIRST_FRAME)}, "image.mimeType is required."),
    (
        MODEL,
        {"image": types.Image(image_bytes=FIRST_FRAME, gcs_uri="gs://inputs/fox.png", mime_type="image/png")},
        "image must have exactly one of bytesBase64Encoded and gcsUri.",
    ),
    (
        MODEL,
        {"image": types.Image(gcs_uri="gs://inputs/missing.png", mime_type="image/png")},
        'image.gcsUri "gs://inputs/missing.png" cannot be read: no such object.',
    ),
]


@pytest.mark.parametrize(("model", "media", "message"), MEDIA_REFUSALS, ids=[case[2] for case in MEDIA_REFUSALS])
def test_media_a_model_cannot_take_is_a_400_through_the_sdk(veo, model, media, message):
    veo.models.update({"veo-text-only": TEXT_ONLY, "veo-first-frame-only": FIRST_FRAME_ONLY})
    veo.put_gcs_object("gs://inputs/fox.png", FIRST_FRAME)
    veo.put_gcs_object("gs://bucket/made.mp4", tiny_mp4("made"))
    api = Veo(make_client("vertex", veo.url), "sync")

    with pytest.raises(errors.ClientError) as raised:
        asyncio.run(api.generate("a fox", model=model, **media))
    api.client.close()

    assert (raised.value.code, raised.value.status, raised.value.message) == (400, "INVALID_ARGUMENT", message)
    assert raised.value.details == {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
    [create] = veo.creates()
    assert create.status == 400 and create.inputs.image is None and veo.operations == {}


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [(_b64(b"\xfb\xff\xfe"), b"\xfb\xff\xfe"), ("-__-", b"\xfb\xff\xfe"), ("-_8", b"\xfb\xff")],
    ids=["standard", "url-safe", "url-safe unpadded"],
)
def test_base64_is_read_as_protobuf_json_reads_bytes(veo, encoded, decoded):
    status, _ = _create_instance(
        veo, {"prompt": "a fox", "image": {"bytesBase64Encoded": encoded, "mimeType": "image/png"}}
    )

    assert status == 200 and veo.creates()[0].image_bytes == decoded


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"bytesBase64Encoded": "not base64!", "mimeType": "image/png"},
            "image.bytesBase64Encoded is not valid base64.",
        ),
        ({"bytesBase64Encoded": "QUJDR", "mimeType": "image/png"}, "image.bytesBase64Encoded is not valid base64."),
        ({"bytesBase64Encoded": 12, "mimeType": "image/png"}, "image.bytesBase64Encoded is not valid base64."),
        ({"bytesBase64Encoded": "", "mimeType": "image/png"}, "image.bytesBase64Encoded is empty."),
        (
            {"gcsUri": ["gs://inputs/fox.png"], "mimeType": "image/png"},
            'image.gcsUri ["gs://inputs/fox.png"] cannot be read: no such object.',
        ),
        ("gs://inputs/fox.png", 'image must be an object, got "gs://inputs/fox.png".'),
    ],
)
def test_media_that_cannot_be_read_is_a_400(veo, value, message):
    status, body = _create_instance(veo, {"prompt": "a fox", "image": value})

    assert status == 400 and _error(body) == {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}
    assert veo.operations == {}


@pytest.mark.parametrize("model", sorted(MODEL_CAPABILITIES))
def test_the_media_each_model_takes_is_what_the_capabilities_table_says(veo, model):
    can = MODEL_CAPABILITIES[model]
    veo.put_gcs_object("gs://bucket/made.mp4", tiny_mp4("made"))
    first = {"bytesBase64Encoded": _b64(FIRST_FRAME), "mimeType": "image/png"}
    last = {"bytesBase64Encoded": _b64(LAST_FRAME), "mimeType": "image/jpeg"}
    cases = {
        "first frame": ({"image": first}, can.image_input),
        "first and last frames": ({"image": first, "lastFrame": last}, can.image_input and can.last_frame),
        "video": ({"video": {"gcsUri": "gs://bucket/made.mp4", "mimeType": "video/mp4"}}, can.extension),
    } | {
        kind: ({"image": first | {"mimeType": kind}}, can.image_input and kind in can.image_types)
        for kind in ("image/png", "image/jpeg", "image/webp", "image/gif")
    }

    statuses = {
        name: _create_instance(veo, {"prompt": "a fox", **media}, model)[0] for name, (media, _) in cases.items()
    }

    assert statuses == {name: 200 if accepted else 400 for name, (_, accepted) in cases.items()}


def test_tiny_mp4_is_a_well_formed_iso_bmff_file(tmp_path):
    data = tiny_mp4("label")
    offset, kinds = 0, []
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        kinds.append(kind)
        offset += size
    assert offset == len(data) and kinds == [b"ftyp", b"moov", b"free"]
    assert tiny_mp4("a") != tiny_mp4("b")
    assert base64.b64decode(base64.b64encode(data)) == data

    if shutil.which("ffprobe"):
        path = tmp_path / "tiny.mp4"
        path.write_bytes(data)
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_format", str(path)], capture_output=True, text=True)
        assert probe.returncode == 0 and "format_name=mov,mp4" in probe.stdout
