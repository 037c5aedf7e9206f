"""Degraded mode as a property: any mix of outcomes, the process killed at any journal line.

Hypothesis draws the requests made while PostgreSQL is away (each ending in one of the ways
tests/outcomes.py lists) and the journal line at which the bot dies (or none). Then the database
is back: a successor replays the journal and a worker carries on whatever was left. Whatever
was drawn, every request that was answered (journaled) is in the database, ended as its
scenario says, with its whole history, delivered once; the quota counts exactly the requests
that were not refunded; nothing is quarantined; no journal file is left.
"""

import asyncio
import tempfile
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from generation.journal import Journal
from tests.degraded_harness import Degraded
from tests.fakes.veo_server import FakeVeoServer
from tests.hypothesis_profiles import examples
from tests.outcomes import OUTCOMES
from tests.workers import genai_worker, truncate_requests, wait_for, worker_thread
from tracking import services
from tracking.models import JournalQuarantine, VideoRequest, VideoRequestEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.chaos, pytest.mark.slow]

DEADLINES = {
    "VEO_GENERATION_TIMEOUT": timedelta(seconds=2),
    "VEO_QUEUE_TIMEOUT": timedelta(seconds=2),
    "VEO_RETRY_BACKOFF": timedelta(milliseconds=150),
    "VEO_POLL_INITIAL": timedelta(milliseconds=50),
    "VEO_POLL_MAX": timedelta(milliseconds=150),
    "VEO_HTTP_RETRIES": 1,
    "VEO_LEASE": timedelta(seconds=2),
    "VEO_WORKER_IDLE_POLL": timedelta(milliseconds=50),
    "VEO_MAX_CONCURRENT": 100,
    "VEO_MAX_STARTS_PER_MINUTE": 10_000,
    "VEO_QUOTA_LIMIT": 100,
}


@pytest.fixture(scope="module")
def veo():
    with FakeVeoServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def property_settings(settings, veo):
    settings.VEO_BACKEND = "vertex"
    settings.GOOGLE_CLOUD_PROJECT = "veobot-test"
    settings.VEO_API_BASE_URL = veo.url
    for name, value in DEADLINES.items():
        setattr(settings, name, value)


SCENARIOS = st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=4)
# Each request writes two to five journal lines: a death anywhere among the first 20 hits every phase.
DEATH = st.none() | st.integers(min_value=0, max_value=20)


@hypothesis_settings(
    max_examples=examples(quick=8, full=60),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(outcomes=SCENARIOS, die_after=DEATH)
def test_any_outcomes_and_any_death_during_an_outage_lose_nothing(outcomes, die_after, veo, settings):
    truncate_requests()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE journal_quarantine")
    with tempfile.TemporaryDirectory() as scratch:
        journal_dir, media = Path(scratch) / "journal", Path(scratch) / "media"
        settings.VEO_MEDIA_ROOT, settings.VEO_JOURNAL_DIR = media, journal_dir
        degraded = Degraded(journal_dir, media, die_after=die_after)
        requests = [
            degraded.request(outcome.prompt(f"a heron, {outcome.name} {n} of {id(outcomes)}"), user_id=9000 + n % 2)
            for n, outcome in enumerate(outcomes)
        ]
        expected = dict(zip((r.interaction_id for r in requests), outcomes, strict=False))
        cancel = {r.interaction_id for r in requests if expected[r.interaction_id].cancelled_while}

        admitted = asyncio.run(degraded.run(*requests, cancel_generating=cancel))
        answered = {request.interaction_id for request in admitted}

        # The database is back: this process (or, after a death, its successor) replays the journal ...
        replayer = degraded.replayer(Journal(journal_dir) if degraded.journal.dead else None)
        asyncio.run(replayer.replay())
        # ... a moderator cancels what its requester would have, had the bot lived ...
        left = list(
            VideoRequest.objects.filter(interaction_id__in=cancel, status__in=["pending", "generating"]).values_list(
                "id", flat=True
            )
        )
        if left:
            services.cancel_requests(request_ids=left, actor="mod:alice", reason="cancelled by its requester")
        # ... and a worker carries on whatever was left.
        with worker_thread(genai_worker(veo, settings)):
            wait_for(
                lambda: (
                    VideoRequest.objects.filter(interaction_id__in=answered, delivered_at__isnull=False).count()
                    == len(answered)
                ),
                timeout=30,
                what="every answered request delivered",
            )

        rows = {row.interaction_id: row for row in VideoRequest.objects.all()}
        assert set(rows) == answered  # every answered request, and only those
        for interaction_id, row in rows.items():
            outcome = expected[interaction_id]
            assert (row.status, row.error_code, row.counts_toward_quota) == (
                outcome.status,
                outcome.code,
                not outcome.refunded,
            ), outcome.name
            events = [(e.kind, e.to_status) for e in VideoRequestEvent.objects.filter(request_id=row.id).order_by("id")]
            # Cancelled before it started (the bot died first) it never generated; otherwise the history is exact.
            if outcome.cancelled_while and ("status_changed", "generating") not in events:
                outcome = replace(outcome, started=False)
            assert outcome.told_by(events), (outcome.name, events)
            assert (row.started_at is not None) == outcome.started
        counted = Counter(row.user_id for row in rows.values() if row.counts_toward_quota)
        assert counted == Counter(
            request.user_id for request in admitted if not expected[request.interaction_id].refunded
        )
        assert JournalQuarantine.objects.count() == 0
        assert list(journal_dir.glob("*.jsonl")) == []
        for request in admitted:  # one start, or two when the death fell between Veo's answer and its record
            creates = veo.create_count(request.prompt)
            assert creates >= 1 if expected[request.interaction_id].name == "queue_timeout" else creates <= 2
