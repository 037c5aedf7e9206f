"""The moderators' outbox: actions the web process queued in ``discord_actions``.

The web process holds no bot token and no bucket credentials, so removing an output only
queues the deletion of its Discord message and of its gs:// objects; the processes that hold
them perform them. Every bot instance runs an ``Outbox`` with both performers (the Discord
one comes from ``discordbot.outbox.message_deleter``), every ``runworker`` one for the bucket
deletions alone (it has the bucket credentials but no bot token). An outbox claims due
actions of the kinds it can perform, one at a time (``services.claim_discord_action``, SKIP
LOCKED plus a short lease, so two processes never perform the same one), performs them and
records the outcome. Every action ends done, or failed with its reason (``failed_at``,
``last_error``): an attempt that fails is retried with a doubling backoff until
``DISCORD_ACTIONS_MAX_ATTEMPTS`` attempts have been made, unless the failure is permanent.

Deleting bucket objects (``media.delete_gcs_objects``):
- deleted, or already gone (404): done;
- Cloud Storage unreachable, 5xx, 429: retried with the same backoff and limit;
- refused (403: the credentials may not delete), no bucket configured, no credentials: failed
  at once, with the reason for the moderators.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings

from generation.health import DATABASE_DOWN
from generation.runtime import sleep_unless
from tracking import aio, media, services
from tracking.models import DiscordAction, DiscordActionKind

log = logging.getLogger(__name__)

# While a bot performs an action, no other bot claims it; a bot that dies mid-action hands it
# back when this runs out. One REST call with discord.py's own retries fits comfortably.
CLAIM_LEASE = timedelta(minutes=2)
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)


@dataclass(frozen=True)
class Failure:
    reason: str  # stored as last_error: what the moderators read
    permanent: bool = False  # trying again cannot help


def retry_after(attempts: int) -> timedelta:
    """30 s after the first failed attempt, doubling, at most an hour."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY)


# Performs one claimed action: None when it is done, else why not.
Performer = Callable[[DiscordAction], Awaitable["Failure | None"]]


class Outbox:
    def __init__(self, *, performers: Mapping[str, Performer] | None = None, health=None):
        """``performers``: action kind -> how to perform it, beside the bucket deletions every
        outbox performs; only those kinds are claimed. ``health``: the process's view of the
        database (no claims while it is unreachable)."""
        self.performers = {DiscordActionKind.DELETE_GCS_OBJECTS: delete_objects, **(performers or {})}
        self.health = health
        self.kinds = tuple(self.performers)

    async def run(self, stop: asyncio.Event) -> None:
        """Perform due actions until none is left, then wait ``DISCORD_ACTIONS_POLL``; until ``stop``."""
        while not stop.is_set():
            try:
                while not stop.is_set() and await self.perform_next():
                    pass
            except Exception as error:
                if isinstance(error, DATABASE_DOWN):
                    log.warning("discord actions: database unreachable (%s); will retry", type(error).__name__)
                else:
                    log.exception("discord actions: unexpected error (will retry)")
            await sleep_unless(stop, settings.DISCORD_ACTIONS_POLL.total_seconds())

    async def perform_next(self) -> bool:
        """Claim and perform one due action; False when there is none."""
        if self.health is not None and self.health.degraded:
            return False
        max_attempts = settings.DISCORD_ACTIONS_MAX_ATTEMPTS
        action = await aio.run(
            services.claim_discord_action, lease=CLAIM_LEASE, max_attempts=max_attempts, kinds=self.kinds
        )
        if action is None:
            return False
        try:
            failure = await self.performers[action.action](action)
        except Exception as error:
            if isinstance(error, DATABASE_DOWN):
                raise
            # Something nobody foresaw: counted as a failed attempt, so the action is retried
            # and, once its attempts are used up, ends failed with a reason instead of staying
            # claimed-but-unfinished for ever.
            log.exception(
                "outbox action %s: request %s %s: unexpected error", action.id, action.request_id, action.action
            )
            failure = Failure(f"unexpected error ({type(error).__name__})")
        if failure is None:
            await aio.run(services.finish_discord_action, action_id=action.id)
            return True
        exhausted = action.attempts >= max_attempts
        await aio.run(
            services.finish_discord_action,
            action_id=action.id,
            error=failure.reason,
            retry_after=retry_after(action.attempts),
            give_up=failure.permanent or exhausted,
        )
        if failure.permanent:
            log.error(
                "outbox action %s: request %s %s failed: %s",
                action.id,
                action.request_id,
                action.action,
                failure.reason,
            )
        elif exhausted:
            log.error(
                "outbox action %s: request %s %s%s: giving up after %s attempts (last error: %s)",
                action.id,
                action.request_id,
                action.action,
                target(action),
                action.attempts,
                failure.reason,
            )
        return True


async def delete_objects(action: DiscordAction) -> Failure | None:
    # Synchronous HTTP (google-auth's session), bounded by VEO_HTTP_TIMEOUT: off the loop.
    result = await asyncio.to_thread(media.delete_gcs_objects, action.object_uris or ())
    if result.problem is None:
        return report(action, f"deleted {len(result.deleted)} bucket object(s)", None)
    left = ", ".join(result.left)
    reason = f"{result.problem}; left in the bucket: {left}"[:1000]
    return report(action, "bucket objects left", Failure(reason, permanent=not result.retryable))


def report(action: DiscordAction, outcome: str, failure: Failure | None, detail: str = "") -> Failure | None:
    """Log one attempt's outcome (``detail``: e.g. the HTTP status of a 404 taken as done)."""
    log.log(
        logging.WARNING if failure else logging.INFO,
        "request %s outbox action %s %s%s: %s%s%s (attempt %s)",
        action.request_id,
        action.id,
        action.action,
        target(action),
        outcome,
        detail,
        f": {failure.reason}" if failure else "",
        action.attempts,
    )
    return failure


def target(action: DiscordAction) -> str:
    if action.action == DiscordActionKind.DELETE_MESSAGE:
        return f" message {action.message_id} in channel {action.channel_id}"
    return f" {len(action.object_uris or ())} object(s)"
