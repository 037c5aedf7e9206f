"""Moderators' decisions reaching the user, and new queue items reaching the moderators.

``Notices`` sends each user notice (tracking.services.notices) by DM:
- sent: delivered (``delivered_via = 'dm'``);
- Discord refuses (403, typically 50007 Cannot send messages to this user): kept, and shown at
  the user's next command instead;
- Discord unreachable (5xx after discord.py's retries, network errors): retried with the
  outbox's doubling backoff.
At the user's next command (any of ours, once its own answer is out) whatever they are still
owed is shown as a private follow-up (``delivered_via = 'next_command'``). To keep the database
off every interaction's path, the loop keeps the set of users owed a notice (refreshed each
poll); only their commands look the notices up.

``Announcer`` (only with MOD_CHANNEL_ID) posts each new open review item to the moderators'
channel with a link into the panel. Items older than ``ANNOUNCE_RECENT`` when first seen are
not announced: a bot started on a backlog does not flood the channel.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp
import discord
from django.conf import settings

from discordbot.display import CONTENT_MAX, fit, inert
from generation.health import ANSWER_TIMEOUT, DATABASE_DOWN
from generation.outbox import retry_after
from generation.runtime import sleep_unless
from tracking import aio, services
from tracking.models import ItemKind

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)  # a DM being sent (or a follow-up being shown) is no other bot's
BATCH = 10
ANNOUNCE_RECENT = timedelta(hours=1)
UNREACHABLE = (discord.HTTPException, aiohttp.ClientError, TimeoutError)
NONE = discord.AllowedMentions.none()


async def _polling(name: str, stop: asyncio.Event, health, step) -> None:
    """Run ``step()`` every DISCORD_ACTIONS_POLL until ``stop``; not while the database is down."""
    while not stop.is_set():
        if health is None or not health.degraded:
            try:
                await step()
            except DATABASE_DOWN as error:
                log.warning("%s: database unreachable (%s); will retry", name, type(error).__name__)
            except Exception:
                log.exception("%s: unexpected error (will retry)", name)
        await sleep_unless(stop, settings.DISCORD_ACTIONS_POLL.total_seconds())


class Notices:
    def __init__(self, client: discord.Client, *, health=None):
        self.client = client
        self.health = health
        self.owed: set[int] = set()  # users with a notice not delivered yet, as of the last poll

    async def run(self, stop: asyncio.Event) -> None:
        await _polling("user notices", stop, self.health, self.poll)

    async def poll(self) -> None:
        while notices := await aio.run(services.notices.claim_notices_to_send, lease=LEASE, limit=BATCH):
            for notice in notices:
                await self.send(notice)
            if len(notices) < BATCH:
                break
        self.owed = await aio.run(services.notices.users_owed_notices)

    async def send(self, notice: services.notices.Notice) -> None:
        try:
            channel = await self.client.http.start_private_message(notice.user_id)
            dm = self.client.get_partial_messageable(int(channel["id"]), type=discord.ChannelType.private)
            await dm.send(fit(notice.body, CONTENT_MAX), allowed_mentions=NONE)
        except UNREACHABLE as error:
            if _refused(error):
                await self.refused(notice, error)
            else:
                await self.failed(notice, error)
            return
        await aio.run(services.notices.notice_sent, notice_id=notice.id)
        log.info("notice %s sent to user %s by DM", notice.id, notice.user_id)

    async def refused(self, notice: services.notices.Notice, error: discord.HTTPException) -> None:
        log.info(
            "notice %s: Discord refused the DM to user %s (%s); kept for their next command",
            notice.id,
            notice.user_id,
            _why(error),
        )
        await aio.run(services.notices.notice_refused, notice_id=notice.id, error=_why(error))
        self.owed.add(notice.user_id)

    async def failed(self, notice: services.notices.Notice, error: BaseException) -> None:
        wait = retry_after(notice.attempts)
        log.warning("notice %s: could not reach Discord (%s); again in %s", notice.id, _why(error), wait)
        await aio.run(services.notices.notice_failed, notice_id=notice.id, error=_why(error), retry_after=wait)

    async def after_command(self, interaction: discord.Interaction, command) -> None:
        """Listener of ``app_command_completion``: show what the user is owed, after the answer."""
        user_id = interaction.user.id
        if user_id not in self.owed or not interaction.response.is_done():
            return
        if self.health is not None and self.health.degraded:
            return
        try:
            notices = await aio.run_within(
                ANSWER_TIMEOUT, services.notices.take_owed_notices, user_id=user_id, lease=LEASE
            )
        except DATABASE_DOWN as error:
            log.warning("notices for user %s: database unreachable (%s)", user_id, type(error).__name__)
            return
        if not notices:
            self.owed.discard(user_id)
            return
        ids = [notice.id for notice in notices]
        try:
            text = fit("\n\n".join(notice.body for notice in notices), CONTENT_MAX)
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NONE)
        except UNREACHABLE as error:
            log.warning("notices %s: could not show them to user %s (%s)", ids, user_id, _why(error))
            await aio.run(services.notices.release_notices, notice_ids=ids)
            return
        await aio.run(services.notices.notices_shown, notice_ids=ids)
        self.owed.discard(user_id)
        log.info("notices %s shown to user %s at their command", ids, user_id)


class Announcer:
    def __init__(self, client: discord.Client, *, channel_id: int, health=None):
        self.client = client
        self.channel_id = channel_id
        self.health = health

    async def run(self, stop: asyncio.Event) -> None:
        await _polling("announcements", stop, self.health, self.poll)

    async def poll(self) -> None:
        """Announce what is new; on a failure hand the rest back and stop until the next poll (a
        channel that refuses is logged once per poll, as an error)."""
        channel = self.client.get_partial_messageable(self.channel_id)
        while items := await aio.run(services.notices.claim_announcements, recent=ANNOUNCE_RECENT, limit=BATCH):
            for done, item in enumerate(items):
                try:
                    await channel.send(announcement_text(item), allowed_mentions=NONE)
                except UNREACHABLE as error:
                    rest = [left.item_id for left in items[done:]]
                    await aio.run(services.notices.unclaim_announcements, item_ids=rest)
                    permanent = isinstance(error, (discord.Forbidden, discord.NotFound))
                    log.log(
                        logging.ERROR if permanent else logging.WARNING,
                        "announcements: could not post to MOD_CHANNEL_ID %s (%s); %s item(s) wait for the next poll",
                        self.channel_id,
                        _why(error),
                        len(rest),
                    )
                    return
                log.info("review item %s announced in channel %s", item.item_id, self.channel_id)
            if len(items) < BATCH:
                return


def announcement_text(item: services.notices.Announcement) -> str:
    kind = ItemKind(item.kind).label if item.kind in ItemKind.values else item.kind
    hits = f" ({item.hits} hit{'s' if item.hits != 1 else ''})"
    link = f"{settings.ADMIN_BASE_URL}/admin/tracking/reviewitem/{item.item_id}/change/"
    head = f"New in the review queue: #{item.item_id} {kind}{hits}\n"
    return head + fit(inert(item.summary), CONTENT_MAX - len(head) - len(link) - 1) + "\n" + link


def _refused(error: BaseException) -> bool:
    """Discord answered no (403 50007 Cannot send messages to this user, a bad recipient): trying
    the DM again cannot help. 429 and 5xx are Discord being unreachable, as network errors are."""
    return isinstance(error, discord.HTTPException) and 400 <= error.status < 500 and error.status != 429


def _why(error: BaseException) -> str:
    if isinstance(error, discord.HTTPException):
        return f"{error.status} {error.code} {error.text}"[:1000]
    return f"could not reach Discord ({type(error).__name__})"
