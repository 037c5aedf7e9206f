"""Where generated videos live: local files under VEO_MEDIA_ROOT, or Veo's GCS objects.

URIs stored on the request are ``file:<path relative to VEO_MEDIA_ROOT>`` or
``gs://bucket/object``. Local files are never served from a public directory; the admin
streams them to staff, the bot attaches them. GCS objects stay in the bucket: their size is
read from Cloud Storage when the request completes, and they are reached through signed
(or, if the bucket is public, plain) links.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from django.conf import settings

from tracking import gcs, media

log = logging.getLogger(__name__)

FILE_SCHEME = "file:"
GCS_SCHEME = gcs.GCS_SCHEME


class StorageError(Exception):
    pass


@dataclass(frozen=True)
class StoredVideo:
    uri: str
    public_url: str | None
    size_bytes: int | None
    mime_type: str = "video/mp4"


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root)

    def save(self, *, request_id: int, data: bytes, mime_type: str = "video/mp4") -> StoredVideo:
        relative = PurePosixPath(f"{request_id // 1000:06d}") / f"{request_id}.mp4"
        self._write(relative, data)
        return StoredVideo(uri=f"{FILE_SCHEME}{relative}", public_url=None, size_bytes=len(data), mime_type=mime_type)

    def save_input(self, *, interaction_id: int, name: str, data: bytes, mime_type: str) -> str:
        """Keep a file given to Veo (a first or last frame) under the interaction that brought it,
        which names the request before it has an id; the URI goes on the request."""
        relative = PurePosixPath("inputs") / f"{interaction_id // 10**15:06d}" / f"{interaction_id}-{name}"
        relative = relative.with_suffix(media.INPUT_SUFFIXES[mime_type])
        self._write(relative, data)
        return f"{FILE_SCHEME}{relative}"

    def copy_input(self, uri: str, *, interaction_id: int, name: str) -> str:
        """A frame of one request kept again for another (a re-roll or edit of it): each request
        owns its inputs, so removing one never takes another's. StorageError when it is gone."""
        try:
            data = self.path(uri).read_bytes()
        except OSError as error:
            raise StorageError(f"the {name} of the request it comes from is gone ({type(error).__name__})") from None
        return self.save_input(interaction_id=interaction_id, name=name, data=data, mime_type=media.input_type(uri))

    def _write(self, relative: PurePosixPath, data: bytes) -> None:
        """Write atomically (temp file, fsync, rename): a crash never leaves half a file."""
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def path(self, uri: str) -> Path:
        """The local file behind a file: URI; refuses anything that escapes the media root."""
        if not uri.startswith(FILE_SCHEME):
            raise StorageError(f"not a local file URI: {uri!r}")
        relative = PurePosixPath(uri.removeprefix(FILE_SCHEME))
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise StorageError(f"refusing a path outside the media folder: {uri!r}")
        return self.root / relative

    def remove(self, uri: str) -> bool:
        try:
            self.path(uri).unlink()
        except FileNotFoundError:
            return False
        return True


def gcs_public_url(uri: str) -> str:
    bucket, name = gcs.split(uri)
    return f"https://storage.googleapis.com/{bucket}/{quote(name)}"


def store_output(
    *, request_id: int, data: bytes | None, uri: str | None, mime_type: str, storage: LocalStorage
) -> StoredVideo:
    """Keep inline bytes as a local file; GCS objects Veo wrote stay where they are, with
    their size read from Cloud Storage (blocking: callers run this in a thread)."""
    if data is not None:
        return storage.save(request_id=request_id, data=data, mime_type=mime_type)
    if uri and uri.startswith(GCS_SCHEME):
        public = gcs_public_url(uri) if settings.VEO_GCS_PUBLIC_URLS else None
        info = gcs.object_info(uri)
        if info.problem:
            _size_unknown(request_id, info.problem)
        return StoredVideo(
            uri=uri, public_url=public, size_bytes=info.size_bytes, mime_type=info.content_type or mime_type
        )
    raise StorageError(f"Veo returned neither bytes nor a gs:// URI ({uri!r})")


_problems_logged: set[str] = set()


def _size_unknown(request_id: int, problem: str) -> None:
    """The video is finished all the same; only attach-or-link is decided without its size.
    A missing permission would repeat on every request: warn once per kind of problem."""
    first = problem not in _problems_logged
    _problems_logged.add(problem)
    log.log(
        logging.WARNING if first else logging.INFO,
        "request %s: size of the GCS output unknown (%s)%s",
        request_id,
        problem,
        "; further requests with this problem are logged at INFO" if first else "",
    )


def local_storage() -> LocalStorage:
    return LocalStorage(settings.VEO_MEDIA_ROOT)
