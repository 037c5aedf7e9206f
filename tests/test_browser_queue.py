"""The review queue in a real browser (the Playwright setup of tests/test_browser.py): a
moderator takes the next item, watches the video, reads the report and resolves it; another
moderator sees it held and cannot decide it. Screenshots go to artifacts/browser/; with
VEOBOT_DOCS_SCREENSHOT set, the queue and an item page also to docs/ for the README."""

import io
import os
import shutil
from pathlib import Path

from django.core.management import call_command

from tests.factories import VideoRequestFactory
from tests.helpers import admit, next_interaction
from tests.test_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    browser,
    browser_context_args,
    browser_type,
    browser_type_launch_args,
    empty_tables,
    launch_browser,
    moderator,
    playwright,
    pytestmark,
    shot,
)
from tracking import services
from tracking.models import BlockedTerm, ReviewItem

DOCS = Path(__file__).resolve().parent.parent / "docs"


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#vb-index-links")


def reported(user_id: int, reason: str, **video) -> None:
    interaction = next_interaction()
    VideoRequestFactory(user_id=user_id, interaction_id=interaction, **video)
    services.report_request(interaction_id=interaction, reporter_id=4242, guild_id=2001, reason=reason)


def docs_copy(name: str) -> None:
    if os.environ.get("VEOBOT_DOCS_SCREENSHOT"):
        shutil.copy(ARTIFACTS / f"{name}.png", DOCS / f"{name}.png")


def test_two_moderators_work_the_queue(
    browser,  # noqa: F811 (the fixture imported above)
    live_server,
    empty_tables,  # noqa: F811
    moderator,  # noqa: F811
    settings,
    tmp_path,
    monkeypatch,
):
    settings.VEO_MEDIA_ROOT = tmp_path
    (tmp_path / "kraken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 2000)
    reported(31337, "shows a real <b>person</b> being attacked", prompt="a kraken attacking a ship",
             output_uris=["file:kraken.mp4"])  # fmt: skip
    reported(31338, "spam", prompt="a lighthouse in a storm")
    services.save_blocked_term(term=BlockedTerm(pattern="forbiddenword"), actor="ops")
    admit(user_id=31339, prompt="a forbiddenword at dawn")
    services.ban_user(user_id=31340, reason="spam links", actor="alice")
    services.appeals.file_appeal(user_id=31340, guild_id=None, interaction_id=next_interaction(), body="I was hacked")
    monkeypatch.setenv("MODERATOR_PASSWORD", "second-moderator-pass-7")
    call_command("create_moderator", "otto", stdout=io.StringIO())
    dialogs = []

    maria = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    maria.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(maria, live_server, *moderator)
    assert "4 open items" in maria.inner_text("#vb-queue-count")
    maria.click("#vb-queue-link")
    maria.wait_for_selector("#result_list")
    assert maria.locator("#result_list tbody tr").count() == 4
    shot(maria, "review-queue")
    docs_copy("review-queue")

    # Take the next: the oldest, the reported video.
    maria.click("#vb-take-next button")
    maria.wait_for_selector("#vb-item")
    assert "is yours" in maria.inner_text(".messagelist")
    video = maria.locator("#vb-item-request video.vb-player")
    assert video.count() == 1
    stream = maria.request.get(f"{live_server.url}{video.get_attribute('src')}", headers={"Range": "bytes=0-15"})
    assert stream.status == 206
    assert "shows a real <b>person</b> being attacked" in maria.inner_text("#vb-reports")  # text, not markup
    item_url = maria.url
    shot(maria, "review-item")
    docs_copy("review-item")

    # Otto sees it held: no decision form, and "take the next" does not hand it to him.
    otto = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(otto, live_server, "otto", "second-moderator-pass-7")
    otto.goto(item_url)
    assert "Claimed by maria" in otto.inner_text("#vb-decision")
    assert otto.locator("#vb-decide").count() == 0
    shot(otto, "review-item-held")
    otto.goto(f"{live_server.url}/admin/tracking/reviewitem/?kind__exact=report")
    otto.click("#vb-take-next button")
    otto.wait_for_selector("#vb-item")
    assert otto.url != item_url  # the other report, not maria's

    # Maria resolves it with a reason.
    maria.check("input[name=decision][value=remove_output]")
    maria.fill("#vb-decide textarea[name=reason]", "a real person in a violent scene")
    maria.click("#vb-decide button[value=resolve]")
    maria.wait_for_selector(".messagelist .success")
    assert "resolved: output of request" in maria.inner_text(".messagelist")
    assert maria.inner_text("#vb-item-state") == "Resolved"
    assert "a real person in a violent scene" in maria.inner_text("#vb-resolution")
    assert "resolve: remove_output" in maria.inner_text("#vb-item-history")
    shot(maria, "review-item-resolved")

    otto.goto(item_url)
    assert otto.inner_text("#vb-item-state") == "Resolved" and otto.locator("#vb-decide").count() == 0
    item = ReviewItem.objects.get(kind="report", user_id=31337)
    assert (item.decision, item.resolved_by) == ("remove_output", "maria")
    assert dialogs == []
    maria.context.close()
    otto.context.close()
