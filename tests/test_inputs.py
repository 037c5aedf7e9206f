"""generation.inputs.download against the fake Discord's CDN, and servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from generation.inputs import download
from tests.fakes.discord_server import FakeDiscordServer
from tests.helpers import free_port
from tracking.errors import InvalidInput

CHANNEL_ID = 1_100_000_000_000_000_001
PICTURE = bytes(range(256)) * 40  # what it is does not matter here: tracking.images reads it later
SENT = web.AppKey("sent", list)  # bytes the endless server got out, in its one element


@pytest.fixture
def discord():
    with FakeDiscordServer() as server:
        yield server


def fetch(url: str, *, max_bytes: int = 1 << 20, timeout: float = 5, field: str = "image") -> bytes:
    return asyncio.run(download(url, max_bytes=max_bytes, timeout=timeout, field=field))


def refusal(url: str, **limits) -> str:
    with pytest.raises(InvalidInput) as raised:
        fetch(url, **limits)
    assert raised.value.field == limits.get("field", "image")
    return str(raised.value)


def test_an_attachment_is_downloaded_byte_for_byte(discord):
    attachment = discord.add_user_attachment(PICTURE, "fox.png", channel_id=CHANNEL_ID)

    assert fetch(attachment["url"]) == PICTURE
    assert fetch(attachment["url"], max_bytes=len(PICTURE)) == PICTURE  # exactly the limit is fine


def test_a_file_over_the_limit_is_refused(discord):
    attachment = discord.add_user_attachment(PICTURE, "fox.png", channel_id=CHANNEL_ID)

    assert refusal(attachment["url"], max_bytes=len(PICTURE) - 1) == "image is larger than 9.9 KB"
    assert refusal(attachment["url"], max_bytes=1024) == "image is larger than 1 KB"


def test_a_missing_attachment_is_refused_with_the_status(discord):
    attachment = discord.add_user_attachment(PICTURE, "fox.png", channel_id=CHANNEL_ID)
    gone = attachment["url"].replace(attachment["id"], "1")

    assert refusal(gone) == "could not download the image: 127.0.0.1 answered HTTP 404 (Not Found)"


def test_a_stalled_download_gives_up_at_the_deadline(discord):
    attachment = discord.add_user_attachment(PICTURE, "late.png", channel_id=CHANNEL_ID)
    discord.stall_attachment(attachment, 3)
    began = time.monotonic()

    assert refusal(attachment["url"], timeout=0.3) == "image download took longer than 0.3 s"
    assert time.monotonic() - began < 2


def test_an_unreachable_host_is_named_without_the_exception():
    message = refusal(f"http://127.0.0.1:{free_port()}/attachments/1/2/fox.png", field="last_frame")

    assert message == "could not download the last_frame: could not connect to 127.0.0.1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "could not download the image: only http and https links can be downloaded"),
        ("ftp://cdn.example.com/fox.png", "could not download the image: only http and https links can be downloaded"),
        ("http:///fox.png", "could not download the image: only http and https links can be downloaded"),
        ("fox.png", "could not download the image: only http and https links can be downloaded"),
        ("http://[::1/fox.png", "could not download the image: its link is not valid"),
    ],
    ids=["file", "ftp", "no host", "no scheme", "malformed"],
)
def test_only_http_links_are_followed(url, message):
    assert refusal(url) == message


# --- servers that misbehave: no Content-Length, a body that trickles, an endless redirect ------


async def endless(request: web.Request) -> web.StreamResponse:
    """A body without Content-Length that never ends; counts what it managed to send."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = bytes(64 * 1024)
    try:
        while True:
            await response.write(chunk)
            request.app[SENT][0] += len(chunk)
    except (ConnectionError, RuntimeError):  # the client hung up: what the test wants
        return response


async def trickle(request: web.Request) -> web.StreamResponse:
    """Headers at once, then one byte a second: each read is quick, the whole is not."""
    response = web.StreamResponse(headers={"Content-Length": "100"})
    await response.prepare(request)
    for _ in range(100):
        await response.write(b"x")
        await asyncio.sleep(1)
    return response


async def announced(request: web.Request) -> web.StreamResponse:
    """Announces 10 GB, then sends nothing: only the Content-Length can refuse it in time."""
    response = web.StreamResponse(headers={"Content-Length": str(10 * 1024**3)})
    await response.prepare(request)
    await asyncio.sleep(60)
    return response


async def loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/loop")


def against(flow: Callable[[str, web.Application], Awaitable[None]]) -> None:
    """Run ``flow(base_url, app)`` with a local server of those handlers on this event loop."""

    async def main():
        app = web.Application()
        app[SENT] = [0]
        app.router.add_get("/endless", endless)
        app.router.add_get("/trickle", trickle)
        app.router.add_get("/announced", announced)
        app.router.add_get("/loop", loop)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            await flow(f"http://127.0.0.1:{runner.addresses[0][1]}", app)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_body_without_content_length_is_cut_at_the_limit():
    async def flow(base: str, app: web.Application) -> None:
        with pytest.raises(InvalidInput) as raised:
            await download(f"{base}/endless", max_bytes=1024 * 1024, timeout=10, field="image")
        assert str(raised.value) == "image is larger than 1 MB"
        await asyncio.sleep(0.2)  # the server notices the hang-up
        # Stopped soon after the limit (socket buffers hold a little more), not at the timeout.
        assert app[SENT][0] < 16 * 1024 * 1024

    began = time.monotonic()
    against(flow)
    assert time.monotonic() - began < 5


def test_a_content_length_over_the_limit_is_refused_before_the_body():
    async def flow(base: str, app: web.Application) -> None:
        with pytest.raises(InvalidInput) as raised:
            await download(f"{base}/announced", max_bytes=1024 * 1024, timeout=3, field="image")
        assert str(raised.value) == "image is larger than 1 MB"  # not the deadline's message

    against(flow)


def test_the_deadline_covers_a_body_that_trickles():
    async def flow(base: str, app: web.Application) -> None:
        began = time.monotonic()
        with pytest.raises(InvalidInput) as raised:
            await download(f"{base}/trickle", max_bytes=1000, timeout=0.5, field="image")
        assert str(raised.value) == "image download took longer than 0.5 s"
        assert time.monotonic() - began < 2

    against(flow)


def test_endless_redirects_are_refused():
    async def flow(base: str, app: web.Application) -> None:
        with pytest.raises(InvalidInput) as raised:
            await download(f"{base}/loop", max_bytes=1000, timeout=5, field="image")
        assert str(raised.value) == "could not download the image: 127.0.0.1 redirected it too many times"

    against(flow)
