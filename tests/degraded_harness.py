"""Degraded mode in the test process: the engine over the journal store, the real google-genai
client against the Veo fake, and a process death at a chosen journal line.

What the bot runs while PostgreSQL is away, minus Discord (deliveries are recorded the CLI's
way). ``die_after`` makes the "process" die as it writes that many-plus-one-th journal line: the
line is never written, and neither the journal nor Veo hears from it again -- as after kill -9.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from django.utils import timezone
from google.oauth2.credentials import Credentials

from generation.admission import unsaved_request
from generation.degraded import DegradedRunner, JournalStore
from generation.delivery import CliDelivery
from generation.engine import Engine
from generation.health import DatabaseHealth
from generation.journal import Journal
from generation.limiter import LocalLimiter
from generation.replay import JournalReplayer
from generation.storage import LocalStorage
from generation.veo import GenaiBackend, make_client
from tests.helpers import next_interaction
from tests.workers import MODEL
from tracking import services
from tracking.models import Status
from tracking.services import VideoParameters


class Killed(Exception):
    """The process is dead: nothing it does from now on happens."""


class DyingJournal(Journal):
    def __init__(self, directory: Path, *, die_after: int | None):
        super().__init__(directory)
        self.die_after = die_after
        self.dead = False

    def append(self, entry: dict) -> None:
        if self.die_after is not None and self.lines >= self.die_after:
            self.dead = True
        if self.dead:
            raise Killed()
        super().append(entry)


class DyingBackend:
    """Veo, as seen by a process that may die: a dead process makes no more calls."""

    def __init__(self, backend, journal: DyingJournal):
        self.backend, self.journal, self.label = backend, journal, backend.label

    async def start(self, job):
        self._alive()
        return await self.backend.start(job)

    async def poll(self, operation_name):
        self._alive()
        return await self.backend.poll(operation_name)

    def _alive(self) -> None:
        if self.journal.dead:
            raise Killed()


class Degraded:
    def __init__(self, journal_dir: Path, media: Path, *, die_after: int | None = None):
        self.journal = DyingJournal(journal_dir, die_after=die_after)
        backend = DyingBackend(
            GenaiBackend(make_client(credentials=Credentials(token="test")), model=MODEL), self.journal
        )
        self.engine = Engine(backend=backend, storage=LocalStorage(media), deliveries={"discord": CliDelivery()})
        self.limiter = LocalLimiter()
        self.runner = DegradedRunner(engine=self.engine, store=JournalStore(journal=self.journal, limiter=self.limiter))

    @staticmethod
    def request(prompt: str, *, user_id: int = 7):
        params = services.clean_parameters(VideoParameters(prompt=prompt))
        return unsaved_request(
            request_id=None,
            interaction_id=next_interaction(),
            user_id=user_id,
            guild_id=None,
            channel_id=8,
            params=params,
            status=Status.PENDING,
            created_at=timezone.now(),
        )

    async def run(self, *requests, cancel_generating=frozenset()) -> list:
        """Admit (journal) and run ``requests`` until each ends or the process dies; those in
        ``cancel_generating`` (interaction ids) are cancelled once they generate. Returns the
        requests that were admitted (journaled) before any death."""
        admitted = []
        for request in requests:
            self.limiter.admit(user_id=request.user_id, at=request.created_at)
            try:
                await self.runner.admit(request)
            except Killed:
                break
            admitted.append(request)
        while self.runner.under_way and not self.journal.dead:
            for interaction_id in cancel_generating:
                run = self.runner.runs.get(interaction_id)
                if run is not None and run.request.status == Status.GENERATING and not run.cancelled.is_set():
                    self.runner.cancel(interaction_id, reason="cancelled by its requester")
            await asyncio.sleep(0.02)
        if self.journal.dead:
            await self.runner.stop()
            self.journal.close()  # its lock goes with the process: the file is now an orphan
        return admitted

    def replayer(self, journal: Journal | None = None) -> JournalReplayer:
        """This process's replayer, or (``journal``: a successor's) one that finds this one's file orphaned."""
        if journal is not None:
            return JournalReplayer(journal=journal, under_way=set, health=DatabaseHealth())
        return JournalReplayer(journal=self.journal, under_way=lambda: self.runner.under_way, health=DatabaseHealth())

    async def replay(self) -> int:
        return await self.replayer().replay()
