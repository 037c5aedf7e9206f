"""Google Veo through the google-genai SDK, plus an offline backend with a bundled sample.

A backend does two things: ``start`` a generation (returning the operation name, which
the worker stores before anything else) and ``poll`` an operation by name — so polling
resumes after a restart without ever submitting twice. Everything Veo can answer maps to
an ``Outcome`` or to one of the ``VeoError`` subclasses below; the worker decides what
each means for the request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.request
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

import aiohttp
import httpx2
from django.conf import settings
from google import genai
from google.auth.transport import mtls
from google.genai import errors as genai_errors
from google.genai import types

from generation import labels, metrics, storage
from tracking import media

log = logging.getLogger(__name__)

SAMPLE_VIDEO = Path(__file__).resolve().parent / "assets" / "sample.mp4"


@dataclass(frozen=True)
class VideoJob:
    """What Veo needs to know about one request."""

    request_id: int
    prompt: str
    negative_prompt: str | None
    duration_seconds: int
    aspect_ratio: str
    resolution: str
    generate_audio: bool
    seed: int | None
    person_generation: str
    model: str | None = None  # the model it was recorded with
    image_uri: str | None = None  # first frame (generation.storage URIs)
    last_frame_uri: str | None = None
    video_input_uri: str | None = None  # the video to extend
    user_id: int | None = None  # who asked, and where: Vertex labels (generation.labels)
    guild_id: int | None = None

    @classmethod
    def from_request(cls, request) -> VideoJob:
        return cls(**{f.name: getattr(request, "id" if f.name == "request_id" else f.name) for f in fields(cls)})


@dataclass(frozen=True)
class GeneratedVideo:
    mime_type: str
    data: bytes | None = None  # inline bytes (no output bucket)
    uri: str | None = None  # gs://... when Veo wrote to the output bucket


@dataclass(frozen=True)
class Outcome:
    """A finished operation: videos, or an error, or a safety-filter refusal."""

    videos: list[GeneratedVideo] = field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    filtered_count: int = 0
    filtered_reasons: list[str] = field(default_factory=list)


class VeoError(Exception):
    code = "backend_error"


class RateLimited(VeoError):
    """429 RESOURCE_EXHAUSTED: try again later; the request stays queued."""

    code = "rate_limited"


class Refused(VeoError):
    """A 4xx other than 429: retrying the same call will not help."""

    code = "backend_rejected"


class Unavailable(VeoError):
    """5xx after the client's retries, a network error or a per-call timeout."""

    code = "backend_error"


class StartUnconfirmed(Unavailable):
    """A start was sent but no answer came back (timeout, dropped connection): Veo may have
    started the video. Sending it again could make, and bill, the video twice."""


class OperationLost(VeoError):
    """The operation name is unknown to Veo (404), e.g. expired while we were down."""

    code = "operation_lost"


class VeoBackend(Protocol):
    label: str

    async def start(self, job: VideoJob) -> str: ...

    async def poll(self, operation_name: str) -> Outcome | None:
        """The outcome once the operation is done, None while it runs."""


# -- google-genai ---------------------------------------------------------------------------


def _http_options(aiohttp_client: aiohttp.ClientSession | None = None) -> types.HttpOptions:
    return types.HttpOptions(
        base_url=settings.VEO_API_BASE_URL or None,
        aiohttp_client=aiohttp_client,
        timeout=int(settings.VEO_HTTP_TIMEOUT.total_seconds() * 1000),
        # The SDK retries nothing unless told to. 429 is left out on purpose: a rate-limited
        # start goes back to the queue, where the shared start budget applies.
        retry_options=types.HttpRetryOptions(
            attempts=settings.VEO_HTTP_RETRIES, initial_delay=1.0, max_delay=8.0, http_status_codes=[500, 502, 503, 504]
        ),
    )


def make_client(*, credentials=None, aiohttp_client: aiohttp.ClientSession | None = None) -> genai.Client:
    """A client for the configured backend (vertex: project/location + ADC; express: API key).
    Without ``aiohttp_client`` the SDK makes its own session."""
    if settings.VEO_BACKEND == "express":
        return genai.Client(vertexai=True, api_key=settings.VEO_API_KEY, http_options=_http_options(aiohttp_client))
    return genai.Client(
        vertexai=True,
        project=settings.GOOGLE_CLOUD_PROJECT,
        location=settings.GOOGLE_CLOUD_LOCATION,
        credentials=credentials,
        http_options=_http_options(aiohttp_client),
    )


def _quiet_session() -> aiohttp.ClientSession | None:
    """A session that does not read the environment on every request, when that changes nothing.

    The SDK's own session trusts the environment, so aiohttp looks for proxy variables and a
    netrc file on every call (a tenth of the worker's CPU per request against a local Veo).
    Where there are none to find, and no mutual-TLS client certificate is configured (the SDK
    then builds a session of its own), a session of ours without that lookup is equivalent.
    Otherwise None: the SDK's session, as before."""
    if urllib.request.getproxies_environment() or os.environ.get("NETRC") or (Path.home() / ".netrc").exists():
        return None
    if mtls.should_use_client_cert() and mtls.has_default_client_cert_source():
        return None
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), read_bufsize=2**22)  # as the SDK's


# The SDK's async client talks through aiohttp when installed (discord.py brings it), its
# sync client through httpx2.
_NETWORK_ERRORS = (aiohttp.ClientError, ConnectionError, httpx2.TransportError)


def _maybe_sent(error: Exception) -> bool:
    """After a timeout or a dropped connection the request may have reached Veo; a refused
    connection never sent it."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return False
    return isinstance(
        error,
        (
            TimeoutError,
            httpx2.TimeoutException,
            aiohttp.ClientOSError,
            aiohttp.ServerDisconnectedError,
            httpx2.RemoteProtocolError,
        ),
    )


# A start goes out once per attempt: the SDK would retry a dropped connection after the
# request was sent, and a retried create is a second video. 5xx answers (nothing was started)
# are retried by the worker instead, with its backoff.
_ONE_SHOT = types.HttpOptions(retry_options=types.HttpRetryOptions(attempts=1))


def _translate(error: Exception, *, call: str) -> VeoError:
    """SDK and transport exceptions -> our categories, each counted by call and code. Messages never
    carry credentials."""
    translated, code = _categorise(error)
    metrics.VEO_ERRORS.labels(call, code).inc()
    return translated


def _categorise(error: Exception) -> tuple[VeoError, str]:
    if isinstance(error, genai_errors.APIError):
        detail = f"{error.code} {error.status or ''}: {error.message or ''}".strip()
        if error.code == 429:
            return RateLimited(detail), "429"
        if error.code == 404:
            return OperationLost(detail), "404"
        if 400 <= error.code < 500:
            return Refused(detail), str(error.code)
        return Unavailable(detail), str(error.code)
    if isinstance(error, (TimeoutError, httpx2.TimeoutException)):
        return Unavailable(f"no answer from Veo within {settings.VEO_HTTP_TIMEOUT.total_seconds():g} s"), "timeout"
    if isinstance(error, _NETWORK_ERRORS):
        return Unavailable(f"network error talking to Veo: {type(error).__name__}"), "network"
    raise error  # not a Veo or network failure: a bug, let it surface


def _image(uri: str) -> types.Image:
    """An input image as Veo takes it: by gs:// URI where it is in Cloud Storage, else its bytes."""
    if uri.startswith(storage.GCS_SCHEME):
        return types.Image(gcs_uri=uri, mime_type=media.input_type(uri))
    return types.Image(image_bytes=_local_bytes(uri), mime_type=media.input_type(uri))


def _video(uri: str) -> types.Video:
    if uri.startswith(storage.GCS_SCHEME):
        return types.Video(uri=uri, mime_type="video/mp4")
    return types.Video(video_bytes=_local_bytes(uri), mime_type="video/mp4")


def _local_bytes(uri: str) -> bytes:
    try:
        return storage.local_storage().path(uri).read_bytes()
    except (OSError, storage.StorageError) as error:
        # Gone before its start (removed by a moderator, or purged): nothing to send, ever.
        raise Refused(f"the input file {uri} is not available ({type(error).__name__})") from None


class GenaiBackend:
    def __init__(self, client: genai.Client | None, *, model: str, output_gcs_uri: str = ""):
        """``client`` None: one made with make_client per event loop, on _quiet_session()."""
        self.client = client
        self.model = model
        self.output_gcs_uri = output_gcs_uri.rstrip("/")
        self.label = f"{settings.VEO_BACKEND}:{model}"
        self._loop_clients: dict[asyncio.AbstractEventLoop, tuple[genai.Client, aiohttp.ClientSession | None]] = {}

    def _client(self) -> genai.Client:
        if self.client is not None:
            return self.client
        loop = asyncio.get_running_loop()
        if loop not in self._loop_clients:
            session = _quiet_session()  # a session belongs to the loop it was made in
            self._loop_clients[loop] = (make_client(aiohttp_client=session), session)
        return self._loop_clients[loop][0]

    async def aclose(self) -> None:
        """Close the session this backend made for the running loop (the worker stops)."""
        _client, session = self._loop_clients.pop(asyncio.get_running_loop(), (None, None))
        if session is not None:
            await session.close()

    def _model_for(self, job: VideoJob) -> str:
        """Another model the requester chose while it is still offered (VEO_MODELS); else this
        backend's, the default (VEO_MODEL)."""
        chosen = job.model in settings.VEO_MODELS and job.model != settings.VEO_MODEL
        return job.model if chosen else self.model

    def _config(self, job: VideoJob) -> types.GenerateVideosConfig:
        return types.GenerateVideosConfig(
            number_of_videos=1,
            duration_seconds=job.duration_seconds,
            aspect_ratio=job.aspect_ratio,
            resolution=job.resolution,
            generate_audio=job.generate_audio,
            negative_prompt=job.negative_prompt or None,
            seed=job.seed,
            person_generation=job.person_generation,
            output_gcs_uri=f"{self.output_gcs_uri}/{job.request_id}/" if self.output_gcs_uri else None,
            last_frame=_image(job.last_frame_uri) if job.last_frame_uri else None,
            labels=labels.request_labels(request_id=job.request_id, user_id=job.user_id, guild_id=job.guild_id),
            http_options=_ONE_SHOT,
        )

    def _source(self, job: VideoJob) -> types.GenerateVideosSource:
        return types.GenerateVideosSource(
            prompt=job.prompt,
            image=_image(job.image_uri) if job.image_uri else None,
            video=_video(job.video_input_uri) if job.video_input_uri else None,
        )

    async def start(self, job: VideoJob) -> str:
        # Input files are read off the event loop (a frame may be megabytes).
        source, config = await asyncio.to_thread(lambda: (self._source(job), self._config(job)))
        try:
            operation = await self._client().aio.models.generate_videos(
                model=self._model_for(job), source=source, config=config
            )
        except Exception as error:
            refusal = _translate(error, call="start")
            if _maybe_sent(error):
                raise StartUnconfirmed(f"{refusal}; it may have started, so it is not sent again") from None
            if isinstance(refusal, OperationLost):
                # A 404 to a start names no operation: the model (or project) was not found, and
                # asking again finds nothing more.
                raise Refused(str(refusal)) from None
            raise refusal from None
        if not operation.name:
            raise Unavailable("Veo accepted the request but returned no operation name")
        return operation.name

    async def poll(self, operation_name: str) -> Outcome | None:
        try:
            operation = await self._client().aio.operations.get(types.GenerateVideosOperation(name=operation_name))
        except Exception as error:
            raise _translate(error, call="poll") from None
        if not operation.done:
            return None
        return _outcome(operation)


def _outcome(operation: types.GenerateVideosOperation) -> Outcome:
    if operation.error:
        error = operation.error
        return Outcome(
            error_code="operation_failed",
            error_message=f"Veo reported an error: {error.get('message') or error}"[:2000],
        )
    response = operation.response or operation.result
    videos = []
    for generated in (response.generated_videos or []) if response else []:
        video = generated.video
        if video and (video.video_bytes or video.uri):
            videos.append(
                GeneratedVideo(mime_type=video.mime_type or "video/mp4", data=video.video_bytes, uri=video.uri)
            )
    if videos:
        return Outcome(videos=videos)
    filtered = (response.rai_media_filtered_count or 0) if response else 0
    reasons = list((response.rai_media_filtered_reasons or []) if response else [])
    if filtered or reasons:
        return Outcome(
            error_code="content_filtered",
            filtered_count=filtered or len(reasons),
            filtered_reasons=reasons,
            error_message="Veo's safety filters blocked this video" + (f": {reasons[0]}" if reasons else ""),
        )
    return Outcome(error_code="operation_failed", error_message="Veo finished without a video or a reason")


# -- offline ----------------------------------------------------------------------------------


class OfflineBackend:
    """No Google account: 'generates' the bundled sample after a short wait.

    The operation name carries its start time, so polling resumes after a restart."""

    label = "offline sample (no Veo credentials configured)"
    PREFIX = "offline/"

    def __init__(self, *, seconds: float, sample: Path = SAMPLE_VIDEO):
        self.seconds = seconds
        self.sample = sample

    async def start(self, job: VideoJob) -> str:
        log.info("offline backend: request %s will get the bundled SAMPLE video, not a real generation", job.request_id)
        return f"{self.PREFIX}{job.request_id}/{time.time():.3f}/{uuid.uuid4().hex[:8]}"

    async def poll(self, operation_name: str) -> Outcome | None:
        try:
            started = float(operation_name.removeprefix(self.PREFIX).split("/")[1])
        except (IndexError, ValueError):
            raise OperationLost(f"not an offline operation: {operation_name}") from None
        if time.time() < started + self.seconds:
            return None
        return Outcome(videos=[GeneratedVideo(mime_type="video/mp4", data=self.sample.read_bytes())])


def configured_backend() -> VeoBackend:
    if settings.VEO_BACKEND == "offline":
        return OfflineBackend(seconds=settings.VEO_OFFLINE_SECONDS)
    make_client()  # a configuration the SDK refuses fails here, at startup, as it always did
    return GenaiBackend(None, model=settings.VEO_MODEL, output_gcs_uri=settings.VEO_OUTPUT_GCS_URI)
