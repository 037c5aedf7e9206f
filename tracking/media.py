"""Where a request's outputs live, resolved safely.

output_uris hold "file:<path relative to VEO_MEDIA_ROOT>" or "gs://bucket/object". A
stored path comes from our own worker, but it is still treated as untrusted: it must
resolve (symlinks included) to a regular file inside VEO_MEDIA_ROOT, or it is refused.
Objects in the bucket are deleted (purge, erasure) through Cloud Storage's JSON API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from tracking import gcs

# Input images by type, and back: the stored name says what the file is (generation.storage
# names them; the admin serves them with this type).
INPUT_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
INPUT_TYPES = {suffix: mime_type for mime_type, suffix in INPUT_SUFFIXES.items()} | {".mp4": "video/mp4"}


def input_type(uri: str) -> str:
    return INPUT_TYPES.get(Path(uri).suffix.lower(), "application/octet-stream")


def local_output_path(uri: str) -> Path | None:
    """The file behind a "file:" URI, or None when it is not one, escapes the media root,
    or does not exist."""
    if not uri.startswith("file:"):
        return None
    relative = uri.removeprefix("file:")
    if not relative or "\x00" in relative or relative.startswith(("/", "\\")):
        return None
    root = Path(settings.VEO_MEDIA_ROOT).resolve()
    try:
        path = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def delete_local_files(uris: Sequence[str]) -> int:
    """Delete the local files behind file: URIs (others are skipped); returns how many."""
    deleted = 0
    for uri in uris:
        path = local_output_path(uri)
        if path is not None:
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted


def public_url(url: str) -> str | None:
    """A playable public URL, or None: only https links are ever put in a page."""
    return url if url.startswith("https://") and len(url) <= 2000 else None


# -- deleting outputs in Cloud Storage -----------------------------------------------------


@dataclass(frozen=True)
class GcsDeletion:
    deleted: tuple[str, ...] = ()
    left: tuple[str, ...] = ()  # still in the bucket; `problem` says why
    problem: str | None = None
    retryable: bool = False  # every failure was transient (5xx, 429, network): trying again may work


# What a refusal means, for the people who read `problem`.
_REFUSALS = {401: "not authenticated", 403: "permission denied: the credentials may not delete objects in this bucket"}


def _transient(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def delete_gcs_objects(uris: Sequence[str], *, credentials=None) -> GcsDeletion:
    """Delete gs:// outputs through the Cloud Storage JSON API, with Application Default
    Credentials (or ``credentials``). Only when a bucket is configured (VEO_OUTPUT_GCS_URI):
    otherwise this deployment holds no credentials for it. An object already gone counts as
    deleted. Problems are reported by kind and status, never with credentials; a permanent
    one (a refusal, no bucket or credentials) wins over a transient one."""
    uris = [uri for uri in uris if uri.startswith(gcs.GCS_SCHEME)]
    if not uris:
        return GcsDeletion()
    if not settings.VEO_OUTPUT_GCS_URI:
        return GcsDeletion(left=tuple(uris), problem="no bucket is configured (VEO_OUTPUT_GCS_URI)")
    credentials = credentials or gcs.default_credentials()
    if credentials is None:
        return GcsDeletion(left=tuple(uris), problem=gcs.NO_CREDENTIALS)
    deleted, left, transient, permanent = [], [], None, None
    with gcs.session(credentials) as http:
        for uri in uris:
            try:
                status = http.delete(gcs.object_url(uri), timeout=settings.VEO_HTTP_TIMEOUT.total_seconds()).status_code
            except gcs.FAILURES as error:
                left.append(uri)
                transient = f"Cloud Storage unreachable ({type(error).__name__})"
                continue
            if status in (200, 204, 404):
                deleted.append(uri)
                continue
            left.append(uri)
            problem = f"Cloud Storage answered {status}" + (f" ({_REFUSALS[status]})" if status in _REFUSALS else "")
            if _transient(status):
                transient = problem
            else:
                permanent = permanent or problem
    return GcsDeletion(tuple(deleted), tuple(left), permanent or transient, retryable=bool(left) and not permanent)
