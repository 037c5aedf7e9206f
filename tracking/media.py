"""Where a request's outputs live, resolved safely.

output_uris hold "file:<path relative to VEO_MEDIA_ROOT>" or "gs://bucket/object". A
stored path comes from our own worker, but it is still treated as untrusted: it must
resolve (symlinks included) to a regular file inside VEO_MEDIA_ROOT, or it is refused.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


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


def public_url(url: str) -> str | None:
    """A playable public URL, or None: only https links are ever put in a page."""
    return url if url.startswith("https://") and len(url) <= 2000 else None
