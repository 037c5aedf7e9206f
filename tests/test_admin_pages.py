"""The moderation panel through Django's test client: filters, search, escaping, the
video stream, export, dashboard and user page, and clear messages for bad input."""

import csv
import html
import io
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.factories import QuotaPolicyFactory, VideoRequestFactory
from tests.helpers import admit
from tests.image_files import png
from tracking import search, services
from tracking.models import BlockedTerm, DiscordAction, QuotaPolicy, UserBan, VideoRequest

pytestmark = pytest.mark.django_db

LIST = "/admin/tracking/videorequest/"
XSS = '<script>alert("x")</script>'


@pytest.fixture
def mod(as_role):
    return as_role("moderator")


def listed(response) -> set[int]:
    return {obj.id for obj in response.context["cl"].result_list}


def test_list_newest_first_with_an_estimate_not_a_count(mod, django_assert_max_num_queries):
    old = VideoRequestFactory(created_at=timezone.now() - timedelta(days=2))
    new = VideoRequestFactory()
    response = mod.get(LIST)
    assert [obj.id for obj in response.context["cl"].result_list] == [new.id, old.id]
    # A small table is counted, whatever the planner's statistics say (never analysed: 0).
    assert b"2 requests" in response.content and b"about" not in response.content


def test_a_large_table_is_shown_as_an_estimate_and_not_counted(mod):
    VideoRequestFactory()
    with connection.cursor() as cursor:  # what autovacuum records for a big table (rolled back after)
        cursor.execute("UPDATE pg_class SET reltuples = 250000 WHERE oid = 'video_requests'::regclass")
    response = mod.get(LIST)
    assert b"about 250,000 requests" in response.content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=failed", {"failed", "filtered"}),
        ("review_status__exact=flagged", {"flagged"}),
        ("duration_seconds__exact=8", {"eight"}),
        ("aspect_ratio__exact=9:16", {"portrait"}),
        ("resolution__exact=1080p", {"full_hd"}),
        ("guild=4242", {"guild"}),
        ("guild=dm", {"dm"}),
        ("safety=yes", {"filtered"}),
        ("delivered=yes", {"delivered"}),
        ("created_from=2020-01-02&created_to=2020-01-02", {"old"}),
    ],
)
def test_filters(mod, query, expected):
    rows = {
        "failed": VideoRequestFactory(status="failed"),
        "flagged": VideoRequestFactory(review_status="flagged"),
        "eight": VideoRequestFactory(duration_seconds=8),
        "portrait": VideoRequestFactory(aspect_ratio="9:16"),
        "full_hd": VideoRequestFactory(resolution="1080p"),
        "guild": VideoRequestFactory(guild_id=4242),
        "dm": VideoRequestFactory(guild_id=None),
        "cli": VideoRequestFactory(guild_id=None, source="cli"),  # no guild, and no direct message
        "filtered": VideoRequestFactory(status="failed", error_code="content_filtered", safety_filtered_count=1),
        "delivered": VideoRequestFactory(delivered_at=timezone.now(), delivery_method="interaction"),
        "old": VideoRequestFactory(created_at=timezone.now().replace(year=2020, month=1, day=2, hour=12)),
    }
    response = mod.get(f"{LIST}?{query}")
    assert listed(response) == {rows[name].id for name in expected}


def test_bad_filter_input_gets_a_message_not_an_error(mod):
    VideoRequestFactory()
    response = mod.get(f"{LIST}?guild=abc")
    assert response.status_code == 200 and listed(response) == set()
    assert "enter a guild id" in response.content.decode()
    response = mod.get(f"{LIST}?created_from=yesterday")
    assert response.status_code == 200 and "YYYY-MM-DD" in response.content.decode()


def test_date_hierarchy_drills_down(mod):
    day = timezone.now().replace(year=2025, month=3, day=14, hour=10)
    row = VideoRequestFactory(created_at=day)
    VideoRequestFactory(created_at=day + timedelta(days=40))
    response = mod.get(f"{LIST}?created_at__year=2025&created_at__month=3&created_at__day=14")
    assert listed(response) == {row.id}
    assert b"March 2025" in mod.get(f"{LIST}?created_at__year=2025").content


def test_full_text_search_over_prompts(mod):
    fox = VideoRequestFactory(prompt="A red fox running through fresh snow")
    VideoRequestFactory(prompt="A lighthouse in a storm")
    assert listed(mod.get(LIST, {"q": "foxes run"})) == {fox.id}  # English stemming
    assert listed(mod.get(LIST, {"q": '"fresh snow"'})) == {fox.id}
    assert listed(mod.get(LIST, {"q": "fox -snow"})) == set()
    assert listed(mod.get(LIST, {"q": "lighthouse or fox"})) == {fox.id, fox.id + 1}
    assert listed(mod.get(LIST, {"q": "((( & | ! fox"})) == {fox.id}  # odd input is just words


@pytest.mark.parametrize("words", ["((( & | !", "the", "of a the", "-"])
def test_a_search_with_nothing_to_look_for_says_so(mod, words):
    VideoRequestFactory(prompt="the end of a story")
    response = mod.get(LIST, {"q": words, "status__exact": "completed"})
    assert listed(response) == set() and response.context["cl"].query == words  # kept, to correct
    assert "Nothing to search for" in html.unescape(response.content.decode())


def test_search_by_request_id_user_id_and_interaction_id(mod):
    row = VideoRequestFactory(user_id=777)
    VideoRequestFactory(user_id=778)
    assert listed(mod.get(LIST, {"q": str(row.id)})) == {row.id}
    assert listed(mod.get(LIST, {"q": f"#{row.id}"})) == {row.id}
    assert listed(mod.get(LIST, {"q": "777"})) == {row.id}
    assert listed(mod.get(LIST, {"q": str(row.interaction_id)})) == {row.id}
    assert listed(mod.get(LIST, {"q": "9" * 30})) == set()


def test_user_text_is_escaped_everywhere(mod, media_root):
    row = VideoRequestFactory(
        prompt=f"a fox {XSS}",
        negative_prompt=XSS,
        error_message=XSS,
        safety_filtered_count=1,
        safety_filtered_reasons=[XSS],
        output_uris=[f"file:{XSS}.mp4"],
        review_note=XSS,
        review_status="flagged",
    )
    services.flag(request_ids=[row.id], actor="alice", reason=XSS)  # no-op (already flagged)
    services.add_review_note(request_id=row.id, actor="alice", reason=XSS)
    services.ban_user(user_id=row.user_id, reason=XSS, actor="alice", request_ids=[row.id])
    pages = [
        LIST,
        f"{LIST}?q=fox",
        f"{LIST}{row.id}/change/",
        f"{LIST}user/{row.user_id}/",
        f"{LIST}dashboard/",
        "/admin/tracking/userban/",
        "/admin/admin/logentry/",
    ]
    for page in pages:
        body = mod.get(page).content.decode()
        assert XSS not in body, page
    detail = mod.get(f"{LIST}{row.id}/change/").content.decode()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in detail
    # The action page lists prompts too.
    body = mod.post(LIST, {"action": "flag_requests", "_selected_action": [row.id], "index": 0}).content.decode()
    assert XSS not in body and "&lt;script&gt;" in body


def test_the_video_is_streamed_to_staff_with_range_support(mod, media_root):
    (media_root / "a").mkdir()
    (media_root / "a" / "v.mp4").write_bytes(bytes(range(256)) * 4)  # 1024 bytes
    row = VideoRequestFactory(output_uris=["file:a/v.mp4"])
    url = f"{LIST}{row.id}/output/0/"
    assert f'src="{url}"' in mod.get(f"{LIST}{row.id}/change/").content.decode()

    whole = mod.get(url)
    assert whole.status_code == 200 and whole["Content-Type"] == "video/mp4" and whole["Accept-Ranges"] == "bytes"
    assert b"".join(whole.streaming_content) == bytes(range(256)) * 4
    assert whole["Content-Disposition"] == f'inline; filename="veobot-request-{row.id}-0.mp4"'

    part = mod.get(url, HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206 and part["Content-Range"] == "bytes 10-19/1024"
    assert b"".join(part.streaming_content) == bytes(range(10, 20)) and part["Content-Length"] == "10"
    tail = mod.get(url, HTTP_RANGE="bytes=-4")
    assert tail["Content-Range"] == "bytes 1020-1023/1024"
    open_end = mod.get(url, HTTP_RANGE="bytes=1000-")
    assert open_end["Content-Range"] == "bytes 1000-1023/1024"
    beyond = mod.get(url, HTTP_RANGE="bytes=5000-6000")
    assert beyond.status_code == 416 and beyond["Content-Range"] == "bytes */1024"
    assert mod.get(url, HTTP_RANGE="bytes=0-1,5-6").status_code == 200  # multi-range: the whole file


@pytest.mark.parametrize(
    "uri",
    [
        "file:../secret.mp4",
        "file:/etc/passwd",
        "file:a/../../secret.mp4",
        "file:link.mp4",
        "file:",
        "s3://bucket/x.mp4",
    ],
)
def test_no_path_traversal(mod, media_root, uri):
    (media_root.parent / "secret.mp4").write_bytes(b"secret")
    (media_root / "link.mp4").symlink_to(media_root.parent / "secret.mp4")
    row = VideoRequestFactory(output_uris=[uri])
    assert mod.get(f"{LIST}{row.id}/output/0/").status_code == 404


def test_removed_outputs_are_not_served(mod, media_root):
    (media_root / "v.mp4").write_bytes(b"x" * 10)
    row = VideoRequestFactory(output_uris=["file:v.mp4"], review_status="removed")
    assert mod.get(f"{LIST}{row.id}/output/0/").status_code == 404
    assert mod.get(f"{LIST}{row.id}/output/1/").status_code == 404


def test_gcs_outputs_play_from_their_https_link_only(mod):
    row = VideoRequestFactory(
        output_uris=["gs://b/o.mp4", "gs://b/p.mp4"],
        public_urls=["https://storage.googleapis.com/b/o.mp4", "javascript:alert(1)"],
    )
    body = mod.get(f"{LIST}{row.id}/change/").content.decode()
    assert 'src="https://storage.googleapis.com/b/o.mp4"' in body
    assert 'src="javascript' not in body and 'href="javascript' not in body  # shown as text, never as a link


def test_detail_shows_timeline_discord_link_and_reasons(mod):
    answer = admit(prompt="a fox in the snow")
    services.mark_generating(request_id=answer.request_id, operation_name="operations/1")
    services.mark_failed(
        request_id=answer.request_id,
        error_code="content_filtered",
        error_message="filtered",
        safety_filtered_count=1,
        safety_filtered_reasons=["Violence"],
    )
    services.flag(request_ids=[answer.request_id], actor="alice", reason="check this")
    row = VideoRequest.objects.get(id=answer.request_id)
    body = mod.get(f"{LIST}{row.id}/change/").content.decode()
    for text in ("Timeline", "Status Changed", "Review Changed", "check this", "alice", "Violence", "content_filtered"):
        assert text in body, text
    VideoRequest.objects.filter(id=row.id).update(discord_message_id=55)
    assert "https://discord.com/channels/2001/3001/55" in mod.get(f"{LIST}{row.id}/change/").content.decode()


def test_an_action_without_a_reason_asks_again(mod):
    row = VideoRequestFactory()
    response = mod.post(LIST, {"action": "flag_requests", "_selected_action": [row.id], "apply": "1", "reason": ""})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    row.refresh_from_db()
    assert row.review_status == "unreviewed"


def test_a_ban_with_a_past_expiry_is_refused_with_a_message(mod):
    row = VideoRequestFactory()
    response = mod.post(
        LIST,
        {
            "action": "ban_users",
            "_selected_action": [row.id],
            "apply": "1",
            "reason": "spam",
            "scope": "everywhere",
            "expires_at": "2001-01-01 00:00",
        },
        follow=True,
    )
    page = response.content.decode()
    assert "must be in the future" in page and not UserBan.objects.exists()
    # The form again, the reason as typed: nothing to type twice.
    assert response.redirect_chain == [] and "spam</textarea>" in page


def test_an_action_page_asks_before_anything_is_done_and_reports_once(mod):
    rows = [VideoRequestFactory(user_id=901), VideoRequestFactory(user_id=901)]
    ask = mod.post(LIST, {"action": "ban_users", "_selected_action": [r.id for r in rows]})
    page = ask.content.decode()
    assert "Ban the user(s): 2 requests selected. Nothing is done until you confirm below." in page
    assert 'type="submit" name="apply" value="Ban the user(s)"' in page and "User banned" not in page
    done = mod.post(
        LIST,
        {
            "action": "ban_users",
            "_selected_action": [r.id for r in rows],
            "apply": "1",
            "reason": "spam",
            "scope": "everywhere",
            "expires_at": "",
        },
        follow=True,
    )
    said = [str(m) for m in done.context["messages"]]
    assert said == ["Banned 1 user(s), from their next request (2 request(s))."]


def test_a_guild_ban_from_the_list_and_from_the_detail_page(mod):
    row = VideoRequestFactory(guild_id=4242)
    response = mod.post(
        LIST,
        {
            "action": "ban_users",
            "_selected_action": [row.id],
            "apply": "1",
            "reason": "spam",
            "scope": "guild",
            "expires_at": "2999-01-01 00:00",
            "_from_detail": str(row.id),
        },
    )
    assert response["Location"] == f"{LIST}{row.id}/change/"
    ban = UserBan.objects.get()
    assert (ban.user_id, ban.guild_id, ban.banned_by, ban.expires_at.year) == (1001, 4242, "mod", 2999)


def test_bulk_actions_are_bounded(mod):
    VideoRequestFactory.create_batch(3)
    from tracking.admin import actions as admin_actions

    admin_actions.ACTION_LIMIT, saved = 2, admin_actions.ACTION_LIMIT
    try:
        response = mod.post(
            LIST,
            {
                "action": "flag_requests",
                "select_across": "1",
                "index": 0,
                "_selected_action": [VideoRequest.objects.first().id],
            },
            follow=True,
        )
    finally:
        admin_actions.ACTION_LIMIT = saved
    assert "at most 2 requests" in response.content.decode()


def test_export_streams_the_filtered_list_as_csv(mod):
    VideoRequestFactory(prompt='=HYPERLINK("http://evil") fox', status="failed")
    VideoRequestFactory(prompt="a calm lake", status="completed")
    response = mod.get(f"{LIST}export/?status__exact=failed")
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1 and rows[0]["status"] == "failed"
    assert rows[0]["prompt"].startswith("'=")  # no formula runs in a spreadsheet


def test_dashboard_and_user_page(mod):
    VideoRequestFactory(user_id=31337, guild_id=4242)
    services.ban_user(user_id=31337, reason="spam", actor="alice")
    board = mod.get(f"{LIST}dashboard/").content.decode()
    assert "<svg" in board and "31337" in board and "4242" in board and "p95" in board
    assert "cdn" not in board.lower() and '<script src="http' not in board
    assert mod.get(f"{LIST}dashboard/?days=1").status_code == 200
    assert mod.get(f"{LIST}dashboard/?days=bogus").status_code == 200
    page = mod.get(f"{LIST}user/31337/").content.decode()
    assert "banned" in page and "spam" in page and "quota used" in page


def test_blocked_term_form_shows_the_database_refusal(mod):
    response = mod.post("/admin/tracking/blockedterm/add/", {"kind": "regex", "pattern": "(a)\\1", "message": ""})
    assert response.status_code == 200 and "back-references" in response.content.decode()
    response = mod.post("/admin/tracking/blockedterm/add/", {"kind": "regex", "pattern": "(oops", "message": ""})
    assert "parentheses" in response.content.decode()
    assert not BlockedTerm.objects.exists()
    response = mod.post(
        "/admin/tracking/blockedterm/add/", {"kind": "word", "pattern": "kraken", "enabled": "on", "message": ""}
    )
    assert response.status_code == 302 and BlockedTerm.objects.get().created_by == "mod"
    response = mod.post(
        "/admin/tracking/blockedterm/add/", {"kind": "word", "pattern": "Kraken", "enabled": "on", "message": ""}
    )
    assert "already blocked" in response.content.decode()


def test_quota_policy_and_ban_forms_report_constraint_violations(mod, as_role):
    operator = as_role("superuser")  # policies are the operator's (moderators read them)
    response = operator.post(
        "/admin/tracking/quotapolicy/add/", {"quota_limit": 3, "quota_window": "1 00:00:00", "note": ""}
    )
    assert response.status_code == 200 and "Set a user id, a guild id, or both" in response.content.decode()
    response = operator.post(
        "/admin/tracking/quotapolicy/add/", {"user_id": 5, "quota_limit": 3, "quota_window": "00:00:05", "note": ""}
    )
    assert "between 1 minute and 366 days" in response.content.decode()
    response = mod.post("/admin/tracking/userban/add/", {"user_id": 5, "reason": "spam"})
    assert response.status_code == 302 and UserBan.objects.get().banned_by == "mod"
    assert not admit(user_id=5).admitted


def test_a_search_that_runs_too_long_is_stopped_with_a_message(mod, monkeypatch):
    from tracking.admin import requests as admin_requests

    VideoRequestFactory(prompt="a fox")
    # pg_sleep in the search condition stands in for a plan misjudged over millions of rows.
    monkeypatch.setattr(admin_requests, "SEARCH_TIMEOUT_MS", 200)
    monkeypatch.setattr(search, "MATCHES", "pg_sleep(0.5) IS NOT NULL AND prompt <> %s")
    response = mod.get(LIST, {"q": "fox", "status__exact": "completed"}, follow=True)
    assert response.status_code == 200 and "took longer than" in response.content.decode()
    assert response.redirect_chain[-1][0] == f"{LIST}?status__exact=completed"


def test_the_request_page_form_changes_the_review_or_adds_a_note(mod, django_capture_on_commit_callbacks):
    from tracking.models import VideoRequestEvent

    row = VideoRequestFactory(discord_message_id=5)
    url = f"{LIST}{row.id}/change/"
    assert mod.post(url, {"review_status": "flagged", "review_note": "why not"}).status_code == 302
    with django_capture_on_commit_callbacks(execute=True):
        mod.post(url, {"review_status": "removed", "review_note": "gore"})
    row.refresh_from_db()
    assert row.review_status == "removed" and row.discord_actions.count() == 1
    assert mod.post(url, {"review_note": "kept for the report"}).status_code == 302  # removed: only a note
    kinds = list(VideoRequestEvent.objects.filter(request_id=row.id).values_list("kind", flat=True))
    assert sorted(kinds) == ["note", "output_removed", "review_changed", "review_changed"]
    response = mod.post(url, {"review_note": ""})
    assert response.status_code == 200 and "This field is required" in response.content.decode()


def test_search_results_page_without_counting(mod):
    VideoRequestFactory.create_batch(3, prompt="a fox on ice")
    from tracking.admin.requests import VideoRequestAdmin

    VideoRequestAdmin.list_per_page, saved = 2, VideoRequestAdmin.list_per_page
    try:
        first = mod.get(LIST, {"q": "fox"})
        second = mod.get(LIST, {"q": "fox", "p": 2})
    finally:
        VideoRequestAdmin.list_per_page = saved
    assert len(listed(first)) == 2 and len(listed(second)) == 1 and not listed(first) & listed(second)
    assert "matches 1–2, more on the next page" in first.content.decode()
    assert "matches 3–3" in second.content.decode() and "older ›" not in second.content.decode()


ATTRIBUTE_XSS = 'x" onmouseover="alert(1)'


def test_moderator_and_operator_text_is_escaped_too(as_role, media_root):
    """Blocked terms, policy notes, outbox reasons and errors, audit actors, file names and
    the search box: nothing typed by anyone comes back as markup, in text or attributes."""
    from io import StringIO

    from django.core.management import call_command

    row = VideoRequestFactory(
        output_uris=[f"file:{ATTRIBUTE_XSS}.mp4"],
        discord_message_id=99,
        delivered_at=timezone.now(),
        delivery_method="interaction",
    )
    services.save_blocked_term(term=BlockedTerm(pattern=XSS, message=XSS), actor=XSS)
    services.save_quota_policy(policy=QuotaPolicyFactory.build(user_id=row.user_id, note=XSS), actor=XSS)
    ban = services.ban_user(user_id=row.user_id, reason=ATTRIBUTE_XSS + XSS, actor="alice")
    services.remove_output(request_ids=[row.id], actor="alice", reason=XSS)
    action = DiscordAction.objects.get(request_id=row.id)
    services.finish_discord_action(action_id=action.id, error=XSS)
    call_command("purge_requests", "--actor", XSS, stdout=StringIO())
    pages = [
        f"{LIST}{row.id}/change/",
        f"{LIST}user/{row.user_id}/",
        "/admin/tracking/blockedterm/",
        f"/admin/tracking/blockedterm/{BlockedTerm.objects.get().id}/change/",
        "/admin/tracking/quotapolicy/",
        "/admin/tracking/userban/",
        f"/admin/tracking/userban/{ban}/change/",
        "/admin/tracking/discordaction/",
        f"/admin/tracking/discordaction/{action.id}/change/",
        "/admin/tracking/datalifecycleaudit/",
        f"{LIST}?q={XSS}",
        f"{LIST}?q={ATTRIBUTE_XSS}",
        f"{LIST}?guild={XSS}",
    ]
    client = as_role("superuser")
    for page in pages:
        response = client.get(page)
        body = response.content.decode()
        assert response.status_code == 200, page
        assert XSS not in body and '" onmouseover="' not in body, page
    assert "&lt;script&gt;" in client.get("/admin/tracking/discordaction/").content.decode()


# -- a request's family and the frames it gave Veo ---------------------------------------------


def test_the_family_links_parent_and_children_both_ways(mod):
    parent = VideoRequestFactory()
    reroll = VideoRequestFactory(parent=parent, derived_as="reroll", user_id=4321)
    extension = VideoRequestFactory(
        parent=parent, derived_as="extend", video_input_uri=parent.output_uris[0], resolution="720p", duration_seconds=8
    )

    page = mod.get(f"{LIST}{parent.id}/change/").content.decode()
    assert (
        f'href="/admin/tracking/videorequest/{reroll.id}/change/">request #{reroll.id}</a> (completed) by user 4321'
        in page
    )
    assert "Extension: <a" in page and f"request #{extension.id}" in page

    child = mod.get(f"{LIST}{extension.id}/change/").content.decode()
    assert (
        f'This is extension of <a href="/admin/tracking/videorequest/{parent.id}/change/">request #{parent.id}</a>'
        in child
    )
    assert "Extends the video of" in child and parent.output_uris[0] in child

    orphan = VideoRequestFactory(derived_as="edit")  # its parent was erased
    assert "This is edit of a request that was erased" in mod.get(f"{LIST}{orphan.id}/change/").content.decode()


def test_input_frames_are_shown_and_served_as_images_until_removed(mod, media_root, django_capture_on_commit_callbacks):
    (media_root / "inputs").mkdir()
    (media_root / "inputs" / "1-image.png").write_bytes(png(2, 2))
    (media_root / "inputs" / "1-last_frame.png").write_bytes(png(3, 3))
    row = VideoRequestFactory(image_uri="file:inputs/1-image.png", last_frame_uri="file:inputs/1-last_frame.png")

    page = mod.get(f"{LIST}{row.id}/change/").content.decode()
    assert f'<img src="{LIST}{row.id}/input/image/"' in page and f'<img src="{LIST}{row.id}/input/last_frame/"' in page
    image = mod.get(f"{LIST}{row.id}/input/image/")
    assert image["Content-Type"] == "image/png" and b"".join(image.streaming_content) == png(2, 2)
    assert image["X-Content-Type-Options"] == "nosniff"
    assert mod.get(f"{LIST}{row.id}/input/prompt/").status_code == 404  # only the two kinds

    with django_capture_on_commit_callbacks(execute=True):
        services.remove_output(request_ids=[row.id], actor="mod", reason="not allowed")
    assert mod.get(f"{LIST}{row.id}/input/image/").status_code == 404
    assert not (media_root / "inputs" / "1-image.png").exists()  # removed with the output
    assert "removed with the request's output" in mod.get(f"{LIST}{row.id}/change/").content.decode()


@pytest.mark.parametrize("model", ["userban", "quotapolicy", "blockedterm"])
def test_add_forms_show_no_database_defaults(as_role, model):
    page = as_role("superuser").get(f"/admin/tracking/{model}/add/")
    body = page.content.decode()
    assert page.status_code == 200 and "DatabaseDefault" not in body and "object at 0x" not in body
    assert "Created at" not in body  # stamped when saved, shown from then on


def test_labels_read_as_people_write_them(mod, as_role):
    row = VideoRequestFactory(resolution="1080p", source="cli", guild_id=None)
    QuotaPolicyFactory(user_id=31, quota_limit=3, quota_window=timedelta(hours=24))
    page = mod.get(f"{LIST}{row.id}/change/").content.decode()
    assert "Full Hd" not in page and "Cli" not in page
    listing = mod.get(f"{LIST}?resolution__exact=1080p").content.decode()
    assert ">1080p<" in listing and "Full Hd" not in listing
    policies = as_role("superuser").get("/admin/tracking/quotapolicy/").content.decode()
    assert '<td class="field-window">24h</td>' in policies and "1 day, 0:00:00" not in policies
    assert str(QuotaPolicyFactory.build(quota_limit=5, quota_window=timedelta(days=7))) == "5 per 7d"


@pytest.mark.parametrize(
    ("typed", "stored", "shown"),
    [
        ("24h", timedelta(hours=24), "24h"),
        ("1h 30m", timedelta(minutes=90), "1h 30m"),
        ("7d", timedelta(days=7), "7d"),
        ("1 00:00:00", timedelta(days=1), "24h"),
    ],
)
def test_a_quota_window_is_typed_and_shown_as_the_readme_writes_it(as_role, typed, stored, shown):
    admin = as_role("superuser")
    response = admin.post(
        "/admin/tracking/quotapolicy/add/",
        {"user_id": "77", "guild_id": "", "quota_limit": "3", "quota_window": typed, "max_in_flight": "", "note": ""},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = QuotaPolicy.objects.get(user_id=77)
    assert policy.quota_window == stored
    form = admin.get(f"/admin/tracking/quotapolicy/{policy.id}/change/").content.decode()
    assert f'value="{shown}"' in form and "Rolling window:" in form and "00:00:00" not in form


def test_a_window_that_is_no_duration_says_how_to_write_one(as_role):
    response = as_role("superuser").post(
        "/admin/tracking/quotapolicy/add/", {"user_id": "77", "quota_limit": "3", "quota_window": "a day", "note": ""}
    )
    assert response.status_code == 200 and not QuotaPolicy.objects.filter(user_id=77).exists()
    assert "Write a duration like &quot;24h&quot;" in response.content.decode()


def test_the_breadcrumb_names_each_level_once(mod):
    row = VideoRequestFactory()
    page = mod.get(f"{LIST}{row.id}/change/").content.decode()
    crumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', page, re.S)[1]
    crumbs = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", crumbs)))
    assert crumbs.strip() == f"Home › Moderation › Video requests › #{row.id} completed"


@pytest.mark.parametrize(
    ("fields", "offered", "not_offered"),
    [
        ({"status": "pending"}, "Cancel (pending or generating)", None),
        ({"status": "completed"}, "Approve", "Cancel (pending or generating)"),
        ({"status": "failed", "counts_toward_quota": False}, "Approve", "Refund"),
        ({"review_status": "removed"}, "Approve", "Remove output"),
    ],
)
def test_the_request_page_offers_only_actions_that_can_do_something(mod, fields, offered, not_offered):
    row = VideoRequestFactory(**fields)
    buttons = re.findall(
        r'name="vb_action" value="[a-z_]+">([^<]+)</button>', mod.get(f"{LIST}{row.id}/change/").content.decode()
    )
    assert any(b.startswith(offered) for b in buttons), buttons
    if not_offered:
        assert not any(b.startswith(not_offered) for b in buttons), buttons


def test_the_timeline_shows_lists_as_text_not_python(mod, media_root):
    row = VideoRequestFactory(output_uris=["file:a.mp4", "file:b.mp4"])
    services.remove_output(request_ids=[row.id], actor="mod", reason="not allowed")
    page = mod.get(f"{LIST}{row.id}/change/").content.decode()
    assert "<strong>outputs:</strong> file:a.mp4, file:b.mp4</div>" in page and "[&#x27;file:" not in page
