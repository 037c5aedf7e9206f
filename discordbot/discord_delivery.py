"""Delivering to Discord: edit the original reply while its token lives, else post in the channel.

The interaction (and its webhook token) exists only in the memory of the process that
received it; the database stores the channel id, never the token. So after a restart, from
another process, or once the 15 minute token is spent, the outcome is posted in the
channel, mentioning only the requester. Videos are attached when they fit the limit the
interaction reported (``attachment_size_limit``), streamed from the local file; otherwise
linked. Videos in Cloud Storage are always linked: publicly, or with a V4 signed URL valid
for VEO_GCS_SIGNED_URL_TTL (the bot never downloads them). A video a moderator removed
before delivery is neither: the requester is told it was removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import discord
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from discordbot import display
from discordbot.reply_tokens import TOKEN_USABLE_FOR, TokenKeeper
from generation.delivery import DeliveryUnavailable, Receipt
from generation.engine import PROGRESS_EVERY
from generation.storage import FILE_SCHEME, GCS_SCHEME, LocalStorage, StorageError
from tracking import aio, gcs, services
from tracking.models import DeliveryMethod, ReviewStatus, Status, VideoRequest
from veosite import logs

log = logging.getLogger(__name__)

CHANNEL_SIZE_LIMIT = 10 * 1024 * 1024  # any channel takes this per file; an interaction tells the real limit
TOKEN_LOOKUP_TIMEOUT = 2.0  # seconds to wait for a kept token: past that, the outcome goes to the channel
ACK_WAIT = 5.0  # seconds to wait for the first answer to go out (it may still be on its way)
SWEEP_EVERY = 10.0  # seconds between two sweeps of the replies held, for expired tokens
EXPIRED_TOKEN, UNKNOWN_MESSAGE, ALREADY_ACKNOWLEDGED, MISSING_PERMISSIONS = 50027, 10008, 40060, 50013


@dataclass
class LiveReply:
    """The original reply of an interaction this process answered."""

    interaction: discord.Interaction
    received: float = field(default_factory=time.monotonic)
    answered: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    progressed: float | None = None  # time.monotonic() of the last progress edit

    @property
    def usable(self) -> bool:
        return time.monotonic() - self.received < TOKEN_USABLE_FOR.total_seconds()


class ResumedInteraction:
    """The part of an interaction delivery uses, for a reply another process (or this one before a
    restart) answered: its original response, reached through the kept token."""

    def __init__(self, webhook: discord.Webhook, *, filesize_limit: int):
        self.webhook = webhook
        self.filesize_limit = filesize_limit

    async def edit_original_response(self, **fields) -> discord.WebhookMessage:
        return await self.webhook.edit_message("@original", **fields)


class DiscordDelivery:
    def __init__(
        self,
        client: discord.Client,
        *,
        storage: LocalStorage,
        result_view: Callable[[VideoRequest], discord.ui.View | None] = lambda request: None,
    ):
        self.client = client
        self.storage = storage
        self.result_view = result_view  # the buttons on a delivered video (discordbot.buttons)
        self.live: dict[int, LiveReply] = {}  # interaction id -> reply, this process only
        self.tokens = TokenKeeper()
        self._swept_at = -SWEEP_EVERY

    # -- bookkeeping for /veo -------------------------------------------------------------------

    def expect(self, interaction: discord.Interaction) -> LiveReply:
        """Called before admission, so a delivery that races the first answer waits for it."""
        self._forget_expired()
        reply = self.live.get(interaction.id)
        if reply is None:
            reply = self.live[interaction.id] = LiveReply(interaction)
        return reply

    def holds(self, interaction_id: int) -> bool:
        """This process is already handling that interaction (a replayed payload, say)."""
        return interaction_id in self.live

    def _forget_expired(self) -> None:
        # Requests delivered by another process never come back here: their tokens expire. A sweep
        # reads every reply held, so it runs once per SWEEP_EVERY, not per /veo (_reply checks
        # ``usable``, so a reply kept past its token's life is never used).
        if time.monotonic() - self._swept_at < SWEEP_EVERY:
            return
        self._swept_at = time.monotonic()
        for interaction_id in [i for i, reply in self.live.items() if not reply.usable]:
            del self.live[interaction_id]

    def answered(self, interaction_id: int, *, ok: bool) -> None:
        """Our reply is up (ok), or someone else's is / none could be sent: then forget it."""
        reply = self.live.get(interaction_id)
        if reply is None:
            return
        if not reply.answered.done():
            reply.answered.set_result(ok)
        if not ok:
            self.live.pop(interaction_id, None)

    def keep_token(self, interaction: discord.Interaction) -> None:
        """After a queued answer whose admission did not keep its token (discordbot.reply_tokens)."""
        self.tokens.keep(interaction)

    async def _resumed(self, request: VideoRequest) -> LiveReply | None:
        """The reply of a request answered elsewhere (or before a restart), while its token lives."""
        if request.id is None:
            return None  # admitted in degraded mode: no token was kept
        try:
            kept = await aio.run_within(
                TOKEN_LOOKUP_TIMEOUT, services.live_reply_token, interaction_id=request.interaction_id
            )
        except DatabaseError:
            return None
        if kept is None:
            return None
        webhook = discord.Webhook.partial(kept.application_id, kept.token, client=self.client)
        used = TOKEN_USABLE_FOR - (kept.expires_at - timezone.now())
        reply = LiveReply(
            ResumedInteraction(webhook, filesize_limit=kept.size_limit),
            received=time.monotonic() - used.total_seconds(),
        )
        reply.answered.set_result(True)
        self.live[request.interaction_id] = reply  # its progress edits and the outcome reuse it
        return reply

    async def _reply(self, request: VideoRequest) -> LiveReply | None:
        reply = self.live.get(request.interaction_id)
        if reply is None:
            return await self._resumed(request)
        try:
            ok = await asyncio.wait_for(asyncio.shield(reply.answered), ACK_WAIT)
        except TimeoutError:
            ok = False
        return reply if ok and reply.usable else None

    # -- the Delivery protocol -----------------------------------------------------------------

    async def progress(
        self, request: VideoRequest, *, state: str, elapsed: timedelta, retry_in: timedelta | None = None
    ) -> None:
        reply = await self._reply(request)
        if reply is None:
            return  # nothing to edit; the outcome will be posted in the channel
        now = time.monotonic()
        if reply.progressed is not None and now - reply.progressed < PROGRESS_EVERY.total_seconds():
            return  # a queued message changes at most every 10 s, whatever Veo does meanwhile
        reply.progressed = now
        try:
            await reply.interaction.edit_original_response(
                embed=display.progress_embed(request, state=state, elapsed=elapsed, retry_in=retry_in),
                allowed_mentions=discord.AllowedMentions.none(),
                view=None,  # started: nothing left to cancel
            )
        except discord.HTTPException as error:
            log.info("request %s: progress edit failed (%s %s)", request.id, error.status, error.code)
            if error.code in (EXPIRED_TOKEN, UNKNOWN_MESSAGE):
                self.live.pop(request.interaction_id, None)

    async def deliver(self, request: VideoRequest) -> Receipt:
        started = time.perf_counter()
        # Signing may look credentials up or call IAM: off the event loop.
        link = await asyncio.to_thread(self._link, request) if shows_video(request) else None
        reply = await self._reply(request)
        receipt = None
        if reply is not None:
            receipt = await self._edit_original(request, reply, link=link)
        self.live.pop(request.interaction_id, None)
        if reply is not None and isinstance(reply.interaction, ResumedInteraction):
            with contextlib.suppress(DatabaseError):  # else it expires, and the next keep sweeps it
                await aio.run(services.forget_reply_token, interaction_id=request.interaction_id)
        if receipt is None:
            receipt = await self._post_in_channel(request, resumed=reply is None, link=link)
        logs.step(
            log,
            "delivered",
            request_id=request.id,
            user_id=request.user_id,
            guild_id=request.guild_id,
            method=receipt.method,
            status=request.status,
            error=receipt.error,
            removed=True if removed(request) else None,
            deliver_ms=(time.perf_counter() - started) * 1000,
            generation_ms=_generation_ms(request),
            level=logging.WARNING if receipt.error else logging.INFO,
        )
        return receipt

    # -- the two ways ----------------------------------------------------------------------------

    async def _edit_original(self, request: VideoRequest, reply: LiveReply, *, link: str | None) -> Receipt | None:
        limit = reply.interaction.filesize_limit
        for attach in (True, False):  # a 413 despite the size check: fall back to a link
            embed, files = self._outcome(request, limit=limit, attach=attach, footer=None, link=link)
            try:
                message = await reply.interaction.edit_original_response(
                    content=None,
                    embed=embed,
                    attachments=files,
                    allowed_mentions=discord.AllowedMentions.none(),
                    view=self._view(request),  # the queued message's buttons go; a video's come
                )
                return Receipt(method=DeliveryMethod.INTERACTION, message_id=message.id)
            except discord.HTTPException as error:
                if error.status == 413 and files:
                    continue
                # Expired token (401 50027), reply deleted (404 10008), anything else: the channel.
                log.info(
                    "request %s: editing the reply failed (%s %s); posting in the channel instead",
                    request.id,
                    error.status,
                    error.code,
                )
                return None
            except (TimeoutError, aiohttp.ClientError) as error:
                log.info(
                    "request %s: editing the reply failed (%s); posting in the channel instead",
                    request.id,
                    type(error).__name__,
                )
                return None
            finally:
                for file in files:
                    file.close()
        return None

    async def _post_in_channel(self, request: VideoRequest, *, resumed: bool, link: str | None) -> Receipt:
        if not request.channel_id:
            return Receipt(method=DeliveryMethod.UNDELIVERABLE, error="no channel recorded for this request")
        channel = self.client.get_partial_messageable(request.channel_id, guild_id=request.guild_id)
        footer = "resumed after a restart" if resumed else "the original reply had expired"
        mention = f"<@{request.user_id}>"
        allowed = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(request.user_id)])
        # The richest form first; each refusal that a plainer form avoids steps down: a file over the
        # channel's limit (413) or without Attach Files becomes a link, an embed without Embed Links
        # plain text. What no form avoids ends the delivery with the reason.
        for form in ("attached", "linked", "text"):
            embed, files = self._outcome(
                request, limit=CHANNEL_SIZE_LIMIT, attach=form == "attached", footer=footer, link=link
            )
            if form == "attached" and not files:
                continue
            content = (
                mention
                if form != "text"
                else display.fit(f"{mention}\n{display.embed_as_text(embed)}", display.CONTENT_MAX)
            )
            view = self._view(request)
            try:
                message = await channel.send(
                    content=content,
                    embed=None if form == "text" else embed,
                    files=files,
                    allowed_mentions=allowed,
                    **({"view": view} if view is not None else {}),
                )
                return Receipt(method=DeliveryMethod.CHANNEL, message_id=message.id)
            except discord.Forbidden as error:
                if error.code == MISSING_PERMISSIONS and form != "text":
                    continue  # perhaps Attach Files or Embed Links: a plainer form may pass
                return Receipt(
                    method=DeliveryMethod.UNDELIVERABLE,
                    error=f"missing permissions in channel {request.channel_id} ({error.code} {error.text})",
                )
            except discord.NotFound as error:
                return Receipt(
                    method=DeliveryMethod.UNDELIVERABLE,
                    error=f"channel {request.channel_id} not found ({error.code} {error.text})",
                )
            except discord.HTTPException as error:
                if error.status == 413 and files:
                    continue
                code = f" {error.code}" if error.code else ""
                reason = (
                    f"Discord answered {error.status}{code} to a post in channel {request.channel_id}: "
                    f"{error.text or 'no detail'}"
                )
                if error.status == 429 or error.status >= 500:
                    raise DeliveryUnavailable(reason) from None  # the engine tries again later
                # Any other refusal (a 400 for what we sent, say) would be refused again: say so once.
                return Receipt(method=DeliveryMethod.UNDELIVERABLE, error=reason)
            except (TimeoutError, aiohttp.ClientError) as error:
                raise DeliveryUnavailable(f"could not reach Discord ({type(error).__name__})") from None
            finally:
                for file in files:
                    file.close()
        raise AssertionError("unreachable: the text form ends the loop")

    # -- what to say -------------------------------------------------------------------------------

    def _view(self, request: VideoRequest) -> discord.ui.View | None:
        return None if removed(request) else self.result_view(request)

    def _outcome(
        self, request: VideoRequest, *, limit: int, attach: bool, footer: str | None, link: str | None
    ) -> tuple[discord.Embed, list[discord.File]]:
        if request.status != Status.COMPLETED:
            return display.failed_embed(request, footer=footer), []
        if removed(request):
            # A moderator removed it before delivery: say so, never attach or link it.
            return display.removed_embed(request, footer=footer), []
        size = request.output_size_bytes
        path = self._local_file(request)
        if attach and path is not None and size is not None and size <= limit:
            # A path, not bytes: discord.py streams the open file into the upload.
            file = discord.File(path, filename=f"veo-{request.id or request.interaction_id}.mp4")
            return display.completed_embed(request, link=None, note=None, footer=footer), [file]
        if size is not None and size > limit:
            where = "here is a link" if link else "ask a moderator for it"
            note = f"The video ({display.size_mb(size)}) is over the {display.size_mb(limit)} upload limit, so {where}."
        elif link:
            note = None
        else:
            note = "The video could not be attached; ask a moderator for it."
        return display.completed_embed(request, link=link, note=note, footer=footer), []

    def _local_file(self, request: VideoRequest):
        uri = request.output_uris[0] if request.output_uris else ""
        if not uri.startswith(FILE_SCHEME):
            return None
        try:
            path = self.storage.path(uri)
        except StorageError:
            return None
        return path if path.is_file() else None

    def _link(self, request: VideoRequest) -> str | None:
        if request.public_urls:
            return request.public_urls[0]
        uri = request.output_uris[0] if request.output_uris else ""
        if settings.VEO_PUBLIC_MEDIA_URL and uri.startswith(FILE_SCHEME):
            return settings.VEO_PUBLIC_MEDIA_URL.rstrip("/") + "/" + uri.removeprefix(FILE_SCHEME)
        if uri.startswith(GCS_SCHEME) and settings.VEO_GCS_SIGNED_URL_TTL:
            signed = gcs.signed_link(uri, ttl=settings.VEO_GCS_SIGNED_URL_TTL)
            if signed.problem:
                log.info("request %s: no link to its GCS output (%s)", request.id, signed.problem)
            return signed.url
        return None


def shows_video(request: VideoRequest) -> bool:
    return request.status == Status.COMPLETED and not removed(request)


def removed(request: VideoRequest) -> bool:
    # Unsaved rows (degraded mode) carry the column's database default, never "removed".
    return request.review_status == ReviewStatus.REMOVED


def _generation_ms(request: VideoRequest) -> float | None:
    # From the timestamps: duration_ms is generated by the database, absent on unsaved (degraded) rows.
    if request.started_at and request.completed_at:
        return (request.completed_at - request.started_at).total_seconds() * 1000
    return None
