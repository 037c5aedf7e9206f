"""The engine's store in normal operation: the request's row in PostgreSQL, under a lease.

Every write is one statement through ``tracking.services``, guarded by the worker's lease: a
worker that lost it gets nothing changed back and stops (``Superseded``). What already
happened outside -- a Veo start, a delivery -- is recorded whatever it takes: lost, it would
be done again (a second Veo bill, a second message). While the database is away nobody can
claim the row from us, so those writes keep trying until it answers or the worker stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from generation.delivery import Receipt
from generation.engine import Superseded
from generation.health import DATABASE_DOWN
from generation.journal import WriteAhead
from generation.storage import StoredVideo
from tracking import aio, services
from tracking.errors import InvalidTransition
from tracking.models import TERMINAL_STATUSES, ReviewStatus, Status, VideoRequest
from tracking.outcomes import Ending

log = logging.getLogger(__name__)


class PostgresStore:
    name = "postgres"

    def __init__(
        self,
        *,
        worker: str,
        lost_database: Callable[[Exception], None],
        stopping: Callable[[], bool],
        ahead: WriteAhead | None = None,
    ):
        self.worker = worker
        self.lost_database = lost_database  # told of every outage met while recording
        self.stopping = stopping  # the worker is shutting down: stop insisting
        self.ahead = ahead  # where a start is written before its record here (None: nowhere)
        # Request ids this worker is carrying now. A row handed back leaves it before the release
        # commits: claimed again at once, it is carried again, not taken for one still in hand.
        self.handling: dict[int, asyncio.Task] = {}

    async def started(self, request: VideoRequest, *, operation_name: str) -> VideoRequest:
        # Killed between Veo's answer and the record below, the worker would leave nothing that
        # names the operation, and whoever took the request over would start it again.
        written = self._write_ahead(request, "started", operation_name=operation_name)
        moved = await self._transition(services.mark_generating, request, insist=True, operation_name=operation_name)
        self._recorded(written)
        if moved is not request:
            return moved  # cancelled by a moderator while Veo was starting it
        request.status, request.operation_name, request.started_at = Status.GENERATING, operation_name, timezone.now()
        return request

    async def completed(self, request: VideoRequest, *, video: StoredVideo) -> VideoRequest:
        return await self._transition(
            services.mark_completed,
            request,
            output_uris=[video.uri],
            public_urls=[video.public_url] if video.public_url else [],
            output_size_bytes=video.size_bytes,
        )

    async def ended(self, request: VideoRequest, *, ending: Ending) -> VideoRequest:
        return await self._transition(services.mark_ended, request, ending=ending)

    async def _transition(self, write, request: VideoRequest, *, insist: bool = False, **fields) -> VideoRequest:
        """One transition under the lease: the row it left (``request`` itself for a start), or,
        when a moderator ended the request first (cancelled it), the row as they left it."""
        call = self._insist if insist else _once
        try:
            moved = await call(write, request_id=request.id, worker=self.worker, **fields)
        except InvalidTransition:
            moved = None  # from a status a moderator set meanwhile
        if moved is not None and moved.changed:
            return request if write is services.mark_generating else moved.row
        current = await aio.run(_current, request_id=request.id)
        if current.claimed_by != self.worker:
            raise Superseded()
        if write is services.mark_generating and current.operation_name == fields["operation_name"]:
            return request  # this very start, recorded from the journal meanwhile
        if current.status in TERMINAL_STATUSES:
            return current
        raise Superseded()

    async def requeue(self, request: VideoRequest, *, reason: str, delay: timedelta) -> bool:
        await self.release(request.id, reason, delay=delay)
        return False  # the queue has it; any worker claims it once the delay has passed

    async def deliverable(self, request: VideoRequest) -> VideoRequest:
        request.review_status = await aio.run(_review_status, request_id=request.id)
        return request

    async def delivered(self, request: VideoRequest, *, receipt: Receipt) -> None:
        removed = request.review_status == ReviewStatus.REMOVED
        # Discord has it: killed before the record below (or while the database is away), the
        # worker would leave the request undelivered in the record, and it would be sent again.
        facts = {
            "method": receipt.method,
            "message_id": receipt.message_id,
            "error": receipt.error,
            "removal_known": removed,
        }
        written = self._write_ahead(request, "delivered", **facts)
        if removed:
            # Removed before it was generated or stored: its file outlived the removal. Gone before
            # the delivery is recorded, so that nothing recorded as delivered still keeps it.
            await aio.run(services.discard_removed_outputs, request_id=request.id)
        recorded = await self._insist(services.record_delivery, request_id=request.id, worker=self.worker, **facts)
        self._recorded(written)
        if not recorded:
            raise Superseded()

    def _write_ahead(self, request: VideoRequest, kind: str, **facts):
        """What happened outside, written to this process's journal before its record here;
        whoever replays a killed process's journal (generation.replay) records it instead."""
        if self.ahead is None:
            return None
        entry = {
            "kind": kind,
            "interaction_id": request.interaction_id,
            "request_id": request.id,
            **facts,
            "at": timezone.now().isoformat(),
        }
        return self.ahead.write(entry)

    def _recorded(self, written) -> None:
        if written is not None:
            self.ahead.recorded(written)

    async def undeliverable_here(self, request: VideoRequest, *, reason: str) -> None:
        await self.release(request.id, reason)

    async def release(self, request_id: int, reason: str, *, delay: timedelta | None = None) -> None:
        """Hand the request back to the queue (not claimable before ``delay`` has passed)."""
        retry_at = timezone.now() + delay if delay else None
        self.handling.pop(request_id, None)
        try:
            await aio.run(services.release, request_id=request_id, worker=self.worker, reason=reason, retry_at=retry_at)
        except DATABASE_DOWN:
            pass  # the lease runs out instead, and the request is claimable again then

    async def _insist(self, write, **fields):
        while True:
            try:
                return await aio.run(write, **fields)
            except DATABASE_DOWN as error:
                self.lost_database(error)
                if self.stopping():
                    left = "its journal keeps it for the next process" if self.ahead else "it will be done again"
                    log.warning(
                        "request %s: stopping with %s unrecorded (database unreachable); %s",
                        fields["request_id"],
                        write.__name__,
                        left,
                    )
                    raise
                await asyncio.sleep(settings.DATABASE_PROBE_INTERVAL.total_seconds())


async def _once(write, **fields):
    return await aio.run(write, **fields)


def _review_status(*, request_id: int) -> str:
    return VideoRequest.objects.values_list("review_status", flat=True).get(id=request_id)


def _current(*, request_id: int) -> VideoRequest:
    return VideoRequest.objects.get(id=request_id)
