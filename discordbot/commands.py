"""/veo, /quota and /history, as a Cog that is handed its collaborators.

No ``from __future__ import annotations`` here: discord.py reads the parameter annotations,
and the prompt's Range comes from settings when the Cog is made (``veo_commands``).

Discord gives 3 s for the first answer. /veo validates and admits first (milliseconds) and
then answers: a refusal privately, an admission publicly. Only if admission is slow does it
defer, publicly -- a deferred reply cannot become private later, so a refusal that arrives
after a defer replaces the public placeholder with a private follow-up.
"""

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.ext import commands
from django.conf import settings

from discordbot import display, money, reply_tokens
from discordbot.answers import (
    DEFER_AFTER,
    ELSEWHERE,
    SENT,
    answer_decision,
    answer_privately,
    apologise,
    defer_publicly,
    refuse_privately,
    withdraw,
)
from discordbot.discord_delivery import DiscordDelivery
from discordbot.frames import FrameFetcher
from discordbot.shards import shard_of
from generation.admission import Admitter, Decision
from generation.health import ANSWER_TIMEOUT, DATABASE_DOWN, DatabaseHealth
from tracking import aio, capabilities, images, selectors, services
from tracking.errors import InvalidInput
from tracking.models import TERMINAL_STATUSES
from tracking.services import VideoParameters
from veosite import logs

log = logging.getLogger(__name__)

REPEATED_CLICK = "repeated_click"  # admit_video_request's answer to a second click on one button


def veo_commands(
    *,
    admitter: Admitter,
    replies: DiscordDelivery,
    health: DatabaseHealth,
    queued_view: Callable[[Decision], discord.ui.View | None] = lambda decision: None,
    frames: FrameFetcher | None = None,
) -> commands.Cog:
    """The Cog of /veo, /quota and /history. ``admitter`` admits /veo (in the database, or locally while it
    is unreachable) and knows each user's quota; ``replies`` is the Discord delivery, told which
    replies this process holds so the outcome can edit them; ``health`` says whether the database
    answers; ``queued_view`` gives a queued answer its buttons (discordbot.buttons); ``frames``
    fetches the images given to it (without one, /veo takes none). Made when the bot is built,
    so the prompt bounds and the options come from the settings then."""
    Prompt = app_commands.Range[str, settings.VEO_PROMPT_MIN_LENGTH, settings.VEO_PROMPT_MAX_LENGTH]
    Negative = app_commands.Range[str, 1, settings.VEO_PROMPT_MAX_LENGTH]
    can = capabilities.of(settings.VEO_MODEL)  # the options offer what the configured model does
    several = len(settings.VEO_MODELS) > 1  # then /veo has a model option
    models = {"model": [Choice(name=model, value=model) for model in settings.VEO_MODELS]} if several else {}
    model_help = {"model": f"Which Veo model (default {settings.VEO_MODEL})"} if several else {}
    kinds = images.type_names(can.image_types)
    frame_help = {}  # the image options, where this bot and its model take images
    if frames is not None and can.image_input:
        frame_help["image"] = f"Animate this image: the first frame ({kinds})"
        if can.last_frame:
            frame_help["last_frame"] = f"The last frame ({kinds}; with an image only)"
    left_out = tuple(name for name in ("image", "last_frame") if name not in frame_help) + ("model",) * (not several)

    class VeoCommands(commands.Cog):
        @app_commands.command(name="veo", description="Generate a short video with Google Veo")
        @app_commands.describe(
            prompt="What the video should show",
            length=f"Length in seconds (default {settings.VEO_DEFAULT_DURATION})",
            ratio=f"Aspect ratio (default {settings.VEO_DEFAULT_RATIO})",
            hd=f"1080p instead of 720p (default {'on' if settings.VEO_DEFAULT_RESOLUTION == '1080p' else 'off'})"
            + _hd_lengths(can),
            audio=f"Generate sound (default {'on' if settings.VEO_DEFAULT_AUDIO else 'off'})",
            negative_prompt="What the video should not contain",
            **frame_help,
            **model_help,
        )
        @app_commands.choices(
            length=[Choice(name=f"{seconds} seconds", value=seconds) for seconds in can.durations],
            ratio=[Choice(name=RATIO_NAMES[ratio], value=ratio) for ratio in can.aspect_ratios],
            **models,
        )
        @_options_without(left_out)
        async def veo(
            self,
            interaction: discord.Interaction,
            prompt: Prompt,
            length: Choice[int] | None = None,
            ratio: Choice[str] | None = None,
            hd: bool | None = None,
            audio: bool | None = None,
            negative_prompt: Negative | None = None,
            model: Choice[str] | None = None,
            image: discord.Attachment | None = None,
            last_frame: discord.Attachment | None = None,
        ):
            params = parameters_from(
                prompt,
                length=length.value if length else None,
                ratio=ratio.value if ratio else None,
                hd=hd,
                audio=audio,
                negative_prompt=negative_prompt,
                model=model.value if model else None,
            )
            if image is None and last_frame is None:
                await handle_veo(interaction, params, admitter=admitter, replies=replies, queued_view=queued_view)
                return
            fetching = frames.with_frames(params, interaction_id=interaction.id, image=image, last_frame=last_frame)
            await prepare_then_handle(
                interaction, fetching, admitter=admitter, replies=replies, queued_view=queued_view
            )

        @app_commands.command(name="quota", description="How many videos you have left, and when the next one frees up")
        async def quota(self, interaction: discord.Interaction):
            await answer_privately(interaction, lambda: quota_text(interaction, admitter=admitter))

        @app_commands.command(name="history", description="Your last 10 video requests")
        async def history(self, interaction: discord.Interaction):
            await answer_privately(interaction, lambda: history_text(interaction, health=health))

    return VeoCommands()


def parameters_from(
    prompt: str,
    *,
    length: int | None = None,
    ratio: str | None = None,
    hd: bool | None = None,
    audio: bool | None = None,
    negative_prompt: str | None = None,
    model: str | None = None,
) -> VideoParameters:
    """/veo's options (None: not given) with the configured defaults for the rest."""
    return VideoParameters(
        prompt=prompt,
        duration_seconds=settings.VEO_DEFAULT_DURATION if length is None else length,
        aspect_ratio=settings.VEO_DEFAULT_RATIO if ratio is None else ratio,
        resolution=settings.VEO_DEFAULT_RESOLUTION if hd is None else ("1080p" if hd else "720p"),
        generate_audio=settings.VEO_DEFAULT_AUDIO if audio is None else audio,
        negative_prompt=negative_prompt,
        person_generation=settings.VEO_PERSON_GENERATION,
        model=model,
    )


async def handle_veo(
    interaction: discord.Interaction,
    params: VideoParameters,
    *,
    admitter: Admitter,
    replies: DiscordDelivery,
    queued_view: Callable[[Decision], discord.ui.View | None] = lambda decision: None,
    deferred: bool = False,
) -> None:
    """Admit ``params`` for ``interaction`` and answer it. ``deferred``: the caller has deferred
    it already (publicly), having needed time of its own before (discordbot.derived)."""
    received = time.perf_counter()
    who = {"user_id": interaction.user.id, "guild_id": interaction.guild_id}
    allowed = settings.ALLOWED_CHANNEL_IDS
    if allowed and interaction.channel_id not in allowed:
        await refuse_privately(interaction, display.channel_not_allowed_text(allowed), deferred)
        logs.step(
            log, "refused", request_id=None, **who, reason="channel_not_allowed", channel_id=interaction.channel_id
        )
        return
    try:
        clean = services.clean_parameters(params)
    except InvalidInput as error:
        await refuse_privately(interaction, display.invalid_text(str(error)), deferred)
        logs.step(log, "refused", request_id=None, **who, reason="invalid_input", field=error.field)
        return

    # A replay of an interaction this process is already handling: the first handler answers.
    owner = not replies.holds(interaction.id)
    if owner:
        replies.expect(interaction)
    admitting = asyncio.ensure_future(
        admitter.admit(
            interaction_id=interaction.id,
            user_id=interaction.user.id,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            params=clean,
            role_ids=money.member_role_ids(interaction),
            # Kept in the admission's own statement: no round trip of its own after the answer.
            reply_token=reply_tokens.token_row(interaction) if owner else None,
        )
    )
    answer = None
    done, _ = await asyncio.wait({admitting}, timeout=DEFER_AFTER)
    if not done and owner and not deferred:
        answer = await defer_publicly(interaction)
        deferred = answer == SENT
        answer = None if deferred else answer
    try:
        decision = await admitting
    except Exception:
        log.exception("interaction %s: admission failed", interaction.id)
        if owner:
            replies.answered(interaction.id, ok=False)
        if answer is None:
            await apologise(interaction, deferred)
        return

    step = "duplicate" if decision.duplicate else "admitted" if decision.admitted else "refused"
    logs.step(
        log,
        step,
        request_id=decision.request.id,
        **who,
        reason=decision.reason_code,
        admit_ms=decision.admit_ms,
        degraded=decision.degraded or None,
        held=decision.held or None,
        interaction_id=interaction.id,
        prompt=logs.preview(clean.prompt),
    )
    if not owner:
        return
    if decision.duplicate and decision.reason_code == REPEATED_CLICK:
        # A second click on the button that made it: say so to the clicker only.
        await refuse_privately(interaction, display.repeated_text(decision.request), deferred)
        replies.answered(interaction.id, ok=False)
        return
    if decision.duplicate and decision.request.status in TERMINAL_STATUSES:
        # A replay of an interaction whose request has ended: its answer was given, and its
        # outcome delivered; a "Queued" now would be a second answer, and a wrong one.
        if deferred:
            await withdraw(interaction)
        replies.answered(interaction.id, ok=False)
        log.info(
            "interaction %s replayed after its request ended (%s): not answered again",
            interaction.id,
            decision.request.status,
        )
        return
    if answer is None:
        answer = await answer_decision(interaction, decision, deferred, view=queued_view(decision))
    # Answered here or by another instance (40060): either way the original reply exists and
    # this process holds its token, so delivery may edit it. Otherwise it goes to the channel.
    replies.answered(interaction.id, ok=decision.admitted and answer in (SENT, ELSEWHERE))
    if decision.token_kept and answer not in (SENT, ELSEWHERE):
        replies.tokens.forget(interaction.id)  # kept for a reply that is not there
    elif decision.admitted and answer == SENT and not (decision.duplicate or decision.degraded or decision.token_kept):
        replies.keep_token(interaction)
    logs.step(
        log,
        "answered" if answer == SENT else f"not_answered ({answer})",
        request_id=decision.request.id,
        **who,
        first_response_ms=(time.perf_counter() - received) * 1000,
        deferred=deferred or None,
        public=decision.admitted,
        shard=shard_of(interaction.client, interaction.guild_id),
    )


async def prepare_then_handle(
    interaction: discord.Interaction,
    preparing: Awaitable[VideoParameters | str],
    *,
    admitter: Admitter,
    replies: DiscordDelivery,
    queued_view: Callable[[Decision], discord.ui.View | None] = lambda decision: None,
) -> None:
    """/veo for what needs time of its own before admission (reading a parent request, fetching
    an image): ``preparing`` gives the parameters, or what to tell the user instead. Deferred
    publicly if it takes longer than DEFER_AFTER: the 3 s run from the interaction."""
    task = asyncio.ensure_future(preparing)
    done, _ = await asyncio.wait({task}, timeout=DEFER_AFTER)
    deferred = not done and await defer_publicly(interaction) == SENT
    try:
        prepared = await task
    except InvalidInput as error:
        prepared = display.invalid_text(str(error))
    if isinstance(prepared, str):
        await refuse_privately(interaction, prepared, deferred)
        return
    await handle_veo(
        interaction, prepared, admitter=admitter, replies=replies, queued_view=queued_view, deferred=deferred
    )


RATIO_NAMES = {"16:9": "16:9 landscape", "9:16": "9:16 portrait"}


def _options_without(names: tuple[str, ...]):
    """Leave parameters out of a command's options: discord.py builds them from the callback's
    signature (inspect.signature, which honours __signature__); the parameter keeps its default."""

    def leave_out(callback):
        if names:
            signature = inspect.signature(callback)
            kept = [p for p in signature.parameters.values() if p.name not in names]
            callback.__signature__ = signature.replace(parameters=kept)
        return callback

    return leave_out


def _hd_lengths(can: capabilities.ModelCapabilities) -> str:
    """Where the model makes 1080p only at some lengths, the option says so (Discord: 100 characters)."""
    lengths = can.lengths_at("1080p")
    if not lengths or set(lengths) == set(can.durations):
        return ""
    return f"; only at {' or '.join(str(length) for length in lengths)} s"


# -- /quota and /history ----------------------------------------------------------------------------


async def quota_text(interaction: discord.Interaction, *, admitter: Admitter) -> str:
    quota = await admitter.quota(
        user_id=interaction.user.id, guild_id=interaction.guild_id, role_ids=money.member_role_ids(interaction)
    )
    return display.quota_text(
        used=quota.used,
        limit=quota.limit,
        window=quota.window,
        reset_at=quota.reset_at,
        degraded=quota.degraded,
        money=money.budget_lines(quota.budgets),
    )


async def history_text(interaction: discord.Interaction, *, health: DatabaseHealth) -> str:
    if not health.degraded:
        try:
            page = await aio.run_within(ANSWER_TIMEOUT, selectors.user_history, user_id=interaction.user.id, limit=10)
        except DATABASE_DOWN as error:
            health.failed(error)
        else:
            links = {request.id: link for request in page.requests if (link := _link(request))}
            return display.history_text(page.requests, links=links)
    return "Your history is unavailable while the database is unreachable; your requests are still being kept."


def _link(request) -> str | None:
    """Where the outcome is: the Discord message it was delivered in, else a public video URL."""
    if request.discord_message_id and request.channel_id:
        return f"https://discord.com/channels/{request.guild_id or '@me'}/{request.channel_id}/{request.discord_message_id}"
    if request.public_urls:
        return request.public_urls[0]
    return None
