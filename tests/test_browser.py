"""The moderator's main flows in a real browser: Debian's Chromium driven by Playwright
against live_server. Screenshots go to artifacts/browser/ (git-ignored).

Skipped, with the reason printed, when /usr/bin/chromium is absent (.ci/run installs it).
"""

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.factories import VideoRequestFactory
from tests.helpers import admit
from tracking.models import UserBan, VideoRequest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browser"
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "moderation.png"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
    # live_server serves from another thread, so rows must be committed.
    pytest.mark.django_db(transaction=True),
]

# Playwright's sync API runs an event loop in this thread; the ORM calls made here (test
# data) are ordinary blocking calls, which Django refuses inside a loop unless told.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


# pytest-playwright keeps one Playwright (and the event loop it runs in this thread) for
# the whole session; later tests that call asyncio.run() would then fail. These overrides
# start it for this module only.
@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser_type(playwright, browser_name):
    return getattr(playwright, browser_name)


@pytest.fixture(scope="module")
def launch_browser(browser_type_launch_args, browser_type):
    return lambda **kwargs: browser_type.launch(**{**browser_type_launch_args, **kwargs})


@pytest.fixture(scope="module")
def browser_context_args():
    return {"viewport": {"width": 1280, "height": 900}}


@pytest.fixture(scope="module")
def browser(launch_browser):
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "headless": True,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture
def empty_tables():
    """Committed rows of earlier transactional tests survive their flush (Django flushes
    only managed tables): start from empty request tables."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE video_requests, user_bans, quota_policies, blocked_terms CASCADE")


@pytest.fixture
def moderator(monkeypatch):
    import io

    from django.core.management import call_command

    monkeypatch.setenv("MODERATOR_PASSWORD", "moderate-with-care-42")
    call_command("create_moderator", "maria", stdout=io.StringIO())
    return "maria", "moderate-with-care-42"


def logged_in_page(browser, live_server, moderator, *, width: int, height: int):
    """A new page of that size, logged in as the moderator."""
    page = browser.new_page(viewport={"width": width, "height": height})
    username, password = moderator
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    return page


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_moderator_flow(page, live_server, empty_tables, moderator, settings, tmp_path):
    settings.VEO_MEDIA_ROOT = tmp_path
    (tmp_path / "fox.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 2000)
    VideoRequestFactory.create_batch(5, user_id=4444)
    suspect = VideoRequestFactory(
        user_id=31337,
        prompt="a kraken attacking a <script>alert(1)</script> ship",
        output_uris=["file:fox.mp4"],
        channel_id=3001,
        discord_message_id=91,
    )
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    username, password = moderator

    # Log in.
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#vb-index-links")
    shot(page, "01-index")

    # Search the prompts.
    page.click("#vb-index-links >> text=Requests")
    page.fill("#searchbar", "kraken")
    page.press("#searchbar", "Enter")
    page.wait_for_selector("#result_list")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert "<script>" in rows.first.inner_text()  # shown as text, not run
    shot(page, "02-search")

    # Open the request: prompt, player, timeline.
    rows.first.locator("th a").click()
    page.wait_for_selector("#vb-summary")
    video = page.locator("video.vb-player")
    assert video.count() == 1
    src = video.get_attribute("src")
    stream = page.request.get(f"{live_server.url}{src}", headers={"Range": "bytes=0-15"})
    assert stream.status == 206 and stream.headers["content-type"] == "video/mp4"
    shot(page, "03-request")

    # Flag it with a reason.
    page.click("button[value=flag_requests]")
    page.fill("textarea[name=reason]", "looks like violent content")
    page.click("input[name=apply]")
    page.wait_for_selector("#vb-timeline")
    assert "Flagged: 1 request" in page.inner_text(".messagelist")
    assert "looks like violent content" in page.inner_text("#vb-timeline")
    shot(page, "04-flagged")

    # Ban the user.
    page.click("button[value=ban_users]")
    page.fill("textarea[name=reason]", "repeated violent prompts")
    page.check("input[name=scope][value=everywhere]")
    shot(page, "05-ban-form")
    page.click("input[name=apply]")
    page.wait_for_selector("#vb-timeline")
    assert "Banned 1 user" in page.inner_text(".messagelist")
    assert UserBan.objects.get(user_id=31337).banned_by == username
    assert VideoRequest.objects.get(id=suspect.id).review_status == "flagged"
    assert not admit(user_id=31337).admitted  # the next request is refused

    # See it on the dashboard and the user's page.
    page.goto(f"{live_server.url}/admin/tracking/videorequest/dashboard/")
    page.wait_for_selector("#vb-dashboard svg")
    assert "31337" in page.inner_text("#vb-top-users")
    shot(page, "06-dashboard")
    page.goto(f"{live_server.url}/admin/tracking/videorequest/user/31337/")
    assert re.search(r"banned", page.inner_text("#vb-ban-state"))
    assert "repeated violent prompts" in page.inner_text("#vb-ban-state")
    shot(page, "07-user")
    assert dialogs == []  # no script ever ran an alert()

    if os.environ.get("VEOBOT_DOCS_SCREENSHOT"):
        page.goto(f"{live_server.url}/admin/tracking/videorequest/{suspect.id}/change/")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(ARTIFACTS / "readme.png"))
        shutil.copy(ARTIFACTS / "readme.png", DOCS_SCREENSHOT)


def test_non_staff_and_anonymous_get_the_login_page(page, live_server):
    page.goto(f"{live_server.url}/admin/tracking/videorequest/")
    assert page.url.startswith(f"{live_server.url}/admin/login/")
    shot(page, "00-login")


def test_the_list_fits_a_laptop_screen(browser, live_server, empty_tables, moderator):
    """At 1366 px, the width of most laptops, every column is on screen and a prompt reads as
    lines of text, not a word per line."""
    for n in range(8):
        VideoRequestFactory(
            user_id=1180000000000000000 + n,
            guild_id=1180000000000000100,
            prompt="a red fox running through fresh snow at dawn, the camera following low and close " * 3,
            safety_filtered_count=n % 2,
            review_status="flagged" if n % 3 == 0 else "unreviewed",
        )
    page = logged_in_page(browser, live_server, moderator, width=1366, height=768)
    page.goto(f"{live_server.url}/admin/tracking/videorequest/")
    page.wait_for_selector("#result_list")
    shot(page, "10-list-1366")

    shown = page.locator("#changelist .results").bounding_box()  # past its right edge: scrolled out of view
    for column in ("review_badge", "safety_marker"):
        header = page.locator(f"#result_list thead th.column-{column}").bounding_box()
        assert header["x"] + header["width"] <= shown["x"] + shown["width"], (column, header, shown)
    prompt = page.locator("#result_list tbody td.field-prompt_excerpt").first.bounding_box()
    assert prompt["width"] >= 220, prompt
    page.close()


def test_the_dashboard_spend_in_a_browser(browser, live_server, empty_tables, moderator, settings):
    """The spend tables and budgets as a moderator sees them (docs/dashboard-spend.png with
    VEOBOT_DOCS_SCREENSHOT=1)."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from tests.factories import QuotaPolicyFactory

    settings.VEO_BUDGET_USD_PER_DAY = Decimal(50)
    guilds = (812345678901234567, 812345678901234568, None)
    for n in range(24):
        cost = Decimal("3.20") if n % 3 else Decimal("0.40")
        status = "failed" if n % 7 == 6 else "completed"
        VideoRequestFactory(
            user_id=700000000000000000 + n % 5,
            guild_id=guilds[n % 3],
            model="veo-3.1-generate-001" if n % 3 else "veo-3.1-fast-generate-001",
            status=status,
            created_at=timezone.now() - timedelta(hours=7 * n),
            cost_estimated_usd=cost,
            cost_final_usd=cost if status == "completed" else 0,
        )
    QuotaPolicyFactory(
        guild_id=guilds[0],
        guild_budget_usd=100,
        guild_budget_window=timedelta(days=7),
        budget_usd=15,
        budget_window=timedelta(days=7),
    )
    page = logged_in_page(browser, live_server, moderator, width=1280, height=900)
    page.goto(f"{live_server.url}/admin/tracking/videorequest/dashboard/?days=7")
    money = page.locator("#vb-money")
    money.wait_for()
    assert "812345678901234567" in page.inner_text("#vb-guild-budgets")
    assert "$" in page.inner_text("#vb-spend-guilds tfoot")
    money.screenshot(path=str(ARTIFACTS / "11-dashboard-spend.png"))
    if os.environ.get("VEOBOT_DOCS_SCREENSHOT"):
        shutil.copy(ARTIFACTS / "11-dashboard-spend.png", DOCS_SCREENSHOT.with_name("dashboard-spend.png"))
    page.close()
