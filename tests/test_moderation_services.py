"""Each moderation action's effect, and the event row that records who and why."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import VideoRequestFactory
from tests.helpers import admit
from tracking import analytics, selectors, services
from tracking.errors import InvalidInput
from tracking.models import DiscordAction, UserBan, VideoRequest, VideoRequestEvent

pytestmark = [pytest.mark.django_db, pytest.mark.sql]


def events(request_id: int, kind: str) -> list[VideoRequestEvent]:
    return list(VideoRequestEvent.objects.filter(request_id=request_id, kind=kind))


def test_approve_and_flag_record_actor_and_reason():
    row = VideoRequestFactory()
    assert services.flag(request_ids=[row.id], actor="alice", reason="looks violent") == [row.id]
    row.refresh_from_db()
    assert (row.review_status, row.reviewed_by, row.review_note) == ("flagged", "alice", "looks violent")
    (event,) = events(row.id, "review_changed")
    assert event.actor == "alice" and event.detail == {"from": "unreviewed", "to": "flagged", "reason": "looks violent"}
    assert services.approve(request_ids=[row.id], actor="bob", reason="fine on second look") == [row.id]
    assert [e.actor for e in events(row.id, "review_changed")] == ["alice", "bob"]
    assert services.approve(request_ids=[row.id], actor="bob", reason="again") == []  # already approved: no-op


def test_a_reason_is_required():
    row = VideoRequestFactory()
    with pytest.raises(InvalidInput, match="reason is required"):
        services.flag(request_ids=[row.id], actor="alice", reason="   ")
    with pytest.raises(InvalidInput, match="NUL"):
        services.flag(request_ids=[row.id], actor="alice", reason="bad\x00")


def test_remove_output_hides_it_queues_the_discord_deletion_and_deletes_the_local_file(
    media_root, django_capture_on_commit_callbacks
):
    (media_root / "out").mkdir()
    video = media_root / "out" / "v.mp4"
    video.write_bytes(b"\x00" * 100)
    row = VideoRequestFactory(
        output_uris=["file:out/v.mp4"],
        public_urls=["https://example.test/v.mp4"],
        channel_id=3001,
        discord_message_id=777,
    )
    with django_capture_on_commit_callbacks(execute=True):
        (removal,) = services.remove_output(request_ids=[row.id], actor="alice", reason="gore")
    row.refresh_from_db()
    assert row.review_status == "removed" and row.public_urls == [] and not video.exists()
    action = DiscordAction.objects.get(id=removal.discord_action_id)
    assert (
        action.action,
        action.channel_id,
        action.message_id,
        action.requested_by,
        action.reason,
        action.done_at,
    ) == ("delete_message", 3001, 777, "alice", "gore", None)
    (event,) = events(row.id, "output_removed")
    assert event.actor == "alice" and event.detail["reason"] == "gore" and event.detail["outputs"] == ["file:out/v.mp4"]
    assert events(row.id, "review_changed")[0].detail["to"] == "removed"
    # Twice: nothing more happens, and review actions cannot bring it back.
    assert services.remove_output(request_ids=[row.id], actor="bob", reason="again") == []
    assert services.approve(request_ids=[row.id], actor="bob", reason="undo") == []
    assert DiscordAction.objects.count() == 1


def test_remove_output_without_a_discord_message_queues_nothing():
    row = VideoRequestFactory(discord_message_id=None)
    (removal,) = services.remove_output(request_ids=[row.id], actor="alice", reason="spam")
    assert removal.discord_action_id is None and not DiscordAction.objects.exists()


def test_refund_gives_the_slot_back_once():
    answer = admit()
    assert services.refund_requests(request_ids=[answer.request_id], actor="alice", reason="our bug") == [
        answer.request_id
    ]
    assert services.refund_requests(request_ids=[answer.request_id], actor="alice", reason="again") == []
    assert not VideoRequest.objects.get(id=answer.request_id).counts_toward_quota
    (event,) = events(answer.request_id, "refunded")
    assert event.actor == "alice" and event.detail == {"reason": "our bug"}
    assert selectors.quota_status(user_id=1001).used == 0


def test_cancel_only_touches_pending_or_generating_requests():
    pending = admit().request_id
    done = VideoRequestFactory(status="completed").id
    assert services.cancel_requests(request_ids=[pending, done], actor="alice", reason="duplicate") == [pending]
    row = VideoRequest.objects.get(id=pending)
    assert row.status == "cancelled" and not row.counts_toward_quota
    (event,) = events(pending, "status_changed")
    assert (event.to_status, event.actor, event.detail["reason"]) == ("cancelled", "alice", "duplicate")
    assert VideoRequest.objects.get(id=done).status == "completed"


def test_ban_applies_from_the_next_request_and_is_recorded_on_the_request():
    first = admit()
    expires = timezone.now() + timedelta(days=1)
    ban_id = services.ban_user(
        user_id=1001, reason="nsfw prompts", actor="alice", expires_at=expires, request_ids=[first.request_id]
    )
    ban = UserBan.objects.get(id=ban_id)
    assert (ban.banned_by, ban.reason, ban.guild_id) == ("alice", "nsfw prompts", None)
    (event,) = events(first.request_id, "user_banned")
    assert event.actor == "alice" and event.detail["ban_id"] == ban_id and event.detail["reason"] == "nsfw prompts"
    refused = admit()
    assert refused.reason_code == "banned" and "nsfw prompts" in refused.reason
    assert services.lift_bans(ban_ids=[ban_id], actor="bob") == [ban_id]
    assert admit().admitted


def test_a_guild_ban_applies_only_in_that_guild():
    services.ban_user(user_id=1001, guild_id=2001, reason="spam here", actor="alice")
    assert admit(guild_id=2001).reason_code == "banned"
    assert admit(guild_id=2002).admitted


def test_ban_expiry_must_be_in_the_future():
    with pytest.raises(InvalidInput, match="future"):
        services.ban_user(user_id=1001, reason="x", actor="a", expires_at=timezone.now() - timedelta(minutes=1))


def test_a_quota_policy_applies_from_the_next_request():
    from tracking.models import QuotaPolicy

    services.save_quota_policy(
        policy=QuotaPolicy(user_id=1001, quota_limit=1, quota_window=timedelta(hours=1)), actor="alice"
    )
    assert admit().admitted
    assert admit().reason_code == "quota_exceeded"
    assert QuotaPolicy.objects.get().created_by == "alice"


def test_dashboard_and_user_overview_read_what_happened():
    now = timezone.now()
    VideoRequestFactory(created_at=now - timedelta(hours=2), user_id=5, guild_id=9)
    VideoRequestFactory(
        created_at=now - timedelta(hours=3),
        user_id=5,
        guild_id=9,
        status="failed",
        safety_filtered_count=1,
        safety_filtered_reasons=["Violence"],
        error_code="content_filtered",
    )
    VideoRequestFactory(created_at=now - timedelta(days=3), user_id=6, guild_id=None, status="rejected")
    board = analytics.dashboard(until=now, days=7)
    assert sum(day.total for day in board.activity.buckets) == 3 and len(board.activity.buckets) == 8
    assert board.activity.totals["completed"] == 1 and board.failure_rate == 0.5 and board.safety_filter_rate == 0.5
    assert board.top_users[0].user_id == 5 and board.top_users[0].requests == 2
    assert board.top_guilds[0].guild_id == 9 and sum(board.activity.per_hour_of_day) == 3
    assert board.generation_time.count == 1
    day = analytics.dashboard(until=now, days=1)
    assert len(day.activity.buckets) in (24, 25) and sum(b.total for b in day.activity.buckets) == 2
    services.ban_user(user_id=5, reason="spam", actor="alice")
    overview = selectors.user_overview(user_id=5)
    assert overview.active_ban is not None and len(overview.history.requests) == 2
