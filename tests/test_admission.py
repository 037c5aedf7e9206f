"""Admission: idempotency, the rolling window, policies, bans, refunds and bad text."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.factories import QuotaPolicyFactory, UserBanFactory, VideoRequestFactory
from tests.helpers import admit, next_interaction
from tracking import selectors, services
from tracking.errors import InvalidInput
from tracking.models import VideoRequest, VideoRequestEvent

pytestmark = [pytest.mark.django_db, pytest.mark.sql]
WINDOW = timedelta(hours=24)  # the default VEO_QUOTA_WINDOW


def test_admits_until_the_limit_then_records_a_rejection():
    answers = [admit(user_id=1) for _ in range(6)]
    assert [a.admitted for a in answers] == [True] * 5 + [False]
    assert [a.remaining for a in answers[:5]] == [4, 3, 2, 1, 0]
    refused = answers[5]
    assert refused.reason_code == "quota_exceeded" and refused.status == "rejected"
    assert "5 of 5" in refused.reason
    row = VideoRequest.objects.get(id=refused.request_id)
    assert row.status == "rejected" and not row.counts_toward_quota and row.error_code == "quota_exceeded"
    # reset time = oldest counted + window
    oldest = VideoRequest.objects.get(id=answers[0].request_id).created_at
    assert refused.reset_at == oldest + WINDOW


def test_same_interaction_twice_gives_one_row_and_the_same_answer():
    interaction = next_interaction()
    first = admit(user_id=2, interaction_id=interaction)
    second = admit(user_id=2, interaction_id=interaction)
    assert second.duplicate and not first.duplicate
    assert (first.request_id, first.admitted, first.remaining, first.reset_at) == (
        second.request_id,
        second.admitted,
        second.remaining,
        second.reset_at,
    )
    assert VideoRequest.objects.filter(interaction_id=interaction).count() == 1
    assert VideoRequestEvent.objects.filter(request_id=first.request_id).count() == 1


def test_duplicate_of_a_rejection_is_still_a_rejection():
    UserBanFactory(user_id=3)
    interaction = next_interaction()
    first = admit(user_id=3, interaction_id=interaction)
    second = admit(user_id=3, interaction_id=interaction)
    assert not first.admitted and not second.admitted and second.duplicate
    assert second.reason_code == "banned" and first.request_id == second.request_id


def test_interaction_id_of_another_user_is_refused():
    interaction = next_interaction()
    admit(user_id=4, interaction_id=interaction)
    with pytest.raises(Exception, match="another user"):
        admit(user_id=5, interaction_id=interaction)


def test_rows_outside_the_window_do_not_count_and_inside_do():
    now = timezone.now()
    VideoRequestFactory.create_batch(4, user_id=6, created_at=now - WINDOW - timedelta(seconds=1))
    VideoRequestFactory.create_batch(4, user_id=6, created_at=now - WINDOW + timedelta(minutes=5))
    answer = admit(user_id=6)
    assert answer.admitted and answer.used == 5 and answer.remaining == 0
    assert not admit(user_id=6).admitted


def test_exact_window_boundary_is_outside_the_window():
    created = timezone.now() - timedelta(hours=1)
    VideoRequestFactory(user_id=7, created_at=created)

    def used_at(moment):
        with connection.cursor() as cursor:
            cursor.execute("SELECT used, reset_at FROM quota_usage(7, 5, %s, %s)", [WINDOW, moment])
            return cursor.fetchone()

    assert used_at(created + WINDOW - timedelta(microseconds=1)) == (1, created + WINDOW)
    assert used_at(created + WINDOW) == (0, None)


def test_reset_time_is_oldest_of_the_counted_rows_plus_window_even_above_the_limit():
    now = timezone.now()
    times = [now - timedelta(hours=h) for h in (20, 10, 9, 8, 7, 6, 5)]  # 7 counted rows, limit 5
    for moment in times:
        VideoRequestFactory(user_id=8, created_at=moment)
    refused = admit(user_id=8)
    assert not refused.admitted
    # the probe reads the newest 5 (9 h .. 5 h ago): once the oldest of those leaves, 4 remain
    assert refused.reset_at == times[2] + WINDOW


def test_rejected_and_refunded_requests_do_not_count():
    now = timezone.now()
    VideoRequestFactory.create_batch(3, user_id=9, status="rejected", created_at=now)
    VideoRequestFactory.create_batch(3, user_id=9, status="failed", counts_toward_quota=False, created_at=now)
    assert admit(user_id=9).used == 1


def test_policy_precedence_user_and_guild_over_user_over_guild_over_default():
    QuotaPolicyFactory(guild_id=500, quota_limit=2)
    QuotaPolicyFactory(user_id=10, quota_limit=3)
    QuotaPolicyFactory(user_id=10, guild_id=501, quota_limit=1)

    assert selectors.quota_status(user_id=11, guild_id=500).limit == 2  # guild policy
    assert selectors.quota_status(user_id=11, guild_id=999).limit == 5  # default
    assert selectors.quota_status(user_id=10, guild_id=500).limit == 3  # user beats guild
    assert selectors.quota_status(user_id=10, guild_id=501).limit == 1  # user+guild beats user
    assert selectors.quota_status(user_id=10, guild_id=None).limit == 3  # DM: user policy

    assert [admit(user_id=10, guild_id=501).admitted for _ in range(2)] == [True, False]


def test_policy_window_is_used():
    QuotaPolicyFactory(user_id=12, quota_limit=1, quota_window=timedelta(minutes=10))
    VideoRequestFactory(user_id=12, created_at=timezone.now() - timedelta(minutes=11))
    assert admit(user_id=12, guild_id=None).admitted


def test_zero_limit_refuses_everything():
    QuotaPolicyFactory(user_id=13, quota_limit=0)
    answer = admit(user_id=13)
    assert not answer.admitted and answer.reason_code == "quota_exceeded"


def test_in_flight_cap_from_policy():
    QuotaPolicyFactory(user_id=14, quota_limit=10, max_in_flight=2)
    answers = [admit(user_id=14) for _ in range(3)]
    assert [a.admitted for a in answers] == [True, True, False]
    assert answers[2].reason_code == "too_many_in_flight"
    services.mark_failed(request_id=answers[0].request_id, error_code="backend_error", error_message="x")
    assert admit(user_id=14).admitted


def test_active_ban_refuses_and_records_a_rejection():
    UserBanFactory(user_id=15, reason="posting gore", expires_at=timezone.now() + timedelta(days=2))
    answer = admit(user_id=15)
    assert not answer.admitted and answer.reason_code == "banned"
    assert "posting gore" in answer.reason and "until" in answer.reason
    assert VideoRequest.objects.get(id=answer.request_id).status == "rejected"
    assert selectors.quota_status(user_id=15).used == 0


def test_expired_and_lifted_bans_do_not_apply():
    past = timezone.now() - timedelta(days=3)
    UserBanFactory(user_id=16, created_at=past, expires_at=past + timedelta(days=1))
    UserBanFactory(user_id=16, lifted_at=timezone.now(), lifted_by="mod")
    assert admit(user_id=16).admitted


def test_guild_ban_applies_only_in_that_guild():
    UserBanFactory(user_id=17, guild_id=600)
    assert not admit(user_id=17, guild_id=600).admitted
    assert admit(user_id=17, guild_id=601).admitted
    assert admit(user_id=17, guild_id=None).admitted


def test_failures_on_our_side_are_refunded_once():
    first = admit(user_id=18)
    services.mark_generating(request_id=first.request_id, operation_name="operations/1")
    services.mark_failed(request_id=first.request_id, error_code="backend_error", error_message="500 from Veo")
    assert selectors.quota_status(user_id=18).used == 0
    assert services.refund(request_id=first.request_id, actor="mod", reason="again") is False
    assert VideoRequestEvent.objects.filter(request_id=first.request_id, kind="refunded").count() == 1

    second = admit(user_id=18)
    services.mark_timeout(request_id=second.request_id, error_message="no answer in 10 minutes")
    assert selectors.quota_status(user_id=18).used == 0


def test_content_filtered_failures_count_by_default(settings):
    answer = admit(user_id=19)
    services.mark_generating(request_id=answer.request_id, operation_name="operations/1")
    services.mark_failed(
        request_id=answer.request_id,
        error_code="content_filtered",
        error_message="Veo filtered the output",
        safety_filtered_count=1,
        safety_filtered_reasons=["violence"],
    )
    row = VideoRequest.objects.get(id=answer.request_id)
    assert row.counts_toward_quota and row.safety_filtered_reasons == ["violence"]

    settings.VEO_REFUND_CONTENT_FILTERED = True
    other = admit(user_id=19)
    services.mark_failed(request_id=other.request_id, error_code="content_filtered", error_message="filtered")
    assert not VideoRequest.objects.get(id=other.request_id).counts_toward_quota


def test_moderator_refund_gives_the_slot_back_once():
    answers = [admit(user_id=20) for _ in range(5)]
    assert not admit(user_id=20).admitted
    assert services.refund(request_id=answers[0].request_id, actor="mod:bob", reason="bad output") is True
    assert services.refund(request_id=answers[0].request_id, actor="mod:bob", reason="bad output") is False
    event = VideoRequestEvent.objects.get(request_id=answers[0].request_id, kind="refunded")
    assert event.actor == "mod:bob" and event.detail == {"reason": "bad output"}
    assert admit(user_id=20).admitted
    assert not admit(user_id=20).admitted


@pytest.mark.parametrize(
    "prompt,expected",
    [
        ("a fox\x00 in snow", "NUL character"),
        ("a fox \ud83d in snow", "unpaired surrogate"),
        ("a fox \udc00", "unpaired surrogate"),
    ],
)
def test_text_postgres_cannot_store_is_refused_and_nothing_is_written(prompt, expected):
    before = VideoRequest.objects.count()
    with pytest.raises(InvalidInput, match=expected) as caught:
        admit(user_id=21, prompt=prompt)
    assert caught.value.field == "prompt"
    assert VideoRequest.objects.count() == before


def test_negative_prompt_is_checked_too():
    with pytest.raises(InvalidInput, match="negative_prompt contains a NUL"):
        admit(user_id=22, negative_prompt="blurry\x00")


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("prompt", "hey", "prompt must be 5-600 characters"),
        ("prompt", "x" * 601, "prompt must be 5-600 characters"),
        ("duration_seconds", 5, "duration_seconds must be one of 4, 6, 8"),
        ("aspect_ratio", "4:3", "aspect_ratio must be one of"),
        ("resolution", "4k", "resolution must be one of"),
        ("seed", -1, "seed must be"),
        ("person_generation", "everyone", "person_generation must be one of"),
    ],
)
def test_invalid_parameters_get_a_specific_message(field, value, message):
    params = {"prompt": "a red fox in snow", field: value}
    before = VideoRequest.objects.count()
    with pytest.raises(InvalidInput, match=message):
        admit(user_id=23, **params)
    assert VideoRequest.objects.count() == before


def test_prompt_whitespace_is_collapsed():
    answer = admit(user_id=24, prompt="  a   red\n\nfox  ")
    assert VideoRequest.objects.get(id=answer.request_id).prompt == "a red fox"
