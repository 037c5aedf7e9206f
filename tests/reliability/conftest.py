"""Fault-injection runs (docs/RELIABILITY.md).

Every run exists in two sizes: the quick one runs in `make test`, the full one (the figures in
RELIABILITY.md) with `make chaos`, which sets VEOBOT_CHAOS=full. A run picks its numbers with
`scale(quick=…, full=…)` and ends with `chaos_report(...)`, which prints what was injected and
what was found and keeps the figures under artifacts/reliability/.
"""

import os
import random

import pytest

from tests.reliability.report import ChaosReport, full_size


@pytest.fixture
def scale():
    """scale(quick=10, full=100) -> the number for this run's size."""

    def pick(*, quick, full):
        return full if full_size() else quick

    return pick


@pytest.fixture
def chaos_report(request, capsys):
    report = ChaosReport(run=request.node.name)
    yield report
    # Shown even when pytest captures output, so `make test` logs carry the figures too.
    with capsys.disabled():
        print("\n" + report.render())
    report.save()


@pytest.fixture
def chaos_seed(chaos_report):
    """The seed for everything random in a run, reported with it. Replay a failed run with
    VEOBOT_CHAOS_SEED=<seed> (and the same VEOBOT_CHAOS size); the faults and their order come
    back the same, the interleaving of processes and threads need not."""
    seed = int(os.environ.get("VEOBOT_CHAOS_SEED") or random.randrange(2**32))
    chaos_report.inject(seed=seed)
    return seed
