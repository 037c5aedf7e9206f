"""Who reaches what: anonymous, non-staff, moderator, superuser × every page and action."""

import io
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.db import connection

from tests.factories import VideoRequestFactory
from tracking.models import DataLifecycleAudit, DiscordAction, QuotaPolicy, UserBan, VideoRequest, VideoRequestEvent

pytestmark = pytest.mark.django_db

LIST = "/admin/tracking/videorequest/"
PAGES = {
    "list": LIST,
    "detail": LIST + "{id}/change/",
    "dashboard": LIST + "dashboard/",
    "user page": LIST + "user/1001/",
    "export": LIST + "export/",
    "output": LIST + "{id}/output/0/",
}
ACTIONS = ["approve_requests", "flag_requests", "remove_outputs", "refund_requests", "ban_users", "cancel_requests"]


def effect(action: str, row: VideoRequest) -> bool:
    """Whether the action changed anything, read from the database."""
    row.refresh_from_db()
    return {
        "approve_requests": row.review_status == "approved",
        "flag_requests": row.review_status == "flagged",
        "remove_outputs": row.review_status == "removed",
        "refund_requests": not row.counts_toward_quota,
        "ban_users": UserBan.objects.filter(user_id=row.user_id).exists(),
        "cancel_requests": row.status == "cancelled",
    }[action]


def make_row(action: str, media_root) -> VideoRequest:
    (media_root / "v.mp4").write_bytes(b"0123456789")
    status = "pending" if action == "cancel_requests" else "completed"
    return VideoRequestFactory(
        status=status,
        output_uris=["file:v.mp4"] if status == "completed" else [],
        discord_message_id=99 if status == "completed" else None,
    )


@pytest.mark.parametrize("page_name", PAGES)
@pytest.mark.parametrize("role", ["anonymous", "non_staff"])
def test_anonymous_and_non_staff_reach_nothing(as_role, media_root, role, page_name):
    row = make_row("approve_requests", media_root)
    response = as_role(role).get(PAGES[page_name].format(id=row.id))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("page_name", PAGES)
@pytest.mark.parametrize("role", ["moderator", "superuser"])
def test_moderators_and_superusers_read_every_page(as_role, media_root, role, page_name):
    row = make_row("approve_requests", media_root)
    response = as_role(role).get(PAGES[page_name].format(id=row.id))
    assert response.status_code == 200


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(
    ("role", "allowed"), [("anonymous", False), ("non_staff", False), ("moderator", True), ("superuser", True)]
)
def test_each_action_by_role(as_role, accounts, media_root, django_capture_on_commit_callbacks, role, allowed, action):
    row = make_row(action, media_root)
    with django_capture_on_commit_callbacks(execute=True):
        response = as_role(role).post(
            LIST,
            {
                "action": action,
                "_selected_action": [row.id],
                "apply": "1",
                "reason": "policy 4.2",
                "scope": "everywhere",
            },
        )
    assert response.status_code == 302
    assert effect(action, row) is allowed
    if allowed:
        actor = accounts[role].username
        assert VideoRequestEvent.objects.filter(request_id=row.id, actor=actor).exists()
        entry = LogEntry.objects.get(object_id=str(row.id))
        assert entry.user == accounts[role] and "policy 4.2" in entry.get_change_message()


@pytest.mark.parametrize(
    ("role", "allowed"), [("anonymous", False), ("non_staff", False), ("moderator", False), ("superuser", True)]
)
def test_only_superusers_delete(as_role, role, allowed):
    row = VideoRequestFactory()
    client = as_role(role)
    page = client.get(LIST + f"{row.id}/delete/")
    assert page.status_code == (200 if allowed else 403 if role == "moderator" else 302)
    client.post(LIST + f"{row.id}/delete/", {"post": "yes"})
    assert VideoRequest.objects.filter(id=row.id).exists() is not allowed
    # Nor through the bulk delete action.
    other = VideoRequestFactory()
    client.post(LIST, {"action": "delete_selected", "_selected_action": [other.id], "post": "yes"})
    assert VideoRequest.objects.filter(id=other.id).exists() is not allowed


def test_moderators_cannot_edit_request_facts(as_role):
    row = VideoRequestFactory(prompt="original prompt text")
    response = as_role("moderator").post(
        LIST + f"{row.id}/change/",
        {"prompt": "changed", "user_id": 1, "review_status": "flagged", "review_note": "looks off"},
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.prompt == "original prompt text" and row.user_id == 1001
    assert row.review_status == "flagged" and row.review_note == "looks off"


def test_moderators_do_not_manage_users_or_delete_bans(as_role, accounts):
    client = as_role("moderator")
    assert client.get("/admin/auth/user/").status_code == 403
    assert client.get(f"/admin/auth/user/{accounts['moderator'].id}/change/").status_code == 403
    ban = UserBan.objects.create(user_id=5, reason="spam", banned_by="x")
    assert client.get(f"/admin/tracking/userban/{ban.id}/delete/").status_code == 403
    assert client.get("/admin/tracking/userban/add/").status_code == 200
    assert client.get("/admin/tracking/blockedterm/add/").status_code == 200
    # Quota policies are the operator's to grant: a moderator reads them, edits none.
    assert client.get("/admin/tracking/quotapolicy/").status_code == 200
    assert client.get("/admin/tracking/quotapolicy/add/").status_code == 403
    policy = QuotaPolicy.objects.create(user_id=5, quota_limit=3, quota_window=timedelta(hours=1))
    assert client.post(f"/admin/tracking/quotapolicy/{policy.id}/change/", {"quota_limit": 99}).status_code == 403
    assert client.get("/admin/tracking/discordaction/").status_code == 200
    assert client.get("/admin/tracking/discordaction/add/").status_code == 403


def test_the_outbox_row_belongs_to_the_removal(as_role, media_root, django_capture_on_commit_callbacks):
    row = make_row("remove_outputs", media_root)
    with django_capture_on_commit_callbacks(execute=True):
        as_role("moderator").post(
            LIST, {"action": "remove_outputs", "_selected_action": [row.id], "apply": "1", "reason": "gore"}
        )
    action = DiscordAction.objects.get(request_id=row.id)
    assert (action.requested_by, action.reason, action.message_id) == ("mod", "gore", 99)
    assert not (media_root / "v.mp4").exists()


@pytest.mark.parametrize(
    ("role", "status"), [("anonymous", 302), ("non_staff", 302), ("moderator", 403), ("superuser", 200)]
)
def test_only_superusers_read_the_data_lifecycle_audit(as_role, role, status):
    call_command("purge_requests", "--actor", "ops", stdout=io.StringIO())
    audit = DataLifecycleAudit.objects.get()
    client = as_role(role)
    listing = client.get("/admin/tracking/datalifecycleaudit/")
    assert listing.status_code == status
    assert client.get(f"/admin/tracking/datalifecycleaudit/{audit.id}/change/").status_code == status
    index = client.get("/admin/")
    assert ("datalifecycleaudit" in index.content.decode()) is (role == "superuser")
    # Read-only for everyone: no adding, editing or deleting records.
    assert client.get("/admin/tracking/datalifecycleaudit/add/").status_code in (302, 403)
    client.post(f"/admin/tracking/datalifecycleaudit/{audit.id}/delete/", {"post": "yes"})
    client.post(f"/admin/tracking/datalifecycleaudit/{audit.id}/change/", {"actor": "someone else"})
    assert DataLifecycleAudit.objects.get().actor == "ops"


def test_moderators_read_reports_and_search_them_but_change_nothing(as_role):
    request = VideoRequestFactory()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO reports (request_id, reporter_id, reason) VALUES (%s, 42, 'shows a real person') RETURNING id",
            [request.id],
        )
        (report_id,) = cursor.fetchone()
    client = as_role("moderator")
    page = client.get("/admin/tracking/report/?q=person")
    assert page.status_code == 200 and "shows a real person" in page.content.decode()
    assert "shows a real person" not in client.get("/admin/tracking/report/?q=absentword").content.decode()
    assert client.get("/admin/tracking/report/add/").status_code == 403
    assert client.get(f"/admin/tracking/report/{report_id}/delete/").status_code == 403
