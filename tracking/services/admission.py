"""Admission: validating a request's parameters and admitting it in one round trip."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection

from tracking import capabilities
from tracking.errors import InvalidInput
from tracking.models import AspectRatio, DerivedAs, PersonGeneration, Resolution, Source
from tracking.retries import redone_if_rolled_back
from tracking.text import has_visible, prompt_text, storable_text


@dataclass(frozen=True)
class VideoParameters:
    prompt: str
    duration_seconds: int = 4
    aspect_ratio: str = AspectRatio.LANDSCAPE
    resolution: str = Resolution.HD
    generate_audio: bool = True
    negative_prompt: str | None = None
    seed: int | None = None
    person_generation: str = PersonGeneration.ALLOW_ADULT
    model: str | None = None  # None: settings.VEO_MODEL
    # Inputs: URIs of files kept beside the outputs (generation.inputs stores them first).
    image_uri: str | None = None  # the first frame
    last_frame_uri: str | None = None  # only with image_uri
    video_input_uri: str | None = None  # the video to extend (derived_as="extend")
    # The request this one is made from, from the buttons on a result, and how (models.DerivedAs).
    parent_id: int | None = None
    derived_as: str | None = None


@dataclass(frozen=True)
class Admission:
    request_id: int
    admitted: bool
    duplicate: bool
    status: str
    reason_code: str | None
    reason: str | None
    used: int
    limit: int
    remaining: int
    reset_at: datetime | None
    # Money: what this request costs (USD; None when no price is known; 0 when refused), the
    # least money left among the budgets that apply and which one that is (None: no budget),
    # and for a budget refusal when enough frees (None: the video costs more than the budget).
    cost_usd: Decimal | None = None
    money_left_usd: Decimal | None = None
    money_scope: str | None = None
    money_frees_at: datetime | None = None


MAX_ROLES = 250  # Discord's own limit on roles in a guild


def clean_role_ids(role_ids: Sequence[int] | None) -> list[int]:
    """The member's Discord role ids, checked: snowflakes only (a hostile payload changes nothing)."""
    if role_ids is None:
        return []
    roles = list(role_ids)
    if len(roles) > MAX_ROLES:
        raise InvalidInput("role_ids", f"a member has at most {MAX_ROLES} roles (got {len(roles)})")
    for role_id in roles:
        require_snowflake("role_ids", role_id, required=True)
    return sorted(set(roles))


# Django builds a choices enum's ``values`` anew on every read (a list through ``choices``):
# read once here, not for every /veo.
_RESOLUTIONS = tuple(Resolution.values)
_PERSON_GENERATION = tuple(PersonGeneration.values)
_DERIVED_AS = tuple(DerivedAs.values)
_SOURCES = tuple(Source.values)


def clean_parameters(params: VideoParameters) -> VideoParameters:
    """Validate and normalise parameters; raise InvalidInput with a specific message."""
    prompt = " ".join(prompt_text("prompt", params.prompt).split())
    if not has_visible(prompt):
        raise InvalidInput("prompt", "prompt has no visible characters (only spaces or invisible ones)")
    low, high = settings.VEO_PROMPT_MIN_LENGTH, settings.VEO_PROMPT_MAX_LENGTH
    if not low <= len(prompt) <= high:
        raise InvalidInput("prompt", f"prompt must be {low}-{high} characters (got {len(prompt)})")
    negative = params.negative_prompt
    if negative is not None:
        negative = " ".join(prompt_text("negative_prompt", negative).split()) or None
        if negative and len(negative) > high:
            raise InvalidInput(
                "negative_prompt", f"negative_prompt must be at most {high} characters (got {len(negative)})"
            )
    chosen = params.model
    if chosen and chosen not in settings.VEO_MODELS and chosen != settings.VEO_RECORDED_MODEL:
        raise InvalidInput("model", f"model must be one of {', '.join(settings.VEO_MODELS)} (got {chosen!r})")
    model_id = chosen or settings.VEO_MODEL
    can = capabilities.of(model_id)
    require_choice("duration_seconds", params.duration_seconds, can.durations)
    require_choice("aspect_ratio", params.aspect_ratio, can.aspect_ratios)
    require_choice("resolution", params.resolution, [r for r in _RESOLUTIONS if r in can.resolutions])
    if params.duration_seconds not in can.lengths_at(params.resolution):
        lengths = " or ".join(str(length) for length in can.lengths_at(params.resolution))
        raise InvalidInput(
            "resolution",
            f"{model_id} makes {params.resolution} videos only {lengths} seconds long"
            f" (got {params.duration_seconds}): choose {lengths} seconds, or another resolution",
        )
    require_choice(
        "person_generation", params.person_generation, [p for p in _PERSON_GENERATION if p in can.person_generation]
    )
    check_inputs(params, model_id=model_id, can=can)
    if not isinstance(params.generate_audio, bool):
        raise InvalidInput("generate_audio", "generate_audio must be true or false")
    if params.seed is not None and (isinstance(params.seed, bool) or not 0 <= params.seed <= 4_294_967_295):
        raise InvalidInput("seed", "seed must be a whole number from 0 to 4294967295")
    # Recorded as generated: the offline backend's sample, whatever was asked for, is no model's.
    offline = settings.VEO_RECORDED_MODEL == capabilities.SAMPLE_MODEL
    model = storable_text("model", settings.VEO_RECORDED_MODEL if offline else model_id)
    return replace(params, prompt=prompt, negative_prompt=negative, model=model)


def check_inputs(params: VideoParameters, *, model_id: str, can: capabilities.ModelCapabilities) -> None:
    """Inputs the model cannot take are refused here, with the model named, not by Veo later."""
    if params.image_uri and not can.image_input:
        raise InvalidInput("image", f"{model_id} does not animate images: leave out the image, or choose another model")
    if params.last_frame_uri and not params.image_uri:
        raise InvalidInput("last_frame", "a last frame needs a first frame: give an image as well")
    if params.last_frame_uri and not can.last_frame:
        raise InvalidInput("last_frame", f"{model_id} does not take a last frame")
    if params.video_input_uri:
        if not can.extension:
            raise InvalidInput("video", f"{model_id} does not extend videos")
        if params.image_uri:
            raise InvalidInput("video", "an extension continues a video: it takes no image")
        if (params.resolution, params.duration_seconds) != (can.extension_resolution, can.extension_length):
            raise InvalidInput(
                "video",
                f"{model_id} extends videos at {can.extension_resolution} and {can.extension_length} seconds"
                f" (got {params.resolution}, {params.duration_seconds} s)",
            )
    if (params.parent_id is None) != (params.derived_as is None):
        raise InvalidInput("parent", "a derived request names both its parent and how it was derived")
    if params.derived_as is not None:
        require_choice("derived_as", params.derived_as, _DERIVED_AS)
    if params.video_input_uri and params.derived_as != DerivedAs.EXTEND:
        raise InvalidInput("video", "only an extension of a request takes a video")
    for field in ("image_uri", "last_frame_uri", "video_input_uri"):
        uri = getattr(params, field)
        if uri is not None and not (isinstance(uri, str) and 1 <= len(uri) <= 2000):
            raise InvalidInput(field, f"{field} must be a URI of at most 2000 characters")


def require_choice(field: str, value, allowed) -> None:
    if isinstance(value, bool) or value not in allowed:
        options = ", ".join(str(option) for option in allowed)
        raise InvalidInput(field, f"{field} must be one of {options} (got {value!r})")


def require_snowflake(field: str, value: int | None, *, required: bool) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise InvalidInput(field, f"{field} must be a positive 64-bit Discord id (got {value!r})")


def checked_admission(
    *,
    interaction_id: int,
    user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    params: VideoParameters,
    source: str,
    role_ids: Sequence[int] | None,
) -> tuple[list[int], VideoParameters]:
    """An admission's ids checked (InvalidInput otherwise): its role ids and clean parameters."""
    require_snowflake("interaction_id", interaction_id, required=True)
    require_snowflake("user_id", user_id, required=True)
    require_snowflake("guild_id", guild_id, required=False)
    require_snowflake("channel_id", channel_id, required=False)
    require_choice("source", source, _SOURCES)
    roles = clean_role_ids(role_ids) if guild_id is not None else []
    return roles, clean_parameters(params)


@redone_if_rolled_back
def admit_request(
    *,
    interaction_id: int,
    user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    params: VideoParameters,
    source: str = Source.DISCORD,
    role_ids: Sequence[int] | None = None,
) -> Admission:
    """Admit or refuse a request in one database round trip (see admit_video_request in SQL).
    ``role_ids``: the member's Discord roles in ``guild_id`` (none in DMs), for role policies."""
    roles, clean = checked_admission(
        interaction_id=interaction_id,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=channel_id,
        params=params,
        source=source,
        role_ids=role_ids,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT request_id, admitted, duplicate, status, reason_code, reason, used, quota_limit, remaining, reset_at,"
            " cost_usd, money_left_usd, money_scope, money_frees_at"
            " FROM admit_video_request(%s, %s, %s, %s, %s, %s, %s::smallint, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s, %s, %s::bigint[], %s::numeric)",
            [
                interaction_id,
                user_id,
                guild_id,
                channel_id,
                clean.prompt,
                clean.negative_prompt,
                clean.duration_seconds,
                clean.aspect_ratio,
                clean.resolution,
                clean.generate_audio,
                clean.person_generation,
                clean.seed,
                clean.model,
                source,
                settings.VEO_QUOTA_LIMIT,
                settings.VEO_QUOTA_WINDOW,
                settings.VEO_QUOTA_MAX_IN_FLIGHT,
                clean.parent_id,
                clean.derived_as,
                clean.image_uri,
                clean.last_frame_uri,
                clean.video_input_uri,
                roles,
                settings.VEO_BUDGET_USD_PER_DAY,
            ],
        )
        return Admission(*cursor.fetchone())


# Admissions announce new work on this channel (NOTIFY) and idle workers LISTEN on it, so they
# start at once instead of at their next poll (generation.wakeup). A notification only means
# "look now"; the claim decides what is there. The payload names the sending process, or is empty.
WORK_CHANNEL = "veobot_work"
NOTIFY_WORK_SQL = "SELECT pg_notify(%s, %s)"  # [WORK_CHANNEL, sender]


def notify_work(*, sender: str = "") -> None:
    """Tell listening workers that work was admitted. Call it after the admission has committed,
    never inside it: NOTIFY takes a database-wide lock at commit, which admission should not pay."""
    with connection.cursor() as cursor:
        cursor.execute(NOTIFY_WORK_SQL, [WORK_CHANNEL, sender])
