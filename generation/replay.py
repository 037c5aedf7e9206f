"""Writing the degraded-mode journal into PostgreSQL once it answers again.

This process's finished requests, and everything left by processes that died, are replayed
one request per transaction (``services.replay_journaled_request``, idempotent on the
interaction id). An entry that cannot be replayed -- a line that is not an entry, a request
the database refuses -- is quarantined (generation.journal), reported once as an error
naming the request and recorded in ``journal_quarantine`` for /healthz and the admin; the
entries after it go on. A journal file is removed only when every entry in it is in
PostgreSQL or in quarantine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from generation import journal as journal_module
from generation import wakeup
from generation.health import DATABASE_DOWN, DatabaseHealth
from generation.journal import Contents, Journaled, Quarantined
from tracking import aio, services
from veosite import logs

log = logging.getLogger(__name__)

ACTOR = "bot-journal"


class JournalReplayer:
    def __init__(
        self,
        *,
        journal: journal_module.Journal,
        under_way: Callable[[], set[int]],
        health: DatabaseHealth,
        written: Callable[[int], None] = lambda interaction_id: None,
    ):
        self.journal = journal
        self.under_way = under_way  # interaction ids whose runs have not finished journaling
        self.health = health
        self.written = written  # told each interaction id now in the database (or in quarantine)
        self.replayed: set[int] = set()  # requests of our own current file that are done with
        self.done_lines: set[int] = set()  # other lines of our own current file that are done with
        self.reported: set[str] = set()  # quarantined entries recorded in the database

    async def replay(self) -> int:
        """Replay what can be replayed now; returns how many requests were written."""
        if self.health.degraded:
            return 0
        written = 0
        try:
            await self._report_quarantine()
            if self.journal.exists:
                written += await self._replay_own()
            for path in journal_module.orphans(self.journal.directory, own=self.journal.path):
                written += await self._replay_orphan(path)
        except DATABASE_DOWN as error:
            self.health.failed(error)
        if written:
            await _notify_workers()  # replayed requests still to start, follow or deliver
        return written

    async def _replay_own(self) -> int:
        # One snapshot: the lines written so far and the runs under way. A run that ended
        # before it has all its lines in those; one under way (or begun since) does not, and
        # writing it would record a delivered request as still generating -- the worker would
        # then deliver it a second time. Those wait for a later pass.
        lines = self.journal.lines
        running = self.under_way()
        contents = await asyncio.to_thread(journal_module.read, self.journal.path, lines=lines)
        written = 0
        for item in contents.requests.values():
            if item.interaction_id in self.replayed or item.interaction_id in running:
                continue
            written += await self._write(item, source=self.journal.path)
            self.replayed.add(item.interaction_id)
        for line in contents.unreadable:
            if line.number not in self.done_lines:
                await self._quarantine_line(line, source=self.journal.path)
                self.done_lines.add(line.number)
        idle = not self.under_way()
        if len(self.replayed) == len(contents.requests) and idle and self.journal.discard(lines=lines):
            self.replayed.clear()
            self.done_lines.clear()
        return written

    async def _replay_orphan(self, path: Path) -> int:
        fd = journal_module.lock_orphan(path)
        if fd is None:
            return 0  # its process is alive and replays it itself
        try:
            contents: Contents = await asyncio.to_thread(journal_module.read, path)
            written = 0
            for item in contents.requests.values():
                written += await self._write(item, source=path)
            for entry in contents.ahead:
                await self._record_ahead(entry, source=path)
            for line in contents.unreadable:
                await self._quarantine_line(line, source=path)
            path.unlink(missing_ok=True)
            log.info("journal %s (left by a stopped process) replayed: %s requests", path.name, len(contents.requests))
            return written
        finally:
            os.close(fd)

    async def _write(self, item: Journaled, *, source: Path) -> int:
        """Replay one request; quarantine it when the database refuses it. Returns 1 if inserted now."""
        try:
            request_id, inserted = await aio.run(
                services.replay_journaled_request, request=item.request, steps=item.steps, actor=ACTOR
            )
        except DATABASE_DOWN:
            raise
        except Exception as error:
            # Whatever it is, it would fail again on every pass and hold up the entries after it.
            kept = await asyncio.to_thread(
                journal_module.quarantine_request,
                self.journal.directory,
                item,
                source=source.name,
                error=_describe(error),
            )
            log.error(
                "journal: request of interaction %s (user %s) could not be replayed and is quarantined as "
                "%s: %s. Fix the cause, then run manage.py replay_journal --retry",
                item.interaction_id,
                item.request.get("user_id"),
                kept.path.name,
                _describe(error),
            )
            await self._report(kept)
            self.written(item.interaction_id)
            return 0
        self.written(item.interaction_id)
        if inserted:
            last = next((s for s in reversed(item.steps) if s.get("status")), None)
            logs.step(
                log,
                "replayed",
                request_id=request_id,
                user_id=item.request.get("user_id"),
                guild_id=item.request.get("guild_id"),
                interaction_id=item.interaction_id,
                status=(last or item.request).get("status"),
                delivered=any(s.get("delivered") for s in item.steps),
            )
        return int(inserted)

    async def _record_ahead(self, entry: journal_module.Ahead, *, source: Path) -> None:
        """A start or a delivery a killed process wrote ahead of its record (generation.journal.WriteAhead):
        record it, unless someone did since."""
        record = services.record_journaled_start if entry.kind == "started" else services.record_journaled_delivery
        try:
            recorded = await aio.run(
                record,
                request_id=entry.request_id,
                interaction_id=entry.interaction_id,
                at=entry.at,
                actor=ACTOR,
                **entry.facts,
            )
        except DATABASE_DOWN:
            raise
        except Exception as error:
            line = journal_module.Unreadable(entry.number, json.dumps(entry.__dict__).encode(), _describe(error))
            await self._quarantine_line(line, source=source)
            return
        if recorded:
            log.warning(
                "request %s: %s recorded from %s, where its worker wrote it before it could record it (%s)",
                entry.request_id,
                entry.kind,
                source.name,
                entry.facts,
            )

    async def _quarantine_line(self, line: journal_module.Unreadable, *, source: Path) -> None:
        kept = await asyncio.to_thread(journal_module.quarantine_line, self.journal.directory, line, source=source.name)
        log.error(
            "journal %s: line %s is not a journal entry (%s) and is quarantined as %s",
            source.name,
            line.number,
            line.problem,
            kept.path.name,
        )
        await self._report(kept)

    async def _report_quarantine(self) -> None:
        """Record in the database what was quarantined while it could not be told (or by a past process)."""
        for kept in await asyncio.to_thread(journal_module.quarantined, self.journal.directory):
            if kept.key not in self.reported:
                await self._report(kept)

    async def _report(self, kept: Quarantined) -> None:
        try:
            await aio.run(services.record_quarantined, key=kept.key, entry=kept.entry)
        except DATABASE_DOWN:
            return  # the next pass reports it
        self.reported.add(kept.key)


def _describe(error: Exception) -> str:
    cause = error.__cause__ or error
    text = " ".join(str(cause).split()) or type(cause).__name__
    return f"{type(cause).__name__}: {text}"[:1000]


async def _notify_workers() -> None:
    wakeup.wake_local_workers()
    await aio.run(wakeup.notify_workers)


# -- the operator's side: manage.py replay_journal ----------------------------------------------


def retry_quarantined(kept: Quarantined, *, actor: str) -> str | None:
    """Replay a quarantined request again (blocking); None when it is now in PostgreSQL (its file is
    then removed), else why not. An unreadable line cannot be replayed: it can only be discarded."""
    if not kept.replayable:
        return f"an unreadable line cannot be replayed ({kept.entry.get('error')}); inspect it, then --discard it"
    services.record_quarantined(key=kept.key, entry=kept.entry)
    try:
        services.replay_journaled_request(request=kept.entry["request"], steps=kept.entry.get("steps", []), actor=actor)
    except DATABASE_DOWN:
        raise
    except Exception as error:
        return _describe(error)
    services.resolve_quarantined(key=kept.key, resolution="replayed", actor=actor)
    kept.path.unlink(missing_ok=True)
    wakeup.work_admitted()  # a replayed request may still have work to do
    return None


def discard_quarantined(kept: Quarantined, *, actor: str) -> None:
    """Give up on a quarantined entry: its record in PostgreSQL keeps the entry; the file goes."""
    services.record_quarantined(key=kept.key, entry=kept.entry)
    services.resolve_quarantined(key=kept.key, resolution="discarded", actor=actor)
    kept.path.unlink(missing_ok=True)
