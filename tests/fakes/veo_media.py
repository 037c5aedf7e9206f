"""The media a Veo create can carry, read and checked as Vertex AI would before any work starts.

google-genai 3.6 puts them all in the one instance (``_GenerateVideosSource_to_vertex`` and
``_GenerateVideosConfig_to_vertex`` in google/genai/models.py):

* ``GenerateVideosSource(image=types.Image(...))`` -> ``instances[0].image``, the first frame;
* ``GenerateVideosConfig(last_frame=types.Image(...))`` -> ``instances[0].lastFrame``;
* ``GenerateVideosSource(video=types.Video(...))`` -> ``instances[0].video``, the video to extend.

Each is ``{"bytesBase64Encoded": ..., "mimeType": ...}`` or ``{"gcsUri": ..., "mimeType": ...}``
(``Image.image_bytes`` / ``gcs_uri``, ``Video.video_bytes`` / ``uri``): one of the two, as the
REST reference's union says. What a model takes is tracking.capabilities' table, as for every
other parameter the fake checks.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tracking.capabilities import ModelCapabilities

VIDEO_TYPES = ("video/mp4",)  # what Veo extends (and makes)


class MediaProblem(Exception):
    """Why Vertex would refuse the create's media: a 400 INVALID_ARGUMENT with this message."""


@dataclass(frozen=True)
class MediaInput:
    data: bytes  # decoded from base64, or the object gcs_uri names in the fake's bucket
    mime_type: str
    gcs_uri: str | None = None  # None: sent inline


@dataclass(frozen=True)
class MediaInputs:
    image: MediaInput | None = None
    last_frame: MediaInput | None = None
    video: MediaInput | None = None


def read_media(
    model: str,
    capabilities: ModelCapabilities,
    instance: Any,
    objects: Mapping[str, bytes],
    parameters: Mapping[str, Any] | None = None,
) -> MediaInputs:
    """The media of a create's instance, or MediaProblem. ``objects``: the fake's Cloud Storage;
    ``parameters``: the create's, which an extension must ask at its one length and resolution."""
    if not isinstance(instance, dict):
        raise MediaProblem("instances[0] must be an object.")
    image, last_frame, video = instance.get("image"), instance.get("lastFrame"), instance.get("video")
    if image is not None and not capabilities.image_input:
        raise MediaProblem(f"Image input is not supported for model {model}.")
    if last_frame is not None and not capabilities.last_frame:
        raise MediaProblem(f"lastFrame is not supported for model {model}.")
    if last_frame is not None and image is None:
        raise MediaProblem("lastFrame needs image: a last frame is given with a first frame.")
    if video is not None and not capabilities.extension:
        raise MediaProblem(f"Video extension is not supported for model {model}.")
    inputs = MediaInputs(
        image=_read("image", image, capabilities.image_types, model, objects),
        last_frame=_read("lastFrame", last_frame, capabilities.image_types, model, objects),
        video=_read("video", video, VIDEO_TYPES, model, objects),
    )
    if video is not None and image is not None:
        raise MediaProblem("video and image cannot both be given: an extension continues a video.")
    asked = (parameters or {}).get("resolution", "720p"), (parameters or {}).get("durationSeconds")
    wanted = capabilities.extension_resolution, capabilities.extension_length
    if video is not None and asked != wanted:
        raise MediaProblem(
            f"Video extension for model {model} needs resolution {wanted[0]} and durationSeconds {wanted[1]}"
            f" (got {asked[0]}, {asked[1]})."
        )
    return inputs


def _read(
    name: str, value: Any, accepted: tuple[str, ...], model: str, objects: Mapping[str, bytes]
) -> MediaInput | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MediaProblem(f"{name} must be an object, got {json.dumps(value)}.")
    inline, uri, mime_type = value.get("bytesBase64Encoded"), value.get("gcsUri"), value.get("mimeType")
    if (inline is None) == (uri is None):
        raise MediaProblem(f"{name} must have exactly one of bytesBase64Encoded and gcsUri.")
    if mime_type is None:
        raise MediaProblem(f"{name}.mimeType is required.")
    if mime_type not in accepted:
        raise MediaProblem(
            f"Unsupported {name} mimeType {json.dumps(mime_type)} for model {model}; supported values are"
            f" {list(accepted)}."
        )
    if uri is not None:
        if not isinstance(uri, str) or uri not in objects:
            raise MediaProblem(f"{name}.gcsUri {json.dumps(uri)} cannot be read: no such object.")
        return MediaInput(objects[uri], mime_type, uri)
    data = _decode(name, inline)
    if not data:
        raise MediaProblem(f"{name}.bytesBase64Encoded is empty.")
    return MediaInput(data, mime_type)


def _decode(name: str, text: Any) -> bytes:
    """Base64 as protobuf's JSON mapping reads bytes: standard or URL-safe, padded or not."""
    if isinstance(text, str):
        standard = text.replace("-", "+").replace("_", "/")
        try:
            return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except (binascii.Error, ValueError):
            pass
    raise MediaProblem(f"{name}.bytesBase64Encoded is not valid base64.")
