"""The durable worker: claims requests from PostgreSQL, runs them through Veo, delivers them.

One code path serves normal work and recovery. A claimed row says what is left to do:
``pending`` -> start the operation (then follow it), ``generating`` -> resume polling the
stored operation (never start twice), finished -> deliver. A worker that dies simply stops
renewing its leases; whoever claims the row next carries on from where it stood.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from generation import storage as storage_module
from generation.delivery import Delivery, DeliveryUnavailable, Receipt
from generation.housekeeping import keep_dashboards_fresh
from generation.listener import listen_for_work
from generation.runtime import sleep_unless
from generation.wakeup import woken_by_local_admissions
from generation.veo import (OperationLost, Outcome, RateLimited, Refused, StartUnconfirmed, Unavailable, VeoBackend,
                            VideoJob)
from tracking import aio, services
from tracking.models import DeliveryMethod, ReviewStatus, Status, TERMINAL_STATUSES, VideoRequest
from tracking.selectors import humanize_duration

log = logging.getLogger(__name__)

START_ATTEMPTS = 3  # 5xx answers or refused connections before a start gives up
POLL_FAILURES = 5  # consecutive failed polls before the request is failed
DELIVERY_ATTEMPTS = 5  # tries to reach the requester (backing off) before recording it undeliverable
PROGRESS_EVERY = timedelta(seconds=10)  # Discord edits no more often than this
DATABASE_DOWN = (OperationalError, InterfaceError)  # the database went away (pool timeouts included)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def retry_backoff(attempts: int) -> timedelta:
    """VEO_RETRY_BACKOFF doubled per attempt (5 s, 10 s, 20 s ...) up to 5 min, with jitter so
    a storm of rate-limited requests does not come back in step."""
    seconds = min(settings.VEO_RETRY_BACKOFF.total_seconds() * 2 ** max(attempts - 1, 0), 300)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


class LeaseLost(Exception):
    """Another worker owns the request now; stop touching it."""


class Worker:
    def __init__(self, *, backend: VeoBackend, deliveries: Mapping[str, Delivery],
                 storage: storage_module.LocalStorage | None = None, name: str | None = None,
                 slots: int | None = None):
        self.backend = backend
        self.deliveries = dict(deliveries)
        self.storage = storage or storage_module.local_storage()
        self.name = name or worker_name()
        self.slots = slots or settings.VEO_WORKER_SLOTS
        self.lease = settings.VEO_LEASE
        self._database_down = False
        self._stop: asyncio.Event | None = None
        self._handling: set[int] = set()  # request ids with a handle() under way here

    # -- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and handle work until ``stop`` is set; then hand back whatever is held."""
        log.info("worker %s started: backend %s, %s slots, delivers %s", self.name, self.backend.label,
                 self.slots, ", ".join(sorted(self.deliveries)))
        self._stop = stop
        free = asyncio.Semaphore(self.slots)
        running: set[asyncio.Task] = set()
        # Set when work is admitted (here or, through NOTIFY, elsewhere): ends the idle sleep.
        wake = asyncio.Event()
        chores = [asyncio.create_task(keep_dashboards_fresh(stop), name="dashboards")]
        if settings.VEO_WORKER_LISTEN:
            chores.append(asyncio.create_task(listen_for_work(wake, stop=stop, worker=self.name), name="listener"))
        try:
            with woken_by_local_admissions(wake):
                while not stop.is_set():
                    await free.acquire()
                    wanted = 1
                    while not free.locked():  # every slot free now goes into the same claim
                        await free.acquire()
                        wanted += 1
                    wake.clear()  # before the claim: what is admitted after it wakes the sleep below
                    got = [] if stop.is_set() else await self._claim(wanted)
                    # A row still being handled here had its lease run out while the database was
                    # away; claiming it (under the same name) just renewed the lease.
                    claimed = [request for request in got if request.id not in self._handling]
                    for _ in range(wanted - len(claimed)):
                        free.release()
                    for request in claimed:
                        task = asyncio.create_task(self.handle(request), name=f"request-{request.id}")
                        running.add(task)
                        task.add_done_callback(lambda done: (running.discard(done), free.release()))
                    if len(got) < wanted:  # nothing more to take now: another claim would come back empty
                        await sleep_unless(stop, settings.VEO_WORKER_IDLE_POLL.total_seconds(), wake=wake)
        finally:
            for task in (*running, *chores):
                task.cancel()
            await asyncio.gather(*running, *chores, return_exceptions=True)
            close = getattr(self.backend, "aclose", None)
            if close is not None:
                await close()
            log.info("worker %s stopped", self.name)

    async def _claim(self, limit: int) -> list[VideoRequest]:
        try:
            claimed = await aio.run(
                services.claim_work, worker=self.name, lease=self.lease, sources=list(self.deliveries),
                max_concurrent=settings.VEO_MAX_CONCURRENT,
                max_starts_per_minute=settings.VEO_MAX_STARTS_PER_MINUTE, limit=limit)
        except DatabaseError as error:
            self._lost_database(error)
            return []
        if self._database_down:
            log.info("worker %s: database reachable again", self.name)
            self._database_down = False
        return claimed

    @property
    def degraded(self) -> bool:
        """The database was unreachable at the last claim: what runs beside the worker waits too."""
        return self._database_down

    def _lost_database(self, error: DatabaseError) -> None:
        if not self._database_down:
            self.database_unreachable(error)
        self._database_down = True

    def database_unreachable(self, error: DatabaseError) -> None:
        """Once per outage (the bot overrides this to enter its degraded mode instead)."""
        log.warning("worker %s: database unreachable, not claiming work until it returns (%s)",
                    self.name, type(error).__name__)

    # -- one request ------------------------------------------------------------------------

    async def handle(self, request: VideoRequest) -> None:
        """Carry one claimed request as far as it goes: start, follow, deliver."""
        me, claimed = asyncio.current_task(), request
        request_id = request.id  # `request` becomes None once a start is handed back
        keeper = asyncio.create_task(self._keep_lease(request_id, me))
        self._handling.add(request_id)
        try:
            if request.status == Status.PENDING:
                request = await self._start(request)
            if request is not None and request.status == Status.GENERATING:
                request = await self._follow(request)
            if request is not None and request.status in TERMINAL_STATUSES:
                # A row this worker just finished was read at that moment; a claimed one may be
                # minutes old, and a moderator may have removed its output since.
                await self._deliver(request, review_is_current=request is not claimed)
        except LeaseLost:
            log.warning("request %s: lease lost to another worker; leaving it to them", request_id)
        except DATABASE_DOWN as error:
            # Nothing to release it with: the lease runs out, and whoever claims the row once the
            # database is back resumes it from its stored state (the operation name is kept).
            self._lost_database(error)
            log.warning("request %s: database unreachable mid-request; it resumes once the database is back",
                        request_id)
        except asyncio.CancelledError:
            if not keeper.done() or not keeper.result():
                await asyncio.shield(self._release(request_id, "worker shutting down; another worker will resume it"))
            raise
        except Exception:
            log.exception("request %s: unexpected error; releasing it for a retry", request_id)
            await asyncio.shield(self._release(request_id, "unexpected worker error", delay=timedelta(seconds=30)))
        finally:
            keeper.cancel()
            self._handling.discard(request_id)

    async def _keep_lease(self, request_id: int, owner: asyncio.Task) -> bool:
        """Renew the lease every third of its length. Returns True (and stops the owner)
        when the lease was lost."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                held = await aio.run(services.renew_lease, request_id=request_id, worker=self.name, lease=self.lease)
            except DatabaseError:
                continue  # keep working; the lease may still be valid when the database returns
            if not held:
                log.warning("request %s: lease lost; stopping work on it", request_id)
                owner.cancel()
                return True

    async def _release(self, request_id: int, reason: str, *, delay: timedelta | None = None) -> None:
        retry_at = timezone.now() + delay if delay else None
        try:
            await aio.run(services.release, request_id=request_id, worker=self.name, reason=reason, retry_at=retry_at)
        except DatabaseError:
            log.warning("request %s: could not release (database unreachable); the lease will expire", request_id)

    # -- start ------------------------------------------------------------------------------

    async def _start(self, request: VideoRequest) -> VideoRequest | None:
        begin = asyncio.ensure_future(self._begin(request))
        try:
            return await asyncio.shield(begin)
        except asyncio.CancelledError:
            # Let a start in flight finish, so its operation name is stored and the next
            # worker resumes that operation instead of creating a second one.
            await asyncio.wait([begin])
            raise

    async def _begin(self, request: VideoRequest) -> VideoRequest | None:
        waited = timezone.now() - request.created_at
        if waited > settings.VEO_QUEUE_TIMEOUT:
            # Veo kept refusing new work (429) for longer than anyone waits for a video.
            return await self._timeout(request, "queue_timeout", "Veo was too busy to start this video within "
                                       f"{humanize_duration(settings.VEO_QUEUE_TIMEOUT)} of the request")
        try:
            operation_name = await self.backend.start(VideoJob.from_request(request))
        except RateLimited as error:
            backoff = retry_backoff(request.attempts)
            log.info("request %s: Veo rate limit (%s); back in the queue for %.0f s", request.id, error,
                     backoff.total_seconds())
            await self._release(request.id, f"rate limited by Veo: {error}", delay=backoff)
            return None
        except StartUnconfirmed as error:
            # Never a second create for one request: better a refunded failure than two videos.
            return await self._fail(request, error.code, f"Veo did not confirm the start: {error}")
        except Unavailable as error:
            if request.attempts < START_ATTEMPTS:
                log.warning("request %s: Veo unavailable on start (%s); retrying later", request.id, error)
                await self._release(request.id, f"Veo unavailable: {error}", delay=retry_backoff(request.attempts))
                return None
            return await self._fail(request, error.code, f"Veo could not start the video: {error}")
        except Refused as error:
            return await self._fail(request, error.code, f"Veo refused the request: {error}")
        moved = await self._record(services.mark_generating, request_id=request.id, operation_name=operation_name,
                                   worker=self.name)
        if moved.status != Status.GENERATING:
            raise LeaseLost()
        log.info("request %s: generating (operation %s)", request.id, operation_name)
        request.status, request.operation_name, request.started_at = Status.GENERATING, operation_name, timezone.now()
        return request

    # -- follow -----------------------------------------------------------------------------

    async def _follow(self, request: VideoRequest) -> VideoRequest:
        """Poll the stored operation with backoff until it ends or the deadline passes."""
        deadline = request.started_at + settings.VEO_GENERATION_TIMEOUT
        delay = settings.VEO_POLL_INITIAL.total_seconds()
        failures = 0
        last_progress = timezone.now()
        while True:
            try:
                outcome = await self.backend.poll(request.operation_name)
                failures = 0
            except OperationLost as error:
                return await self._timeout(request, "operation_lost", f"Veo no longer knows this operation: {error}")
            except (Unavailable, Refused, RateLimited) as error:
                failures += 1
                log.warning("request %s: poll failed (%s), %s in a row", request.id, error, failures)
                if failures >= POLL_FAILURES:
                    return await self._fail(request, "backend_error",
                                            f"Veo stopped answering about this video: {error}")
                outcome = None
            if outcome is not None:
                return await self._finish(request, outcome)
            now = timezone.now()
            if now >= deadline:
                return await self._timeout(request, "timeout", "Veo did not finish within "
                                           f"{settings.VEO_GENERATION_TIMEOUT.total_seconds() / 60:g} minutes")
            if now - last_progress >= PROGRESS_EVERY:
                last_progress = now
                await self._progress(request, now)
            await asyncio.sleep(min(delay, (deadline - now).total_seconds()))
            delay = min(delay * 1.5, settings.VEO_POLL_MAX.total_seconds())

    async def _progress(self, request: VideoRequest, now: datetime) -> None:
        delivery = self.deliveries.get(request.source)
        if delivery is None:
            return
        try:
            await delivery.progress(request, state=request.status, elapsed=now - request.started_at)
        except Exception:
            log.warning("request %s: progress update failed", request.id, exc_info=True)

    async def _finish(self, request: VideoRequest, outcome: Outcome) -> VideoRequest:
        if not outcome.videos:
            return await self._fail(request, outcome.error_code, outcome.error_message,
                                    filtered_count=outcome.filtered_count, filtered_reasons=outcome.filtered_reasons)
        video = outcome.videos[0]
        stored = await asyncio.to_thread(storage_module.store_output, request_id=request.id, data=video.data,
                                         uri=video.uri, mime_type=video.mime_type, storage=self.storage)
        moved = await aio.run(services.mark_completed, request_id=request.id, output_uris=[stored.uri],
                              public_urls=[stored.public_url] if stored.public_url else [],
                              output_size_bytes=stored.size_bytes, worker=self.name)
        return await self._after(request, moved, Status.COMPLETED, "completed")

    async def _fail(self, request: VideoRequest, code: str, message: str, *, filtered_count: int = 0,
                    filtered_reasons: list[str] | None = None) -> VideoRequest:
        moved = await aio.run(services.mark_failed, request_id=request.id, error_code=code, error_message=message,
                              safety_filtered_count=filtered_count or None,
                              safety_filtered_reasons=filtered_reasons or None, worker=self.name)
        return await self._after(request, moved, Status.FAILED, f"failed ({code}: {message})")

    async def _timeout(self, request: VideoRequest, code: str, message: str) -> VideoRequest:
        moved = await aio.run(services.mark_timeout, request_id=request.id, error_code=code, error_message=message,
                              worker=self.name)
        return await self._after(request, moved, Status.TIMEOUT, f"timed out ({code}: {message})")

    async def _after(self, request: VideoRequest, moved: services.Transition, expected: str, what: str) -> VideoRequest:
        if moved.status != expected or moved.row is None:
            raise LeaseLost()
        log.info("request %s: %s", request.id, what)
        return moved.row

    # -- deliver ----------------------------------------------------------------------------

    async def _deliver(self, request: VideoRequest, *, review_is_current: bool) -> None:
        delivery = self.deliveries.get(request.source)
        if delivery is None:
            # Finished here, delivered by a process that can reach this source.
            await self._release(request.id, f"finished; awaiting a worker that delivers {request.source} requests")
            return
        # Deliver what is true now. (Removed later, while the delivery is on its way:
        # record_delivery queues its deletion.)
        if not review_is_current:
            request.review_status = await aio.run(_review_status, request_id=request.id)
        receipt = await self._attempt_delivery(delivery, request)
        recorded = await self._record(services.record_delivery, request_id=request.id, worker=self.name,
                                      method=receipt.method, message_id=receipt.message_id, error=receipt.error,
                                      removal_known=request.review_status == ReviewStatus.REMOVED)
        if not recorded:
            raise LeaseLost()
        log.info("request %s: delivered (%s)%s", request.id, receipt.method,
                 f", with error: {receipt.error}" if receipt.error else "")
        if request.review_status == ReviewStatus.REMOVED:
            # Removed before it was generated or stored: its file outlived the removal.
            await aio.run(services.discard_removed_outputs, request_id=request.id)

    async def _record(self, write, **fields):
        """Record what has already happened outside (a Veo start, a delivery), whatever it takes:
        lost, it would be done again -- a second Veo bill, a second message to the user. While
        the database is away nobody can claim the row from us, so keep trying until it answers
        (or the worker stops)."""
        while True:
            try:
                return await aio.run(write, **fields)
            except DATABASE_DOWN as error:
                self._lost_database(error)
                if self._stop is not None and self._stop.is_set():
                    log.warning("request %s: stopping with %s unrecorded (database unreachable); it will be done "
                                "again", fields["request_id"], write.__name__)
                    raise
                await asyncio.sleep(settings.DATABASE_PROBE_INTERVAL.total_seconds())


    async def _attempt_delivery(self, delivery: Delivery, request: VideoRequest) -> Receipt:
        """Deliver, retrying while the destination is unavailable; after DELIVERY_ATTEMPTS the
        failure is what gets recorded. The lease is kept meanwhile, so nobody else retries too."""
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                return await delivery.deliver(request)
            except DeliveryUnavailable as error:
                if attempt == DELIVERY_ATTEMPTS:
                    return Receipt(method=DeliveryMethod.UNDELIVERABLE,
                                   error=f"gave up after {attempt} attempts: {error}")
                backoff = retry_backoff(attempt)
                log.warning("request %s: delivery failed (%s); trying again in %.0f s", request.id, error,
                            backoff.total_seconds())
                await asyncio.sleep(backoff.total_seconds())
        raise AssertionError("unreachable")


def _review_status(*, request_id: int) -> str:
    return VideoRequest.objects.values_list("review_status", flat=True).get(id=request_id)


