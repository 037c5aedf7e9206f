"""Requests made from others: the Re-roll, Edit and Extend buttons on a result.

A child is an ordinary request of whoever clicked, admitted like any other (quota, bans,
blocked terms); it records its parent and how it was derived. Here: which requests may be
derived from, and the parameters a child gets.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from enum import StrEnum

from django.conf import settings
from django.db import connection

from tracking import capabilities
from tracking.models import DerivedAs, ReviewStatus, Status, VideoRequest
from tracking.services.admission import VideoParameters, require_snowflake


class Derivable(StrEnum):
    """Whether a request can be the parent of a new one."""

    YES = "yes"
    UNKNOWN = "unknown"
    REMOVED = "removed"  # its output was removed: nothing of it is offered again
    NOT_A_VIDEO = "not_a_video"  # extend: it has no finished video to continue
    MODEL_CANNOT = "model_cannot"  # extend: its model does not extend videos
    LONGEST = "longest"  # extend: already extended as often as Veo allows


# Extensions above a request, itself included when it is one (the chain is short: at most
# MAX_EXTENSIONS links, each an index lookup).
_EXTENSIONS_SQL = """
WITH RECURSIVE chain AS (
    SELECT id, parent_id, derived_as, 1 AS depth FROM video_requests WHERE id = %s
    UNION ALL
    SELECT p.id, p.parent_id, p.derived_as, c.depth + 1
    FROM video_requests p JOIN chain c ON p.id = c.parent_id
    WHERE c.derived_as = 'extend' AND c.depth <= %s
)
SELECT count(*) FILTER (WHERE derived_as = 'extend') FROM chain
"""


def derivation_source(*, interaction_id: int, derived_as: str) -> tuple[Derivable, VideoRequest | None]:
    """The request a button names (by its interaction), and whether it can be ``derived_as``."""
    require_snowflake("interaction_id", interaction_id, required=True)
    parent = VideoRequest.objects.filter(interaction_id=interaction_id).first()
    if parent is None or parent.status == Status.REJECTED:
        return Derivable.UNKNOWN, None
    if parent.review_status == ReviewStatus.REMOVED:
        return Derivable.REMOVED, parent
    if derived_as == DerivedAs.EXTEND:
        if parent.status != Status.COMPLETED or not parent.output_uris:
            return Derivable.NOT_A_VIDEO, parent
        if not capabilities.of(parent.model).extension:
            return Derivable.MODEL_CANNOT, parent
        with connection.cursor() as cursor:
            cursor.execute(_EXTENSIONS_SQL, [parent.id, capabilities.MAX_EXTENSIONS])
            (extensions,) = cursor.fetchone()
        if extensions >= capabilities.MAX_EXTENSIONS:
            return Derivable.LONGEST, parent
    return Derivable.YES, parent


def derived_parameters(
    parent: VideoRequest, *, derived_as: str, prompt: str | None = None, negative_prompt: str | None = None
) -> VideoParameters:
    """What the child asks Veo for. A re-roll: the same, with a new seed. An edit: the new text,
    the same seed (so the text is what changed). An extension: Veo continues the parent's video,
    at the length and resolution extensions are made at. The parent's model while it is still
    offered, else today's default. The caller cleans them (clean_parameters) as admission does."""
    offered = (*settings.VEO_MODELS, settings.VEO_RECORDED_MODEL)
    base = VideoParameters(
        prompt=parent.prompt,
        duration_seconds=parent.duration_seconds,
        aspect_ratio=parent.aspect_ratio,
        resolution=parent.resolution,
        generate_audio=parent.generate_audio,
        negative_prompt=parent.negative_prompt,
        seed=parent.seed,
        person_generation=parent.person_generation,
        model=parent.model if parent.model in offered else None,
        image_uri=parent.image_uri,
        last_frame_uri=parent.last_frame_uri,
        parent_id=parent.id,
        derived_as=derived_as,
    )
    if derived_as == DerivedAs.REROLL:
        return replace(base, seed=secrets.randbelow(2**32))
    if derived_as == DerivedAs.EDIT:
        return replace(base, prompt=parent.prompt if prompt is None else prompt, negative_prompt=negative_prompt)
    can = capabilities.of(parent.model)
    return replace(
        base,
        seed=None,
        duration_seconds=can.extension_length,
        resolution=can.extension_resolution,
        image_uri=None,
        last_frame_uri=None,
        video_input_uri=parent.output_uris[0],
    )
