"""The moderators' outbox: Discord actions the web process queued in ``discord_actions``.

The web process holds no bot token, so removing an output only queues the deletion of its
Discord message; the bot performs it. Every bot instance runs an ``Outbox``: it claims due
actions one at a time (``services.claim_discord_action``, SKIP LOCKED plus a short lease, so
two bots never perform the same one), calls Discord's REST API, and records the outcome.

- deleted, or Discord answers 404 (Unknown Message / Unknown Channel): done, the message is gone;
- 403 and other refusals: ``last_error`` is recorded and the action retried with a doubling
  backoff, until ``DISCORD_ACTIONS_MAX_ATTEMPTS`` attempts have been made (logged once);
- Discord unreachable (5xx after discord.py's retries, network errors): retried likewise.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp
import discord
from django.conf import settings

from discordbot.degraded import DATABASE_DOWN
from discordbot.runtime import sleep_unless
from tracking import aio, services
from tracking.models import DiscordAction, DiscordActionKind

log = logging.getLogger(__name__)

# While a bot performs an action, no other bot claims it; a bot that dies mid-action hands it
# back when this runs out. One REST call with discord.py's own retries fits comfortably.
CLAIM_LEASE = timedelta(minutes=2)
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)


def retry_after(attempts: int) -> timedelta:
    """30 s after the first failed attempt, doubling, at most an hour."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY)


class Outbox:
    def __init__(self, client: discord.Client, *, health=None):
        self.client = client
        self.health = health  # the bot's view of the database: no claims while it is unreachable

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
        action = await aio.run(services.claim_discord_action, lease=CLAIM_LEASE, max_attempts=max_attempts)
        if action is None:
            return False
        error = await self._perform(action)
        if error is None:
            await aio.run(services.finish_discord_action, action_id=action.id)
            return True
        wait = retry_after(action.attempts)
        await aio.run(services.finish_discord_action, action_id=action.id, error=error, retry_after=wait)
        if action.attempts >= max_attempts:
            log.error("discord action %s: request %s %s message %s in channel %s: giving up after %s attempts"
                      " (last error: %s)", action.id, action.request_id, action.action, action.message_id,
                      action.channel_id, action.attempts, error)
        return True

    async def _perform(self, action: DiscordAction) -> str | None:
        """Carry the action out; None when it is done, else why not (stored as last_error)."""
        if action.action != DiscordActionKind.DELETE_MESSAGE:
            return self._outcome(action, "unsupported", f"unknown action {action.action!r}")
        try:
            await self.client.http.delete_message(action.channel_id, action.message_id,
                                                  reason=f"veobot moderation: output of request {action.request_id}"
                                                         " removed")
        except discord.NotFound as error:
            # 10008 Unknown Message, 10003 Unknown Channel: nothing left to delete.
            return self._outcome(action, "already gone", None, error)
        except discord.HTTPException as error:
            return self._outcome(action, "refused", f"{error.status} {error.code} {error.text}"[:1000], error)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            return self._outcome(action, "unreachable", f"could not reach Discord ({type(error).__name__})")
        return self._outcome(action, "deleted", None)

    def _outcome(self, action: DiscordAction, outcome: str, error: str | None,
                 http_error: discord.HTTPException | None = None) -> str | None:
        code = f" ({http_error.status} {http_error.code})" if http_error is not None and error is None else ""
        log.log(logging.WARNING if error else logging.INFO,
                "request %s discord action %s %s: %s%s%s (attempt %s)", action.request_id, action.id, action.action,
                outcome, code, f": {error}" if error else "", action.attempts)
        return error
