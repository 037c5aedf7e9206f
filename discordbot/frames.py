"""Images given to /veo (a first frame, a last frame), from a Discord attachment to a file kept
beside the outputs, checked before admission: a bad image is refused with a specific message
and costs nothing, and nothing is kept of it.

Discord's own description of the attachment (its size, its type) refuses the obvious cases
without a download; the bytes decide the rest (tracking.images), read within a size and a time
limit (generation.inputs).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import discord
from django.conf import settings

from generation import inputs
from generation.storage import LocalStorage
from tracking import capabilities, images, services
from tracking.errors import InvalidInput
from tracking.services import VideoParameters

# What clean_parameters sees for a frame not fetched yet: the parameters are checked (the model
# takes images at all?) before anything is downloaded.
NOT_FETCHED_YET = "attachment:not-fetched-yet"
FIELDS = {"image_uri": "image", "last_frame_uri": "last_frame"}


class FrameFetcher:
    def __init__(self, storage: LocalStorage):
        self.storage = storage

    async def with_frames(
        self,
        params: VideoParameters,
        *,
        interaction_id: int,
        image: discord.Attachment | None,
        last_frame: discord.Attachment | None = None,
    ) -> VideoParameters:
        """``params`` with the frames fetched, checked and kept; InvalidInput says what is wrong."""
        given = {"image_uri": image, "last_frame_uri": last_frame}
        placeholders = {field: NOT_FETCHED_YET for field, attachment in given.items() if attachment is not None}
        services.clean_parameters(replace(params, **placeholders))  # refuses before any download
        can = capabilities.of(params.model or settings.VEO_MODEL)
        fetched = {}
        for field, attachment in given.items():
            if attachment is not None:
                fetched[field] = await self.fetch(
                    attachment, field=FIELDS[field], interaction_id=interaction_id, accepted=can.image_types
                )
        return replace(params, **fetched)

    async def fetch(
        self, attachment: discord.Attachment, *, field: str, interaction_id: int, accepted: tuple[str, ...]
    ) -> str:
        """The attachment checked and kept; its URI (generation.storage)."""
        limit = settings.VEO_IMAGE_MAX_BYTES
        if attachment.size > limit:
            raise images.too_large(field, limit)
        announced = (attachment.content_type or "").split(";")[0].strip()
        if announced and not announced.startswith("image/"):
            raise InvalidInput(field, f"{field} must be {images.type_names(accepted)} (Discord says it is {announced})")
        data = await inputs.download(
            attachment.url, max_bytes=limit, timeout=settings.VEO_IMAGE_DOWNLOAD_TIMEOUT.total_seconds(), field=field
        )
        info = images.check_image(
            data, field=field, accepted_types=accepted, max_bytes=limit, max_pixels=settings.VEO_IMAGE_MAX_PIXELS
        )
        return await asyncio.to_thread(
            self.storage.save_input, interaction_id=interaction_id, name=field, data=data, mime_type=info.mime_type
        )


def first_image(message: discord.Message) -> discord.Attachment | None:
    """The first attachment of a message that says it is an image (its bytes decide later)."""
    for attachment in message.attachments:
        if (attachment.content_type or "").startswith("image/"):
            return attachment
    return None
