"""A local fake of Discord's HTTP API, driven by the real discord.py client.

discord.py builds every URL it calls (REST, interaction callbacks, interaction webhooks) from
``discord.http.Route.BASE``, so ``server.patch_discord()`` routes all of it here. The fake keeps
what users would see (messages, their attachments and flags) and enforces the rules Discord
enforces but discord.py does not check: the 3 s deadline for the first response, one
acknowledgement per interaction, the 15 minute token lifetime (on a simulated clock), attachment
size, content and embed limits, the bot's channel permissions and message ownership, JSON or
multipart bodies, and per-route rate-limit buckets with Discord's headers (plus scripted 429s).
Errors use Discord's status codes and JSON bodies, so discord.py raises exactly what it would in
production.

See docs/DISCORD_FAKE.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fnmatch
import hashlib
import itertools
import json
import logging
import math
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.discord_components import validate_components, validate_modal
from tests.fakes.discord_gateway import GATEWAY_PATH, FakeGateway

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
BOT_TOKEN = "fake-bot-token"
DEFAULT_APPLICATION_ID = 1_180_000_000_000_000_001
OWNER_ID = 1_180_000_000_000_000_002

INTERACTION_DEADLINE = 3.0  # seconds to send the first response (callback)
TOKEN_LIFETIME = 15 * 60.0  # seconds an interaction token works for followups and edits
DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # bytes per file, unboosted guild
CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_FIELDS_MAX = 25
EMBED_TOTAL_MAX = 6000
# Every route's rate-limit bucket, per major parameter (channel, guild, webhook id + token): this
# many requests per window. Generous, so discord.py (which waits once Remaining reaches 0) never
# slows the tests down; limit_route() or the constructor set others.
DEFAULT_BUCKET_LIMIT = 50
DEFAULT_BUCKET_WINDOW = 1.0  # seconds

# Message flags
SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
LOADING = 1 << 7  # a deferred response's "Bot is thinking..." placeholder

# Permission bits checked on channel routes
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
# What the bot may do in a channel unless a test or an interaction's app_permissions says otherwise.
DEFAULT_BOT_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES
# The author of messages a test adds with add_user_message(): someone other than the bot.
SOMEONE_ID = 1_180_000_000_000_000_003

# (HTTP status, Discord code, message), exactly as Discord sends them.
UNAUTHORIZED = (401, 0, "401: Unauthorized")
NOT_FOUND = (404, 0, "404: Not Found")
METHOD_NOT_ALLOWED = (405, 0, "405: Method Not Allowed")
UNKNOWN_CHANNEL = (404, 10003, "Unknown Channel")
UNKNOWN_MESSAGE = (404, 10008, "Unknown Message")
UNKNOWN_WEBHOOK = (404, 10015, "Unknown Webhook")
UNKNOWN_INTERACTION = (404, 10062, "Unknown interaction")
ENTITY_TOO_LARGE = (413, 40005, "Request entity too large")
ALREADY_ACKNOWLEDGED = (400, 40060, "Interaction has already been acknowledged.")
MISSING_ACCESS = (403, 50001, "Missing Access")
CANNOT_SEND_TO_USER = (403, 50007, "Cannot send messages to this user")  # DMs closed, or no shared server
EMPTY_MESSAGE = (400, 50006, "Cannot send an empty message")
CANNOT_EDIT_OTHERS_MESSAGE = (403, 50005, "Cannot edit a message authored by another user")
MISSING_PERMISSIONS = (403, 50013, "Missing Permissions")
INVALID_WEBHOOK_TOKEN = (401, 50027, "Invalid Webhook Token")
INVALID_FORM_BODY = (400, 50035, "Invalid Form Body")
INVALID_JSON = (400, 50109, "The request body contains invalid JSON.")
SERVER_ERROR = (500, 0, "500: Internal Server Error")
SERVICE_UNAVAILABLE = (503, 0, "503: Service Unavailable")

# Which callback types Discord accepts for each interaction type.
_CALLBACK_TYPES = {1: {1}, 2: {4, 5, 9, 12}, 3: {4, 5, 6, 7, 9, 12}, 4: {8}, 5: {4, 5, 6, 7, 12}}
_COMMAND_NAME = re.compile(r"^[-_a-z0-9]{1,32}$")
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_FILE_FIELD = re.compile(r"^files\[(\d+)\]$")
_DISCORD_EPOCH_MS = 1_420_070_400_000
_increment = itertools.count()


def new_snowflake(at: float | None = None) -> int:
    """A Discord snowflake whose timestamp is `at` (seconds since the Unix epoch, default now)."""
    ms = int((time.time() if at is None else at) * 1000)
    return ((ms - _DISCORD_EPOCH_MS) << 22) | (next(_increment) & 0x3FFFFF)


def dm_channel_id(user_id: int) -> int:
    """The DM channel between a user and the bot: one per user, as Discord keeps it (shared by the
    interactions run in DMs and POST /users/@me/channels, across every server instance)."""
    return _dm_channels.setdefault(int(user_id), new_snowflake())


_dm_channels: dict[int, int] = {}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


class DiscordError(Exception):
    """Raised by route handlers; becomes Discord's error response."""

    def __init__(self, status: int, code: int, message: str, *, errors: dict | None = None):
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors


class _FormErrors:
    """Collects field errors into Discord's nested 50035 shape: {"embeds": {"0": {"title": {"_errors": [...]}}}}."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: tuple, code: str, message: str) -> None:
        node = self.tree
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def too_long(self, path: tuple, value: Any, limit: int) -> None:
        if value is not None and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def raise_if_any(self) -> None:
        if self.tree:
            raise DiscordError(*INVALID_FORM_BODY, errors=self.tree)


@dataclass
class Upload:
    """One file part of a multipart request (`files[n]`)."""

    field: str
    filename: str
    size: int
    content_type: str | None
    data: bytes = field(repr=False, compare=False)

    @property
    def index(self) -> int | None:
        match = _FILE_FIELD.match(self.field)
        return int(match.group(1)) if match else None


@dataclass
class RecordedRequest:
    method: str
    path: str  # relative to API_PREFIX when under it, e.g. "/channels/1/messages"
    query: dict[str, str]
    json: Any  # the JSON body, or the multipart payload_json
    uploads: list[Upload]
    at: float  # fake-clock time received
    route: str | None = None  # matched route template; None if the fake does not implement it
    status: int | None = None
    response: Any = None


@dataclass
class FakeInteraction:
    """What the fake knows about one registered interaction (a copy when handed to tests)."""

    id: int
    token: str
    type: int
    application_id: int
    channel_id: int
    guild_id: int | None
    user: dict
    attachment_size_limit: int
    created_at: float  # fake-clock time it was registered
    payload: dict = field(repr=False)
    response_type: int | None = None  # the callback type it was acknowledged with
    acknowledged_at: float | None = None
    original_message_id: int | None = None
    followup_message_ids: list[int] = field(default_factory=list)
    modal: dict | None = None  # the modal it was answered with (callback type 9)

    @property
    def acknowledged_after(self) -> float | None:
        """Seconds between creation and the first (successful) callback."""
        return None if self.acknowledged_at is None else self.acknowledged_at - self.created_at


@dataclass
class _Channel:
    data: dict  # Discord's channel object, served by GET /channels/{id}
    app_permissions: int = DEFAULT_BOT_PERMISSIONS  # what the bot may do here (channel routes only)
    forced_error: tuple | None = None  # scripted error for posts and deletes (deny_channel)
    deleted: bool = False
    attachment_size_limit: int | None = None

    @property
    def id(self) -> int:
        return int(self.data["id"])

    @property
    def guild_id(self) -> int | None:
        return int(self.data["guild_id"]) if self.data.get("guild_id") else None


@dataclass
class _RateLimit:
    pattern: str  # glob over "METHOD /path", e.g. "POST /channels/*/messages"
    retry_after: float
    remaining: int
    is_global: bool


@dataclass
class _BucketRule:
    pattern: str  # glob over "METHOD /path", as for _RateLimit
    limit: int  # requests per window
    window: float  # seconds


@dataclass
class _Window:
    opened: float  # time.monotonic() of the window's first request
    used: int = 0


@dataclass(frozen=True)
class _BucketState:
    """What one request's X-RateLimit-* headers say about its bucket."""

    bucket: str  # X-RateLimit-Bucket: the route's hash
    limit: int
    remaining: int
    reset_after: float  # seconds until the window ends
    exhausted: bool  # the request found no room: it was answered 429


class _RouteBuckets:
    """Discord's per-route rate limits. Each route has a bucket, named by a hash, and each major
    parameter (channel, guild, webhook id + token) has its own count in it. Windows use real time,
    not the fake clock: discord.py really sleeps until they reset."""

    def __init__(self, limit: int, window: float):
        self.rules = [_BucketRule("*", limit, window)]  # first match wins; the default is last
        self._windows: dict[tuple[str, str], _Window] = {}

    def take(self, route: str, major: str, method_and_path: str) -> _BucketState:
        """Count one request of `route` (e.g. "POST /channels/{channel_id}/messages") for `major`."""
        rule = next(r for r in self.rules if fnmatch.fnmatchcase(method_and_path, r.pattern))
        now = time.monotonic()
        window = self._windows.get((route, major))
        if window is None or now >= window.opened + rule.window:
            window = self._windows[(route, major)] = _Window(now)
        exhausted = window.used >= rule.limit
        if not exhausted:
            window.used += 1
        # Rounded up to the millisecond, so a client that waits exactly this long finds the new window.
        reset_after = math.ceil((window.opened + rule.window - now) * 1000) / 1000
        return _BucketState(_bucket_hash(route), rule.limit, max(rule.limit - window.used, 0), reset_after, exhausted)


@dataclass
class _Failure:
    pattern: str  # glob over "METHOD /path", as for _RateLimit
    error: tuple  # (status, code, message)
    remaining: int | None  # None: every matching request


@dataclass
class _Call:
    """A parsed request, as handlers see it."""

    json: Any
    uploads: list[Upload]
    query: dict[str, str]
    # Why Discord would refuse the body (content type, malformed JSON). Raised by the route after
    # its authorization check, as Discord answers a missing token before it reads the body.
    body_error: DiscordError | None = None


_CALL = web.RequestKey("call", _Call)


class FakeDiscordServer:
    """Discord's HTTP API on 127.0.0.1, in a background thread (so it outlives discord.py clients).

    Use as a context manager, or start()/stop(). Thread-safe: handlers run on the server's own
    event loop, tests read state from theirs; everything shared is guarded by one lock.
    """

    def __init__(
        self,
        *,
        application_id: int = DEFAULT_APPLICATION_ID,
        bot_token: str = BOT_TOKEN,
        bucket_limit: int = DEFAULT_BUCKET_LIMIT,
        bucket_window: float = DEFAULT_BUCKET_WINDOW,
    ):
        self.application_id = application_id
        self.bot_token = bot_token
        self.bot_user = {
            "id": str(application_id),  # a bot's user id is its application id
            "username": "veobot",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "flags": 0,
            "public_flags": 0,
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
        }
        self._lock = threading.RLock()
        self._clock_offset = 0.0
        self._requests: list[RecordedRequest] = []
        self._interactions: dict[int, FakeInteraction] = {}
        self._by_token: dict[str, FakeInteraction] = {}
        self._channels: dict[int, _Channel] = {}
        self._guild_size_limits: dict[int, int] = {}
        self._messages: dict[int, dict] = {}  # insertion order is send order
        self._files: dict[int, bytes] = {}
        self._stalled: dict[int, float] = {}  # attachment id -> seconds before it is served
        self._users: dict[int, dict] = {}
        self._dms_refused: set[int] = set()  # users who do not accept DMs from the bot
        self._commands: dict[int | None, list[dict]] = {}
        self._rate_limits: list[_RateLimit] = []
        self._buckets = _RouteBuckets(bucket_limit, bucket_window)
        self._failures: list[_Failure] = []
        self.internal_errors: list[BaseException] = []  # bugs in the fake itself
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.gateway = FakeGateway(self)  # the websocket gateway (tests/fakes/discord_gateway.py)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeDiscordServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-discord", daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FakeDiscordServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The value for discord.http.Route.BASE (it includes the /api/v10 prefix)."""
        return self.origin + API_PREFIX

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[FakeDiscordServer]:
        """Point discord.py here. Route reads BASE when each request is built, and the webhook
        adapter (interaction callbacks, followups, @original) builds the same Route objects, so
        this one attribute covers REST and webhooks alike."""
        from discord.http import Route

        previous = Route.BASE
        Route.BASE = self.base_url
        try:
            yield self
        finally:
            Route.BASE = previous

    # --- simulated clock -----------------------------------------------------------------

    def now(self) -> float:
        """Fake-clock time: wall-clock time plus everything advance()d."""
        return time.time() + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move the fake clock forward, e.g. advance(16 * 60) to expire every interaction token."""
        with self._lock:
            self._clock_offset += seconds

    # --- scripting ---------------------------------------------------------------------

    def register_interaction(self, payload: dict) -> FakeInteraction:
        """Tell the fake an INTERACTION_CREATE happened now: its 3 s and 15 min clocks start.

        Registering the same interaction again (a duplicate delivery) changes nothing."""
        with self._lock:
            interaction_id = int(payload["id"])
            if interaction_id not in self._interactions:
                self._interactions[interaction_id] = it = self._new_interaction(payload)
                self._by_token[it.token] = it
            return copy.deepcopy(self._interactions[interaction_id])

    def add_channel(
        self,
        channel_id: int,
        *,
        guild_id: int | None = None,
        name: str = "general",
        app_permissions: int = DEFAULT_BOT_PERMISSIONS,
    ) -> None:
        """Make a guild text channel (or, with guild_id=None, a DM) exist for channel routes, where the
        bot has `app_permissions` (by default View Channel, Send Messages, Embed Links, Attach Files)."""
        data = {"id": str(channel_id), "type": 1 if guild_id is None else 0, "last_message_id": None, "flags": 0}
        if guild_id is not None:
            data |= {
                "guild_id": str(guild_id),
                "name": name,
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "topic": None,
                "rate_limit_per_user": 0,
            }
        with self._lock:
            self._channels[channel_id] = _Channel(data, app_permissions=app_permissions)

    def grant_permissions(self, channel_id: int, permissions: int) -> None:
        """Give the bot these permission bits in the channel, e.g. MANAGE_MESSAGES."""
        with self._lock:
            self._known_channel(channel_id).app_permissions |= permissions

    def revoke_permissions(self, channel_id: int, permissions: int) -> None:
        """Take these permission bits from the bot in the channel, e.g. EMBED_LINKS | ATTACH_FILES.
        (An interaction registered in the channel afterwards sets them to its app_permissions.)"""
        with self._lock:
            self._known_channel(channel_id).app_permissions &= ~permissions

    def add_user_message(
        self, channel_id: int, content: str = "hello", *, author_id: int = SOMEONE_ID, attachments: list[dict] = ()
    ) -> dict:
        """A message someone other than the bot posted in a known channel: the bot may not edit it,
        and may delete it only with MANAGE_MESSAGES. ``attachments``: from add_user_attachment()."""
        with self._lock:
            self._known_channel(channel_id)
            message = self._new_message(channel_id)
            message |= {"author": self._user(author_id), "content": content, "attachments": list(attachments)}
            return copy.deepcopy(message)

    def delete_message(self, message_id: int) -> None:
        """Someone deleted the message (its author, or a moderator): the bot finds it gone (10008)."""
        with self._lock:
            self._messages.pop(int(message_id), None)

    def refuse_dms(self, user_id: int, refused: bool = True) -> None:
        """The user does not accept DMs from the bot: opening the DM channel still works (as on
        Discord), posting in it gets 403 50007 Cannot send messages to this user."""
        with self._lock:
            (self._dms_refused.add if refused else self._dms_refused.discard)(int(user_id))

    def deny_channel(self, channel_id: int, error: tuple = MISSING_PERMISSIONS) -> None:
        """Posts to the channel, and deletes of its messages, fail with `error` (default 403 50013
        Missing Permissions)."""
        with self._lock:
            self._known_channel(channel_id).forced_error = error

    def delete_channel(self, channel_id: int) -> None:
        """Every channel route for it now answers 404 10003 Unknown Channel."""
        with self._lock:
            self._known_channel(channel_id).deleted = True

    def set_attachment_size_limit(
        self, limit: int, *, guild_id: int | None = None, channel_id: int | None = None
    ) -> None:
        """Per-file limit for channel posts (interaction webhooks use the payload's attachment_size_limit)."""
        with self._lock:
            if channel_id is not None:
                self._known_channel(channel_id).attachment_size_limit = limit
            elif guild_id is not None:
                self._guild_size_limits[guild_id] = limit
            else:
                raise TypeError("give guild_id or channel_id")

    def rate_limit(self, route: str, *, retry_after: float = 0.1, times: int = 1, is_global: bool = False) -> None:
        """The next `times` requests matching `route` get a 429.

        `route` is a shell-style glob over "METHOD /path" (path without /api/v10, `*` also spans
        slashes), e.g. "POST /channels/*/messages" or "PATCH /webhooks/*/messages/@original"."""
        with self._lock:
            self._rate_limits.append(_RateLimit(route, retry_after, times, is_global))

    def limit_route(self, route: str, limit: int, *, per: float = DEFAULT_BUCKET_WINDOW) -> None:
        """Requests matching `route` (a glob, as for rate_limit) get buckets of `limit` requests per
        `per` seconds, still counted per major parameter; the latest matching call wins."""
        with self._lock:
            self._buckets.rules.insert(0, _BucketRule(route, limit, per))

    def fail(self, route: str, error: tuple = SERVER_ERROR, *, times: int | None = 1) -> None:
        """The next `times` requests matching `route` (a glob, as for rate_limit) get `error`
        (status, code, message), e.g. SERVICE_UNAVAILABLE or UNKNOWN_WEBHOOK; times=None: all of them.

        Mind discord.py's own retries: 500, 502 and 504 are retried with sleeps of 1, 3, 5, 7 s."""
        with self._lock:
            self._failures.append(_Failure(route, error, times))

    def expire_interaction(self, interaction_id: int) -> None:
        """Age one interaction past its 15 minutes: its webhook token now gets 401 50027."""
        with self._lock:
            self._interactions[int(interaction_id)].created_at = self.now() - TOKEN_LIFETIME - 1

    # --- inspection ----------------------------------------------------------------------

    def requests(self, route: str = "*") -> list[RecordedRequest]:
        """Recorded requests matching a "METHOD /path" glob (see rate_limit), oldest first."""
        with self._lock:
            return [r for r in self._requests if fnmatch.fnmatchcase(f"{r.method} {r.path}", route)]

    def unhandled_requests(self) -> list[RecordedRequest]:
        """Requests for routes the fake does not implement (they got a plain 404)."""
        with self._lock:
            return [r for r in self._requests if r.route is None]

    def interaction(self, interaction_id: int) -> FakeInteraction:
        with self._lock:
            return copy.deepcopy(self._interactions[int(interaction_id)])

    def message(self, message_id: int) -> dict | None:
        """A message as users see it now (None once deleted), with the allowed_mentions it was sent with."""
        with self._lock:
            return copy.deepcopy(self._messages.get(int(message_id)))

    def messages_in(self, channel_id: int, *, ephemeral: bool | None = None) -> list[dict]:
        """Messages currently in a channel, oldest first; ephemeral=False keeps what everyone sees."""
        with self._lock:
            return copy.deepcopy(
                [
                    m
                    for m in self._messages.values()
                    if m["channel_id"] == str(channel_id)
                    and (ephemeral is None or bool(m["flags"] & EPHEMERAL) == ephemeral)
                ]
            )

    def dms_to(self, user_id: int) -> list[dict]:
        """Messages in the DM channel between the user and the bot, oldest first."""
        return self.messages_in(dm_channel_id(user_id))

    def original_response(self, interaction_id: int) -> dict | None:
        with self._lock:
            return self.message(self._interactions[int(interaction_id)].original_message_id or 0)

    def followups(self, interaction_id: int) -> list[dict]:
        with self._lock:
            ids = self._interactions[int(interaction_id)].followup_message_ids
            return [m for m in map(self.message, ids) if m is not None]

    def add_user_attachment(
        self,
        data: bytes,
        filename: str,
        *,
        channel_id: int,
        content_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> dict:
        """A file a user attached (to a command option or a message): its attachment object, as
        `data.resolved.attachments` carries it, served from this server's CDN path. The
        `content_type`, `width` and `height` are what Discord reports, which need not be true of
        the bytes (a client can lie about them)."""
        with self._lock:
            attachment_id = new_snowflake(self.now())
            self._files[attachment_id] = data
        url = f"{self.origin}/attachments/{channel_id}/{attachment_id}/{filename}"
        attachment = {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type or _guess_type(filename, None),
            "ephemeral": True,
        }
        if width is not None and height is not None:
            attachment |= {"width": width, "height": height}
        return attachment

    def stall_attachment(self, attachment: dict, seconds: float) -> None:
        """Serve ``attachment`` only after ``seconds``: a download that stalls."""
        with self._lock:
            self._stalled[int(attachment["id"])] = seconds

    def attachment_data(self, attachment_id: int | str) -> bytes:
        with self._lock:
            return self._files[int(attachment_id)]

    def commands(self, guild_id: int | None = None) -> list[dict]:
        """Application commands as last bulk-overwritten (global, or for one guild)."""
        with self._lock:
            return copy.deepcopy(self._commands.get(guild_id, []))

    # --- HTTP plumbing -------------------------------------------------------------------

    async def _serve(self) -> int:
        app = web.Application(middlewares=[self._middleware], client_max_size=1 << 30)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return self._runner.addresses[0][1]

    def _add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Callable[..., Any], bool]] = [
            # (method, path, handler, needs the bot token)
            ("GET", "/users/@me", self._get_me, True),
            ("GET", "/gateway/bot", lambda call: self.gateway.bot_gateway(), True),
            ("POST", "/users/@me/channels", self._open_dm, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/applications/{application_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{application_id}/commands", self._put_commands, True),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands, True),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback, False),
            ("POST", "/webhooks/{application_id}/{token}", self._followup, False),
            ("GET", "/webhooks/{application_id}/{token}/messages/{message_id}", self._get_webhook_message, False),
            ("PATCH", "/webhooks/{application_id}/{token}/messages/{message_id}", self._edit_webhook_message, False),
            ("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", self._delete_webhook_message, False),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("POST", "/channels/{channel_id}/messages", self._post_channel_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_channel_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_channel_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_channel_message, True),
        ]
        for method, path, handler, bot_auth in routes:
            app.router.add_route(method, API_PREFIX + path, self._endpoint(handler, bot_auth))
        # Attachment URLs point here rather than at the CDN, so Attachment.read() stays local.
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._serve_attachment)
        self.gateway.add_routes(app)

    def _endpoint(self, handler: Callable[..., Any], bot_auth: bool) -> Callable:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            if bot_auth and request.headers.get("Authorization") != f"Bot {self.bot_token}":
                raise DiscordError(*UNAUTHORIZED)
            if request[_CALL].body_error is not None:
                raise request[_CALL].body_error
            with self._lock:  # serialize inside the lock: results may be live server state
                result = handler(request[_CALL], **request.match_info)
                return web.Response(status=204) if result is None else _json(200, result)

        return endpoint

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path.startswith(GATEWAY_PATH):
            return await handler(request)  # a websocket: the gateway keeps its own record
        record = RecordedRequest(
            method=request.method,
            path=request.path.removeprefix(API_PREFIX),
            query=dict(request.query),
            json=None,
            uploads=[],
            at=self.now(),
        )
        resource = request.match_info.route.resource
        if resource is not None:
            record.route = resource.canonical.removeprefix(API_PREFIX)
        with self._lock:
            self._requests.append(record)
        bucket = None
        try:
            call = request[_CALL] = await _read_call(request)
            record.json, record.uploads = call.json, call.uploads
            with self._lock:
                response, bucket = self._answer_before_route(request, f"{record.method} {record.path}")
            if response is None:
                response = await handler(request)
        except DiscordError as error:
            response = _json(error.status, error.body)
        except web.HTTPNotFound:
            response = _json(*_body(NOT_FOUND))
        except web.HTTPMethodNotAllowed:
            response = _json(*_body(METHOD_NOT_ALLOWED))
        except Exception as error:  # a bug in the fake: fail fast (a 500 would make discord.py retry for ~16 s)
            log.exception("fake Discord server failed on %s %s", request.method, request.path)
            self.internal_errors.append(error)
            response = _json(400, {"message": f"fake server error: {error!r}", "code": 0})
        if bucket is not None:  # on every answer of a bucketed route, errors included, as Discord does
            response.headers.update(_bucket_headers(bucket))
        # discord.py treats a 429 without Via as a Cloudflare ban; real Discord always sends it.
        response.headers["Via"] = "1.1 google"
        record.status = response.status
        if isinstance(response, web.Response) and response.body:
            record.response = json.loads(response.body) if response.content_type == "application/json" else None
        return response

    def _answer_before_route(
        self, request: web.Request, method_and_path: str
    ) -> tuple[web.Response | None, _BucketState | None]:
        """A scripted 429 (which leaves the bucket alone), else the route's bucket (429 when it is
        exhausted), else a scripted error; None when the route itself answers."""
        scripted = self._take_rate_limit(method_and_path)
        if scripted:
            return _rate_limited(scripted), None
        bucket = self._take_bucket(request, method_and_path)
        if bucket is not None and bucket.exhausted:
            return _bucket_exhausted(bucket), bucket
        failure = self._take_failure(method_and_path)
        if failure:
            return _json(*_body(failure.error)), bucket
        return None, bucket

    def _take_bucket(self, request: web.Request, method_and_path: str) -> _BucketState | None:
        resource = request.match_info.route.resource
        if resource is None or not resource.canonical.startswith(API_PREFIX):
            return None  # unknown routes and attachment downloads (the CDN) have no bucket
        route = f"{request.method} {resource.canonical.removeprefix(API_PREFIX)}"
        return self._buckets.take(route, _major_parameter(request.match_info), method_and_path)

    def _take_rate_limit(self, method_and_path: str) -> _RateLimit | None:
        for rule in self._rate_limits:
            if rule.remaining > 0 and fnmatch.fnmatchcase(method_and_path, rule.pattern):
                rule.remaining -= 1
                return rule
        return None

    def _take_failure(self, method_and_path: str) -> _Failure | None:
        for rule in self._failures:
            if rule.remaining != 0 and fnmatch.fnmatchcase(method_and_path, rule.pattern):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        with self._lock:
            data = self._files.get(int(request.match_info["attachment_id"]))
            stall = self._stalled.get(int(request.match_info["attachment_id"]))
        if stall:
            await asyncio.sleep(stall)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type=_guess_type(request.match_info["filename"]))

    # --- login and commands ------------------------------------------------------------

    def _get_me(self, call: _Call) -> dict:
        return self.bot_user

    def _get_application(self, call: _Call) -> dict:
        owner = {"id": str(OWNER_ID), "username": "owner", "discriminator": "0", "global_name": None, "avatar": None}
        return {
            "id": str(self.application_id),
            "name": "veobot",
            "icon": None,
            "description": "",
            "summary": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 0,
            "owner": owner,
            "team": None,
            "bot": self.bot_user,
            "redirect_uris": [],
            # Must stay None: with an endpoint URL Discord would not send interactions over the gateway.
            "interactions_endpoint_url": None,
            "integration_types_config": {"0": {}},
        }

    def _get_commands(self, call: _Call, application_id: str, guild_id: str | None = None) -> list:
        self._check_application(application_id)
        return self._commands.get(_snowflake(guild_id) if guild_id else None, [])

    def _put_commands(self, call: _Call, application_id: str, guild_id: str | None = None) -> list:
        self._check_application(application_id)
        scope = _snowflake(guild_id) if guild_id else None
        errors = _FormErrors()
        for i, command in enumerate(call.json or []):
            _validate_command(command, (i,), errors)
        errors.raise_if_any()
        previous = {c["name"]: c["id"] for c in self._commands.get(scope, [])}
        stored = []
        for command in call.json or []:
            entry = {
                "type": 1,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **command,
                "id": previous.get(command["name"]) or str(new_snowflake(self.now())),
                "application_id": str(self.application_id),
                "version": str(new_snowflake(self.now())),
            }
            if scope is not None:
                entry["guild_id"] = str(scope)
            stored.append(entry)
        self._commands[scope] = stored
        return stored

    def _check_application(self, application_id: str) -> None:
        if application_id != str(self.application_id):
            raise DiscordError(*MISSING_ACCESS)

    # --- interaction callback ------------------------------------------------------------

    def _callback(self, call: _Call, interaction_id: str, token: str) -> dict | None:
        it = self._interactions.get(_snowflake(interaction_id))
        if it is None or it.token != token or self._age(it) > TOKEN_LIFETIME:
            raise DiscordError(*UNKNOWN_INTERACTION)
        if it.response_type is not None:
            raise DiscordError(*ALREADY_ACKNOWLEDGED)
        if self._age(it) > INTERACTION_DEADLINE:
            # Discord forgets an interaction nobody answered within 3 s.
            raise DiscordError(*UNKNOWN_INTERACTION)

        body = call.json or {}
        kind = body.get("type")
        data = body.get("data") or {}
        allowed = _CALLBACK_TYPES.get(it.type, set())
        if kind not in allowed:
            errors = _FormErrors()
            errors.add(("type",), "BASE_TYPE_CHOICES", f"Value must be one of {sorted(allowed)}.")
            errors.raise_if_any()
        if kind in (4, 7):
            _check_message(data, call.uploads, it.attachment_size_limit, prefix=("data",))
        elif kind == 9:
            errors = _FormErrors()
            validate_modal(data, errors)
            errors.raise_if_any()
            it.modal = copy.deepcopy(data)  # what modal_submit() answers

        message = None
        if kind == 4:
            message = self._create_message(
                it.channel_id, data, call.uploads, interaction=it, ephemeral=bool(data.get("flags", 0) & EPHEMERAL)
            )
        elif kind == 5:
            message = self._new_message(
                it.channel_id, interaction=it, flags=LOADING | (data.get("flags", 0) & EPHEMERAL)
            )
        elif kind == 7:
            message = self._edit_message(self._component_message(it), data, call.uploads)
        if kind == 6:
            it.original_message_id = int(self._component_message(it)["id"])
        elif message is not None:
            it.original_message_id = int(message["id"])
        it.response_type, it.acknowledged_at = kind, self.now()

        if not _truthy(call.query.get("with_response")):
            return None
        response = {
            "interaction": {
                "id": str(it.id),
                "type": it.type,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message["flags"] & EPHEMERAL),
            },
            "resource": {"type": kind},
        }
        if message is not None:
            response["interaction"]["response_message_id"] = message["id"]
            response["resource"]["message"] = _wire(message)
        return response

    def _component_message(self, it: FakeInteraction) -> dict:
        """The message a clicked component was on (taken from the payload if the fake never saw it)."""
        data = it.payload["message"]
        return self._messages.setdefault(int(data["id"]), {"allowed_mentions": None, **copy.deepcopy(data)})

    # --- interaction webhooks (followups, @original) ---------------------------------------

    def _followup(self, call: _Call, application_id: str, token: str) -> dict | None:
        it = self._webhook_interaction(application_id, token)
        if it.response_type is None:
            raise DiscordError(*UNKNOWN_WEBHOOK)
        body = call.json or {}
        _check_message(body, call.uploads, it.attachment_size_limit)

        original = self._messages.get(it.original_message_id or 0)
        if original is not None and original["flags"] & LOADING:
            # Discord treats the first followup after a defer as resolving the "thinking" message:
            # it edits the original, and its visibility stays what the defer chose.
            message = self._edit_message(original, body, call.uploads)
        else:
            message = self._create_message(
                it.channel_id, body, call.uploads, interaction=it, ephemeral=bool(body.get("flags", 0) & EPHEMERAL)
            )
            it.followup_message_ids.append(int(message["id"]))
        return _wire(message) if _truthy(call.query.get("wait")) else None

    def _get_webhook_message(self, call: _Call, application_id: str, token: str, message_id: str) -> dict:
        it = self._webhook_interaction(application_id, token)
        return _wire(self._webhook_message(it, message_id))

    def _edit_webhook_message(self, call: _Call, application_id: str, token: str, message_id: str) -> dict:
        it = self._webhook_interaction(application_id, token)
        message = self._webhook_message(it, message_id)
        body = call.json or {}
        _check_message(body, call.uploads, it.attachment_size_limit)
        return _wire(self._edit_message(message, body, call.uploads))

    def _delete_webhook_message(self, call: _Call, application_id: str, token: str, message_id: str) -> None:
        it = self._webhook_interaction(application_id, token)
        del self._messages[int(self._webhook_message(it, message_id)["id"])]

    def _webhook_interaction(self, application_id: str, token: str) -> FakeInteraction:
        it = self._by_token.get(token)
        if it is None or str(it.application_id) != application_id or self._age(it) > TOKEN_LIFETIME:
            raise DiscordError(*INVALID_WEBHOOK_TOKEN)
        return it

    def _webhook_message(self, it: FakeInteraction, message_id: str) -> dict:
        """@original, or a message id of this interaction's original response or followups."""
        if message_id == "@original":
            wanted = it.original_message_id
        else:
            wanted = _snowflake(message_id)
            if wanted not in (it.original_message_id, *it.followup_message_ids):
                wanted = None
        message = self._messages.get(wanted or 0)
        if message is None:
            raise DiscordError(*UNKNOWN_MESSAGE)
        return message

    # --- channels ------------------------------------------------------------------------

    def _get_channel(self, call: _Call, channel_id: str) -> dict:
        channel = self._channel(channel_id)
        _require_view(channel)
        return channel.data

    def _open_dm(self, call: _Call) -> dict:
        """POST /users/@me/channels {recipient_id}: the DM channel with that user (type 1)."""
        recipient = (call.json or {}).get("recipient_id") if isinstance(call.json, dict) else None
        if not (isinstance(recipient, int) or (isinstance(recipient, str) and recipient.isdigit())):
            errors = _FormErrors()
            errors.add(("recipient_id",), "NUMBER_TYPE_COERCE", f'Value "{recipient}" is not snowflake.')
            errors.raise_if_any()
        user_id = int(recipient)
        channel_id = dm_channel_id(user_id)
        if channel_id not in self._channels:
            self.add_channel(channel_id)
        channel = self._channels[channel_id]
        channel.data["recipients"] = [self._user(user_id)]
        return channel.data

    def _post_channel_message(self, call: _Call, channel_id: str) -> dict:
        channel = self._channel(channel_id)
        if channel.forced_error:
            raise DiscordError(*channel.forced_error)
        if channel.data["type"] == 1 and self._dms_refused & {int(u["id"]) for u in channel.data.get("recipients", [])}:
            raise DiscordError(*CANNOT_SEND_TO_USER)
        _require_view(channel)
        _require(channel, SEND_MESSAGES)
        body = call.json or {}
        _require_content_permissions(channel, body, call.uploads)
        _check_message(body, call.uploads, self._channel_size_limit(channel))
        kind = 19 if body.get("message_reference") else 0  # REPLY or DEFAULT
        return _wire(self._create_message(channel.id, body, call.uploads, kind=kind))

    def _get_channel_message(self, call: _Call, channel_id: str, message_id: str) -> dict:
        return _wire(self._channel_message(channel_id, message_id))

    def _edit_channel_message(self, call: _Call, channel_id: str, message_id: str) -> dict:
        channel = self._channel(channel_id)
        _require_view(channel)
        message = self._channel_message(channel_id, message_id)
        if not self._authored_by_bot(message):
            raise DiscordError(*CANNOT_EDIT_OTHERS_MESSAGE)  # whatever the bot's permissions
        body = call.json or {}
        _require_content_permissions(channel, body, call.uploads)
        _check_message(body, call.uploads, self._channel_size_limit(channel))
        return _wire(self._edit_message(message, body, call.uploads))

    def _delete_channel_message(self, call: _Call, channel_id: str, message_id: str) -> None:
        # A bot deletes its own messages without MANAGE_MESSAGES, but not in a channel it cannot see.
        channel = self._channel(channel_id)
        if channel.forced_error:
            raise DiscordError(*channel.forced_error)
        _require_view(channel)
        message = self._channel_message(channel_id, message_id)
        if not self._authored_by_bot(message):
            _require(channel, MANAGE_MESSAGES)
        del self._messages[int(message["id"])]

    def _authored_by_bot(self, message: dict) -> bool:
        return message["author"]["id"] == self.bot_user["id"]

    def _channel(self, channel_id: str | int) -> _Channel:
        channel = self._channels.get(_snowflake(channel_id))
        if channel is None or channel.deleted:
            raise DiscordError(*UNKNOWN_CHANNEL)
        return channel

    def _known_channel(self, channel_id: int) -> _Channel:
        if channel_id not in self._channels:
            raise KeyError(f"channel {channel_id} unknown to the fake: add_channel() or register an interaction in it")
        return self._channels[channel_id]

    def _channel_message(self, channel_id: str, message_id: str) -> dict:
        channel = self._channel(channel_id)
        message = self._messages.get(_snowflake(message_id))
        # Ephemeral messages exist only for their interaction's webhook, never on channel routes.
        if message is None or message["channel_id"] != str(channel.id) or message["flags"] & EPHEMERAL:
            raise DiscordError(*UNKNOWN_MESSAGE)
        return message

    def _channel_size_limit(self, channel: _Channel) -> int:
        if channel.attachment_size_limit is not None:
            return channel.attachment_size_limit
        return self._guild_size_limits.get(channel.guild_id, DEFAULT_ATTACHMENT_SIZE_LIMIT)

    # --- messages ------------------------------------------------------------------------

    def _new_message(
        self, channel_id: int, *, kind: int = 0, flags: int = 0, interaction: FakeInteraction | None = None
    ) -> dict:
        now = self.now()
        message = {
            "id": str(new_snowflake(now)),
            "channel_id": str(channel_id),
            "type": kind,
            "content": "",
            "author": self.bot_user,
            "timestamp": _iso(now),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "flags": flags,
            "allowed_mentions": None,  # fake-only: what the bot asked for; stripped from responses
        }
        if interaction is not None:
            message |= {
                "type": 20,  # CHAT_INPUT_COMMAND
                "webhook_id": str(interaction.application_id),
                "application_id": str(interaction.application_id),
                "interaction_metadata": {
                    "id": str(interaction.id),
                    "type": interaction.type,
                    "user": interaction.user,
                    "authorizing_integration_owners": interaction.payload.get("authorizing_integration_owners", {}),
                },
            }
        self._messages[int(message["id"])] = message
        return message

    def _create_message(
        self,
        channel_id: int,
        body: dict,
        uploads: list[Upload],
        *,
        kind: int = 0,
        ephemeral: bool = False,
        interaction: FakeInteraction | None = None,
    ) -> dict:
        flags = (body.get("flags") or 0) & ~(EPHEMERAL | LOADING) | (EPHEMERAL if ephemeral else 0)
        message = self._new_message(channel_id, kind=kind, flags=flags, interaction=interaction)
        try:
            self._apply(message, body, uploads)
            if not (
                message["content"]
                or message["embeds"]
                or message["attachments"]
                or message["components"]
                or body.get("sticker_ids")
                or body.get("poll")
            ):
                raise DiscordError(*EMPTY_MESSAGE)
        except DiscordError:
            del self._messages[int(message["id"])]
            raise
        return message

    def _edit_message(self, message: dict, body: dict, uploads: list[Upload]) -> dict:
        if "flags" in body and body["flags"] is not None:
            # Ephemerality is fixed at creation; only the display flags can change.
            message["flags"] = (message["flags"] & EPHEMERAL) | (body["flags"] & ~(EPHEMERAL | LOADING))
        message["flags"] &= ~LOADING  # any edit resolves a deferred "thinking" message
        message["edited_timestamp"] = _iso(self.now())
        self._apply(message, body, uploads)
        return message

    def _apply(self, message: dict, body: dict, uploads: list[Upload]) -> None:
        """Apply a create or edit body: present fields replace, absent ones are kept."""
        if "content" in body:
            message["content"] = body["content"] or ""
        if "embeds" in body:
            message["embeds"] = [{"type": "rich", **embed} for embed in body["embeds"] or []]
        if "components" in body:
            message["components"] = body["components"] or []
        if "tts" in body:
            message["tts"] = bool(body["tts"])
        if "allowed_mentions" in body:
            message["allowed_mentions"] = body["allowed_mentions"]
        if "message_reference" in body:
            message["message_reference"] = body["message_reference"]
        message["attachments"] = self._attachments(message, body, uploads)
        message["mentions"], message["mention_everyone"] = self._mentions(
            message["content"], message["allowed_mentions"]
        )

    def _attachments(self, message: dict, body: dict, uploads: list[Upload]) -> list[dict]:
        """With an `attachments` array, the message keeps exactly the listed existing attachments
        (by id) plus new uploads (id = the n of files[n]); without it, uploads are appended."""
        new = {upload.index: upload for upload in uploads}
        if "attachments" not in body:
            return message["attachments"] + [self._store_file(message, u) for u in uploads]
        existing = {a["id"]: a for a in message["attachments"]}
        result = []
        for entry in body["attachments"] or []:
            if str(entry.get("id")) in existing:
                result.append(existing[str(entry["id"])])
            elif (upload := new.pop(_int_or_none(entry.get("id")), None)) is not None:
                result.append(self._store_file(message, upload, entry.get("description")))
        return result + [self._store_file(message, u) for u in new.values()]

    def _store_file(self, message: dict, upload: Upload, description: str | None = None) -> dict:
        attachment_id = new_snowflake(self.now())
        self._files[attachment_id] = upload.data
        url = f"{self.origin}/attachments/{message['channel_id']}/{attachment_id}/{upload.filename}"
        attachment = {
            "id": str(attachment_id),
            "filename": upload.filename,
            "size": upload.size,
            "url": url,
            "proxy_url": url,
            "content_type": _guess_type(upload.filename, upload.content_type),
        }
        if description:
            attachment["description"] = description
        return attachment

    def _mentions(self, content: str, allowed: dict | None) -> tuple[list[dict], bool]:
        """Who gets pinged: user mentions in the content that allowed_mentions permits (all when absent)."""
        ids = list(dict.fromkeys(int(m) for m in _USER_MENTION.findall(content)))
        everyone = "@everyone" in content or "@here" in content
        if allowed is not None:
            parse = allowed.get("parse") or []
            listed = {int(u) for u in allowed.get("users") or []}
            ids = [i for i in ids if "users" in parse or i in listed]
            everyone = everyone and "everyone" in parse
        return [self._user(i) for i in ids], everyone

    def _user(self, user_id: int) -> dict:
        return self._users.get(user_id) or {
            "id": str(user_id),
            "username": f"user{user_id}",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
        }

    # --- interactions --------------------------------------------------------------------

    def _new_interaction(self, payload: dict) -> FakeInteraction:
        user = (payload.get("member") or {}).get("user") or payload["user"]
        self._users[int(user["id"])] = user
        channel_data = payload.get("channel") or {"id": payload["channel_id"], "type": 0}
        channel_id = int(channel_data["id"])
        if channel_id not in self._channels:
            self._channels[channel_id] = _Channel(copy.deepcopy(channel_data))
        if "app_permissions" in payload:
            # What the bot may do in that channel right now; channel routes are checked against it.
            self._channels[channel_id].app_permissions = int(payload["app_permissions"])
        return FakeInteraction(
            id=int(payload["id"]),
            token=payload["token"],
            type=payload["type"],
            application_id=int(payload["application_id"]),
            channel_id=channel_id,
            guild_id=_int_or_none(payload.get("guild_id")),
            user=user,
            attachment_size_limit=int(payload.get("attachment_size_limit", DEFAULT_ATTACHMENT_SIZE_LIMIT)),
            created_at=self.now(),
            payload=copy.deepcopy(payload),
        )

    def _age(self, it: FakeInteraction) -> float:
        return self.now() - it.created_at


# --- request and response helpers --------------------------------------------------------


async def _read_call(request: web.Request) -> _Call:
    """Parse a JSON body, or a multipart body of payload_json + files[n] (how discord.py uploads).

    Like Discord, only those two content types are read; a body of any other type, or JSON
    that does not parse, is kept as the call's body_error."""
    call = _Call(None, [], dict(request.query))
    try:
        if request.content_type == "multipart/form-data":
            await _read_multipart(request, call)
        elif request.can_read_body:
            raw = await request.read()
            if raw and request.content_type != "application/json":
                raise DiscordError(*INVALID_FORM_BODY, errors=_CONTENT_TYPE_ERRORS)
            call.json = _parse_json(raw) if raw else None
    except DiscordError as error:
        call.body_error = error
    return call


async def _read_multipart(request: web.Request, call: _Call) -> None:
    reader = await request.multipart()
    async for part in reader:
        data = await part.read(decode=False)
        if part.name == "payload_json":
            call.json = _parse_json(data)
        else:
            call.uploads.append(
                Upload(part.name or "", part.filename or "", len(data), part.headers.get("Content-Type"), data)
            )


_CONTENT_TYPE_ERRORS = {
    "_errors": [
        {
            "code": "CONTENT_TYPE_INVALID",
            "message": "Expected \"Content-Type\" header to be one of {'application/json', 'multipart/form-data'}.",
        }
    ]
}


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # includes bytes that are not UTF-8
        raise DiscordError(*INVALID_JSON) from None


def _json(status: int, body: Any) -> web.Response:
    # Exactly "application/json": discord.py's json_or_text() compares the whole header, so
    # web.json_response()'s "application/json; charset=utf-8" would reach it as a plain string.
    return web.Response(status=status, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def _body(error: tuple) -> tuple[int, dict]:
    status, code, message = error
    return status, {"message": message, "code": code}


def _rate_limited(rule: _RateLimit) -> web.Response:
    response = _json(
        429, {"message": "You are being rate limited.", "retry_after": rule.retry_after, "global": rule.is_global}
    )
    response.headers.update(
        {"Retry-After": str(math.ceil(rule.retry_after)), "X-RateLimit-Scope": "global" if rule.is_global else "user"}
    )
    if rule.is_global:
        response.headers["X-RateLimit-Global"] = "true"
    return response


def _bucket_exhausted(bucket: _BucketState) -> web.Response:
    response = _json(
        429, {"message": "You are being rate limited.", "retry_after": bucket.reset_after, "global": False}
    )
    response.headers.update({"Retry-After": str(math.ceil(bucket.reset_after)), "X-RateLimit-Scope": "user"})
    return response


def _bucket_headers(bucket: _BucketState) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(bucket.limit),
        "X-RateLimit-Remaining": str(bucket.remaining),
        "X-RateLimit-Reset": f"{time.time() + bucket.reset_after:.3f}",  # epoch seconds
        "X-RateLimit-Reset-After": f"{bucket.reset_after:.3f}",
        "X-RateLimit-Bucket": bucket.bucket,
    }


def _bucket_hash(route: str) -> str:
    """An opaque, stable name per route, shaped like Discord's."""
    return hashlib.sha256(route.encode()).hexdigest()[:32]


def _major_parameter(params: Mapping[str, str]) -> str:
    """What Discord counts a route's bucket per: the channel, else the webhook (or interaction) id
    with its token, else the guild; routes with none of them share one count."""
    if "channel_id" in params:
        return params["channel_id"]
    if "token" in params:
        return f"{params.get('application_id') or params.get('interaction_id')}+{params['token']}"
    return params.get("guild_id", "")


def _wire(message: dict) -> dict:
    """A stored message as Discord returns it (without the fake-only allowed_mentions)."""
    return {k: copy.deepcopy(v) for k, v in message.items() if k != "allowed_mentions"}


def _snowflake(value: str | int) -> int:
    if isinstance(value, int) or value.isdigit():
        return int(value)
    raise DiscordError(*NOT_FOUND)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _guess_type(filename: str, fallback: str | None = None) -> str:
    guessed = mimetypes.guess_type(filename)[0]
    return guessed or fallback or "application/octet-stream"


def _require_view(channel: _Channel) -> None:
    """Discord answers 50001 Missing Access, not 50013, when the bot cannot see the channel at all."""
    if not channel.app_permissions & VIEW_CHANNEL:
        raise DiscordError(*MISSING_ACCESS)


def _require(channel: _Channel, permission: int) -> None:
    if not channel.app_permissions & permission:
        raise DiscordError(*MISSING_PERMISSIONS)


def _require_content_permissions(channel: _Channel, body: dict, uploads: list[Upload]) -> None:
    """A bot's message in a channel may carry embeds only with EMBED_LINKS, files only with ATTACH_FILES."""
    if body.get("embeds"):
        _require(channel, EMBED_LINKS)
    if uploads:
        _require(channel, ATTACH_FILES)


def _check_message(body: dict, uploads: list[Upload], size_limit: int, prefix: tuple = ()) -> None:
    """Reject a message as Discord does: form limits first (400 50035), then each file's size
    (413 40005). discord.py itself checks none of this, except refusing more than 10 embeds."""
    errors = _FormErrors()
    _validate_message(body, errors, prefix)
    errors.raise_if_any()
    if any(upload.size > size_limit for upload in uploads):
        raise DiscordError(*ENTITY_TOO_LARGE)


def _validate_message(body: dict, errors: _FormErrors, prefix: tuple) -> None:
    errors.too_long(prefix + ("content",), body.get("content"), CONTENT_MAX)
    if body.get("components"):
        validate_components(body["components"], errors, prefix)
    embeds = body.get("embeds") or []
    errors.too_long(prefix + ("embeds",), embeds, EMBEDS_MAX)
    total = 0
    for i, embed in enumerate(embeds):
        path = prefix + ("embeds", i)
        fields = embed.get("fields") or []
        errors.too_long(path + ("fields",), fields, EMBED_FIELDS_MAX)
        texts = [
            (("title",), embed.get("title"), 256),
            (("description",), embed.get("description"), 4096),
            (("footer", "text"), (embed.get("footer") or {}).get("text"), 2048),
            (("author", "name"), (embed.get("author") or {}).get("name"), 256),
        ]
        for j, item in enumerate(fields):
            texts += [(("fields", j, "name"), item.get("name"), 256), (("fields", j, "value"), item.get("value"), 1024)]
        for keys, text, limit in texts:
            errors.too_long(path + keys, text, limit)
            total += len(text or "")
    if total > EMBED_TOTAL_MAX:
        errors.add(
            prefix + ("embeds",), "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}"
        )


def _validate_command(command: dict, path: tuple, errors: _FormErrors) -> None:
    """Name and description rules for slash (CHAT_INPUT) commands, which --sync would hit."""
    if command.get("type", 1) != 1:
        return
    if not _COMMAND_NAME.match(command.get("name") or ""):
        errors.add(path + ("name",), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    if not 1 <= len(command.get("description") or "") <= 100:
        errors.add(path + ("description",), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    errors.too_long(path + ("options",), command.get("options") or [], 25)
    for i, option in enumerate(command.get("options") or []):
        if not _COMMAND_NAME.match(option.get("name") or ""):
            errors.add(path + ("options", i, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if not 1 <= len(option.get("description") or "") <= 100:
            errors.add(
                path + ("options", i, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
