"""The lifecycle engine: start, follow, finish and deliver one request, whatever records it.

One engine serves normal work and degraded mode. What differs is the ``Store`` it is given:
``generation.stores.PostgresStore`` (the worker, with a lease on the row) or
``generation.degraded.JournalStore`` (the bot while PostgreSQL is unreachable). A request
says what is left to do: ``pending`` -> start the operation (then follow it),
``generating`` -> resume polling the stored operation (never start twice), finished ->
deliver. Every ending comes from ``tracking.outcomes``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from generation import metrics
from generation.delivery import Delivery, DeliveryUnavailable, Receipt
from generation.storage import LocalStorage, StoredVideo, store_output
from generation.veo import (
    OperationLost,
    Outcome,
    RateLimited,
    Refused,
    StartUnconfirmed,
    Unavailable,
    VeoBackend,
    VideoJob,
)
from tracking.durations import humanize_duration
from tracking.models import TERMINAL_STATUSES, DeliveryMethod, Status, VideoRequest
from tracking.outcomes import Ending

log = logging.getLogger(__name__)

START_ATTEMPTS = 3  # 5xx answers or refused connections before a start gives up
POLL_FAILURES = 5  # consecutive failed polls before the request is failed
DELIVERY_ATTEMPTS = 5  # tries to reach the requester (backing off) before recording it undeliverable
PROGRESS_EVERY = timedelta(seconds=10)  # Discord edits no more often than this
# Progress states besides the request's status: a start Veo put off, and why.
VEO_BUSY, VEO_DOWN = "veo_busy", "veo_down"


def retry_backoff(attempts: int) -> timedelta:
    """VEO_RETRY_BACKOFF doubled per attempt (5 s, 10 s, 20 s ...) up to 5 min, with jitter so
    a storm of rate-limited requests does not come back in step."""
    seconds = min(settings.VEO_RETRY_BACKOFF.total_seconds() * 2 ** max(attempts - 1, 0), 300)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


class Superseded(Exception):
    """The request is no longer this engine's to touch (another worker took it over)."""


class Store(Protocol):
    """Where a request's lifecycle is recorded. Each write returns the request as it now stands
    (or raises Superseded); what happened outside (a Veo start, a delivery) must be recorded
    whatever it takes, or it would be done twice."""

    name: str  # for the logs: "postgres" or "journal"

    async def started(self, request: VideoRequest, *, operation_name: str) -> VideoRequest: ...

    async def completed(self, request: VideoRequest, *, video: StoredVideo) -> VideoRequest: ...

    async def ended(self, request: VideoRequest, *, ending: Ending) -> VideoRequest: ...

    async def requeue(self, request: VideoRequest, *, reason: str, delay: timedelta) -> bool:
        """Veo cannot start it now. True: wait ``delay`` here and try again; False: it went back
        to a queue that someone will claim it from, so this run stops."""

    async def deliverable(self, request: VideoRequest) -> VideoRequest:
        """The request as it is to be delivered now (a moderator may have removed its output)."""

    async def delivered(self, request: VideoRequest, *, receipt: Receipt) -> None: ...

    async def undeliverable_here(self, request: VideoRequest, *, reason: str) -> None:
        """This process cannot reach the request's requester; leave it to one that can."""


@dataclass
class Run:
    """One request on its way through the engine."""

    request: VideoRequest
    store: Store
    # Set when the request was cancelled while it runs: the engine stops following it.
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str = ""

    def cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        self.cancelled.set()


class Engine:
    def __init__(self, *, backend: VeoBackend, storage: LocalStorage, deliveries: Mapping[str, Delivery]):
        self.backend = backend
        self.storage = storage
        self.deliveries = dict(deliveries)

    async def run(self, run: Run) -> None:
        """Carry the request as far as it goes: start, follow, finish, deliver."""
        claimed = run.request
        if run.request.status == Status.PENDING and not await self._start(run):
            return  # back in the queue
        if run.request.status == Status.GENERATING:
            await self._follow(run)
        if run.request.status in TERMINAL_STATUSES:
            # A request this run ended was read at that moment; one handed in may be minutes old,
            # and a moderator may have removed its output since.
            await self._deliver(run, review_is_current=run.request is not claimed)

    # -- start ------------------------------------------------------------------------------

    async def _start(self, run: Run) -> bool:
        """Start the operation (or end the request); False when it went back to the queue."""
        begin = asyncio.ensure_future(self._begin(run))
        try:
            return await asyncio.shield(begin)
        except asyncio.CancelledError:
            # Let a start in flight finish, so its operation name is recorded and whoever goes
            # on resumes that operation instead of creating a second one.
            await asyncio.wait([begin])
            raise

    async def _begin(self, run: Run) -> bool:
        while True:
            request = run.request
            if run.cancelled.is_set():
                return await self._end(run, Ending("cancelled", run.cancel_reason))
            if timezone.now() - request.created_at > settings.VEO_QUEUE_TIMEOUT:
                # Veo kept refusing new work (429) for longer than anyone waits for a video.
                return await self._end(
                    run,
                    Ending(
                        "queue_timeout",
                        "Veo was too busy to start this video within "
                        f"{humanize_duration(settings.VEO_QUEUE_TIMEOUT)} of the request",
                    ),
                )
            try:
                operation_name = await self.backend.start(VideoJob.from_request(request))
            except RateLimited as error:
                if await self._requeue(run, f"rate limited by Veo: {error}", retry_backoff(request.attempts), VEO_BUSY):
                    continue
                return False
            except StartUnconfirmed as error:
                # Never a second create for one request: better a refunded failure than two videos.
                return await self._end(run, Ending(error.code, f"Veo did not confirm the start: {error}"))
            except Unavailable as error:
                if request.attempts < START_ATTEMPTS:
                    log.warning("request %s: Veo unavailable on start (%s); retrying later", _name(request), error)
                    if await self._requeue(run, f"Veo unavailable: {error}", retry_backoff(request.attempts), VEO_DOWN):
                        continue
                    return False
                return await self._end(run, Ending(error.code, f"Veo could not start the video: {error}"))
            except Refused as error:
                return await self._end(run, Ending(error.code, f"Veo refused the request: {error}"))
            run.request = await run.store.started(request, operation_name=operation_name)
            log.info("request %s: generating (operation %s)", _name(request), operation_name)
            return True

    async def _requeue(self, run: Run, reason: str, delay: timedelta, waiting: str) -> bool:
        """Back off: here (True, after the delay, unless cancelled meanwhile) or in the queue (False)."""
        log.info("request %s: %s; trying again in %.0f s", _name(run.request), reason, delay.total_seconds())
        requeued = await run.store.requeue(run.request, reason=reason, delay=delay)
        # The requester sees why it waits: Veo at capacity (429) or unavailable, and when it tries again.
        await self._progress(run.request, timezone.now(), state=waiting, retry_in=delay)
        if not requeued:
            return False
        await _wait(run.cancelled, delay.total_seconds())
        return True

    # -- follow -----------------------------------------------------------------------------

    async def _follow(self, run: Run) -> None:
        """Poll the stored operation with backoff until it ends, the deadline passes or it is cancelled."""
        request = run.request
        deadline = request.started_at + settings.VEO_GENERATION_TIMEOUT
        delay = settings.VEO_POLL_INITIAL.total_seconds()
        failures = 0
        last_progress = timezone.now()
        while True:
            try:
                outcome = await self.backend.poll(request.operation_name)
                failures = 0
            except OperationLost as error:
                return await self._end(run, Ending("operation_lost", f"Veo no longer knows this operation: {error}"))
            except (Unavailable, Refused, RateLimited) as error:
                failures += 1
                log.warning("request %s: poll failed (%s), %s in a row", _name(request), error, failures)
                if failures >= POLL_FAILURES:
                    return await self._end(
                        run, Ending("backend_error", f"Veo stopped answering about this video: {error}")
                    )
                outcome = None
            if outcome is not None:
                metrics.operation_ended(request, outcome)
                return await self._finish(run, outcome)
            now = timezone.now()
            if now >= deadline:
                minutes = settings.VEO_GENERATION_TIMEOUT.total_seconds() / 60
                return await self._end(run, Ending("timeout", f"Veo did not finish within {minutes:g} minutes"))
            if now - last_progress >= PROGRESS_EVERY:
                last_progress = now
                await self._progress(request, now)
            if await _wait(run.cancelled, min(delay, (deadline - now).total_seconds())):
                # Veo offers no way to stop an operation: it runs on (and is billed) unwatched.
                return await self._end(run, Ending("cancelled", run.cancel_reason))
            delay = min(delay * 1.5, settings.VEO_POLL_MAX.total_seconds())

    async def _progress(
        self, request: VideoRequest, now, *, state: str | None = None, retry_in: timedelta | None = None
    ) -> None:
        delivery = self.deliveries.get(request.source)
        if delivery is None:
            return
        try:
            elapsed = now - (request.started_at or request.created_at)
            await delivery.progress(request, state=state or request.status, elapsed=elapsed, retry_in=retry_in)
        except Exception:
            log.warning("request %s: progress update failed", _name(request), exc_info=True)

    # -- finish -----------------------------------------------------------------------------

    async def _finish(self, run: Run, outcome: Outcome) -> None:
        if not outcome.videos:
            return await self._end(
                run,
                Ending(
                    outcome.error_code,
                    outcome.error_message or outcome.error_code,
                    outcome.filtered_count,
                    tuple(outcome.filtered_reasons),
                ),
            )
        video = outcome.videos[0]
        request = run.request
        # Degraded mode has no request id yet: the interaction id names the file instead.
        stored = await asyncio.to_thread(
            store_output,
            request_id=request.id or request.interaction_id,
            data=video.data,
            uri=video.uri,
            mime_type=video.mime_type,
            storage=self.storage,
        )
        run.request = await run.store.completed(request, video=stored)
        log.info("request %s: completed", _name(request))

    async def _end(self, run: Run, ending: Ending) -> bool:
        """Record the ending; True (the run goes on, to deliver it)."""
        run.request = await run.store.ended(run.request, ending=ending)
        log.info(
            "request %s: %s (%s: %s)%s",
            _name(run.request),
            ending.status,
            ending.code,
            ending.message,
            ", refunded" if ending.refunded else "",
        )
        return True

    # -- deliver ----------------------------------------------------------------------------

    async def _deliver(self, run: Run, *, review_is_current: bool) -> None:
        request = run.request
        delivery = self.deliveries.get(request.source)
        if delivery is None:
            await run.store.undeliverable_here(
                request, reason=f"finished; awaiting a worker that delivers {request.source} requests"
            )
            return
        # Deliver what is true now: a moderator may have removed the output meanwhile.
        if not review_is_current:
            request = await run.store.deliverable(request)
        receipt = await self._attempt_delivery(delivery, request)
        await run.store.delivered(request, receipt=receipt)
        metrics.DELIVERIES.labels(receipt.method).inc()
        log.info(
            "request %s: delivered (%s)%s",
            _name(request),
            receipt.method,
            f", with error: {receipt.error}" if receipt.error else "",
        )

    async def _attempt_delivery(self, delivery: Delivery, request: VideoRequest) -> Receipt:
        """Deliver, retrying while the destination is unavailable; after DELIVERY_ATTEMPTS the
        failure is what gets recorded. Nobody else retries meanwhile (the lease is kept)."""
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                return await delivery.deliver(request)
            except DeliveryUnavailable as error:
                metrics.DELIVERY_UNAVAILABLE.inc()
                if attempt == DELIVERY_ATTEMPTS:
                    return Receipt(
                        method=DeliveryMethod.UNDELIVERABLE, error=f"gave up after {attempt} attempts: {error}"
                    )
                backoff = retry_backoff(attempt)
                log.warning(
                    "request %s: delivery failed (%s); trying again in %.0f s",
                    _name(request),
                    error,
                    backoff.total_seconds(),
                )
                await asyncio.sleep(backoff.total_seconds())
        raise AssertionError("unreachable")


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``event`` is set first; True if it was."""
    try:
        await asyncio.wait_for(event.wait(), timeout=max(seconds, 0))
        return True
    except TimeoutError:
        return event.is_set()


def _name(request: VideoRequest) -> str:
    return str(request.id) if request.id else f"of interaction {request.interaction_id}"
