"""What the bot shows: embeds and messages, always within Discord's limits.

Discord rejects a whole message (400 50035) when one part is too long, so every piece of
user text passes through ``fit()`` and every embed through ``fit_embed()`` before sending.
Mentions are never parsed from these texts: the client sends ``AllowedMentions.none()``.
User text shown back passes through ``inert()`` as well, so that it reads as typed: a prompt
cannot open a code block, a masked link or a mention pill around the bot's own words.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import discord
from django.conf import settings
from django.utils import timezone

from tracking import capabilities
from tracking.durations import humanize_duration
from tracking.models import Status, VideoRequest

# Discord's hard limits (characters).
CONTENT_MAX = 2000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000
PROMPT_SHOWN = 1000  # a long prompt is shortened for display; the request keeps all of it

COLOURS = {
    Status.PENDING: discord.Colour.blurple(),
    Status.GENERATING: discord.Colour.gold(),
    Status.COMPLETED: discord.Colour.green(),
}
FAILED_COLOUR = discord.Colour.red()


def fit(text: str | None, limit: int) -> str:
    """``text`` shortened to ``limit`` characters with an ellipsis; never empty (Discord refuses that)."""
    text = text or "-"
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Every character markdown acts on, the backslash included. Discord shows a backslash before
# punctuation as nothing, so escaping all of them costs nothing. (discord.utils.escape_markdown
# is not enough: its masked-link pattern is greedy, so of two links in a row only the first is
# escaped.)
_MARKDOWN = re.compile(r"([\\*_`~|>#\-\[\]<])")
_MENTION = re.compile(r"@(?=everyone|here|[!&]?\d)")


def inert(text: str) -> str:
    """User text with its markdown escaped and its mentions broken by a zero-width space."""
    return _MENTION.sub("@\u200b", _MARKDOWN.sub(r"\\\1", text))


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Shorten every part to its limit, then the description until the total fits 6000."""
    if embed.title:
        embed.title = fit(embed.title, TITLE_MAX)
    if embed.description:
        embed.description = fit(embed.description, DESCRIPTION_MAX)
    for index, field in enumerate(embed.fields):
        embed.set_field_at(
            index, name=fit(field.name, FIELD_NAME_MAX), value=fit(field.value, FIELD_VALUE_MAX), inline=field.inline
        )
    if embed.footer.text:
        embed.set_footer(text=fit(embed.footer.text, FOOTER_MAX))
    excess = len(embed) - EMBED_TOTAL_MAX
    if excess > 0 and embed.description:
        embed.description = fit(embed.description, max(len(embed.description) - excess, 1))
    return embed


def embed_as_text(embed: discord.Embed) -> str:
    """An embed as plain lines, for a channel where the bot may not embed (no Embed Links)."""
    lines = [f"**{embed.title}**" if embed.title else "", embed.description or ""]
    lines += [f"{field.name}: {field.value}" for field in embed.fields]
    if embed.url:
        lines.append(embed.url)
    if embed.footer.text:
        lines.append(embed.footer.text)
    return "\n".join(line for line in lines if line)


def settings_line(request: VideoRequest) -> str:
    audio = "audio on" if request.generate_audio else "no audio"
    return f"{request.duration_seconds} s · {request.aspect_ratio} · {request.resolution} · {audio}"


def label(request: VideoRequest) -> str:
    """How a request is named to users: its id, or (degraded mode) that it has none yet."""
    return f"request #{request.id}" if request.id else "recorded once the database is back"


def footer_of(request: VideoRequest, *extra: str | None) -> str:
    return " · ".join(filter(None, [label(request), lineage_line(request), *extra]))


def _base(request: VideoRequest, title: str, colour: discord.Colour) -> discord.Embed:
    embed = discord.Embed(title=title, colour=colour, description=fit(inert(request.prompt), PROMPT_SHOWN))
    embed.add_field(name="Settings", value=settings_line(request), inline=False)
    if request.negative_prompt:
        embed.add_field(name="Avoid", value=fit(inert(request.negative_prompt), FIELD_VALUE_MAX), inline=False)
    return embed


def quota_line(*, remaining: int, limit: int, reset_at: datetime | None, now: datetime | None = None) -> str:
    line = f"{remaining} of {limit} left"
    if reset_at is not None and (remaining == 0 or remaining < limit):
        line += f" · next slot in {humanize_duration(reset_at - (now or timezone.now()))}"
    return line


def queued_embed(
    request: VideoRequest,
    *,
    ahead: int | None,
    median_ms: int | None,
    remaining: int,
    limit: int,
    reset_at: datetime | None,
    degraded: bool = False,
    held: bool = False,
) -> discord.Embed:
    embed = _base(request, "Queued", COLOURS[Status.PENDING])
    if ahead is not None:
        embed.add_field(name="Position", value="next up" if ahead == 0 else f"{ahead + 1} in queue")
    if median_ms is not None:
        embed.add_field(name="ETA", value=f"~{humanize_duration(eta(ahead or 0, median_ms))}")
        if start_cap_binds(ahead or 0, median_ms):
            embed.add_field(name="Waiting", value=start_cap_text(ahead or 0), inline=False)
    embed.add_field(name="Quota", value=quota_line(remaining=remaining, limit=limit, reset_at=reset_at))
    footer = footer_of(request)
    if held:
        footer += " · the database did not answer in time: saved, and it starts once the database answers"
    elif degraded:
        footer += " · database unreachable: running from the local journal"
    embed.set_footer(text=footer)
    return fit_embed(embed)


def eta(ahead: int, median_ms: int) -> timedelta:
    """When a request with ``ahead`` pending before it will be ready. Those ahead start
    VEO_MAX_CONCURRENT at a time, each taking about the median, and no faster than
    VEO_MAX_STARTS_PER_MINUTE: whichever of the two binds decides when this one starts."""
    by_concurrency = ahead // settings.VEO_MAX_CONCURRENT * median_ms
    by_start_rate = ahead * 60_000 / settings.VEO_MAX_STARTS_PER_MINUTE
    return timedelta(milliseconds=max(by_concurrency, by_start_rate) + median_ms)


def start_cap_binds(ahead: int, median_ms: int) -> bool:
    """Whether the starts a minute, not the generations under way, hold this request back, and
    long enough (START_CAP_NOTED) to be worth a line."""
    by_start_rate = ahead * 60_000 / settings.VEO_MAX_STARTS_PER_MINUTE
    by_concurrency = ahead // settings.VEO_MAX_CONCURRENT * median_ms
    return by_start_rate > by_concurrency and by_start_rate >= START_CAP_NOTED.total_seconds() * 1000


START_CAP_NOTED = timedelta(seconds=30)


def start_cap_text(ahead: int) -> str:
    return (
        f"Veo starts at most {settings.VEO_MAX_STARTS_PER_MINUTE} videos a minute here, and"
        f" {ahead} {'is' if ahead == 1 else 'are'} ahead of this one"
    )


WAITING_FOR_VEO = {
    "veo_busy": "Veo is at capacity right now (it answered 429)",
    "veo_down": "Veo is not answering right now",
}


def progress_embed(
    request: VideoRequest, *, state: str, elapsed: timedelta, retry_in: timedelta | None = None
) -> discord.Embed:
    title = "Generating…" if state == Status.GENERATING else "Queued"
    embed = _base(request, title, COLOURS.get(state, COLOURS[Status.PENDING]))
    if state in WAITING_FOR_VEO:
        again = f"; trying again in ~{humanize_duration(retry_in)}" if retry_in is not None else ""
        embed.add_field(name="Waiting", value=WAITING_FOR_VEO[state] + again, inline=False)
    embed.add_field(name="Elapsed", value=humanize_duration(elapsed))
    embed.set_footer(text=footer_of(request))
    return fit_embed(embed)


def size_mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def completed_embed(request: VideoRequest, *, link: str | None, note: str | None, footer: str | None) -> discord.Embed:
    sample = request.model == capabilities.SAMPLE_MODEL
    embed = _base(request, "Your sample video is ready" if sample else "Your video is ready", COLOURS[Status.COMPLETED])
    if link and len(link) <= FIELD_VALUE_MAX:
        embed.add_field(name="Video", value=link, inline=False)
    elif link:
        # A signed URL can outgrow a field, and a shortened one is a broken one: the title carries it.
        embed.url = link
        embed.add_field(name="Video", value="Open it from the title link above.", inline=False)
    if request.model == capabilities.SAMPLE_MODEL:
        note = " ".join(filter(None, [capabilities.SAMPLE_NOTE, note]))
    if note:
        embed.add_field(name="Note", value=note, inline=False)
    embed.set_footer(text=footer_of(request, footer))
    return fit_embed(embed)


def removed_embed(request: VideoRequest, *, footer: str | None) -> discord.Embed:
    """The output was removed by a moderator before it reached the requester: no video, no link."""
    embed = _base(request, "Video removed by moderators", FAILED_COLOUR)
    embed.add_field(
        name="Why", value="A moderator removed this video before it was delivered, so it is not shown.", inline=False
    )
    embed.set_footer(text=footer_of(request, footer))
    return fit_embed(embed)


def failed_embed(request: VideoRequest, *, footer: str | None) -> discord.Embed:
    title = {Status.TIMEOUT: "Generation timed out", Status.CANCELLED: "Cancelled"}.get(
        request.status, "Generation failed"
    )
    embed = _base(request, title, FAILED_COLOUR)
    embed.add_field(name="Why", value=fit(request.error_message or request.error_code, 300), inline=False)
    refunded = not request.counts_toward_quota
    embed.add_field(
        name="Quota",
        value="refunded: this one does not count"
        if refunded
        else "this one still counts (the prompt was refused, not our failure)",
        inline=False,
    )
    embed.set_footer(text=footer_of(request, footer))
    return fit_embed(embed)


# -- the requester's buttons (ephemeral, plain text) ------------------------------------------------

CANCEL_UNREACHABLE = (
    "The database is unreachable right now, so this request cannot be cancelled; try again in a minute."
)


def cancel_text(answer: str, status: str | None) -> str:
    """What a click on Cancel did (tracking.services.Cancelled)."""
    if answer == "done":
        return "Cancelled. Nothing was charged: your quota slot is back."
    if answer == "not_yours":
        return "Only the person who asked for this video can cancel it."
    if answer == "starting":
        return "It is starting at Veo right now, so it can no longer be cancelled."
    if answer == "started":
        return "Veo has already started this video, so it can no longer be cancelled (Veo bills it from the start)."
    if answer == "ended":
        return (
            "This request is already cancelled."
            if status == Status.CANCELLED
            else (f"This request has already ended ({status}); there is nothing to cancel.")
        )
    return "There is no such request (any more)."


DELETE_UNREACHABLE = "The database is unreachable right now, so this video cannot be deleted; try again in a minute."


def delete_text(answer: str) -> str:
    """What a click on Delete did (tracking.services.Removed)."""
    return {
        "done": "Deleted: the video and its message are gone.",
        "not_yours": "Only the person who asked for this video, or a moderator of this channel, can delete it.",
        "already": "This video was already deleted.",
    }.get(answer, "There is no such request (any more).")


REPORT_UNREACHABLE = "The database is unreachable right now, so the report could not be kept; try again in a minute."


def report_text(answer: str) -> str:
    """What a report did (tracking.services.Reported)."""
    return {
        "done": "Thanks: the moderators will look at this video.",
        "already": "You have already reported this video; the moderators will look at it.",
    }.get(answer, "There is no such request (any more).")


def invalid_report_text(message: str) -> str:
    return fit(f"The report was not kept: {message}.", CONTENT_MAX)


DERIVE_UNREACHABLE = (
    "The database is unreachable right now, so nothing new can be made from this video; try again in a minute."
    " Nothing was charged."
)
DERIVE_SLOW = "The database is slow to answer right now; try again in a moment. Nothing was charged."


def derive_text(answer: str) -> str:
    """Why a Re-roll, Edit or Extend cannot start from this request (tracking.services.Derivable)."""
    return {
        "removed": "This video was removed, so nothing new can be made from it.",
        "not_a_video": "Only a finished video can be extended.",
        "model_cannot": "The model that made this video does not extend videos.",
        "longest": f"This video has been extended {capabilities.MAX_EXTENSIONS} times, as often as Veo allows.",
    }.get(answer, "There is no such request (any more).") + " Nothing was charged."


def frames_gone_text(why: str) -> str:
    return fit(f"Can't make it again: {why}. Nothing was charged.", CONTENT_MAX)


def repeated_text(request: VideoRequest) -> str:
    """A second click on the same button, within seconds: the first one's request stands."""
    return f"Already on it: {label(request)} is {request.status}. Nothing more was charged."


def lineage_line(request: VideoRequest) -> str | None:
    """How a request was made from another, for its messages."""
    if request.derived_as is None:
        return None
    parent = f"#{request.parent_id}" if request.parent_id else "a removed request"
    return {
        "reroll": f"re-roll of {parent}",
        "edit": f"edit of {parent}",
        "extend": f"extends {parent} by {capabilities.EXTENSION_ADDS} s",
    }[request.derived_as]


NO_IMAGE_TO_ANIMATE = "That message has no image to animate: use it on a message with a PNG or JPEG attached."


IMAGE_GONE = (
    "The message with the image could not be read again (deleted, or this bot may not read the channel's"
    " history). Nothing was charged."
)


def cannot_animate_text(model: str) -> str:
    return f"{model} does not animate images, so this bot cannot either for now."


# -- refusals (ephemeral, plain text) ---------------------------------------------------------------


def refusal_text(reason_code: str | None, reason: str | None, *, limit: int, reset_at: datetime | None) -> str:
    if reason_code == "quota_exceeded":
        wait = humanize_duration(reset_at - timezone.now()) if reset_at else "a while"
        text = f"You have used all {limit} of your videos for now. Next slot in {wait}."
    elif reason_code == "banned":
        text = f"You can't use /veo: {reason or 'banned'}."
    elif reason_code and reason_code.startswith("budget_"):
        text = f"{reason[:1].upper()}{reason[1:]}." if reason else "A spending budget is reached."
    elif reason_code == "too_many_in_flight":
        text = f"{(reason or 'Too many of your videos are in progress').capitalize()}."
    else:
        text = f"Refused: {reason or reason_code}."
    return fit(text + " Nothing was charged.", CONTENT_MAX)


def invalid_text(message: str) -> str:
    return fit(f"Can't queue that: {message}. Nothing was charged.", CONTENT_MAX)


def unanswerable_text(message: str) -> str:
    """/quota or /history arrived in a shape that cannot be answered (discordbot.payloads)."""
    return fit(f"Can't answer that: {message}.", CONTENT_MAX)


def channel_not_allowed_text(allowed: frozenset[int]) -> str:
    shown = " ".join(f"<#{channel}>" for channel in sorted(allowed)[:5])  # channel links never ping
    return fit(f"/veo is not enabled in this channel. Try {shown}. Nothing was charged.", CONTENT_MAX)


def quota_text(*, used: int, limit: int, window: timedelta, reset_at: datetime | None, degraded: bool, money=()) -> str:
    lines = [f"You have used {used} of {limit} videos in the last {humanize_duration(window)}."]
    if reset_at is not None:
        lines.append(f"Next slot frees in {humanize_duration(reset_at - timezone.now())}.")
    elif used < limit:
        lines.append("You can generate a video now.")
    lines.extend(money)  # the budgets that apply, with the money left (discordbot.money)
    if degraded:
        lines.append("(The database is unreachable: this is this bot process's own count.)")
    return fit("\n".join(lines), CONTENT_MAX)


def history_text(requests: list[VideoRequest], *, links: dict[int, str]) -> str:
    if not requests:
        return "You have no requests yet. Try /veo."
    now = timezone.now()
    lines = ["Your last requests:"]
    for request in requests:
        age = humanize_duration(now - request.created_at)
        where = f" · {links[request.id]}" if request.id in links else ""
        prompt = fit(" ".join(request.prompt.split()), 60)
        lines.append(f"`#{request.id}` {request.status} · {age} ago · {inert(prompt)}{where}")
    return fit("\n".join(lines), CONTENT_MAX)
