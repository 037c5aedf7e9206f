"""The durable worker: claims requests from PostgreSQL and runs each through the engine.

A claimed row carries a lease; the engine (generation.engine) does what its status says is
left, recording through ``PostgresStore`` under that lease. A worker that dies simply stops
renewing its leases; whoever claims the row next carries on from where it stood. The lease
renewal also tells the worker when a moderator cancelled a request it is following.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError

from generation import metrics
from generation.delivery import Delivery
from generation.engine import Engine, Run, Superseded
from generation.health import DATABASE_DOWN, DatabaseHealth, watch_database
from generation.housekeeping import keep_dashboards_fresh, keep_ledgers_pruned
from generation.journal import Journal, WriteAhead
from generation.listener import listen_for_work
from generation.replay import JournalReplayer
from generation.runtime import sleep_unless
from generation.storage import LocalStorage, local_storage
from generation.stores import PostgresStore
from generation.veo import VeoBackend
from generation.wakeup import woken_by_local_admissions
from tracking import aio, services
from tracking.models import Status, VideoRequest

log = logging.getLogger(__name__)

RETRY_AFTER_BUG = timedelta(seconds=30)  # a request that met an unexpected error waits this long


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        *,
        engine: Engine,
        health: DatabaseHealth,
        name: str | None = None,
        slots: int | None = None,
        ahead: WriteAhead | None = None,
    ):
        """``health``: this process's view of the database; while it is down nothing is claimed
        (generation.health.watch_database tells when it is back). ``ahead``: where each Veo start
        is written before its record in PostgreSQL (generation.stores)."""
        self.engine = engine
        self.health = health
        self.name = name or worker_name()
        self.slots = slots or settings.VEO_WORKER_SLOTS
        self.lease = settings.VEO_LEASE
        self._stop = asyncio.Event()
        self.store = PostgresStore(
            worker=self.name, lost_database=health.failed, stopping=self._stop.is_set, ahead=ahead
        )
        self._runs: dict[int, Run] = {}  # request id -> its run here, while it is handled

    # -- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and handle work until ``stop`` is set; then hand back whatever is held."""
        log.info(
            "worker %s started: backend %s, %s slots, delivers %s",
            self.name,
            self.engine.backend.label,
            self.slots,
            ", ".join(sorted(self.engine.deliveries)),
        )
        free = asyncio.Semaphore(self.slots)
        running: set[asyncio.Task] = set()
        # Set when work is admitted (here or, through NOTIFY, elsewhere): ends the idle sleep.
        wake = asyncio.Event()
        chores = [
            asyncio.create_task(keep_dashboards_fresh(stop), name="dashboards"),
            asyncio.create_task(keep_ledgers_pruned(stop), name="ledgers"),
            asyncio.create_task(self._stopping(stop), name="stopping"),
        ]
        if settings.VEO_WORKER_LISTEN:
            chores.append(asyncio.create_task(listen_for_work(wake, stop=stop, worker=self.name), name="listener"))
        try:
            with woken_by_local_admissions(wake, holds_the_cap=self.holds_the_cap):
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
                    claimed = [request for request in got if request.id not in self.store.handling]
                    for _ in range(wanted - len(claimed)):
                        free.release()
                    for request in claimed:
                        task = asyncio.create_task(self.handle(request), name=f"request-{request.id}")
                        running.add(task)
                        task.add_done_callback(lambda done: (running.discard(done), free.release()))
                    if len(got) < wanted:  # nothing more to take now: another claim would come back empty
                        await self._idle(stop, wake)
        finally:
            for task in (*running, *chores):
                task.cancel()
            await asyncio.gather(*running, *chores, return_exceptions=True)
            close = getattr(self.engine.backend, "aclose", None)
            if close is not None:
                await close()
            if self.store.ahead is not None:
                self.store.ahead.close()  # what a handed-back start left unrecorded stays for replay
            log.info("worker %s stopped", self.name)

    async def _idle(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Until the next poll, or sooner when work is admitted -- unless this worker alone holds
        the global cap on generations: then a new pending request cannot start anyway, and a claim
        for it would come back empty (on a busy bot, one wasted round trip per /veo, on the same
        core as the answer). The poll still claims on time: what frees the cap (a generation here
        ending) or what a claim also finds (a finished row to deliver, an expired lease) does not
        depend on the hint."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.VEO_WORKER_IDLE_POLL.total_seconds()
        while True:
            # Always through the loop once, even with no time left: a poll of 0 s must not spin.
            await sleep_unless(stop, max(deadline - loop.time(), 0), wake=wake)
            if stop.is_set() or not wake.is_set() or not self.holds_the_cap():
                return
            wake.clear()

    def holds_the_cap(self) -> bool:
        """Whether the requests this worker is starting or generating are VEO_MAX_CONCURRENT or
        more: claim_video_request counts exactly those (status generating, or pending under a
        live lease) against the cap, so no pending request can start anywhere until one ends."""
        busy = (Status.PENDING, Status.GENERATING)
        return sum(run.request.status in busy for run in self._runs.values()) >= settings.VEO_MAX_CONCURRENT

    async def _stopping(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stop.set()  # the store stops insisting on writes the database cannot take

    async def _claim(self, limit: int) -> list[VideoRequest]:
        if self.health.degraded:
            return []
        try:
            return await aio.run(
                services.claim_work,
                worker=self.name,
                lease=self.lease,
                sources=list(self.engine.deliveries),
                max_concurrent=settings.VEO_MAX_CONCURRENT,
                max_starts_per_minute=settings.VEO_MAX_STARTS_PER_MINUTE,
                limit=limit,
            )
        except DATABASE_DOWN as error:
            self.health.failed(error)
        except DatabaseError:
            log.exception("worker %s: claiming failed; trying again at the next poll", self.name)
        return []

    # -- one request ------------------------------------------------------------------------

    async def handle(self, request: VideoRequest) -> None:
        """Carry one claimed request as far as it goes, keeping its lease meanwhile."""
        run = Run(request, self.store)
        me, request_id = asyncio.current_task(), request.id
        keeper = asyncio.create_task(self._keep_lease(run, me))
        self.store.handling[request_id] = me
        self._runs[request_id] = run
        try:
            await self.engine.run(run)
        except Superseded:
            log.warning("request %s: lease lost to another worker; leaving it to them", request_id)
        except DATABASE_DOWN as error:
            # Nothing to release it with: the lease runs out, and whoever claims the row once the
            # database is back resumes it from its stored state (the operation name is kept).
            self.health.failed(error)
            log.warning(
                "request %s: database unreachable mid-request; it resumes once the database is back", request_id
            )
        except asyncio.CancelledError:
            if not keeper.done() or not keeper.result():
                await asyncio.shield(
                    self.store.release(request_id, "worker shutting down; another worker will resume it")
                )
            raise
        except Exception:
            log.exception("request %s: unexpected error; releasing it for a retry", request_id)
            await asyncio.shield(self.store.release(request_id, "unexpected worker error", delay=RETRY_AFTER_BUG))
        finally:
            keeper.cancel()
            if self.store.handling.get(request_id) is me:  # not handed back and claimed anew meanwhile
                del self.store.handling[request_id]
            if self._runs.get(request_id) is run:
                del self._runs[request_id]

    async def _keep_lease(self, run: Run, owner: asyncio.Task) -> bool:
        """Renew the lease every third of its length. Returns True (and stops the owner) when the
        lease was lost; tells the run when a moderator cancelled the request meanwhile."""
        request_id = run.request.id
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                status = await aio.run(services.renew_lease, request_id=request_id, worker=self.name, lease=self.lease)
            except DatabaseError:
                continue  # keep working; the lease may still be valid when the database returns
            if status is None:
                log.warning("request %s: lease lost; stopping work on it", request_id)
                owner.cancel()
                return True
            if status == Status.CANCELLED and not run.cancelled.is_set():
                run.cancel("cancelled while it ran")


def standalone_worker(
    *,
    backend: VeoBackend,
    deliveries: Mapping[str, Delivery],
    health: DatabaseHealth | None = None,
    storage: LocalStorage | None = None,
    name: str | None = None,
    slots: int | None = None,
    journal_dir: Path | None = None,
) -> Worker:
    """A worker with an engine of its own, outside the bot (runworker, tests, benchmarks);
    with ``journal_dir``, each Veo start is written there before its record in PostgreSQL."""
    engine = Engine(backend=backend, storage=storage or local_storage(), deliveries=deliveries)
    ahead = WriteAhead(journal_dir) if journal_dir is not None else None
    return Worker(engine=engine, health=health or DatabaseHealth(), name=name, slots=slots, ahead=ahead)


async def serve_standalone(
    worker: Worker,
    stop: asyncio.Event,
    *,
    journal_dir: Path,
    chores: Sequence[Callable[[asyncio.Event], Awaitable[None]]] = (),
) -> None:
    """A worker process without the bot (runworker): the worker, the database watch -- which
    replays the journals killed processes left in ``journal_dir`` (their starts written ahead) --
    and ``chores``, until ``stop``."""
    journal = Journal(journal_dir)  # this process writes none: it only finds the others'
    metrics.watch_journal(journal)
    replayer = JournalReplayer(journal=journal, under_way=set, health=worker.health)
    try:
        # Started during an outage, the replay's first call would wait out the pool's connect
        # timeout before degraded mode began (the bot probes first for the same reason).
        if not await asyncio.to_thread(worker.health.probe):
            worker.health.failed(ConnectionError("no answer to the start-up probe"))
        # Before the first claim: a start a killed worker wrote ahead must be recorded before its
        # request, claimable again once that worker's lease runs out, could be started twice.
        await replayer.replay()
        await asyncio.gather(
            worker.run(stop),
            watch_database(worker.health, stop, every_pass=replayer.replay),
            *(chore(stop) for chore in chores),
        )
    finally:
        journal.close()
