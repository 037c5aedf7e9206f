"""The review queue in the database and its services: where items come from, claims (one
moderator wins, claims expire), decisions and their effects, reopening, notes, appeals, and
the audit log every moderator's change lands in."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tests.factories import UserBanFactory, VideoRequestFactory
from tests.helpers import admit, next_interaction
from tracking import services
from tracking.errors import InvalidInput
from tracking.models import (
    Appeal,
    BlockedTerm,
    DiscordAction,
    ModerationLogEntry,
    Report,
    ReviewItem,
    UserBan,
    UserNotice,
    VideoRequest,
)
from tracking.services.review import BanTerms, ItemUnavailable

pytestmark = [pytest.mark.django_db, pytest.mark.sql]

review = services.review


def reported(reporters=(7001,), **request) -> ReviewItem:
    """A delivered video reported by each of ``reporters``: its queue item."""
    row = VideoRequestFactory(**request)
    for reporter in reporters:
        services.report_request(
            interaction_id=row.interaction_id, reporter_id=reporter, guild_id=row.guild_id, reason="gross"
        )
    return ReviewItem.objects.get(request_id=row.id, kind="report", state="open")


def appealed(user_id=4242, guild_id=None) -> ReviewItem:
    ban_id = services.ban_user(user_id=user_id, guild_id=guild_id, reason="spam", actor="mod")
    filed = services.appeals.file_appeal(
        user_id=user_id, guild_id=2001, interaction_id=next_interaction(), body="I will behave"
    )
    assert filed.new and filed.ban_id == ban_id
    return ReviewItem.objects.get(appeal_id=filed.appeal_id)


def logged(**filters) -> list[tuple]:
    return list(ModerationLogEntry.objects.filter(**filters).order_by("id").values_list("actor", "action", "reason"))


# --- where items come from ----------------------------------------------------------------------


def test_reports_of_one_video_are_one_item_with_hits():
    item = reported(reporters=(7001, 7002, 7003), user_id=555, guild_id=66)
    assert (item.hits, item.user_id, item.guild_id, item.summary) == (3, 555, 66, "reported: gross")
    assert ReviewItem.objects.count() == 1


def test_a_safety_filter_hit_queues_the_request_once():
    request_id = admit(user_id=1201).request_id
    services.mark_generating(request_id=request_id, operation_name="operations/1")
    services.mark_failed(
        request_id=request_id,
        error_code="content_filtered",
        error_message="filtered",
        safety_filtered_count=1,
        safety_filtered_reasons=["violence"],
    )
    assert VideoRequest.objects.get(id=request_id).status == "failed"
    (item,) = ReviewItem.objects.filter(kind="safety_filter")
    assert (item.request_id, item.user_id, item.summary) == (request_id, 1201, "Veo safety filter: violence")


def test_blocked_term_refusals_fold_into_one_item_per_user():
    services.save_blocked_term(term=BlockedTerm(kind="word", pattern="kraken"), actor="mod")
    first = admit(user_id=1301, prompt="a kraken in the sea")
    second = admit(user_id=1301, prompt="another kraken please")
    assert not first.admitted and not second.admitted
    (item,) = ReviewItem.objects.filter(kind="blocked_term")
    assert (item.hits, item.user_id, item.request_id) == (2, 1301, second.request_id)
    assert "kraken" in item.summary


def test_repeated_refusals_queue_the_user_at_the_threshold_not_before():
    UserBanFactory(user_id=1401)
    for _ in range(4):
        assert not admit(user_id=1401).admitted
    assert not ReviewItem.objects.filter(kind="repeated_refusals").exists()
    assert not admit(user_id=1401).admitted
    (item,) = ReviewItem.objects.filter(kind="repeated_refusals")
    assert item.user_id == 1401 and item.summary.startswith("refused 5 times within an hour")


def test_admissions_that_pass_queue_nothing():
    for user_id in (1501, 1502):
        assert admit(user_id=user_id).admitted
    assert not ReviewItem.objects.exists()


# --- claims ----------------------------------------------------------------------------------------


def test_a_claim_is_one_moderators_until_it_expires():
    item = reported()
    review.claim(item_id=item.id, actor="alice")
    with pytest.raises(ItemUnavailable, match=f"item #{item.id} is claimed by alice until"):
        review.claim(item_id=item.id, actor="bob")
    with pytest.raises(ItemUnavailable, match="claimed by alice"):
        review.resolve(item_id=item.id, actor="bob", decision="dismiss", reason="fine")
    assert review.release(item_id=item.id, actor="bob") is False
    with connection.cursor() as cursor:  # alice's claim runs out
        cursor.execute("UPDATE review_items SET claimed_until = now() - interval '1 second' WHERE id = %s", [item.id])
    review.claim(item_id=item.id, actor="bob")
    item.refresh_from_db()
    assert item.claimed_by == "bob" and item.claimed_until > timezone.now() + timedelta(minutes=14)


def test_take_next_claims_the_oldest_free_item_of_the_kind_asked():
    old = reported(created_at=timezone.now() - timedelta(hours=2))
    new = reported()
    assert review.take_next(actor="alice") == old.id
    assert review.take_next(actor="bob") == new.id
    assert review.take_next(actor="carol") is None
    assert review.take_next(actor="carol", kind="appeal") is None
    with pytest.raises(InvalidInput, match="unknown kind"):
        review.take_next(actor="carol", kind="drop table")


@pytest.mark.django_db(transaction=True)
def test_two_moderators_claiming_at_once_exactly_one_wins():
    """Lock-step races on real connections: both claim the same item at the same moment, twenty
    times; then both take "the next" item twenty times and never get the same one."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE review_items CASCADE")
    items = [reported(user_id=9000 + n).id for n in range(20)]
    try:
        for item_id in items:
            outcomes = _race(lambda actor, item_id=item_id: review.claim(item_id=item_id, actor=actor))
            assert sorted(type(outcome).__name__ for outcome in outcomes.values()) == ["ItemUnavailable", "datetime"]
        ReviewItem.objects.filter(id__in=items).update(claimed_by=None, claimed_until=None)
        taken = [_race(lambda actor: review.take_next(actor=actor)) for _ in range(10)]
        ids = [outcome for round_ in taken for outcome in round_.values()]
        assert sorted(ids) == sorted(items)  # twenty different items, none twice
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM video_requests WHERE user_id BETWEEN 9000 AND 9019")
            cursor.execute("TRUNCATE review_items CASCADE")
            cursor.execute("DELETE FROM moderation_log")


def _race(act) -> dict:
    together = threading.Barrier(2)
    outcomes = {}

    def run(actor: str) -> None:
        together.wait()
        try:
            outcomes[actor] = act(actor)
        except ItemUnavailable as error:
            outcomes[actor] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(actor,)) for actor in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


# --- decisions ----------------------------------------------------------------------------------


def test_resolving_needs_a_reason_and_changes_nothing_without_one():
    item = reported()
    for reason in ("", "   ", None):
        with pytest.raises(InvalidInput, match="a reason is required"):
            review.resolve(item_id=item.id, actor="alice", decision="remove_output", reason=reason)
    item.refresh_from_db()
    assert item.state == "open" and item.request.review_status == "unreviewed"
    assert not ModerationLogEntry.objects.filter(action__startswith="resolve").exists()


def test_remove_output_acts_on_the_reports_and_queues_the_message_deletion():
    item = reported(reporters=(7001, 7002), channel_id=3001, discord_message_id=99)
    done = review.resolve(item_id=item.id, actor="alice", decision="remove_output", reason="gore")
    assert done.effect == f"output of request #{item.request_id} removed"
    item.refresh_from_db()
    assert (item.state, item.decision, item.resolution_reason, item.resolved_by) == (
        "resolved",
        "remove_output",
        "gore",
        "alice",
    )
    assert item.claimed_by is None and item.request.review_status == "removed"
    assert set(Report.objects.filter(request_id=item.request_id).values_list("state", flat=True)) == {"actioned"}
    assert DiscordAction.objects.filter(request_id=item.request_id, action="delete_message").exists()
    with pytest.raises(ItemUnavailable, match="already resolved"):
        review.resolve(item_id=item.id, actor="bob", decision="approve", reason="changed my mind")


def test_approve_and_dismiss_close_the_reports_as_dismissed():
    approved, dismissed = reported(), reported(user_id=1002)
    review.resolve(item_id=approved.id, actor="alice", decision="approve", reason="it is fine")
    review.resolve(item_id=dismissed.id, actor="alice", decision="dismiss", reason="duplicate")
    assert VideoRequest.objects.get(id=approved.request_id).review_status == "approved"
    assert VideoRequest.objects.get(id=dismissed.request_id).review_status == "unreviewed"
    assert set(Report.objects.values_list("state", flat=True)) == {"dismissed"}


def test_ban_in_the_items_server_until_a_date():
    item = reported(user_id=1601, guild_id=77)
    until = timezone.now() + timedelta(days=3)
    done = review.resolve(
        item_id=item.id, actor="alice", decision="ban", reason="harassment", ban=BanTerms(False, until)
    )
    ban = UserBan.objects.get(user_id=1601)
    assert (ban.guild_id, ban.expires_at, ban.reason, ban.banned_by) == (77, until, "harassment", "alice")
    assert done.effect.startswith("user 1601 banned in server 77 until")
    assert not admit(user_id=1601, guild_id=77).admitted and admit(user_id=1601, guild_id=78).admitted


@pytest.mark.parametrize(
    ("kind", "decision", "ban", "message"),
    [
        ("appeal", "ban", None, "an appeal is decided by approve"),
        ("appeal", "remove_output", None, "an appeal is decided by approve"),
        ("user", "remove_output", None, "this item is about a user"),
        ("dm", "ban", BanTerms(everywhere=False), "not made in a server"),
        ("report", "delete_everything", None, "choose a decision"),
    ],
)
def test_a_decision_that_does_not_fit_the_item_is_refused(kind, decision, ban, message):
    if kind == "appeal":
        item = appealed()
    elif kind == "user":
        UserBanFactory(user_id=1701)
        for _ in range(5):
            admit(user_id=1701)
        item = ReviewItem.objects.get(kind="repeated_refusals")
    else:
        item = reported(guild_id=None if kind == "dm" else 2001)
    with pytest.raises(InvalidInput, match=message):
        review.resolve(item_id=item.id, actor="alice", decision=decision, reason="because", ban=ban)
    item.refresh_from_db()
    assert item.state == "open"


def test_granting_an_appeal_lifts_the_ban_and_tells_the_user():
    item = appealed(user_id=1801)
    assert not admit(user_id=1801).admitted
    done = review.resolve(item_id=item.id, actor="alice", decision="approve", reason="first offence")
    assert done.effect.endswith("lifted; the user is told")
    assert admit(user_id=1801).admitted
    appeal = Appeal.objects.get(id=item.appeal_id)
    assert (appeal.state, appeal.decided_by, appeal.decision_reason) == ("granted", "alice", "first offence")
    (notice,) = UserNotice.objects.filter(user_id=1801)
    assert "granted" in notice.body and "first offence" in notice.body and notice.delivered_at is None
    assert logged(target_table="user_bans", action="lift ban") == [("alice", "lift ban", "first offence")]


def test_denying_an_appeal_keeps_the_ban_and_tells_the_user():
    item = appealed(user_id=1802)
    review.resolve(item_id=item.id, actor="alice", decision="dismiss", reason="repeat offender")
    assert not admit(user_id=1802).admitted
    assert Appeal.objects.get(id=item.appeal_id).state == "denied"
    assert "denied: repeat offender" in UserNotice.objects.get(user_id=1802).body


def test_one_open_appeal_per_ban_and_only_when_banned():
    item = appealed(user_id=1803)
    again = services.appeals.file_appeal(user_id=1803, guild_id=2001, interaction_id=next_interaction(), body="please")
    assert not again.new and again.appeal_id == item.appeal_id
    with pytest.raises(services.appeals.NotBanned):
        services.appeals.file_appeal(user_id=1804, guild_id=2001, interaction_id=next_interaction(), body="hi")
    with pytest.raises(InvalidInput, match="at most 1000 characters"):
        services.appeals.file_appeal(user_id=1803, guild_id=2001, interaction_id=next_interaction(), body="x" * 1001)
    assert Appeal.objects.count() == 1


def test_bulk_resolution_takes_one_reason_and_skips_what_others_hold():
    free, held, other = reported(user_id=1), reported(user_id=2), reported(user_id=3)
    review.claim(item_id=held.id, actor="bob")
    result = review.resolve_many(
        item_ids=[free.id, held.id, other.id], actor="alice", decision="dismiss", reason="spam reports"
    )
    assert [r.item_id for r in result.resolved] == [free.id, other.id]
    assert result.skipped == [(held.id, f"item #{held.id} is claimed by bob until {_until(held)} UTC")]
    with pytest.raises(InvalidInput, match="a reason is required"):
        review.resolve_many(item_ids=[held.id], actor="alice", decision="dismiss", reason="")


def _until(item: ReviewItem) -> str:
    item.refresh_from_db()
    return f"{item.claimed_until:%H:%M}"


def test_a_failed_effect_leaves_the_item_open():
    """The decision and its effect are one transaction: a ban the database refuses (its reason is
    too long for user_bans) resolves nothing."""
    item = reported(user_id=1901)
    with pytest.raises(Exception), transaction.atomic():  # noqa: B017 -- whatever the database raises
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE user_bans ADD CONSTRAINT no_bans_now CHECK (false) NOT VALID")
        review.resolve(item_id=item.id, actor="alice", decision="ban", reason="spam")
    item.refresh_from_db()
    assert item.state == "open" and not UserBan.objects.exists()


def test_reopen_claims_it_for_the_reopener_and_keeps_what_was_done():
    item = reported()
    review.resolve(item_id=item.id, actor="alice", decision="remove_output", reason="gore")
    with pytest.raises(InvalidInput, match="a reason is required"):
        review.reopen(item_id=item.id, actor="bob", reason=" ")
    review.reopen(item_id=item.id, actor="bob", reason="wrong video")
    item.refresh_from_db()
    assert (item.state, item.decision, item.claimed_by) == ("open", None, "bob")
    assert item.request.review_status == "removed"  # the removal is not undone
    with pytest.raises(ItemUnavailable, match="is open already"):
        review.reopen(item_id=item.id, actor="bob", reason="again")


def test_reopening_is_refused_while_a_newer_item_covers_the_subject():
    item = reported(reporters=(7001,))
    review.resolve(item_id=item.id, actor="alice", decision="approve", reason="fine")
    services.report_request(
        interaction_id=item.request.interaction_id, reporter_id=7002, guild_id=2001, reason="still gross"
    )
    with pytest.raises(ItemUnavailable, match="a newer open item"):
        review.reopen(item_id=item.id, actor="bob", reason="look again")


def test_notes_are_kept_in_order_and_checked():
    item = reported()
    review.add_note(item_id=item.id, actor="alice", body="asked the server owner")
    review.add_note(item_id=item.id, actor="bob", body="they agree")
    assert list(item.notes.values_list("author", "body")) == [
        ("alice", "asked the server owner"),
        ("bob", "they agree"),
    ]
    with pytest.raises(InvalidInput, match="the note is empty"):
        review.add_note(item_id=item.id, actor="bob", body="  ")
    with pytest.raises(ItemUnavailable, match="does not exist"):
        review.add_note(item_id=10**12, actor="bob", body="lost")


# --- the audit log ------------------------------------------------------------------------------


def test_every_moderator_action_is_in_the_audit_log_with_before_and_after():
    item = reported(user_id=2101)
    review.claim(item_id=item.id, actor="alice")
    review.add_note(item_id=item.id, actor="alice", body="checking")
    review.resolve(item_id=item.id, actor="alice", decision="ban", reason="spam")
    assert logged(target_table="review_items") == [("alice", "claim", None), ("alice", "resolve: ban", "spam")]
    assert logged(target_table="review_notes") == [("alice", "note", None)]
    assert logged(target_table="user_bans") == [("alice", "ban", "spam")]
    assert logged(target_table="reports") == [("alice", "resolve: ban", "spam")]
    resolved = ModerationLogEntry.objects.get(target_table="review_items", action="resolve: ban")
    assert resolved.subject_user_id == 2101 and resolved.target_id == item.id
    assert resolved.before["state"] == "open" and resolved.after["state"] == "resolved"
    assert resolved.before["claimed_by"] == "alice" and resolved.after["claimed_by"] is None
    assert "summary" not in resolved.before  # only what changed


def test_request_actions_are_logged_and_workers_are_not():
    request_id = admit(user_id=2201).request_id
    services.mark_generating(request_id=request_id, operation_name="operations/1")
    services.mark_completed(request_id=request_id, output_uris=["file:x.mp4"])
    assert VideoRequest.objects.get(id=request_id).status == "completed"
    assert not ModerationLogEntry.objects.exists()
    services.flag(request_ids=[request_id], actor="alice", reason="odd")
    services.refund_requests(request_ids=[request_id], actor="bob", reason="our fault")
    ban = UserBanFactory(user_id=2201)  # not a moderator's change: the factory's
    services.lift_bans(ban_ids=[ban.id], actor="carol", reason="appeal by mail")
    entries = ModerationLogEntry.objects.order_by("id")
    assert [(e.actor, e.action, e.target_table, e.reason) for e in entries] == [
        ("alice", "review: flagged", "video_requests", "odd"),
        ("bob", "refund", "video_requests", "our fault"),
        ("carol", "lift ban", "user_bans", "appeal by mail"),
    ]
    assert entries[0].before["review_status"] == "unreviewed" and entries[0].after["review_status"] == "flagged"
    assert entries[1].before["counts_toward_quota"] is True and entries[1].after["counts_toward_quota"] is False


def test_the_audit_log_is_append_only():
    services.ban_user(user_id=2301, reason="spam", actor="alice")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        ModerationLogEntry.objects.update(actor="mallory")
    assert logged() == [("alice", "ban", "spam")]


def test_a_panel_post_by_a_moderator_is_attributed_even_without_a_service(as_role):
    """A superuser's delete goes through Django's generic view, not a service: the panel's
    attribution still puts it in the log under their name."""
    ban = UserBanFactory(user_id=2401)
    response = as_role("superuser").post(f"/admin/tracking/userban/{ban.id}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not UserBan.objects.filter(id=ban.id).exists()
    (entry,) = ModerationLogEntry.objects.all()
    assert (entry.action, entry.target_table, entry.target_id, entry.subject_user_id) == (
        "delete",
        "user_bans",
        ban.id,
        2401,
    )
    assert entry.actor and entry.before["reason"] == "spamming the channel" and entry.after is None
