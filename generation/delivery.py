"""How a finished request reaches its requester. The worker calls a ``Delivery`` per source.

The Discord bot plugs in its own (edit the interaction response, or post in the channel);
the CLI's requests are "delivered" by recording that the output is ready to be printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from tracking.models import DeliveryMethod, VideoRequest


@dataclass(frozen=True)
class Receipt:
    method: str
    message_id: int | None = None
    error: str | None = None  # set when the outcome could not reach the user


class DeliveryUnavailable(Exception):
    """The destination did not answer or was unavailable (5xx, rate limit after retries, network
    error): the same delivery may work later. The message is the recorded reason if it never does."""


class Delivery(Protocol):
    async def progress(
        self, request: VideoRequest, *, state: str, elapsed: timedelta, retry_in: timedelta | None = None
    ) -> None:
        """The request is still queued or generating (called at most every few seconds)."""

    async def deliver(self, request: VideoRequest) -> Receipt:
        """Tell the requester how it ended: the video, or why there is none.
        Raises DeliveryUnavailable when it could not be told now but may be later."""


class CliDelivery:
    """`manage.py veo --wait` reads the outcome from the database; nothing to send."""

    async def progress(
        self, request: VideoRequest, *, state: str, elapsed: timedelta, retry_in: timedelta | None = None
    ) -> None:
        return None

    async def deliver(self, request: VideoRequest) -> Receipt:
        return Receipt(method=DeliveryMethod.CLI)
