"""A local HTTP fake of the Vertex AI endpoints google-genai 3.x uses for Veo.

The real SDK client talks to it unchanged; only ``HttpOptions(base_url=server.url)`` differs:

* start: ``POST /v1beta1/[projects/{p}/locations/{l}/]publishers/google/models/{model}:predictLongRunning``
  with ``{"instances": [{"prompt": ...}], "parameters": {...}}`` -> ``{"name": <operation>}``.
  Express mode (``api_key=``) omits ``projects/{p}/locations/{l}/``.
* poll: ``POST /v1beta1/{operation name up to /operations/}:fetchPredictOperation`` with
  ``{"operationName": <operation>}`` -> the operation.

What each create does is a :class:`Scenario`, chosen per request, first match wins:
a ``[scenario:NAME key=value ...]`` marker in the prompt, then :meth:`VeoFakeState.on_prompt`
rules, then the :meth:`VeoFakeState.queue`, then ``default_scenario`` ("instant").

Like the real service it refuses what it would refuse: requests without an accepted credential
(401/403), unknown models (404), and parameter values or media inputs (a first frame, a last
frame, a video to extend; see ``veo_media``) outside each model's documented set (400, see
``MODEL_CAPABILITIES``), before any scenario runs.

Operations live in a :class:`VeoFakeState`, not in the HTTP server, so a test can restart the
bot (a new SDK client resuming by operation name) or the fake itself (``restart()``, or a new
``FakeVeoServer(state=old.state)``) without losing them. See docs/VEO_FAKE.md.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.veo_media import MediaInputs, MediaProblem, read_media
from tracking import capabilities
from tracking.capabilities import ModelCapabilities

# Google's canonical status name for each HTTP status the fake answers with.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
ERROR_MESSAGES = {
    429: "Resource exhausted. Please try again later.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}
# The SDK ignores this key; it is here because the real service sends it.
RESPONSE_TYPE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"
DEFAULT_RAI_REASON = (
    "Veo could not generate videos because the input prompt violates Google's"
    " Responsible AI practices. Support codes: 29310472"
)

_MODEL_CALL = re.compile(
    r"^/(?P<version>v1[a-z0-9]*)/"
    r"(?P<resource>(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?"
    r"publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/:]+))"
    r":(?P<verb>predictLongRunning|fetchPredictOperation)$"
)
# The GCS JSON API object (metadata, ?alt=media download, delete), so code that reads,
# fetches or deletes outputs can be tested too.
_GCS_DOWNLOAD = re.compile(r"^/storage/v1/b/(?P<bucket>[^/]+)/o/(?P<object>.+)$")
# An OAuth token endpoint: service-account keys in tests name it as their token_uri.
TOKEN_PATH = "/token"
# What the token endpoint hands out; like any token Google issued, it is always accepted.
ISSUED_ACCESS_TOKEN = "fake-access-token"
# The credentials the fake accepts unless told otherwise (what the tests configure their clients with).
DEFAULT_API_KEY = "test-key"
DEFAULT_BEARER_TOKEN = "test"
MISSING_CREDENTIAL = "Request is missing required authentication credential."
_MARKER = re.compile(r"\[scenario:(?P<name>\w+)(?P<params>(?:\s+\w+=[^\s\]]+)*)\s*\]")


# Every model id the fake serves, with what it accepts: the project's own capability table, so
# the fake and the bot's checks before admission say the same. Any other model answers 404
# NOT_FOUND, as Vertex does for an unknown publisher model.
MODEL_CAPABILITIES: dict[str, ModelCapabilities] = dict(capabilities.MODELS)
SEED_MAX = 2**32 - 1  # seed is a uint32


def tiny_mp4(label: str | bytes = b"") -> bytes:
    """A structurally valid MP4 (ftyp + moov/mvhd, no tracks; ffprobe accepts it).

    ``label`` goes into a ``free`` box so every fake video can have distinct bytes.
    """

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), kind) + payload

    if isinstance(label, str):
        label = label.encode()
    identity_matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = box(
        b"mvhd",
        struct.pack(">4xIIII", 0, 0, 1000, 0)  # version/flags, times, timescale, duration
        + struct.pack(">IH10x", 0x10000, 0x100)  # rate 1.0, volume 1.0
        + identity_matrix
        + bytes(24)
        + struct.pack(">I", 1),  # next track id
    )
    ftyp = box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isomiso2mp41")
    return ftyp + box(b"moov", mvhd) + box(b"free", label)


class FakeClock:
    """Manual time for the fake: ``slow`` operations finish when a test advances it."""

    def __init__(self, start: float = 0.0):
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass(frozen=True)
class Scenario:
    """What one create (and the operation it makes) does. Build with :func:`scenario`,
    combine with ``dataclasses.replace`` (e.g. a ``multi_poll`` that ends ``inline``)."""

    name: str = "instant"
    polls: int = 1  # finished on this (successful) poll ...
    seconds: float = 0.0  # ... and not before this much clock time after the create
    never_done: bool = False
    lost: bool = False  # every poll answers 404 NOT_FOUND
    error: dict[str, Any] | None = None  # finished with this operation error
    rai_count: int | None = None  # finished with this many videos filtered (None: not filtered)
    rai_reasons: tuple[str, ...] = ()
    delivery: str = "auto"  # "auto": gs:// when the request has storageUri, else inline
    video_bytes: bytes | None = None
    fail_status: int | None = None  # answer this HTTP status on `on` ...
    fail_times: int | None = None  # ... for the first K attempts only (None: always)
    on: str = "create"  # which call fail_status / stall_seconds hit: "create" or "poll"
    stall_seconds: float = 0.0  # real seconds before answering, to trip client timeouts
    stall_times: int | None = None  # ... on the first K calls only (None: always)


def _filtered(count: int | None = None, reason: str = DEFAULT_RAI_REASON) -> dict[str, Any]:
    return {"rai_count": count, "rai_reasons": (reason,)}


_BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "instant": dict,
    "multi_poll": lambda polls=3: {"polls": polls},
    "slow": lambda seconds=60.0: {"seconds": seconds},
    "hang": lambda: {"never_done": True},
    "lost": lambda: {"lost": True},
    "error_operation": lambda code=13, message="Video generation failed.": {
        "error": {"code": code, "message": message}
    },
    # count=None filters every requested sample; fewer leaves the rest as videos.
    "safety_filtered": lambda count=None, reason=DEFAULT_RAI_REASON: _filtered(count, reason),
    "rate_limited": lambda times=None: {"fail_status": 429, "fail_times": times},
    "server_error": lambda times=None, on="create", status=500: {"fail_status": status, "fail_times": times, "on": on},
    "http_error": lambda status=400, times=None, on="create": {"fail_status": status, "fail_times": times, "on": on},
    "stall": lambda seconds=5.0, on="create", times=None: {"stall_seconds": seconds, "on": on, "stall_times": times},
    "inline_bytes": lambda: {"delivery": "inline"},
    "gcs": lambda: {"delivery": "gcs"},
}
SCENARIOS = frozenset(_BUILDERS)


def scenario(name: str, **params: Any) -> Scenario:
    """``scenario("multi_poll", polls=4)``; see ``_BUILDERS`` for names and parameters."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown scenario {name!r}; known: {sorted(SCENARIOS)}")
    return Scenario(name=name, **_BUILDERS[name](**params))


def parse_marker(prompt: str) -> Scenario | None:
    """The scenario named by a ``[scenario:NAME key=value ...]`` marker in ``prompt``."""
    match = _MARKER.search(prompt)
    if match is None:
        return None
    params = dict(pair.split("=", 1) for pair in match["params"].split())
    return scenario(match["name"], **{key: _parse_value(value) for key, value in params.items()})


_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def _label_problem(labels: Any) -> str | None:
    """Vertex's label rules: at most 64; keys start with a lowercase letter; keys and values at
    most 63 lowercase letters, digits, '_' or '-'."""
    if labels is None:
        return None
    if not isinstance(labels, dict) or len(labels) > 64:
        return "labels must be a map of at most 64 entries."
    for key, value in labels.items():
        if not _LABEL_KEY.match(str(key)) or not isinstance(value, str) or not _LABEL_VALUE.match(value):
            return f"Label {key!r}: {value!r} is invalid: use lowercase letters, digits, '_' and '-', at most 63."
    return None


def _parse_value(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"none": None, "true": True, "false": False}.get(text.lower(), text)


@dataclass
class RecordedRequest:
    """One HTTP request as the fake saw it. Credentials are reduced to ``auth``."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names, without authorization / x-goog-api-key
    auth: str | None  # "bearer", "api_key" or None
    body: Any
    kind: str = "unknown"  # "create", "poll", "download", "metadata", "delete", "token" or "unknown"
    status: int = 0  # what the fake answered
    inputs: MediaInputs = field(default_factory=MediaInputs)  # a create's media, once accepted

    @property
    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    @property
    def instance(self) -> dict[str, Any]:
        return (self.json.get("instances") or [{}])[0]

    @property
    def prompt(self) -> str | None:
        return self.instance.get("prompt")

    @property
    def parameters(self) -> dict[str, Any]:
        return self.json.get("parameters", {})

    @property
    def operation_name(self) -> str | None:
        return self.json.get("operationName")

    @property
    def labels(self) -> dict[str, str]:
        """The request's Vertex labels (billing metadata), as sent."""
        return self.json.get("labels") or {}

    @property
    def image_bytes(self) -> bytes | None:
        """The first frame's bytes (sent inline, or read from the fake's bucket)."""
        return self.inputs.image.data if self.inputs.image else None

    @property
    def last_frame_bytes(self) -> bytes | None:
        return self.inputs.last_frame.data if self.inputs.last_frame else None

    @property
    def video_bytes(self) -> bytes | None:
        """The video to extend, however it was sent."""
        return self.inputs.video.data if self.inputs.video else None

    @property
    def video_uri(self) -> str | None:
        """The gs:// URI the video to extend was named by (None: sent inline, or no video)."""
        return self.inputs.video.gcs_uri if self.inputs.video else None


@dataclass
class FakeOperation:
    name: str
    model: str
    prompt: str
    scenario: Scenario
    created_at: float
    storage_uri: str | None
    videos: list[bytes]
    inputs: MediaInputs = field(default_factory=MediaInputs)
    polls: int = 0
    poll_failures: int = 0
    poll_stalls: int = 0


class _HttpError(Exception):
    def __init__(self, status: int, message: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message or ERROR_MESSAGES.get(status, STATUS_NAMES.get(status, "Error"))


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=UTF-8"
    stall_seconds: float = 0.0


def _json_reply(status: int, payload: Any, stall_seconds: float = 0.0) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), stall_seconds=stall_seconds)


def _error_reply(error: _HttpError, stall_seconds: float = 0.0) -> _Reply:
    payload = {
        "error": {"code": error.status, "message": error.message, "status": STATUS_NAMES.get(error.status, "UNKNOWN")}
    }
    return _json_reply(error.status, payload, stall_seconds)


class VeoFakeState:
    """Operations, recorded requests, GCS objects and scenario selection.

    All of it is guarded by one lock, so any number of concurrent polls is safe. The HTTP
    server is a thin shell around :meth:`handle`; keep this object to survive a restart.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        default_scenario: Scenario | str = "instant",
        video_bytes: bytes | None = None,
        express_project: str = "veo-fake-express",
        express_location: str = "us-central1",
        default_bucket: str = "veo-fake-output",
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        bearer_tokens: Iterable[str] = (DEFAULT_BEARER_TOKEN,),
        models: dict[str, ModelCapabilities] | None = None,
    ):
        self.clock = clock
        self.models = dict(MODEL_CAPABILITIES if models is None else models)  # model id -> what it accepts
        # Express mode authenticates with an API key, Vertex with an OAuth bearer token; any
        # other value is refused (403), as a key or token of another project would be.
        self.api_keys = set(api_keys)
        self.bearer_tokens = set(bearer_tokens)
        self.default_scenario = default_scenario
        self.video_bytes = video_bytes  # None: a distinct tiny_mp4 per video
        # Express requests carry no project, so the fake invents one for the operation
        # name. (What the real express service names them is unverified; the bot must
        # treat names as opaque and poll with exactly what it was given.)
        self.express_project = express_project
        self.express_location = express_location
        self.default_bucket = default_bucket  # for "gcs" when the request has no storageUri
        self._lock = threading.Lock()
        self._operations: dict[str, FakeOperation] = {}
        self._requests: list[RecordedRequest] = []
        self._gcs: dict[str, bytes] = {}
        self._queue: deque[Scenario] = deque()
        self._prompt_rules: list[tuple[str, Scenario]] = []
        self._create_failures: Counter[str] = Counter()  # per prompt
        self._create_stalls: Counter[str] = Counter()  # per prompt
        # Scripted answers to GCS metadata reads (objects.get without alt=media).
        self.gcs_metadata_status: int | None = None  # e.g. 403 or 404 instead of the metadata
        self.gcs_metadata_stall: float = 0.0  # real seconds before answering, to trip client timeouts
        self._gcs_delete_script: deque[int] = deque()  # statuses for the next objects.delete calls
        self.token_body: bytes | None = None  # what the token endpoint answers instead of a token

    # --- scripting -------------------------------------------------------------------

    @property
    def default_scenario(self) -> Scenario:
        return self._default

    @default_scenario.setter
    def default_scenario(self, value: Scenario | str) -> None:
        self._default = _as_scenario(value)

    def queue(self, *scenarios: Scenario | str) -> None:
        """Scripts for the next operations, in order. An entry is used up only when an
        operation is created, so ``rate_limited(times=2)`` covers the retries of one video."""
        with self._lock:
            self._queue.extend(_as_scenario(s) for s in scenarios)

    def on_prompt(self, substring: str, value: Scenario | str) -> None:
        """Use ``value`` for every prompt containing ``substring`` (leaves prompts clean)."""
        with self._lock:
            self._prompt_rules.append((substring, _as_scenario(value)))

    def script_gcs_deletes(self, *statuses: int) -> None:
        """Answer the next objects.delete calls with these statuses, in order (a 2xx deletes the
        object, anything else leaves it); then back to 204, or 404 when there is no such object."""
        with self._lock:
            self._gcs_delete_script.extend(statuses)

    def forget_operations(self) -> None:
        """Drop every operation, as if Google lost them: polls now get 404 NOT_FOUND."""
        with self._lock:
            self._operations.clear()

    # --- inspection ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def creates(self, prompt: str | None = None) -> list[RecordedRequest]:
        """Create attempts (including refused ones: check ``.status``), optionally for one
        exact prompt."""
        return [r for r in self.requests if r.kind == "create" and (prompt is None or r.prompt == prompt)]

    def create_count(self, prompt: str | None = None) -> int:
        return len(self.creates(prompt))

    def polls(self, operation_name: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.kind == "poll" and operation_name in (None, r.operation_name)]

    @property
    def operations(self) -> dict[str, FakeOperation]:
        with self._lock:
            return dict(self._operations)

    def operation(self, name: str) -> FakeOperation:
        """The live record (``.polls``, ``.videos``, ``.scenario`` ...) of one operation."""
        with self._lock:
            return self._operations[name]

    @property
    def gcs_objects(self) -> dict[str, bytes]:
        """gs:// URI -> bytes, for every video a finished ``gcs`` operation wrote."""
        with self._lock:
            return dict(self._gcs)

    def gcs_object(self, uri: str) -> bytes:
        with self._lock:
            return self._gcs[uri]

    def put_gcs_object(self, uri: str, data: bytes) -> None:
        """An object in the fake's bucket, e.g. an image a create names by gcsUri."""
        if not uri.startswith("gs://"):
            raise ValueError(f"not a gs:// URI: {uri!r}")
        with self._lock:
            self._gcs[uri] = data

    # --- the fake service ------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], raw_body: bytes) -> _Reply:
        """Answer one HTTP request (called from the server's handler threads)."""
        url = urlsplit(target)
        headers = {k.lower(): v for k, v in headers.items()}
        query = parse_qs(url.query)
        credential = _credential(headers, query)
        record = RecordedRequest(
            method=method,
            path=url.path,
            query={k: v for k, v in query.items() if k != "key"},  # the API key stays out of the record
            headers={k: v for k, v in headers.items() if k not in ("authorization", "x-goog-api-key")},
            auth=credential.kind if credential else None,
            body=_parse_json(raw_body),
        )
        with self._lock:
            self._requests.append(record)
            try:
                reply = self._route(method, url.path, record, credential)
            except _HttpError as error:
                reply = _error_reply(error)
            record.status = reply.status
        return reply

    def _route(self, method: str, path: str, record: RecordedRequest, credential: _Credential | None) -> _Reply:
        call = _MODEL_CALL.match(path)
        download = _GCS_DOWNLOAD.match(path)
        if path == TOKEN_PATH and method == "POST":
            record.kind = "token"
            if self.token_body is not None:  # e.g. a proxy's HTML page with 200 OK
                return _Reply(200, self.token_body, content_type="text/html")
            return _json_reply(200, {"access_token": ISSUED_ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600})
        if call and method == "POST":
            record.kind = "create" if call["verb"] == "predictLongRunning" else "poll"
        elif download and method == "GET":
            record.kind = "download" if record.query.get("alt") == ["media"] else "metadata"
        elif download and method == "DELETE":
            record.kind = "delete"
        else:
            raise _HttpError(404, f"The fake has no {method} {path}.")
        if download:
            self._check_storage_credential(credential, record.kind, download["bucket"], unquote(download["object"]))
        else:
            self._check_vertex_credential(credential, call["resource"])
            self._check_model(call)
        if record.kind == "download":
            return self._download(download["bucket"], unquote(download["object"]))
        if record.kind == "metadata":
            return self._metadata(download["bucket"], unquote(download["object"]))
        if record.kind == "delete":
            return self._delete(download["bucket"], unquote(download["object"]))
        if not isinstance(record.body, dict):
            raise _HttpError(400, "Invalid JSON payload received.")
        if record.kind == "create":
            return self._create(call, record)
        return self._poll(call, record)

    def _check_vertex_credential(self, credential: _Credential | None, resource: str) -> None:
        """Vertex AI takes an API key (express mode) or an OAuth bearer token (project mode)."""
        if credential is None:
            raise _HttpError(401, MISSING_CREDENTIAL)
        if not self._accepts(credential):
            raise _HttpError(
                403,
                f"Permission 'aiplatform.endpoints.predict' denied on resource "
                f"'//aiplatform.googleapis.com/{resource}' (or it may not exist).",
            )

    def _check_storage_credential(self, credential: _Credential | None, kind: str, bucket: str, obj: str) -> None:
        """Cloud Storage needs an OAuth token for private objects: an API key names a project, not a
        principal, so a request with only a key is as anonymous as one with nothing."""
        if credential is None or credential.kind != "bearer":
            raise _HttpError(401, MISSING_CREDENTIAL)
        if not self._accepts(credential):
            permission = "storage.objects.delete" if kind == "delete" else "storage.objects.get"
            raise _HttpError(
                403,
                f"The caller does not have {permission} access to the Google Cloud Storage "
                f"object gs://{bucket}/{obj}. Permission '{permission}' denied on resource "
                f"(or it may not exist).",
            )

    def _check_model(self, call: re.Match[str]) -> None:
        if call["publisher"] != "google" or call["model"] not in self.models:
            raise _HttpError(
                404,
                f"Publisher Model `{call['resource']}` was not found or your project does not have"
                " access to it. Please ensure you are using a valid model version.",
            )

    def _accepts(self, credential: _Credential) -> bool:
        if credential.kind == "api_key":
            return credential.value in self.api_keys
        return credential.value in self.bearer_tokens or credential.value == ISSUED_ACCESS_TOKEN

    def _create(self, call: re.Match[str], record: RecordedRequest) -> _Reply:
        if not record.json.get("instances"):
            raise _HttpError(400, "instances must contain exactly one instance.")
        if not isinstance(record.parameters, dict):
            raise _HttpError(400, "Invalid JSON payload received. parameters must be an object.")
        problem = _parameter_problem(call["model"], self.models[call["model"]], record.parameters)
        problem = problem or _label_problem(record.json.get("labels"))
        if problem:
            raise _HttpError(400, problem)
        try:
            model = call["model"]
            record.inputs = read_media(model, self.models[model], record.instance, self._gcs, record.parameters)
        except MediaProblem as refused:
            raise _HttpError(400, str(refused)) from None
        prompt = record.prompt or ""
        chosen, from_queue = self._choose(prompt)
        stall = 0.0
        if chosen.on == "create" and _stalls(chosen, self._create_stalls[prompt]):
            self._create_stalls[prompt] += 1
            stall = chosen.stall_seconds
        failing = chosen.fail_times is None or self._create_failures[prompt] < chosen.fail_times
        if chosen.on == "create" and chosen.fail_status is not None and failing:
            self._create_failures[prompt] += 1
            return _error_reply(_HttpError(chosen.fail_status), stall)
        if from_queue:
            self._queue.popleft()

        project = call["project"] or self.express_project
        location = call["location"] or self.express_location
        op_id = str(uuid.uuid4())
        name = (
            f"projects/{project}/locations/{location}/publishers/{call['publisher']}"
            f"/models/{call['model']}/operations/{op_id}"
        )
        samples = int(record.parameters.get("sampleCount") or 1)
        # An extension says what it continues, so a test can tell it from a fresh video.
        video = record.inputs.video
        extends = f" extends {video.gcs_uri or 'an inline video'}" if video else ""
        self._operations[name] = FakeOperation(
            name=name,
            model=call["model"],
            prompt=prompt,
            scenario=chosen,
            created_at=self.clock(),
            storage_uri=record.parameters.get("storageUri"),
            videos=[
                chosen.video_bytes or self.video_bytes or tiny_mp4(f"{op_id}/{i}{extends}") for i in range(samples)
            ],
            inputs=record.inputs,
        )
        return _json_reply(200, {"name": name}, stall)

    def _choose(self, prompt: str) -> tuple[Scenario, bool]:
        """The scenario for a create, and whether it is the queue's head."""
        try:
            marked = parse_marker(prompt)
        except (TypeError, ValueError) as error:  # a typo in a test's marker
            raise _HttpError(400, f"fake: bad scenario marker: {error}") from None
        if marked is not None:
            return marked, False
        for substring, rule in self._prompt_rules:
            if substring in prompt:
                return rule, False
        if self._queue:
            return self._queue[0], True
        return self.default_scenario, False

    def _poll(self, call: re.Match[str], record: RecordedRequest) -> _Reply:
        name = record.operation_name
        if not name:
            raise _HttpError(400, "operationName is required.")
        if name.rpartition("/operations/")[0] != call["resource"]:
            raise _HttpError(400, f"Operation {name} does not belong to {call['resource']}.")
        op = self._operations.get(name)
        if op is None or op.scenario.lost:
            raise _HttpError(404, f"Operation {name} was not found.")
        s = op.scenario
        stall = 0.0
        if s.on == "poll" and _stalls(s, op.poll_stalls):
            op.poll_stalls += 1
            stall = s.stall_seconds
        failing = s.fail_times is None or op.poll_failures < s.fail_times
        if s.on == "poll" and s.fail_status is not None and failing:
            op.poll_failures += 1
            return _error_reply(_HttpError(s.fail_status), stall)
        op.polls += 1
        done = not s.never_done and op.polls >= s.polls and self.clock() - op.created_at >= s.seconds
        return _json_reply(200, self._finished(op) if done else {"name": name}, stall)

    def _finished(self, op: FakeOperation) -> dict[str, Any]:
        s = op.scenario
        if s.error is not None:
            return {"name": op.name, "done": True, "error": dict(s.error)}
        response: dict[str, Any] = {"@type": RESPONSE_TYPE}
        videos = op.videos
        if s.rai_count is not None or s.rai_reasons:
            filtered = len(videos) if s.rai_count is None else min(s.rai_count, len(videos))
            videos = videos[filtered:]
            response["raiMediaFilteredCount"] = filtered
            response["raiMediaFilteredReasons"] = list(s.rai_reasons)
        if videos:
            response["videos"] = [self._video_json(op, i, data) for i, data in enumerate(videos)]
        return {"name": op.name, "done": True, "response": response}

    def _video_json(self, op: FakeOperation, index: int, data: bytes) -> dict[str, Any]:
        delivery = op.scenario.delivery
        if delivery == "inline" or (delivery == "auto" and not op.storage_uri):
            return {"bytesBase64Encoded": _b64(data), "mimeType": "video/mp4"}
        # Like Veo: one folder per operation under the requested prefix.
        prefix = (op.storage_uri or f"gs://{self.default_bucket}/").rstrip("/")
        op_id = op.name.rpartition("/")[2]
        uri = f"{prefix}/{op_id}/sample_{index}.mp4"
        self._gcs[uri] = data  # "written" when the operation first reports done
        return {"gcsUri": uri, "mimeType": "video/mp4"}

    def _download(self, bucket: str, obj: str) -> _Reply:
        data = self._gcs.get(f"gs://{bucket}/{obj}")
        if data is None:
            raise _HttpError(404, f"No such object: {bucket}/{obj}")
        return _Reply(200, data, content_type="video/mp4")

    def _metadata(self, bucket: str, obj: str) -> _Reply:
        """objects.get: the object's resource, with size as a string as the real API sends it."""
        if self.gcs_metadata_status is not None:
            return _error_reply(_HttpError(self.gcs_metadata_status), self.gcs_metadata_stall)
        data = self._gcs.get(f"gs://{bucket}/{obj}")
        if data is None:
            return _error_reply(_HttpError(404, f"No such object: {bucket}/{obj}"), self.gcs_metadata_stall)
        resource = {
            "kind": "storage#object",
            "bucket": bucket,
            "name": obj,
            "size": str(len(data)),
            "contentType": "video/mp4",
        }
        return _json_reply(200, resource, self.gcs_metadata_stall)

    def _delete(self, bucket: str, obj: str) -> _Reply:
        """Cloud Storage's objects.delete: 204, or 404 when there is no such object (unless scripted)."""
        if self._gcs_delete_script:
            status = self._gcs_delete_script.popleft()
            if status >= 300:
                raise _HttpError(status)
            self._gcs.pop(f"gs://{bucket}/{obj}", None)
            return _Reply(status, b"")
        if self._gcs.pop(f"gs://{bucket}/{obj}", None) is None:
            raise _HttpError(404, f"No such object: {bucket}/{obj}")
        return _Reply(204, b"")


def _stalls(chosen: Scenario, stalled_so_far: int) -> bool:
    return chosen.stall_seconds > 0 and (chosen.stall_times is None or stalled_so_far < chosen.stall_times)


def _parameter_problem(model: str, capabilities: ModelCapabilities, parameters: dict[str, Any]) -> str | None:
    """Why Vertex would refuse these parameters for ``model`` (400 INVALID_ARGUMENT), or None.
    Parameters that are left out (or null) take the service's defaults and are always fine."""
    checks = (
        _duration_problem,
        _aspect_ratio_problem,
        _resolution_problem,
        _person_generation_problem,
        _sample_count_problem,
        _seed_problem,
        _negative_prompt_problem,
    )
    for check in checks:
        problem = check(model, capabilities, parameters)
        if problem:
            return problem
    return None


def _duration_problem(model: str, capabilities: ModelCapabilities, parameters: dict[str, Any]) -> str | None:
    value = parameters.get("durationSeconds")
    if value is None or _whole_number(value) in capabilities.durations:
        return None
    return (
        f"Unsupported output video duration {value} seconds for model {model}; supported durations are"
        f" {list(capabilities.durations)}."
    )


def _aspect_ratio_problem(model: str, capabilities: ModelCapabilities, parameters: dict[str, Any]) -> str | None:
    value = parameters.get("aspectRatio")
    if value is None or value in capabilities.aspect_ratios:
        return None
    return _unsupported("aspectRatio", value, capabilities.aspect_ratios, model)


def _resolution_problem(model: str, capabilities: ModelCapabilities, parameters: dict[str, Any]) -> str | None:
    value = parameters.get("resolution")
    if value is None:
        return None
    if not (isinstance(value, str) and value in capabilities.resolutions):
        return _unsupported("resolution", value, tuple(capabilities.resolutions), model)
    durations = capabilities.resolutions[value]
    seconds = parameters.get("durationSeconds")
    if (capabilities.default_duration if seconds is None else _whole_number(seconds)) in durations:
        return None
    return f"Resolution {value} is only supported with durations {list(durations)} for model {model}."


def _person_generation_problem(model: str, capabilities: ModelCapabilities, parameters: dict[str, Any]) -> str | None:
    value = parameters.get("personGeneration")
    if value is None or value in capabilities.person_generation:
        return None
    return _unsupported("personGeneration", value, capabilities.person_generation, model)


def _sample_count_problem(model: str, capabilities: ModelCapabilities, parameters: dict[str, Any]) -> str | None:
    value = parameters.get("sampleCount")
    count = _whole_number(value)
    if value is None or (count is not None and 1 <= count <= capabilities.max_samples):
        return None
    return f"sampleCount must be between 1 and {capabilities.max_samples} for model {model}, got {value}."


def _seed_problem(model: str, capabilities: ModelCapabilities, parameters: dict[str, Any]) -> str | None:
    value = parameters.get("seed")
    seed = _whole_number(value)
    if value is None or (seed is not None and 0 <= seed <= SEED_MAX):
        return None
    return f"seed must be an integer between 0 and {SEED_MAX}, got {value}."


def _negative_prompt_problem(model: str, capabilities: ModelCapabilities, parameters: dict[str, Any]) -> str | None:
    value = parameters.get("negativePrompt")
    if value is None or isinstance(value, str):
        return None
    return f"negativePrompt must be a string, got {json.dumps(value)}."


def _unsupported(name: str, value: Any, supported: Iterable[str], model: str) -> str:
    return f"Unsupported {name} {json.dumps(value)} for model {model}; supported values are {list(supported)}."


def _whole_number(value: Any) -> int | None:
    """JSON numbers that are whole (8 or 8.0) as int; booleans, fractions and strings as None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _as_scenario(value: Scenario | str) -> Scenario:
    return value if isinstance(value, Scenario) else scenario(value)


@dataclass(frozen=True)
class _Credential:
    kind: str  # "bearer" or "api_key", as RecordedRequest.auth
    value: str = field(repr=False)


def _credential(headers: dict[str, str], query: dict[str, list[str]]) -> _Credential | None:
    """The bearer token, else the API key (the x-goog-api-key header, which the SDK sends, or
    Google's other accepted form, the ``key`` query parameter)."""
    authorization = headers.get("authorization", "")
    if authorization.startswith("Bearer "):
        return _Credential("bearer", authorization.removeprefix("Bearer ").strip())
    key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
    return _Credential("api_key", key) if key else None


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # kept as bytes; routing answers 400


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive, as the SDK's pooled httpx/aiohttp clients expect.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm and the client's
    # delayed ACK every response would wait ~40 ms.
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        reply = self.server.state.handle(self.command, self.path, dict(self.headers), raw)
        if reply.stall_seconds and self.server.stopping.wait(reply.stall_seconds):
            self.close_connection = True  # the server is stopping: drop the request
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except ConnectionError:  # the client timed out and hung up: expected with stalls
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests assert on recorded requests instead


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # restart() binds the same port again at once
    # socketserver's default listen backlog of 5 overflows when many async polls connect
    # at once; the SDK's aiohttp path then silently sleeps 1-10 s and retries.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: VeoFakeState):
        self.state = state
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close kept-alive connections, which would otherwise outlive stop() and keep
        serving a "stopped" fake to clients holding them in their pool."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FakeVeoServer:
    """The fake on 127.0.0.1 in a background thread.

    ``with FakeVeoServer() as veo:`` or ``veo = FakeVeoServer().start(); ...; veo.stop()``.
    Everything on :class:`VeoFakeState` (``queue``, ``creates``, ``gcs_object`` ...) is also
    reachable on the server itself.
    """

    def __init__(self, state: VeoFakeState | None = None, *, port: int = 0, **state_options: Any):
        if state is not None and state_options:
            raise TypeError("pass either state or state options, not both")
        self.state = state or VeoFakeState(**state_options)
        self.port = port  # 0 until started: an ephemeral port
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake Veo server is not running")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeVeoServer:
        if self._httpd is not None:
            raise RuntimeError("already running")
        self._httpd = _HttpServer(("127.0.0.1", self.port), self.state)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},  # how long stop() waits; the default is 0.5 s
            name=f"fake-veo:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop every connection. Operations stay in ``state``."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.stopping.set()  # releases stalled handlers
        httpd.shutdown()
        httpd.drop_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def restart(self) -> None:
        """A process restart of the fake: same port, same state, fresh connections."""
        self.stop()
        self.start()

    def __enter__(self) -> FakeVeoServer:
        return self if self._httpd is not None else self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # The test API lives on the state; reads and writes of anything else go there, so
    # `veo.default_scenario = "hang"` configures the state rather than shadowing it.
    _OWN_ATTRIBUTES = frozenset({"state", "port", "_httpd", "_thread"})

    def __getattr__(self, name: str) -> Any:
        if name in self._OWN_ATTRIBUTES:  # not set yet: avoid recursing into state
            raise AttributeError(name)
        return getattr(self.state, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            setattr(self.state, name, value)
