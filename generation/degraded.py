"""Degraded mode (DESIGN.md section 5): /veo keeps working while PostgreSQL is unreachable.

- ``DatabaseHealth`` notices the outage (an OperationalError from any call), logs one
  warning, and from then on probes with a short connect timeout instead of letting every
  request wait out the pool's 10 s; when the probe succeeds it resets the pool and replays.
- ``LocalLimiter`` admits with the same limits, per process, seeded from the answers the
  database gave before the outage.
- ``DirectRunner`` runs an admitted request straight through the Veo backend (the worker
  cannot claim without the database) and delivers it, journaling every step first.
- ``JournalReplayer`` writes journaled requests into PostgreSQL once it is back:
  this process's finished ones, and everything left by processes that died.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import connections
from django.utils import timezone

from generation import journal as journal_module
from veosite import logs
from generation.delivery import Delivery
from generation.storage import LocalStorage, store_output
from generation.veo import OperationLost, RateLimited, VeoBackend, VeoError, VideoJob
from generation.worker import DATABASE_DOWN, PROGRESS_EVERY, POLL_FAILURES, retry_backoff
from tracking import aio, services
from tracking.models import Status, VideoRequest

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 2  # seconds: a probe answers fast or the database counts as down
BAN_MEMORY = timedelta(hours=1)  # a ban seen before the outage is still honoured this long
START_RETRIES = 5


class DatabaseHealth:
    def __init__(self) -> None:
        self.down_since: float | None = None

    @property
    def degraded(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException) -> None:
        """A call failed because the database is unreachable: one warning per outage."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            first = (str(error).strip().splitlines() or [""])[0][:200]
            log.warning("DEGRADED: PostgreSQL is unreachable (%s: %s). /veo keeps working: admission from the "
                        "in-process limiter, tracking to the journal in %s, replayed when the database returns",
                        type(error).__name__, first, settings.VEO_JOURNAL_DIR,
                        extra={"fields": {"event": "degraded", "status": "degraded"}})

    def probe(self) -> bool:
        """One short connection outside the pool (blocking: run it in a thread)."""
        db = connections["default"].settings_dict
        try:
            with psycopg.connect(dbname=db["NAME"], user=db.get("USER") or None, password=db.get("PASSWORD") or None,
                                 host=db.get("HOST") or None, port=db.get("PORT") or None,
                                 connect_timeout=PROBE_TIMEOUT, application_name="veobot-probe") as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    @staticmethod
    def reset_pool() -> None:
        """Close the connection pool (blocking: run it in a thread). Entering an outage, this stops
        its reconnect attempts; leaving one, it drops the dead connections. The next call opens a
        new pool."""
        connections["default"].close_pool()

    def recovered(self) -> None:
        outage = time.monotonic() - (self.down_since or time.monotonic())
        self.down_since = None
        log.warning("database reachable again after %.0f s of degraded mode; replaying the journal", outage,
                    extra={"fields": {"event": "recovered", "status": "ok", "outage_s": round(outage, 1)}})


# -- admission without the database -------------------------------------------------------------


@dataclass(frozen=True)
class LocalDecision:
    admitted: bool
    reason_code: str | None
    reason: str | None
    used: int
    limit: int
    remaining: int
    reset_at: datetime | None


class LocalLimiter:
    """Per-user rolling windows in memory: what this process knows of each user's quota."""

    def __init__(self) -> None:
        self._slots: dict[int, list[datetime]] = {}
        self._limits: dict[int, int] = {}
        self._bans: dict[int, tuple[str, datetime]] = {}

    def remember(self, *, user_id: int, used: int, limit: int, reset_at: datetime | None,
                 reason_code: str | None, reason: str | None) -> None:
        """Seed from the database's answer. The oldest counted slot is at reset_at - window; the
        others are taken as just now (conservative: they leave the window last)."""
        now = timezone.now()
        if reason_code == "banned":
            self._bans[user_id] = (reason or "banned", now + BAN_MEMORY)
            return
        self._bans.pop(user_id, None)
        self._limits[user_id] = limit
        oldest = reset_at - settings.VEO_QUOTA_WINDOW if reset_at else now
        self._slots[user_id] = ([oldest] + [now] * (used - 1)) if used else []

    def _window(self, user_id: int) -> list[datetime]:
        floor = timezone.now() - settings.VEO_QUOTA_WINDOW
        slots = self._slots[user_id] = [t for t in self._slots.get(user_id, []) if t > floor]
        return slots

    def admit(self, *, user_id: int, at: datetime) -> LocalDecision:
        """Admit (taking a slot stamped ``at``, the request's created_at) or refuse."""
        limit = self._limits.get(user_id, settings.VEO_QUOTA_LIMIT)
        ban = self._bans.get(user_id)
        slots = self._window(user_id)
        reset_at = min(slots) + settings.VEO_QUOTA_WINDOW if slots else None
        if ban and ban[1] > timezone.now():
            return LocalDecision(False, "banned", ban[0], len(slots), limit, max(limit - len(slots), 0), reset_at)
        if len(slots) >= limit:
            reason = f"quota exceeded: {len(slots)} of {limit} videos used in the last {settings.VEO_QUOTA_WINDOW}"
            return LocalDecision(False, "quota_exceeded", reason, len(slots), limit, 0, reset_at)
        slots.append(at)
        return LocalDecision(True, None, None, len(slots), limit, limit - len(slots), min(slots) + settings.VEO_QUOTA_WINDOW)

    def refund(self, *, user_id: int, created_at: datetime) -> None:
        slots = self._slots.get(user_id, [])
        if created_at in slots:
            slots.remove(created_at)

    def status(self, *, user_id: int) -> LocalDecision:
        limit = self._limits.get(user_id, settings.VEO_QUOTA_LIMIT)
        slots = self._window(user_id)
        reset_at = min(slots) + settings.VEO_QUOTA_WINDOW if slots else None
        return LocalDecision(len(slots) < limit, None, None, len(slots), limit, max(limit - len(slots), 0), reset_at)


# -- running a request without the database -------------------------------------------------------

Record = Callable[[dict], Awaitable[None]]


def now_iso() -> str:
    return timezone.now().isoformat()


def journal_request(request: VideoRequest) -> dict:
    """The admission fields replay_video_request() needs, from an in-memory request."""
    return {
        "interaction_id": request.interaction_id, "user_id": request.user_id, "guild_id": request.guild_id,
        "channel_id": request.channel_id, "prompt": request.prompt, "negative_prompt": request.negative_prompt,
        "duration_seconds": request.duration_seconds, "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution, "generate_audio": request.generate_audio,
        "person_generation": request.person_generation, "seed": request.seed, "model": request.model,
        "source": request.source, "status": request.status, "created_at": request.created_at.isoformat(),
        "error_code": request.error_code, "error_message": request.error_message,
    }


class DirectRunner:
    """Start, follow, store and deliver one request with no database; the journal comes first."""

    def __init__(self, *, backend: VeoBackend, delivery: Delivery, storage: LocalStorage, record: Record,
                 limiter: LocalLimiter):
        self.backend = backend
        self.delivery = delivery
        self.storage = storage
        self.record = record
        self.limiter = limiter
        self.tasks: dict[int, asyncio.Task] = {}  # interaction id -> its run
        self.reserved: set[int] = set()  # admitted, being journaled, about to run
        self._slots = asyncio.Semaphore(settings.VEO_WORKER_SLOTS)

    def busy(self, interaction_id: int) -> bool:
        return interaction_id in self.tasks or interaction_id in self.reserved

    def submit(self, request: VideoRequest) -> None:
        self.reserved.discard(request.interaction_id)
        task = asyncio.create_task(self._run(request), name=f"direct-{request.interaction_id}")
        self.tasks[request.interaction_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(request.interaction_id, None))

    @property
    def ahead(self) -> int:
        return max(len(self.tasks) - settings.VEO_WORKER_SLOTS, 0)

    async def stop(self) -> None:
        """Shutdown: stop following; the journal lets the next process (or the worker) resume."""
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _step(self, request: VideoRequest, step: dict) -> None:
        await self.record({"kind": "step", "interaction_id": request.interaction_id, "step": {"at": now_iso(), **step}})

    async def _run(self, request: VideoRequest) -> None:
        try:
            async with self._slots:
                await self._generate(request)
            receipt = await self.delivery.deliver(request)
            await self._step(request, {"delivered": True, "method": receipt.method, "message_id": receipt.message_id,
                                       "error": receipt.error})
        except asyncio.CancelledError:
            raise
        except Exception:
            # The journal holds what happened so far; replay hands the rest to the worker.
            log.exception("request of interaction %s: degraded run failed; it will be resumed after replay",
                          request.interaction_id)

    async def _generate(self, request: VideoRequest) -> None:
        job = VideoJob(request.interaction_id, request.prompt, request.negative_prompt, request.duration_seconds,
                       request.aspect_ratio, request.resolution, request.generate_audio, request.seed,
                       request.person_generation)
        for attempt in range(1, START_RETRIES + 1):
            try:
                operation = await self.backend.start(job)
                break
            except RateLimited:
                await asyncio.sleep(retry_backoff(attempt).total_seconds())
            except VeoError as error:
                return await self._end(request, Status.FAILED, error.code, f"Veo could not start the video: {error}")
        else:
            return await self._end(request, Status.FAILED, "rate_limited", "Veo stayed rate-limited; try again later")
        await self._step(request, {"status": Status.GENERATING, "operation_name": operation})
        request.status, request.operation_name, request.started_at = Status.GENERATING, operation, timezone.now()
        logs.step(log, "generating", request_id=None, user_id=request.user_id, guild_id=request.guild_id,
                  interaction_id=request.interaction_id, degraded=True)

        deadline = request.started_at + settings.VEO_GENERATION_TIMEOUT
        delay, failures, last_progress = settings.VEO_POLL_INITIAL.total_seconds(), 0, timezone.now()
        while True:
            try:
                outcome = await self.backend.poll(operation)
                failures = 0
            except OperationLost as error:
                return await self._end(request, Status.TIMEOUT, "operation_lost", f"Veo lost the operation: {error}")
            except VeoError as error:
                failures += 1
                if failures >= POLL_FAILURES:
                    return await self._end(request, Status.FAILED, "backend_error",
                                           f"Veo stopped answering about this video: {error}")
                outcome = None
            if outcome is not None:
                break
            now = timezone.now()
            if now >= deadline:
                return await self._end(request, Status.TIMEOUT, "timeout", "Veo did not finish in time")
            if now - last_progress >= PROGRESS_EVERY:
                last_progress = now
                await self.delivery.progress(request, state=Status.GENERATING, elapsed=now - request.started_at)
            await asyncio.sleep(min(delay, (deadline - now).total_seconds()))
            delay = min(delay * 1.5, settings.VEO_POLL_MAX.total_seconds())

        if not outcome.videos:
            return await self._end(request, Status.FAILED, outcome.error_code, outcome.error_message,
                                   filtered_count=outcome.filtered_count, filtered_reasons=outcome.filtered_reasons)
        video = outcome.videos[0]
        stored = await asyncio.to_thread(store_output, request_id=request.interaction_id, data=video.data,
                                         uri=video.uri, mime_type=video.mime_type, storage=self.storage)
        public = [stored.public_url] if stored.public_url else []
        await self._step(request, {"status": Status.COMPLETED, "output_uris": [stored.uri], "public_urls": public,
                                   "output_size_bytes": stored.size_bytes})
        request.status, request.completed_at = Status.COMPLETED, timezone.now()
        request.output_uris, request.public_urls, request.output_size_bytes = [stored.uri], public, stored.size_bytes

    async def _end(self, request: VideoRequest, status: str, code: str, message: str, *, filtered_count: int = 0,
                   filtered_reasons: list[str] | None = None) -> None:
        refund = status != Status.FAILED or code not in services.USER_CAUSED_ERROR_CODES or (
            code == "content_filtered" and settings.VEO_REFUND_CONTENT_FILTERED)
        await self._step(request, {"status": status, "error_code": code, "error_message": message[:4000],
                                   "refund": refund, "safety_filtered_count": filtered_count or None,
                                   "safety_filtered_reasons": filtered_reasons or None})
        request.status, request.error_code, request.error_message = status, code, message
        request.completed_at = timezone.now()
        if refund:
            request.counts_toward_quota = False
            self.limiter.refund(user_id=request.user_id, created_at=request.created_at)


# -- replay ---------------------------------------------------------------------------------------


class JournalReplayer:
    ACTOR = "bot-journal"

    def __init__(self, *, journal: journal_module.Journal, runner: DirectRunner, health: DatabaseHealth,
                 written: Callable[[int], None] = lambda interaction_id: None):
        self.journal = journal
        self.runner = runner
        self.health = health
        self.written = written  # told each interaction id now in the database
        self.replayed: set[int] = set()  # from our own current file

    async def replay(self) -> int:
        """Replay what can be replayed now; returns how many requests were written."""
        if self.health.degraded:
            return 0
        written = 0
        try:
            if self.journal.exists:
                written += await self._replay_own()
            for path in journal_module.orphans(self.journal.directory, own=self.journal.path):
                written += await self._replay_orphan(path)
        except DATABASE_DOWN as error:
            self.health.failed(error)
        return written

    async def _replay_own(self) -> int:
        # One snapshot: the lines written so far and the runs under way. A run that ended
        # before it has all its lines in those; one under way (or begun since) does not, and
        # writing it would record a delivered request as still generating -- the worker would
        # then deliver it a second time. Those wait for a later pass.
        lines = self.journal.lines
        running = set(self.runner.tasks) | self.runner.reserved
        requests = await asyncio.to_thread(journal_module.read, self.journal.path, lines=lines)
        written = 0
        for item in requests.values():
            interaction_id = item.interaction_id
            if interaction_id in self.replayed or interaction_id in running:
                continue
            written += await self._write(item)
            self.replayed.add(interaction_id)
        idle = not self.runner.tasks and not self.runner.reserved
        if len(self.replayed) == len(requests) and idle and self.journal.discard(lines=lines):
            self.replayed.clear()
        return written

    async def _replay_orphan(self, path) -> int:
        fd = journal_module.lock_orphan(path)
        if fd is None:
            return 0  # its process is alive and replays it itself
        try:
            requests = await asyncio.to_thread(journal_module.read, path)
            written = 0
            for item in requests.values():
                written += await self._write(item)
            path.unlink(missing_ok=True)
            log.info("journal %s (left by a stopped process) replayed: %s requests", path.name, len(requests))
            return written
        finally:
            os.close(fd)

    async def _write(self, item: journal_module.Journaled) -> int:
        request_id, inserted = await aio.run(services.replay_journaled_request, request=item.request,
                                             steps=item.steps, actor=self.ACTOR)
        self.written(item.interaction_id)
        if inserted:
            last = next((s for s in reversed(item.steps) if s.get("status")), None)
            logs.step(log, "replayed", request_id=request_id, user_id=item.request.get("user_id"),
                      guild_id=item.request.get("guild_id"), interaction_id=item.interaction_id,
                      status=(last or item.request).get("status"),
                      delivered=any(s.get("delivered") for s in item.steps))
        return int(inserted)
