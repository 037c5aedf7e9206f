"""Discord's gateway, faked on the fake REST server's aiohttp app, for discord.py unchanged.

``GET /api/v10/gateway/bot`` answers the websocket URL (``ws://127.0.0.1:PORT/gateway``), the
recommended shard count and ``session_start_limit``; discord.py connects to that URL with
``?v=10&encoding=json&compress=zlib-stream``. Then, as Discord does: HELLO (op 10) with the
heartbeat interval; IDENTIFY (op 2) with ``shard: [id, count]`` answered by READY (op 0) with
the session id, ``resume_gateway_url``, the shard, the application, the bot user and the
shard's guilds as unavailable; HEARTBEAT (op 1) answered by HEARTBEAT ACK (op 11); every
dispatch numbered (``s``) per session. An INTERACTION_CREATE goes to the session of the shard
that owns its guild, ``(guild_id >> 22) % count`` (DMs: shard 0).

``drop(shard)`` closes a shard's socket with a resumable code (4000); what is dispatched to
the shard meanwhile is kept, and a RESUME (op 6) with the session id and the last sequence the
client saw gets the missed events replayed, then RESUMED. A RESUME of a session the fake does
not know or has invalidated (``invalidate(shard)``) gets INVALID SESSION (op 9, ``false``) and
the client identifies afresh. With ``compress=zlib-stream`` every frame is one zlib stream's
output up to a Z_SYNC_FLUSH (ending ``00 00 ff ff``), sent as binary, as Discord does.

See docs/DISCORD_FAKE.md ("The gateway").
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscordServer

log = logging.getLogger(__name__)

GATEWAY_PATH = "/gateway"
RESUME_PATH = "/gateway/resume"  # resume_gateway_url: a client that resumes elsewhere is caught
HEARTBEAT_INTERVAL_MS = 41_250
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 9, 10, 11
# Close codes (Discord's): resumable 4000 unknown error; not resumable 4004 authentication
# failed, 4010 invalid shard, 4012 invalid API version; 4002 decode error.
UNKNOWN_ERROR, DECODE_ERROR, AUTHENTICATION_FAILED, INVALID_SHARD, INVALID_VERSION = 4000, 4002, 4004, 4010, 4012


def shard_of(guild_id: int | None, count: int) -> int:
    """The shard Discord sends a guild's events on; DMs go to shard 0."""
    return 0 if guild_id is None else (guild_id >> 22) % count


@dataclass
class Session:
    """One IDENTIFYed session: its shard, its numbered dispatches, and the socket it is on (None
    while disconnected)."""

    id: str
    shard: tuple[int, int]  # [id, count]
    socket: _Connection | None
    sent: list[dict] = field(default_factory=list)  # every dispatch, in sequence order
    resumable: bool = True
    resumes: int = 0
    _sending: asyncio.Lock | None = None  # on the server's loop: a resume's replay before anything newer

    @property
    def sending(self) -> asyncio.Lock:
        if self._sending is None:
            self._sending = asyncio.Lock()
        return self._sending

    @property
    def sequence(self) -> int:
        return len(self.sent)


class _Connection:
    """One websocket, with its zlib stream when the client asked for one."""

    def __init__(self, socket: web.WebSocketResponse, *, compressed: bool, path: str):
        self.socket = socket
        self.path = path
        self._zlib = zlib.compressobj() if compressed else None
        self.sent_up_to = 0  # the last sequence number sent on this socket

    async def send(self, message: dict) -> None:
        self.sent_up_to = message["s"] or self.sent_up_to
        text = json.dumps(message, separators=(",", ":"))
        if self._zlib is None:
            await self.socket.send_str(text)
        else:
            await self.socket.send_bytes(self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH))


class FakeGateway:
    """The gateway of a FakeDiscordServer (``server.gateway``); its state is guarded by the
    server's lock, and its sockets live on the server's event loop."""

    def __init__(self, server: FakeDiscordServer, *, recommended_shards: int = 1, max_concurrency: int = 16):
        self.server = server
        self.recommended_shards = recommended_shards
        self.max_concurrency = max_concurrency
        self.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS
        self.sessions: dict[str, Session] = {}
        self.identifies: list[tuple[int, int]] = []  # every IDENTIFY's shard, in order
        self.heartbeats = 0
        self.connect_queries: list[dict[str, str]] = []  # each connection's query string
        self.dispatched: dict[int, tuple[int, str]] = {}  # interaction id -> (shard, session id)
        self._guilds: list[int] = []
        self._held: asyncio.Event | None = None  # set: connections wait for HELLO (hold()/release())

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(GATEWAY_PATH, self._connect)
        app.router.add_get(RESUME_PATH, self._connect)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}{GATEWAY_PATH}"

    def bot_gateway(self) -> dict:
        """GET /gateway/bot."""
        return {
            "url": self.url,
            "shards": self.recommended_shards,
            "session_start_limit": {
                "total": 1000,
                "remaining": 1000 - len(self.identifies),
                "reset_after": 14_400_000,
                "max_concurrency": self.max_concurrency,
            },
        }

    # --- what tests call (from their own thread) -------------------------------------------

    def add_guild(self, guild_id: int) -> None:
        """A guild the bot is in: READY lists it, unavailable, to the shard that owns it."""
        with self.server._lock:
            self._guilds.append(guild_id)

    def connected_shards(self) -> dict[int, int]:
        """shard id -> count, for every shard with a live session."""
        with self.server._lock:
            return {s.shard[0]: s.shard[1] for s in self._live()}

    def dispatch_interaction(self, payload: dict) -> int:
        """Register the interaction with the fake REST server (its 3 s start now) and send
        INTERACTION_CREATE to the session of the shard that owns its guild; returns that shard.
        A shard that is disconnected gets it when it resumes."""
        guild_id = int(payload["guild_id"]) if payload.get("guild_id") else None
        with self.server._lock:
            session = self._owner(guild_id)
            self.server.register_interaction(payload)
            self.dispatched[int(payload["id"])] = (session.shard[0], session.id)
            message = self._number(session, "INTERACTION_CREATE", payload)
        if session.socket is not None:
            self._run(self._send(session, message))
        return session.shard[0]

    def drop(self, shard_id: int, *, code: int = UNKNOWN_ERROR) -> None:
        """Close the shard's socket with ``code`` (4000: resumable); its session stays resumable."""
        with self.server._lock:
            session = next(s for s in self.sessions.values() if s.shard[0] == shard_id and s.socket is not None)
            connection, session.socket = session.socket, None
        self._run(connection.socket.close(code=code, message=b"dropped by the test"))

    def hold(self) -> None:
        """New connections get no HELLO until release(): a reconnecting shard stays disconnected."""
        self._run(self._set_held(True))

    def release(self) -> None:
        self._run(self._set_held(False))

    async def _set_held(self, held: bool) -> None:
        if self._held is None:
            self._held = asyncio.Event()
        self._held.set() if held else self._held.clear()

    def invalidate(self, shard_id: int) -> None:
        """Forget the shard's session: its next RESUME gets INVALID SESSION."""
        with self.server._lock:
            for session in self.sessions.values():
                if session.shard[0] == shard_id:
                    session.resumable = False

    # --- the websocket -----------------------------------------------------------------------

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        with self.server._lock:
            self.connect_queries.append({"path": request.path, **query})
        socket = web.WebSocketResponse(autoclose=False)
        await socket.prepare(request)
        if query.get("v") != "10":
            await socket.close(code=INVALID_VERSION, message=b"Invalid API version")
            return socket
        if query.get("encoding", "json") != "json" or query.get("compress") not in (None, "zlib-stream"):
            await socket.close(code=DECODE_ERROR, message=b"the fake speaks json, plain or zlib-stream")
            return socket
        connection = _Connection(socket, compressed=query.get("compress") == "zlib-stream", path=request.path)
        while self._held is not None and self._held.is_set():
            await asyncio.sleep(0.02)
        await connection.send(
            {"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}
        )
        session: Session | None = None
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                break
            payload = json.loads(message.data)
            op, data = payload.get("op"), payload.get("d")
            if op == HEARTBEAT:
                with self.server._lock:
                    self.heartbeats += 1
                await connection.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
            elif op == IDENTIFY:
                session = await self._identify(connection, data)
            elif op == RESUME:
                session = await self._resume(connection, data)
            if socket.closed:
                break
        with self.server._lock:
            if session is not None and session.socket is connection:
                session.socket = None
        if not socket.closed:
            await socket.close()
        return socket

    async def _identify(self, connection: _Connection, data: dict) -> Session | None:
        if data.get("token") != self.server.bot_token:
            await connection.socket.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return None
        shard_id, count = data.get("shard") or (0, 1)
        if not 0 <= shard_id < count:
            await connection.socket.close(code=INVALID_SHARD, message=b"Invalid shard.")
            return None
        with self.server._lock:
            self.identifies.append((shard_id, count))
            for old in self.sessions.values():  # a new session for a shard replaces the old one
                if old.shard[0] == shard_id:
                    old.resumable, old.socket = False, None
            session = Session(id=secrets.token_hex(16), shard=(shard_id, count), socket=connection)
            self.sessions[session.id] = session
            guilds = [{"id": str(g), "unavailable": True} for g in self._guilds if shard_of(g, count) == shard_id]
            ready = self._number(
                session,
                "READY",
                {
                    "v": 10,
                    "user": self.server.bot_user,
                    "guilds": guilds,
                    "session_id": session.id,
                    "session_type": "normal",
                    "resume_gateway_url": f"ws://127.0.0.1:{self.server.port}{RESUME_PATH}",
                    "shard": [shard_id, count],
                    "application": {"id": str(self.server.application_id), "flags": 0},
                    "private_channels": [],
                    "relationships": [],
                },
            )
        await connection.send(ready)
        return session

    async def _resume(self, connection: _Connection, data: dict) -> Session | None:
        with self.server._lock:
            session = self.sessions.get(data.get("session_id") or "")
            valid = session is not None and session.resumable and data.get("token") == self.server.bot_token
        if not valid:
            await connection.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return None
        async with session.sending:  # what is dispatched from now on waits for the replay
            with self.server._lock:
                missed = [m for m in session.sent if m["s"] > (data.get("seq") or 0)]
                session.socket, session.resumes = connection, session.resumes + 1
                resumed = self._number(session, "RESUMED", {})
            for message in [*missed, resumed]:
                await connection.send(message)
        return session

    # --- helpers -----------------------------------------------------------------------------

    def _live(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.socket is not None and s.resumable]

    def _owner(self, guild_id: int | None) -> Session:
        """The session (live, or disconnected and resumable) of the shard that owns the guild."""
        candidates = [s for s in self.sessions.values() if s.resumable]
        if not candidates:
            raise AssertionError("no shard has identified with the fake gateway")
        count = candidates[0].shard[1]
        shard_id = shard_of(guild_id, count)
        for session in candidates:
            if session.shard[0] == shard_id:
                return session
        raise AssertionError(f"shard {shard_id} of {count} has no session: the interaction would be lost")

    @staticmethod
    def _number(session: Session, event: str, data: Any) -> dict:
        message = {"op": DISPATCH, "d": data, "s": session.sequence + 1, "t": event}
        session.sent.append(message)
        return message

    async def _send(self, session: Session, message: dict) -> None:
        async with session.sending:
            connection = session.socket
            if connection is None or message["s"] <= connection.sent_up_to:
                return  # disconnected since (the RESUME replays it), or replayed already
            try:
                await connection.send(message)
            except ConnectionResetError:
                pass  # as above

    def _run(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.server._loop).result(timeout=10)
