"""Downloading a file a user gave (a Discord attachment) within a size and a time limit.

Discord reports an attachment's size, but what counts is what its CDN sends: the
Content-Length when there is one, then the bytes as they arrive, stopping at the first one
too many, so a file over the limit is never held whole. One deadline covers everything,
connecting included, since a user is waiting. Every failure is an InvalidInput whose message
the user can act on, naming at most the host, never the exception inside.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import aiohttp
from yarl import URL

from tracking.errors import InvalidInput
from tracking.images import too_large

CHUNK = 64 * 1024

# The first match says why, most specific first (aiohttp's exceptions subclass one another).
_REASONS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], str], ...] = (
    (aiohttp.ClientConnectorDNSError, "the host {host} was not found"),
    (aiohttp.ClientSSLError, "the secure connection to {host} failed"),
    (aiohttp.ClientConnectorError, "could not connect to {host}"),
    (aiohttp.TooManyRedirects, "{host} redirected it too many times"),
    ((aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError), "{host} sent it on to a link that cannot be downloaded"),
    (aiohttp.ClientResponseError, "{host} answered with something that is not valid HTTP"),
    (aiohttp.ClientError, "the connection to {host} broke off"),
)


async def download(url: str, *, max_bytes: int, timeout: float, field: str) -> bytes:
    """The body of ``url`` (http or https only), at most ``max_bytes`` long, within ``timeout``
    seconds; otherwise InvalidInput(field, why)."""
    try:
        target = URL(url)
    except (TypeError, ValueError):
        raise InvalidInput(field, f"could not download the {field}: its link is not valid") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise InvalidInput(field, f"could not download the {field}: only http and https links can be downloaded")
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(target, max_bytes=max_bytes, field=field)
    except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
        raise InvalidInput(field, f"{field} download took longer than {timeout:g} s") from None
    except (aiohttp.ClientError, OSError) as error:
        reason = next((text for kind, text in _REASONS if isinstance(error, kind)), "the connection to {host} failed")
        raise InvalidInput(field, f"could not download the {field}: {reason.format(host=target.host)}") from None


async def _fetch(target: URL, *, max_bytes: int, field: str) -> bytes:
    # A session of its own: it reads no proxy settings or netrc, and closing it drops the
    # connection, so a download stopped half-way is not left streaming.
    async with aiohttp.ClientSession() as session, session.get(target) as response:
        if response.status != 200:
            raise InvalidInput(
                field, f"could not download the {field}: {target.host} answered {_status(response.status)}"
            )
        if response.content_length is not None and response.content_length > max_bytes:
            raise too_large(field, max_bytes)
        data = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK):
            data += chunk
            if len(data) > max_bytes:
                raise too_large(field, max_bytes)
        return bytes(data)


def _status(code: int) -> str:
    try:
        return f"HTTP {code} ({HTTPStatus(code).phrase})"
    except ValueError:
        return f"HTTP {code}"
