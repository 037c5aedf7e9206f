"""Every way a request can end without a video, and the refund rule, defined once.

The generation engine ends a request with an ``Ending``; the worker records it in PostgreSQL
(``services.mark_ended``) and degraded mode in its journal, both from this table. The
database stays the authority: its transition rule (``video_request_transition_allowed``) and
its refund rule (the CHECK constraint ``video_requests_ended_by_us_never_counts``) refuse what
this table would get wrong, and tests/test_outcomes_match_sql.py fails when they disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from tracking.models import Status

# The lifecycle's legal moves; a request is born pending (admitted) or rejected (refused).
TRANSITIONS = frozenset(
    {
        (Status.PENDING, Status.GENERATING),
        (Status.PENDING, Status.FAILED),
        (Status.PENDING, Status.TIMEOUT),
        (Status.PENDING, Status.CANCELLED),
        (Status.GENERATING, Status.COMPLETED),
        (Status.GENERATING, Status.FAILED),
        (Status.GENERATING, Status.TIMEOUT),
        (Status.GENERATING, Status.CANCELLED),
    }
)

# error code -> the status it ends in. Every code but the safety filter's is a failure on
# our side (or Veo's), and refunded.
CODES = {
    "content_filtered": Status.FAILED,  # Veo's safety filters refused the prompt: the request's own doing
    "operation_failed": Status.FAILED,  # the operation finished with an error
    "backend_rejected": Status.FAILED,  # Veo answered 4xx (not 429) to the start
    "backend_error": Status.FAILED,  # 5xx, network errors, no answer, after the retries
    "timeout": Status.TIMEOUT,  # started, not finished within VEO_GENERATION_TIMEOUT
    "queue_timeout": Status.TIMEOUT,  # Veo never let it start (429) within VEO_QUEUE_TIMEOUT
    "operation_lost": Status.TIMEOUT,  # Veo no longer knows the stored operation
    "cancelled": Status.CANCELLED,  # by a moderator (or, in time, by its requester)
}
USER_CAUSED = frozenset({"content_filtered"})


def refunded(code: str) -> bool:
    """Whether a request ending with ``code`` gives its quota slot back."""
    return code not in USER_CAUSED or settings.VEO_REFUND_CONTENT_FILTERED


@dataclass(frozen=True)
class Ending:
    """How a request ended without a video: what is recorded and what its requester is told."""

    code: str
    message: str  # recorded as error_message and shown to the requester
    filtered_count: int = 0
    filtered_reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown ending {self.code!r}: add it to tracking.outcomes.CODES")

    @property
    def status(self) -> str:
        return CODES[self.code]

    @property
    def refunded(self) -> bool:
        return refunded(self.code)
