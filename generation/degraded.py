"""Degraded mode: /veo keeps working while PostgreSQL is unreachable.

Admission falls back to the in-process limiter (generation.admission, generation.limiter);
an admitted request then runs through the same engine as always (generation.engine), with
this module's ``JournalStore`` in place of PostgreSQL: every step is appended to the journal
(fsync'd) before the bot acts on it, and generation.replay writes the journal into
PostgreSQL once it answers again. The requests run here, in the bot's process: the worker
cannot claim them, for there is no row to claim.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from generation.delivery import Receipt
from generation.engine import Engine, Run
from generation.journal import Journal
from generation.limiter import LocalLimiter
from generation.storage import StoredVideo
from tracking.models import Status, VideoRequest
from tracking.outcomes import Ending
from veosite import logs

log = logging.getLogger(__name__)


def journal_request(request: VideoRequest) -> dict:
    """The admission fields replay_video_request() needs, from an in-memory request."""
    return {
        "interaction_id": request.interaction_id,
        "user_id": request.user_id,
        "guild_id": request.guild_id,
        "channel_id": request.channel_id,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "duration_seconds": request.duration_seconds,
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
        "generate_audio": request.generate_audio,
        "person_generation": request.person_generation,
        "seed": request.seed,
        "model": request.model,
        "source": request.source,
        "status": request.status,
        "created_at": request.created_at.isoformat(),
        "error_code": request.error_code,
        "error_message": request.error_message,
        **{field: getattr(request, field) for field in LINEAGE_AND_INPUTS if getattr(request, field) is not None},
    }


# Written only when set, so a journal from before they existed reads the same.
LINEAGE_AND_INPUTS = ("parent_id", "derived_as", "image_uri", "last_frame_uri", "video_input_uri")


class JournalStore:
    """The engine's store while PostgreSQL is away: the request in memory, each change in the journal.

    A step is journaled (and fsync'd) before the request in memory changes: what the journal
    does not hold did not happen. Steps carry only what replay_video_request() reads."""

    name = "journal"

    def __init__(self, *, journal: Journal, limiter: LocalLimiter):
        self.journal = journal
        self.limiter = limiter

    async def admitted(self, request: VideoRequest) -> None:
        await self._append(
            {"kind": "request", "interaction_id": request.interaction_id, "request": journal_request(request)}
        )

    async def started(self, request: VideoRequest, *, operation_name: str) -> VideoRequest:
        await self._step(request, {"status": Status.GENERATING, "operation_name": operation_name})
        request.status, request.operation_name, request.started_at = Status.GENERATING, operation_name, timezone.now()
        logs.step(
            log,
            "generating",
            request_id=None,
            user_id=request.user_id,
            guild_id=request.guild_id,
            interaction_id=request.interaction_id,
            degraded=True,
        )
        return request

    async def completed(self, request: VideoRequest, *, video: StoredVideo) -> VideoRequest:
        public = [video.public_url] if video.public_url else []
        await self._step(
            request,
            {
                "status": Status.COMPLETED,
                "output_uris": [video.uri],
                "public_urls": public,
                "output_size_bytes": video.size_bytes,
            },
        )
        request.status, request.completed_at = Status.COMPLETED, timezone.now()
        request.output_uris, request.public_urls, request.output_size_bytes = [video.uri], public, video.size_bytes
        return request

    async def ended(self, request: VideoRequest, *, ending: Ending) -> VideoRequest:
        step = {
            "status": ending.status,
            "error_code": ending.code,
            "error_message": ending.message[:4000],
            "refund": ending.refunded,
        }
        if ending.filtered_count or ending.filtered_reasons:
            step.update(
                safety_filtered_count=ending.filtered_count, safety_filtered_reasons=list(ending.filtered_reasons)
            )
        await self._step(request, step)
        request.status, request.error_code, request.error_message = ending.status, ending.code, ending.message
        request.safety_filtered_count = ending.filtered_count or None
        request.safety_filtered_reasons = list(ending.filtered_reasons)
        request.completed_at = timezone.now()
        if ending.refunded:
            request.counts_toward_quota = False
            self.limiter.refund(user_id=request.user_id, created_at=request.created_at)
        return request

    async def requeue(self, request: VideoRequest, *, reason: str, delay: timedelta) -> bool:
        # Recorded as the worker's release is (a 'released' event), so both modes tell the same history.
        await self._step(
            request, {"released": True, "reason": reason, "available_at": (timezone.now() + delay).isoformat()}
        )
        request.attempts += 1  # counted as a worker's claims are: START_ATTEMPTS applies alike
        return True  # no queue to go back to: the engine waits here

    async def deliverable(self, request: VideoRequest) -> VideoRequest:
        return request  # no moderator can act on it before it is replayed

    async def delivered(self, request: VideoRequest, *, receipt: Receipt) -> None:
        await self._step(
            request,
            {"delivered": True, "method": receipt.method, "message_id": receipt.message_id, "error": receipt.error},
        )
        request.delivered_at = timezone.now()

    async def undeliverable_here(self, request: VideoRequest, *, reason: str) -> None:
        # Replayed finished but undelivered: a worker that reaches its source delivers it.
        log.warning("request of interaction %s: %s", request.interaction_id, reason)

    async def _step(self, request: VideoRequest, step: dict) -> None:
        await self._append(
            {
                "kind": "step",
                "interaction_id": request.interaction_id,
                "step": {"at": timezone.now().isoformat(), **step},
            }
        )

    async def _append(self, entry: dict) -> None:
        await asyncio.to_thread(self.journal.append, entry)


class DegradedRunner:
    """Runs the requests admitted while PostgreSQL is unreachable, in this process, through the engine."""

    def __init__(self, *, engine: Engine, store: JournalStore):
        self.engine = engine
        self.store = store
        self.runs: dict[int, Run] = {}  # interaction id -> its run, while under way
        self.reserved: set[int] = set()  # admitted, being journaled, about to run
        self._tasks: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(settings.VEO_WORKER_SLOTS)

    @property
    def under_way(self) -> set[int]:
        """Interaction ids whose journal is not complete yet (replay leaves them for later)."""
        return set(self.runs) | self.reserved

    @property
    def ahead(self) -> int:
        return max(len(self.runs) - settings.VEO_WORKER_SLOTS, 0)

    async def admit(self, request: VideoRequest, *, hold: bool = False) -> None:
        """Journal an admitted or refused request (before anyone is told); run the admitted ones,
        except one to ``hold``: replay hands that to the database as it is (generation.admission)."""
        runs = request.status == Status.PENDING and not hold
        if runs:
            self.reserved.add(request.interaction_id)  # a replay must not take it for finished
        try:
            await self.store.admitted(request)
        except BaseException:
            self.reserved.discard(request.interaction_id)
            raise
        if runs:
            self._submit(request)

    def cancel(self, interaction_id: int, *, reason: str) -> bool:
        """Stop a request under way here (it ends cancelled and refunded); False if none is. The
        requester's own cancellation while the database is away comes through here."""
        run = self.runs.get(interaction_id)
        if run is None or run.request.status not in (Status.PENDING, Status.GENERATING):
            return False
        run.cancel(reason)
        return True

    def _submit(self, request: VideoRequest) -> None:
        run = self.runs[request.interaction_id] = Run(request, self.store)
        self.reserved.discard(request.interaction_id)
        task = asyncio.create_task(self._run(run), name=f"degraded-{request.interaction_id}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: (self._tasks.discard(done), self.runs.pop(request.interaction_id, None)))

    async def _run(self, run: Run) -> None:
        try:
            async with self._slots:
                await self.engine.run(run)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The journal holds what happened so far; replay hands the rest to the worker.
            log.exception(
                "request of interaction %s: degraded run failed; it will be resumed after replay",
                run.request.interaction_id,
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: then the runs under way stop (their journal lets whoever replays it resume them)."""
        await stop.wait()
        await self.stop()

    async def stop(self) -> None:
        """Shutdown: stop following; the journal lets the next process (or the worker) resume."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
