"""The review queue and the audit log in the panel, through the test client as moderators."""

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import VideoRequestFactory
from tests.helpers import admit, next_interaction
from tracking import services
from tracking.models import BlockedTerm, ModerationLogEntry, QuotaPolicy, Report, ReviewItem, UserBan, VideoRequest

pytestmark = [pytest.mark.django_db]

QUEUE = "/admin/tracking/reviewitem/"
LOG = "/admin/tracking/moderationlogentry/"


def item_url(item_id) -> str:
    return f"{QUEUE}{item_id}/change/"


def reported(user_id=31337, reason="shows a real person", **video) -> ReviewItem:
    """An item made as in production: a Discord user reports a request (a finished video when
    ``video`` fields are given, else one just admitted)."""
    interaction = next_interaction()
    if video:
        VideoRequestFactory(user_id=user_id, interaction_id=interaction, prompt="a fox on a bicycle", **video)
    else:
        admit(user_id=user_id, interaction_id=interaction, prompt="a fox on a bicycle")
    services.report_request(interaction_id=interaction, reporter_id=4242, guild_id=2001, reason=reason)
    return ReviewItem.objects.get(kind="report", user_id=user_id, state="open")


def texts(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def log_of(item: ReviewItem):
    return ModerationLogEntry.objects.filter(target_table="review_items", target_id=item.id).order_by("id")


@pytest.fixture
def mod(as_role):
    return as_role("moderator")


@pytest.fixture
def second_mod():
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user("otto", password="x-pass-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Moderators"))
    client = Client()
    client.force_login(user)
    return client


def test_the_queue_lists_open_items_oldest_first_with_links_and_no_n_plus_one(mod, django_assert_max_num_queries):
    first, second = reported(user_id=501), reported(user_id=502, reason="<b>bold</b> claim")
    resolved = reported(user_id=503)
    services.review.resolve(item_id=resolved.id, actor="mod", decision="dismiss", reason="fine")
    with django_assert_max_num_queries(12):
        page = mod.get(QUEUE)
    assert [obj.id for obj in page.context["cl"].result_list] == [first.id, second.id]
    body = page.content.decode()
    assert "&lt;b&gt;bold&lt;/b&gt;" in body and "<b>bold</b>" not in body
    assert "/admin/tracking/videorequest/user/501/" in body
    assert f"/admin/tracking/videorequest/{first.request_id}/change/" in body
    assert "2 items" in body and 'id="vb-take-next"' in body
    assert [o.id for o in mod.get(QUEUE + "?state=resolved").context["cl"].result_list] == [resolved.id]
    assert mod.get(QUEUE + "?kind__exact=appeal").context["cl"].result_list == []
    services.review.claim(item_id=first.id, actor="mod")
    assert [o.id for o in mod.get(QUEUE + "?claim=mine").context["cl"].result_list] == [first.id]
    assert [o.id for o in mod.get(QUEUE + "?claim=unclaimed").context["cl"].result_list] == [second.id]
    assert mod.get(QUEUE + "?claim=others").context["cl"].result_list == []
    index = mod.get("/admin/").content.decode()
    assert 'id="vb-queue-link"' in index and "2 open items" in index


def test_take_next_claims_the_oldest_and_says_when_the_queue_is_empty(mod):
    item = reported()
    response = mod.post(QUEUE + "take-next/", {"kind": "report"})
    assert response.status_code == 302 and response["Location"] == item_url(item.id)
    item.refresh_from_db()
    assert item.claimed_by == "mod"
    empty = mod.post(QUEUE + "take-next/", {"kind": ""}, follow=True)
    assert any("queue is empty" in text for text in texts(empty))
    bad = mod.post(QUEUE + "take-next/", {"kind": "nonsense"}, follow=True)
    assert any("unknown kind" in text for text in texts(bad))


def test_the_item_page_shows_the_request_video_and_reports_and_resolves(mod, media_root):
    (media_root / "fox.mp4").write_bytes(b"\x00" * 64)
    item = reported(reason="shows a <script>real</script> person", output_uris=["file:fox.mp4"])
    page = mod.get(item_url(item.id)).content.decode()
    assert f'src="/admin/tracking/videorequest/{item.request_id}/output/0/"' in page and "<video" in page
    assert "a fox on a bicycle" in page and "&lt;script&gt;real" in page and "<script>real" not in page
    assert 'id="vb-decide"' in page
    mod.post(item_url(item.id), {"op": "claim"})
    # No reason: refused, nothing changes.
    refused = mod.post(item_url(item.id), {"op": "resolve", "decision": "remove_output", "reason": "  "})
    assert refused.status_code == 200 and any("reason" in text for text in texts(refused))
    item.refresh_from_db()
    assert item.state == "open" and VideoRequest.objects.get(id=item.request_id).review_status != "removed"
    done = mod.post(
        item_url(item.id), {"op": "resolve", "decision": "remove_output", "reason": "real person"}, follow=True
    )
    assert any(f"Item #{item.id} resolved: output of request" in text for text in texts(done))
    item.refresh_from_db()
    assert (item.state, item.decision, item.resolved_by) == ("resolved", "remove_output", "mod")
    assert Report.objects.get(request_id=item.request_id).state == "actioned"
    assert "real person" in done.content.decode() and 'id="vb-reopen"' in done.content.decode()
    actions = [(e.actor, e.action, e.reason) for e in log_of(item)]
    assert ("mod", "claim", None) in actions or ("mod", "claim", "") in actions
    assert ("mod", "resolve: remove_output", "real person") in actions
    # Reopen needs a reason; with one it is open again and the reopener's.
    mod.post(item_url(item.id), {"op": "reopen", "reason": ""})
    item.refresh_from_db()
    assert item.state == "resolved"
    mod.post(item_url(item.id), {"op": "reopen", "reason": "second look"})
    item.refresh_from_db()
    assert (item.state, item.claimed_by) == ("open", "mod")
    assert ("mod", "reopen", "second look") in [(e.actor, e.action, e.reason) for e in log_of(item)]
    assert "second look" in mod.get(item_url(item.id)).content.decode()  # the history on the page


def test_a_second_moderator_cannot_take_or_decide_a_held_item(mod, second_mod):
    item = reported()
    mod.post(item_url(item.id), {"op": "claim"})
    page = second_mod.get(item_url(item.id)).content.decode()
    assert "Claimed by <strong>mod</strong>" in page and 'id="vb-decide"' not in page
    response = second_mod.post(item_url(item.id), {"op": "resolve", "decision": "approve", "reason": "fine"})
    assert any("claimed by mod until" in text for text in texts(response))
    claim = second_mod.post(item_url(item.id), {"op": "claim"}, follow=True)
    assert any("claimed by mod" in text for text in texts(claim))
    release = second_mod.post(item_url(item.id), {"op": "release"}, follow=True)
    assert any("not claimed by you" in text for text in texts(release))
    item.refresh_from_db()
    assert (item.state, item.claimed_by) == ("open", "mod")


def test_notes_and_bad_input_change_nothing(mod):
    item = reported()
    mod.post(item_url(item.id), {"op": "note", "body": "checked the <i>server</i>"})
    assert [n.body for n in item.notes.all()] == ["checked the <i>server</i>"]
    assert "checked the &lt;i&gt;server" in mod.get(item_url(item.id)).content.decode()
    assert log_of(item).filter(action="note").exists() is False  # notes are audited on their own table
    assert ModerationLogEntry.objects.filter(target_table="review_notes", action="note", actor="mod").exists()
    before = ModerationLogEntry.objects.count()
    for data in (
        {"op": "note", "body": "a\x00b"},
        {"op": "resolve", "decision": "burn", "reason": "x"},
        {"op": "resolve", "decision": "approve", "reason": "ok\x00"},
        {"op": "resolve", "decision": "ban", "reason": "spam", "scope": "everywhere", "expires_at": "2001-01-01 00:00"},
        {"op": "explode"},
    ):
        response = mod.post(item_url(item.id), data, follow=True)
        assert response.status_code == 200 and any("Nothing done" in text for text in texts(response)), data
    item.refresh_from_db()
    assert item.state == "open" and ModerationLogEntry.objects.count() == before and item.notes.count() == 1
    assert not UserBan.objects.exists()
    missing = mod.get(f"{QUEUE}abc/change/", follow=True)
    assert any("doesn’t exist" in text for text in texts(missing))
    assert mod.get(f"{QUEUE}99999999999999999999/change/").status_code == 302


def test_bulk_resolve_reports_resolved_and_skipped(mod, second_mod):
    free, held = reported(user_id=601), reported(user_id=602)
    second_mod.post(item_url(held.id), {"op": "claim"})
    selection = {"action": "resolve_items", "_selected_action": [free.id, held.id]}
    ask = mod.post(QUEUE, selection)
    assert ask.status_code == 200 and b"Nothing is done until you confirm" in ask.content
    no_reason = mod.post(QUEUE, {**selection, "apply": "1", "decision": "approve", "reason": ""})
    assert no_reason.status_code == 200 and ReviewItem.objects.filter(state="resolved").count() == 0
    done = mod.post(QUEUE, {**selection, "apply": "1", "decision": "approve", "reason": "harmless"}, follow=True)
    messages = texts(done)
    assert any(f"Item #{free.id} resolved" in text for text in messages)
    assert any(f"Item #{held.id} skipped" in text and "otto" in text for text in messages)
    assert ReviewItem.objects.get(id=free.id).decision == "approve"
    assert ReviewItem.objects.get(id=held.id).state == "open"
    junk = mod.post(QUEUE, {"action": "claim_items", "_selected_action": ["1x"]}, follow=True)
    assert any("no item id" in text for text in texts(junk))


def test_bulk_claim_and_release(mod, second_mod):
    one, two = reported(user_id=701), reported(user_id=702)
    second_mod.post(item_url(two.id), {"op": "claim"})
    claimed = mod.post(QUEUE, {"action": "claim_items", "_selected_action": [one.id, two.id]}, follow=True)
    assert any(f"Claimed: #{one.id}" in text for text in texts(claimed))
    assert any("claimed by otto" in text for text in texts(claimed))
    mod.post(QUEUE, {"action": "release_items", "_selected_action": [one.id]})
    assert ReviewItem.objects.get(id=one.id).claimed_by is None


def test_user_and_appeal_items_show_their_subject(mod):
    term = BlockedTerm(pattern="forbiddenword")
    services.save_blocked_term(term=term, actor="ops")
    admit(user_id=801, prompt="a forbiddenword here")
    blocked = ReviewItem.objects.get(kind="blocked_term", user_id=801)
    page = mod.get(item_url(blocked.id)).content.decode()
    assert 'id="vb-refused"' in page and "a forbiddenword here" in page
    assert 'value="remove_output"' not in page  # a user's item has no one video to remove
    ban_id = services.ban_user(user_id=802, reason="spam links", actor="alice")
    services.appeals.file_appeal(user_id=802, guild_id=None, interaction_id=next_interaction(), body="I was hacked")
    appeal = ReviewItem.objects.get(kind="appeal", user_id=802)
    page = mod.get(item_url(appeal.id)).content.decode()
    assert "I was hacked" in page and "spam links" in page and "banned by alice" in page
    mod.post(item_url(appeal.id), {"op": "resolve", "decision": "approve", "reason": "believable"})
    assert UserBan.objects.get(id=ban_id).lifted_by == "mod"


def test_the_audit_log_filters_searches_shows_and_exports(mod):
    item = reported(user_id=901)
    services.review.claim(item_id=item.id, actor="mod")
    services.review.resolve(item_id=item.id, actor="mod", decision="ban", reason="=cmd|evil")
    other = reported(user_id=902)
    services.review.claim(item_id=other.id, actor="otto")

    def listed(query: str) -> set[tuple[str, str]]:
        return {(e.actor, e.action) for e in mod.get(f"{LOG}?{query}").context["cl"].result_list}

    assert listed("actor=otto") == {("otto", "claim")}
    assert ("mod", "resolve: ban") in listed("action=resolve%3A+ban")
    assert all(
        table == "user_bans"
        for table in {e.target_table for e in mod.get(f"{LOG}?target_table=user_bans").context["cl"].result_list}
    )
    assert listed("from=2999-01-01") == set()
    assert any("date" in text for text in texts(mod.get(f"{LOG}?from=yesterday")))
    assert {
        e.target_id
        for e in mod.get(f"{LOG}?q={other.id}").context["cl"].result_list
        if e.target_table == "review_items"
    } == {other.id}
    assert {e.subject_user_id for e in mod.get(f"{LOG}?q=902").context["cl"].result_list} == {902}
    assert any("digits" in text for text in texts(mod.get(f"{LOG}?q=abc")))
    entry = ModerationLogEntry.objects.filter(
        target_table="review_items", target_id=item.id, action="resolve: ban"
    ).get()
    detail = mod.get(f"{LOG}{entry.id}/change/").content.decode()
    assert 'id="vb-diff"' in detail and "&quot;resolved&quot;" in detail and item_url(item.id) in detail
    export = mod.get(f"{LOG}export/?actor=mod&target_table=review_items")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert (
        rows and {row["actor"] for row in rows} == {"mod"} and {row["target_table"] for row in rows} == {"review_items"}
    )
    assert any(row["reason"] == "'=cmd|evil" for row in rows)  # no formula runs in a spreadsheet


@pytest.mark.parametrize("role", ["anonymous", "non_staff"])
def test_non_staff_are_sent_to_log_in(as_role, role):
    item = reported()
    client = as_role(role)
    for url in (QUEUE, item_url(item.id), LOG, LOG + "export/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), url
    client.post(item_url(item.id), {"op": "claim"})
    client.post(QUEUE + "take-next/")
    item.refresh_from_db()
    assert item.claimed_by is None


def test_moderators_work_the_queue_read_the_log_and_change_neither_policies_nor_log(mod):
    item = reported()
    services.review.claim(item_id=item.id, actor="mod")
    entry = ModerationLogEntry.objects.first()
    assert mod.get(QUEUE).status_code == 200 and mod.get(LOG).status_code == 200
    assert mod.get(f"{LOG}{entry.id}/change/").status_code == 200
    assert mod.get(f"{LOG}add/").status_code == 403
    assert mod.post(f"{LOG}{entry.id}/delete/", {"post": "yes"}).status_code == 403
    assert mod.get(f"{QUEUE}add/").status_code == 403
    assert mod.post(f"{QUEUE}{item.id}/delete/", {"post": "yes"}).status_code == 403
    assert ModerationLogEntry.objects.filter(id=entry.id).exists() and ReviewItem.objects.filter(id=item.id).exists()
    policy = QuotaPolicy.objects.create(user_id=5, quota_limit=3, quota_window="1 hour")
    assert mod.post(f"/admin/tracking/quotapolicy/{policy.id}/change/", {"quota_limit": 99}).status_code == 403
    assert mod.get("/admin/tracking/quotapolicy/add/").status_code == 403
