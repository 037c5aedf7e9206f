"""Every way a request can end, as the fault runs provoke them against the Veo fake.

One catalogue for every test that must cover all outcomes (degraded mode, replay, outages,
crashes): each says how to make the fake end a request that way (a ``[scenario:...]`` marker
in the prompt, read by tests/fakes/veo_server.py), and what the database must hold afterwards
-- status, error code, refund, and the event history. The expected values are written out
here, not computed from tracking.outcomes, so that a change there is caught here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Outcome:
    name: str
    marker: str  # goes into the prompt
    status: str
    code: str | None
    refunded: bool
    started: bool  # Veo accepted the start: the request went through "generating"
    cancelled_while: str | None = None  # the test cancels it while it is "pending" / "generating"

    def prompt(self, text: str) -> str:
        return f"{text} {self.marker}".strip()

    def told_by(self, events: list[tuple[str, str | None]]) -> bool:
        """Whether a request's events, as (kind, to_status), are this outcome's history. A start Veo
        put off (429, 5xx) adds a 'released' event each time, in either mode; an endless 429 has some."""
        released = events.count(("released", None))
        return [event for event in events if event != ("released", None)] == self.history and (
            released > 0 if self.name == "queue_timeout" else True
        )

    @property
    def history(self) -> list[tuple[str, str | None]]:
        """The request's events, as (kind, to_status), from its birth to its delivery."""
        events = [("created", "pending")]
        if self.started:
            events.append(("status_changed", "generating"))
        events.append(("status_changed", self.status))
        if self.refunded:
            events.append(("refunded", None))
        events.append(("delivered", None))
        return events


OUTCOMES = [
    Outcome("completed", "[scenario:multi_poll polls=2]", "completed", None, refunded=False, started=True),
    Outcome(
        "content_filtered", "[scenario:safety_filtered]", "failed", "content_filtered", refunded=False, started=True
    ),
    Outcome(
        "operation_failed", "[scenario:error_operation]", "failed", "operation_failed", refunded=True, started=True
    ),
    Outcome(
        "backend_rejected",
        "[scenario:http_error status=400]",
        "failed",
        "backend_rejected",
        refunded=True,
        started=False,
    ),
    Outcome("timeout", "[scenario:hang]", "timeout", "timeout", refunded=True, started=True),
    Outcome("queue_timeout", "[scenario:rate_limited]", "timeout", "queue_timeout", refunded=True, started=False),
    Outcome("operation_lost", "[scenario:lost]", "timeout", "operation_lost", refunded=True, started=True),
    Outcome("backend_error", "[scenario:server_error on=poll]", "failed", "backend_error", refunded=True, started=True),
    Outcome(
        "cancelled",
        "[scenario:slow seconds=600]",
        "cancelled",
        "cancelled",
        refunded=True,
        started=True,
        cancelled_while="generating",
    ),
]
BY_NAME = {outcome.name: outcome for outcome in OUTCOMES}

# Deadlines short enough that the timeouts above happen within a test, long enough that the
# other outcomes finish first: a hang ends at the generation deadline, an endless 429 at the
# queue deadline (with a quick retry backoff), five failed polls take a fraction of a second.
QUICK_DEADLINES = {
    "VEO_GENERATION_TIMEOUT": timedelta(seconds=3),
    "VEO_QUEUE_TIMEOUT": timedelta(seconds=3),
    "VEO_RETRY_BACKOFF": timedelta(milliseconds=200),
    "VEO_POLL_INITIAL": timedelta(milliseconds=50),
    "VEO_POLL_MAX": timedelta(milliseconds=200),
    "VEO_HTTP_RETRIES": 1,
}
QUICK_DEADLINES_ENV = {
    "VEO_GENERATION_TIMEOUT": "5s",
    "VEO_QUEUE_TIMEOUT": "5s",
    "VEO_RETRY_BACKOFF": "200ms",
    "VEO_POLL_INITIAL": "50ms",
    "VEO_POLL_MAX": "200ms",
    "VEO_HTTP_RETRIES": "1",
}
