"""What happens inside a bot or worker process, for Prometheus: one definition per series.

Each figure is updated with one line where its event happens (admission, the engine, the
Veo backend, the database watch); the journal's figures are read when scraped. Counts that
PostgreSQL holds (queue depth, requests by status, open reports) are not here: the web
process serves them once for all (tracking.metrics), where every bot and worker would
otherwise query and report the same rows.

``serve()`` starts prometheus_client's HTTP server on METRICS_PORT (off unless set). Labels
carry codes and names from a short fixed list, never user text, ids or credentials.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram

from generation import journal as journal_files
from generation import process_health
from veosite.config import ConfigError

log = logging.getLogger(__name__)

ADMISSION_SECONDS = Histogram(
    "veobot_admission_seconds",
    "Time to decide a /veo admission, by where it was decided (database, or degraded: this process's limiter).",
    ["mode"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10),
)
ADMISSION_BATCH_SIZE = Histogram(
    "veobot_admission_batch_size",
    "/veo admissions per statement sent to the database: its count is the statements, its sum the admissions.",
    buckets=(1, 2, 5, 10, 20, 50),
)
ADMISSION_BATCHES_RETRIED = Counter(
    "veobot_admission_batches_retried_total",
    "Batches of admissions the database refused as a whole, admitted again one by one.",
)
GENERATION_SECONDS = Histogram(
    "veobot_generation_seconds",
    "Veo operation time, from its start to its outcome (video, or an error code such as content_filtered).",
    ["model", "outcome"],
    buckets=(5, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200),
)
VEO_ERRORS = Counter(
    "veobot_veo_errors_total",
    "Veo calls that failed, by call (start, poll) and code (HTTP status, timeout or network).",
    ["call", "code"],
)
SAFETY_FILTERED = Counter("veobot_safety_filtered_total", "Operations whose video Veo's safety filters blocked.")
DELIVERIES = Counter(
    "veobot_deliveries_total",
    "Outcomes delivered to requesters, by method; method=undeliverable is a delivery that failed for good.",
    ["method"],
)
DELIVERY_UNAVAILABLE = Counter(
    "veobot_delivery_unavailable_total",
    "Delivery attempts that found the destination unavailable (429, 5xx, network); each is retried a few times.",
)
DEGRADED = Gauge("veobot_degraded", "1 while this process finds PostgreSQL unreachable and runs in degraded mode.")
OUTAGES = Counter("veobot_degraded_outages_total", "Times this process entered degraded mode.")
JOURNAL_BACKLOG = Gauge(
    "veobot_journal_backlog_entries",
    "Lines in this process's degraded-mode journal that PostgreSQL has not taken yet (the file is emptied once it has).",
)
JOURNAL_FILES = Gauge(
    "veobot_journal_files",
    "Degraded-mode journal files in VEO_JOURNAL_DIR: this process's and those stopped processes left for replay.",
)
JOURNAL_QUARANTINED = Gauge(
    "veobot_journal_quarantined_files",
    "Journal entries kept in VEO_JOURNAL_DIR/quarantine on this machine (manage.py replay_journal).",
)


def operation_ended(request, outcome) -> None:
    """A Veo operation came back with ``outcome`` (generation.veo.Outcome) for ``request``."""
    if request.started_at is not None:  # set with the status: a generating request always has it
        seconds = (timezone.now() - request.started_at).total_seconds()
        GENERATION_SECONDS.labels(request.model, "video" if outcome.videos else outcome.error_code).observe(seconds)
    if outcome.filtered_count:
        SAFETY_FILTERED.inc()


def set_degraded(degraded: bool) -> None:
    DEGRADED.set(1 if degraded else 0)
    process_health.report_degraded(degraded)
    if degraded:
        OUTAGES.inc()


_serving: tuple[str, int] | None = None
_serving_lock = threading.Lock()


def serve() -> None:
    """Serve this process's figures on METRICS_ADDRESS:METRICS_PORT, when a port is set. Once per
    process: runbot falling back to the worker alone calls it again."""
    global _serving
    address, port = settings.METRICS_ADDRESS, settings.METRICS_PORT
    with _serving_lock:
        if not port or _serving is not None:
            return
        try:
            process_health.start_server(address=address, port=port)
        except OSError as error:
            raise ConfigError(
                f"METRICS_PORT {port} cannot be served on {address} ({error.strerror}); "
                "each bot and worker on a machine needs a port of its own"
            ) from None
        _serving = (address, port)
    host = address if ":" not in address else f"[{address}]"
    log.info("metrics: http://%s:%s/metrics, this process's health: http://%s:%s/healthz", host, port, host, port)


def watch_journal(journal: journal_files.Journal) -> None:
    """Report this process's journal, and its folder, when scraped."""
    JOURNAL_BACKLOG.set_function(lambda: journal.lines if journal.exists else 0)
    JOURNAL_FILES.set_function(lambda: len(journal_files.degraded_journals(journal.directory)))
    quarantine = journal.directory / journal_files.QUARANTINE
    JOURNAL_QUARANTINED.set_function(lambda: sum(1 for _ in quarantine.glob("*.json")))
