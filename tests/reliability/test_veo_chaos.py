"""Veo chaos: a batch of requests through real workers and the real google-genai client, with
the Veo fake misbehaving at random per request (seeded): 429 storms, 500s on start and on
poll, answers slower than the HTTP timeout, lost operations, safety filters, operation
errors, hangs and generations slower than the deadline.

Every fault is sent once first, then at random (seeded, the seed printed); the run checks
that each fault was met and ended as it should. Afterwards each request's status, error code
and refund must be what its fault calls for, and no request may have been created twice at Veo.
"""

import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import pytest

from generation.engine import POLL_FAILURES, START_ATTEMPTS
from tests.fakes.veo_server import FakeVeoServer
from tests.helpers import admit
from tests.workers import MODEL, genai_worker, truncate_requests, wait_for, worker_thread
from tracking.models import VideoRequest

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

# Margins of seconds, not milliseconds: the machine is shared and a healthy call must never
# look like a timeout.
GENERATION_TIMEOUT = timedelta(seconds=6)
HTTP_TIMEOUT = timedelta(seconds=2)
STALL = 3  # seconds: well beyond HTTP_TIMEOUT


@dataclass(frozen=True)
class Expected:
    status: str
    error_code: str | None
    counts: bool  # counts_toward_quota afterwards


COMPLETED = Expected("completed", None, True)


def refunded(status: str, code: str) -> Expected:
    return Expected(status, code, False)


# fault -> (weight, marker for the prompt, what the request must end as; None: as configured)
FAULTS = {
    "none": (3, lambda rng: f"[scenario:multi_poll polls={rng.randint(1, 3)}]", COMPLETED),
    "429_storm": (4, lambda rng: f"[scenario:rate_limited times={rng.randint(1, 4)}]", COMPLETED),
    "500_on_start_transient": (1, lambda rng: f"[scenario:server_error times={START_ATTEMPTS - 1}]", COMPLETED),
    "500_on_start": (1, lambda rng: "[scenario:server_error]", refunded("failed", "backend_error")),
    "500_on_poll_transient": (1, lambda rng: f"[scenario:server_error on=poll times={POLL_FAILURES - 1}]", COMPLETED),
    "500_on_poll": (1, lambda rng: "[scenario:server_error on=poll]", refunded("failed", "backend_error")),
    "poll_timeout_transient": (1, lambda rng: f"[scenario:stall on=poll seconds={STALL} times=1]", COMPLETED),
    # A create that timed out may have started a (billed) video: it must not be sent again.
    "start_timeout": (1, lambda rng: f"[scenario:stall seconds={STALL} times=1]", refunded("failed", "backend_error")),
    "lost": (1, lambda rng: "[scenario:lost]", refunded("timeout", "operation_lost")),
    "safety_filtered": (2, lambda rng: "[scenario:safety_filtered]", None),
    "operation_error": (1, lambda rng: "[scenario:error_operation]", refunded("failed", "operation_failed")),
    "rejected_400": (1, lambda rng: "[scenario:http_error status=400]", refunded("failed", "backend_rejected")),
    "hang": (1, lambda rng: "[scenario:hang]", refunded("timeout", "timeout")),
    "slower_than_deadline": (
        1,
        lambda rng: f"[scenario:slow seconds={GENERATION_TIMEOUT.total_seconds() + 2:g}]",
        refunded("timeout", "timeout"),
    ),
}


@pytest.fixture
def chaos_settings(settings, tmp_path):
    truncate_requests()
    settings.VEO_MEDIA_ROOT = tmp_path / "media"
    settings.VEO_BACKEND = "vertex"
    settings.VEO_RECORDED_MODEL = MODEL
    settings.GOOGLE_CLOUD_PROJECT = "veobot-test"
    settings.VEO_POLL_INITIAL = timedelta(milliseconds=50)
    settings.VEO_POLL_MAX = timedelta(milliseconds=300)
    settings.VEO_WORKER_IDLE_POLL = timedelta(milliseconds=50)
    settings.VEO_RETRY_BACKOFF = timedelta(milliseconds=50)
    settings.VEO_HTTP_RETRIES = 1  # one HTTP call per start or poll, so the fault counts map to outcomes
    settings.VEO_HTTP_TIMEOUT = HTTP_TIMEOUT
    settings.VEO_GENERATION_TIMEOUT = GENERATION_TIMEOUT
    settings.VEO_LEASE = timedelta(seconds=5)
    settings.VEO_MAX_CONCURRENT = 24
    settings.VEO_MAX_STARTS_PER_MINUTE = 10_000
    settings.VEO_WORKER_SLOTS = 12
    settings.VEO_QUOTA_LIMIT = 100
    return settings


def test_veo_misbehaving_at_random(chaos_settings, scale, chaos_seed, chaos_report):
    requests = scale(quick=40, full=300)
    rng = random.Random(chaos_seed)
    chaos_settings.VEO_REFUND_CONTENT_FILTERED = rng.random() < 0.5
    names, weights = list(FAULTS), [FAULTS[name][0] for name in FAULTS]

    # Every fault once, then at random: a run that never drew one would say nothing about it.
    faults = names + rng.choices(names, weights, k=requests - len(names))
    planned = {}  # request id -> (fault, prompt, expected)
    for number, fault in enumerate(faults):
        _, marker, expect = FAULTS[fault]
        prompt = f"a red fox, take {number} {marker(rng)}"  # unique: the fake counts faults per prompt
        expected = expect or Expected("failed", "content_filtered", not chaos_settings.VEO_REFUND_CONTENT_FILTERED)
        planned[admit(user_id=780_000 + number % 50, prompt=prompt).request_id] = (fault, prompt, expected)
    chaos_report.inject(
        requests=requests,
        workers="2 threads x 12 slots, real google-genai client",
        refund_content_filtered=chaos_settings.VEO_REFUND_CONTENT_FILTERED,
        faults=dict(Counter(fault for fault, _, _ in planned.values())),
    )

    with FakeVeoServer() as veo:
        with worker_thread(genai_worker(veo, chaos_settings)), worker_thread(genai_worker(veo, chaos_settings)):
            wait_for(
                lambda: VideoRequest.objects.filter(id__in=planned, delivered_at__isnull=False).count() == len(planned),
                timeout=600,
                interval=0.2,
                what="every request finished and delivered",
            )
        creates = {prompt: [c.status for c in veo.creates(prompt)] for _, prompt, _ in planned.values()}

    rows = VideoRequest.objects.in_bulk(list(planned))
    wrong, duplicated, unexplained = [], [], []
    for request_id, (fault, prompt, expected) in planned.items():
        row = rows[request_id]
        found = Expected(row.status, row.error_code, row.counts_toward_quota)
        if found != expected:
            wrong.append((request_id, fault, expected, found))
        if creates[prompt].count(200) > 1:
            duplicated.append((request_id, fault, creates[prompt]))
        if row.status != "completed" and not row.error_message:
            unexplained.append(request_id)
    chaos_report.find(
        statuses=dict(Counter(f"{r.status}/{r.error_code or '-'}" for r in rows.values())),
        refunded=sum(1 for r in rows.values() if not r.counts_toward_quota),
        creates_sent=sum(len(c) for c in creates.values()),
        creates_429=sum(c.count(429) for c in creates.values()),
        wrong_outcome=len(wrong),
        duplicate_creates=len(duplicated),
        failures_without_message=len(unexplained),
        faults_met_and_ended_right=len({fault for _, (fault, _, _) in planned.items()} - {w[1] for w in wrong}),
    )

    assert {fault for fault, _, _ in planned.values()} == set(FAULTS)  # the coverage this run claims
    assert not wrong, f"{len(wrong)} requests ended wrongly, e.g. (id, fault, expected, found) {wrong[:3]}"
    assert not duplicated, f"{len(duplicated)} requests were created twice at Veo, e.g. {duplicated[:3]}"
    assert not unexplained, f"requests that failed without a message: {unexplained[:5]}"
