"""The journal: what happened and PostgreSQL must learn, written where a kill cannot lose it.

It holds every tracking write of degraded mode (while PostgreSQL is unreachable), and, in
normal operation, each Veo operation name the moment Veo answers a start -- before the worker
records it in PostgreSQL, so a process killed in between leaves the name behind instead of a
second start (and a second bill) after the restart.

One append-only JSON-lines file per bot or worker process under VEO_JOURNAL_DIR; each line is
written with one ``write`` and fsync'd before the bot acts on it, so a kill loses at most a
line that was never acknowledged (a torn last line, like any line that is not an entry, is
quarantined on replay, never dropped). The process holds
an exclusive ``flock`` on its file while alive: a file nobody holds belongs to a process that
died, and may be replayed in full. Lines:

  {"kind": "request", "interaction_id": …, "request": {admission fields, status, created_at, …}}
  {"kind": "step", "interaction_id": …, "step": {"status": …, "at": …, …}}   (lifecycle)
  {"kind": "step", "interaction_id": …, "step": {"delivered": true, "at": …, "method": …}}
  {"kind": "started", "interaction_id": …, "request_id": …, "operation_name": …, "at": …}   (written ahead)
  {"kind": "delivered", "interaction_id": …, "request_id": …, "method": …, "message_id": …, "error": …,
   "removal_known": …, "at": …}                                                              (written ahead)

Replay (generation.replay) is idempotent on the interaction id. What cannot be replayed -- a
line that is not JSON, a step whose request is missing, a request the database refuses -- is
moved aside into ``quarantine/`` beside the journal files, one file per entry with the error,
and never blocks the entries after it; ``manage.py replay_journal`` lists and retries them.
Nothing leaves a journal file without being in PostgreSQL or in quarantine.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import socket
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
AHEAD_SUFFIX = ".ahead.jsonl"  # WriteAhead's files: only a killed process leaves one with anything to replay
QUARANTINE = "quarantine"
# What each kind written ahead carries besides its request and time.
AHEAD_KINDS = {
    "started": ("operation_name",),
    "delivered": ("method", "message_id", "error", "removal_known"),
}  # the folder, inside the journal's, of entries that could not be replayed


@dataclass
class Journaled:
    """One request as the journal tells it."""

    interaction_id: int
    request: dict
    steps: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Unreadable:
    """A line that is not an entry of ours (or a step whose request line is missing)."""

    number: int
    raw: bytes
    problem: str


@dataclass(frozen=True)
class Ahead:
    """What happened outside to a request already in PostgreSQL -- a Veo start ("started"), a delivery
    ("delivered") -- written ahead of its record there."""

    number: int  # the line
    kind: str
    request_id: int
    interaction_id: int
    facts: dict  # operation_name; or method, message_id, error, removal_known
    at: str


@dataclass
class Contents:
    """What a journal file holds: its requests, in order, the operations started for requests in
    PostgreSQL, and the lines that make no sense."""

    requests: dict[int, Journaled] = field(default_factory=dict)
    ahead: list[Ahead] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)


class Journal:
    """This process's journal file, created on the first write."""

    def __init__(self, directory: Path, *, suffix: str = SUFFIX, durable: bool = True):
        """``durable``: fsync every line (it must survive the machine); otherwise a line written
        survives the process, which the kernel holds it for, but not a power cut."""
        self.directory = Path(directory)
        self.suffix = suffix
        self.durable = durable
        self.path = self._new_path()
        self._fd: int | None = None
        self._lock = threading.Lock()  # appends come from worker threads
        self.lines = 0  # written to the current file

    def _new_path(self) -> Path:
        return self.directory / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{self.suffix}"

    def append(self, entry: dict) -> None:
        """Write one line and fsync it (blocking: call through asyncio.to_thread)."""
        line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            self._append(line)

    def _append(self, line: bytes) -> None:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours until we exit
            if self.durable:
                _fsync_directory(self.directory)  # the new file's name survives a crash too
        os.write(self._fd, line)  # one write of a whole line, O_APPEND: lines never interleave
        if self.durable:
            os.fsync(self._fd)
        self.lines += 1

    @property
    def exists(self) -> bool:
        return self._fd is not None

    def discard(self, *, lines: int) -> bool:
        """Everything in it is in the database: remove the file (a new one starts on the next
        write) -- unless more than ``lines`` lines were written since it was read."""
        with self._lock:
            if self._fd is None or self.lines != lines:
                return False
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
            self.path = self._new_path()
            self.lines = 0
            return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock: another process may now replay the file
            self._fd = None

    def remove(self) -> None:
        """Everything it held is in PostgreSQL: delete the file."""
        with self._lock:
            if self._fd is not None:
                self.path.unlink(missing_ok=True)
                os.close(self._fd)
                self._fd = None


class WriteAhead:
    """What a worker did outside -- a Veo start, a delivery -- written ahead of its record in
    PostgreSQL, in journal files of their own (``*.ahead.jsonl``).

    A worker writes the operation name here the moment Veo answers a start (the receipt the moment
    Discord took a delivery), then records it in PostgreSQL and says so (``recorded``). It guards
    against the process dying in between (killed, crashed, out of memory): the kernel keeps what
    was written, so these lines are not fsync'd, and the start waits for no disk. A power cut in
    those milliseconds is beyond them. A file
    gives way to a new one every LINES_PER_FILE lines and goes once everything in it is recorded;
    on a clean stop every file whose entries are all recorded goes. Nothing is read back while
    the process lives: only a killed one leaves files, and generation.replay records from them
    what nobody has recorded since."""

    LINES_PER_FILE = 1000

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._current = Journal(self.directory, suffix=AHEAD_SUFFIX, durable=False)
        self._outstanding: dict[Journal, int] = {}  # file -> entries in it not yet recorded

    def write(self, entry: dict) -> Journal:
        """Write an entry; returns the file it is in. Not fsync'd, it takes microseconds: call it
        from the event loop."""
        with self._lock:
            if self._current.lines >= self.LINES_PER_FILE:
                self._retire(self._current)
                self._current = Journal(self.directory, suffix=AHEAD_SUFFIX, durable=False)
            journal = self._current
            self._outstanding[journal] = self._outstanding.get(journal, 0) + 1
        journal.append(entry)
        return journal

    def recorded(self, journal: Journal) -> None:
        """One entry written to ``journal`` is in PostgreSQL now (cheap: a full file's removal at most)."""
        with self._lock:
            self._outstanding[journal] -= 1
            if journal is not self._current:
                self._retire(journal)

    def _retire(self, journal: Journal) -> None:
        if not self._outstanding.get(journal):
            self._outstanding.pop(journal, None)
            journal.remove()

    def close(self) -> None:
        """On shutdown: files whose entries are all recorded go; the others stay, for replay."""
        with self._lock:
            for journal in {*self._outstanding, self._current}:
                if self._outstanding.get(journal):
                    journal.close()
                else:
                    journal.remove()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path, *, lines: int | None = None) -> Contents:
    """The requests in a journal file (its first ``lines`` lines), in order, and what could not be read."""
    contents = Contents()
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if lines is not None and number > lines:
                break
            try:
                entry = json.loads(raw)
                interaction_id = int(entry["interaction_id"])
                kind = entry["kind"]
                if kind == "request":
                    contents.requests.setdefault(interaction_id, Journaled(interaction_id, dict(entry["request"])))
                elif kind == "step" and interaction_id in contents.requests:
                    contents.requests[interaction_id].steps.append(dict(entry["step"]))
                elif kind in AHEAD_KINDS:
                    facts = {key: entry[key] for key in AHEAD_KINDS[kind]}
                    contents.ahead.append(
                        Ahead(number, kind, int(entry["request_id"]), interaction_id, facts, str(entry["at"]))
                    )
                else:
                    problem = "a step whose request is not in the file" if kind == "step" else f"unknown kind {kind!r}"
                    contents.unreadable.append(Unreadable(number, raw, problem))
            except (ValueError, KeyError, TypeError) as error:
                what = "torn write?" if not raw.endswith(b"\n") else type(error).__name__
                contents.unreadable.append(Unreadable(number, raw, f"not a journal entry ({what}: {error})"[:500]))
    return contents


def orphans(directory: Path, *, own: Path | None) -> list[Path]:
    """Journal files other than ours, oldest name first (their owners may be alive: see lock_orphan)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return [path for path in sorted(directory.glob(f"*{SUFFIX}")) if path != own]


def lock_orphan(path: Path) -> int | None:
    """Take the lock of a file whose process is gone; None if its owner is alive (or it is gone).
    Hold the returned descriptor while replaying, so two replayers never race; then close it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # replayed and removed by another process meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not path.exists():  # removed between our open and our lock
        os.close(fd)
        return None
    return fd


# -- quarantine ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quarantined:
    """An entry moved aside: where it is kept and what it holds."""

    path: Path
    entry: dict

    @property
    def key(self) -> str:
        """Unique across machines: the host that kept it and the file's name."""
        return f"{self.entry.get('host', '?')}:{self.path.name}"

    @property
    def replayable(self) -> bool:
        return self.entry.get("kind") == "request"


def quarantine_request(directory: Path, item: Journaled, *, source: str, error: str) -> Quarantined:
    """Keep a request the database refused, with why, so that it can be retried after a fix."""
    entry = {"kind": "request", "interaction_id": item.interaction_id, "request": item.request, "steps": item.steps}
    return _quarantine(directory, entry, source=source, error=error, name=f"request-{item.interaction_id}")


def quarantine_line(directory: Path, line: Unreadable, *, source: str) -> Quarantined:
    """Keep a line that could not be read, byte for byte."""
    entry = {"kind": "line", "line": line.number, "raw_base64": base64.b64encode(line.raw).decode()}
    return _quarantine(directory, entry, source=source, error=line.problem, name=f"line-{line.number}")


def _quarantine(directory: Path, entry: dict, *, source: str, error: str, name: str) -> Quarantined:
    folder = Path(directory) / QUARANTINE
    folder.mkdir(parents=True, exist_ok=True)
    entry = {
        **entry,
        "error": error,
        "source": source,
        "host": socket.gethostname(),
        "quarantined_at": datetime.now(UTC).isoformat(),
    }
    data = json.dumps(entry, separators=(",", ":"), default=str).encode()
    stem = f"{Path(source).stem}-{name}-{uuid.uuid4().hex[:6]}"
    # Written whole or not at all (temporary file, fsync, rename), before the journal forgets it.
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    path = folder / f"{stem}.json"
    os.replace(temporary, path)
    _fsync_directory(folder)
    return Quarantined(path, entry)


def quarantined(directory: Path) -> list[Quarantined]:
    """The entries kept in this journal folder's quarantine, oldest first."""
    folder = Path(directory) / QUARANTINE
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            found.append(Quarantined(path, json.loads(path.read_bytes())))
        except (OSError, ValueError) as error:
            log.warning("quarantined entry %s is unreadable itself (%s)", path.name, error)
    return found


def degraded_journals(directory: Path) -> list[Path]:
    """The journal files of degraded mode (not the write-ahead ones) in a folder."""
    return [path for path in sorted(Path(directory).glob(f"*{SUFFIX}")) if not path.name.endswith(AHEAD_SUFFIX)]
