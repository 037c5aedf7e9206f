"""CPU accounting from /proc, because the benchmark machine is shared.

Wall-clock figures move with whatever else runs; the server CPU spent per transaction
hardly does. During each measurement we sample the CPU time of the benchmark's own
backends and of the whole machine, so a run can report its cost per call and how many
cores other work took meanwhile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

TICK = 1 / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time this machine spent running something since boot, over all cores.

    user + nice + system + irq + softirq: not idle, not I/O wait, not steal (time the
    hypervisor gave to other machines); guest time is already inside user time.
    """
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    )
    return (user + nice + system + irq + softirq) * TICK


def process_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of these processes (all their threads); gone processes count 0."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * TICK


def wait_until_quiet(*, max_seconds: float, busy_cores: float = 0.25) -> float:
    """Wait (at most max_seconds) for a second in which the machine uses under `busy_cores`; return the last reading."""
    deadline = time.monotonic() + max_seconds
    while True:
        before = machine_busy_seconds()
        time.sleep(1)
        busy = machine_busy_seconds() - before
        if busy < busy_cores or time.monotonic() >= deadline:
            return busy


@dataclass(frozen=True)
class Window:
    """CPU used between two wall-clock instants of a measurement."""

    start: float
    end: float
    backend_seconds: float  # the benchmark's server backends
    other_seconds: float  # everything on the machine except the backends, pgbench and `own_pids`

    @property
    def other_cores(self) -> float:
        # The machine total and the per-process times tick separately: near zero, the
        # difference can come out a tick below it.
        return max(self.other_seconds, 0.0) / (self.end - self.start)


def observe(
    *, seconds: float, backend_pids: Callable[[], list[int]], expected_backends: int, own_pids: list[int]
) -> Window | None:
    """Sample from the moment all clients are connected until one second before the run ends."""
    started = time.monotonic()
    deadline = started + seconds - 1
    backends = backend_pids()
    while len(backends) < expected_backends and time.monotonic() < started + 3:
        time.sleep(0.05)
        backends = backend_pids()
    if len(backends) < expected_backends or time.monotonic() >= deadline - 1:
        return None  # too short a run to say anything
    ours = backends + own_pids
    start, backend_start, ours_start, busy_start = (
        time.time(),
        process_seconds(backends),
        process_seconds(ours),
        machine_busy_seconds(),
    )
    time.sleep(max(deadline - time.monotonic(), 0))
    end, backend_end, ours_end, busy_end = (
        time.time(),
        process_seconds(backends),
        process_seconds(ours),
        machine_busy_seconds(),
    )
    return Window(start, end, backend_end - backend_start, (busy_end - busy_start) - (ours_end - ours_start))
