"""The degraded-mode journal: every tracking write, while PostgreSQL is unreachable.

One append-only JSON-lines file per bot process under VEO_JOURNAL_DIR; each line is
written with one ``write`` and fsync'd before the bot acts on it, so a kill loses at most a
line that was never acknowledged (a torn last line is skipped on reading). The process holds
an exclusive ``flock`` on its file while alive: a file nobody holds belongs to a process that
died, and may be replayed in full. Lines:

  {"kind": "request", "interaction_id": …, "request": {admission fields, status, created_at, …}}
  {"kind": "step", "interaction_id": …, "step": {"status": …, "at": …, …}}   (lifecycle)
  {"kind": "step", "interaction_id": …, "step": {"delivered": true, "at": …, "method": …}}

Replay (``tracking.services.replay_journaled_request``) is idempotent on the interaction id.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"


@dataclass
class Journaled:
    """One request as the journal tells it."""

    interaction_id: int
    request: dict
    steps: list[dict] = field(default_factory=list)


class Journal:
    """This process's journal file, created on the first write."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        self._fd: int | None = None
        self._lock = threading.Lock()  # appends come from worker threads
        self.lines = 0  # written to the current file

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
            _fsync_directory(self.directory)  # the new file's name survives a crash too
        os.write(self._fd, line)  # one write of a whole line, O_APPEND: lines never interleave
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
            self.path = self.directory / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
            self.lines = 0
            return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock: another process may now replay the file
            self._fd = None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path, *, lines: int | None = None) -> dict[int, Journaled]:
    """The requests in a journal file (its first ``lines`` lines), in order; a torn last line
    (killed mid-write) is skipped."""
    requests: dict[int, Journaled] = {}
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if lines is not None and number > lines:
                break
            try:
                entry = json.loads(raw)
            except ValueError:
                log.warning("journal %s: skipping unreadable line %s (torn write?)", path.name, number)
                continue
            interaction_id = int(entry["interaction_id"])
            if entry["kind"] == "request":
                requests.setdefault(interaction_id, Journaled(interaction_id, entry["request"]))
            elif interaction_id in requests:
                requests[interaction_id].steps.append(entry["step"])
    return requests


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
