"""Run pgbench with one of the scripts in bench/scripts/ and summarise its transaction log."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import cpu

SCRIPTS = Path(__file__).resolve().parent / "scripts"
TPS_LINE = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


class BenchmarkError(Exception):
    """pgbench could not run or did not finish cleanly."""


@dataclass(frozen=True)
class Result:
    transactions: int
    tps: float
    p50_ms: float
    p99_ms: float
    # Over the middle of the run (None if it was too short): server CPU per transaction, and
    # the cores everything outside the benchmark used meanwhile.
    server_cpu_us: float | None
    other_cores: float | None


def pgbench_executable() -> str:
    """The pgbench shipped with the embedded server (PostgreSQL 16), else the one on PATH."""
    from veosite.embedded_db import bin_dir

    bundled = bin_dir()
    if bundled and (bundled / "pgbench").exists():
        return str(bundled / "pgbench")
    found = shutil.which("pgbench")
    if not found:
        raise BenchmarkError("pgbench not found: install pgserver or the PostgreSQL client tools")
    return found


def run(
    *,
    script: str,
    conninfo: str,
    env: dict[str, str],
    clients: int,
    seconds: int,
    variables: dict[str, object],
    backend_pids: Callable[[], list[int]],
    own_pids: list[int],
) -> Result:
    """One measurement: no vacuum, prepared statements, one pgbench thread per core at most.

    `backend_pids` lists the server processes serving this pgbench; `own_pids` are other
    processes of the benchmark (the delay proxies), not counted as outside load.
    """
    with tempfile.TemporaryDirectory(prefix="veobot-pgbench-") as logs:
        args = [
            pgbench_executable(),
            "--no-vacuum",
            "--protocol=prepared",
            f"--client={clients}",
            f"--jobs={min(clients, os.cpu_count() or 1)}",
            f"--time={seconds}",
            f"--file={SCRIPTS / script}",
            "--log",
            f"--log-prefix={Path(logs) / 'transactions'}",
        ]
        args += [f"--define={name}={value}" for name, value in variables.items()]
        args.append(conninfo)
        pgbench = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            window = cpu.observe(
                seconds=seconds, backend_pids=backend_pids, expected_backends=clients, own_pids=[pgbench.pid, *own_pids]
            )
        finally:
            stdout, stderr = pgbench.communicate()
        if pgbench.returncode != 0:
            raise BenchmarkError(
                f"pgbench {script} exited with {pgbench.returncode}: {stderr.strip() or stdout.strip()}"
            )
        latencies_us, ends = _read_logs(Path(logs))
    tps = TPS_LINE.search(stdout)
    if not latencies_us or not tps:
        raise BenchmarkError(f"pgbench {script} reported no transactions:\n{stdout}")
    latencies_us.sort()
    server_cpu_us = other_cores = None
    if window:
        in_window = sum(1 for end in ends if window.start <= end < window.end)
        server_cpu_us = window.backend_seconds * 1e6 / in_window if in_window else None
        other_cores = window.other_cores
    return Result(
        len(latencies_us),
        float(tps.group(1)),
        _percentile(latencies_us, 50) / 1000,
        _percentile(latencies_us, 99) / 1000,
        server_cpu_us,
        other_cores,
    )


def _read_logs(log_dir: Path) -> tuple[list[int], list[float]]:
    """Latencies (us) and end times (epoch s) from pgbench's per-thread transaction logs.

    Each line is "client txn_no latency_us script_no epoch_s epoch_us".
    """
    latencies, ends = [], []
    for path in log_dir.iterdir():
        with path.open() as lines:
            for line in lines:
                _, _, latency, _, epoch_s, epoch_us = line.split()[:6]
                latencies.append(int(latency))
                ends.append(int(epoch_s) + int(epoch_us) / 1e6)
    return latencies, ends


def _percentile(ordered: list[int], percent: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(math.ceil(percent / 100 * len(ordered)) - 1, 0)]
