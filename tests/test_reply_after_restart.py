"""The outcome of a request answered by one bot process and delivered by another (or by the same
one after a restart): the original reply is edited while its token lives, through the token kept
in the database, and only past that does the outcome go to the channel as a new post."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.bot_harness import delivered, eventually, run_bot
from tests.fakes import discord_server as fake
from tests.fakes.interactions import CHANNEL_ID, USER_ID, deliver_and_wait, slash_command
from tracking.models import ReplyToken, VideoRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("bot_settings")]


def answered_by_one_process(server) -> dict:
    """/veo answered by a bot without a worker, which then stops: nothing has run yet."""
    payload = slash_command("veo", {"prompt": "a red fox running through fresh snow"})

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        kept = ReplyToken.objects.filter(interaction_id=payload["id"]).exists
        await eventually(kept, what="the reply token kept")  # written after the answer, off its path

    run_bot(scenario, run_worker=False)
    assert server.original_response(payload["id"])["embeds"][0]["title"] == "Queued"
    return payload


def delivered_by_another(server, payload) -> VideoRequest:
    async def scenario(bot):
        await eventually(delivered(int(payload["id"])), what="delivery by the second process")

    run_bot(scenario)
    return VideoRequest.objects.get(interaction_id=payload["id"])


def test_the_next_process_edits_the_original_reply_with_the_video(server):
    payload = answered_by_one_process(server)
    kept = ReplyToken.objects.get(interaction_id=payload["id"])
    assert kept.size_limit > 0 and kept.expires_at > timezone.now()

    request = delivered_by_another(server, payload)

    final = server.original_response(payload["id"])
    assert final["embeds"][0]["title"] == "Your video is ready" and final["attachments"]
    assert (request.delivery_method, request.discord_message_id) == ("interaction", int(final["id"]))
    assert len(server.messages_in(CHANNEL_ID)) == 1  # the reply, edited; no second post
    assert not ReplyToken.objects.filter(interaction_id=payload["id"]).exists()  # used, then forgotten


def test_past_its_token_the_outcome_is_posted_in_the_channel(server):
    payload = answered_by_one_process(server)
    ReplyToken.objects.filter(interaction_id=payload["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))

    request = delivered_by_another(server, payload)

    queued, post = server.messages_in(CHANNEL_ID)
    assert queued["embeds"][0]["title"] == "Queued"  # left as it was: its token is gone
    assert (request.delivery_method, request.discord_message_id) == ("channel", int(post["id"]))
    assert post["content"] == f"<@{USER_ID}>" and "resumed after a restart" in post["embeds"][0]["footer"]["text"]


def test_a_token_discord_no_longer_takes_falls_back_to_the_channel(server):
    payload = answered_by_one_process(server)
    server.expire_interaction(int(payload["id"]))  # Discord's clock ran out before ours

    request = delivered_by_another(server, payload)

    assert request.delivery_method == "channel"
    post = server.messages_in(CHANNEL_ID)[-1]
    assert "the original reply had expired" in post["embeds"][0]["footer"]["text"]


def test_expired_tokens_are_swept_by_the_next_ones(server):
    ReplyToken.objects.bulk_create(
        ReplyToken(
            interaction_id=n,
            application_id=1,
            token="old",
            size_limit=1,
            expires_at=timezone.now() - timedelta(hours=1),
        )
        for n in range(1, 31)
    )
    expired = ReplyToken.objects.filter(expires_at__lt=timezone.now())
    answered_by_one_process(server)
    assert expired.count() == 10  # 20 swept by the insert
    answered_by_one_process(server)
    assert expired.count() == 0 and ReplyToken.objects.count() == 2


def test_a_token_kept_for_a_reply_never_sent_is_forgotten(server):
    # The admission keeps the token in its own statement, before the answer goes out; an answer
    # Discord refused leaves no reply to edit, so the token must not say there is one.
    server.fail("POST /interactions/*/callback", fake.UNKNOWN_INTERACTION, times=1)
    payload = slash_command("veo", {"prompt": "a lantern drifting down a river at dusk"})
    interaction_id = int(payload["id"])

    async def scenario(bot):
        await deliver_and_wait(bot, payload, server=server)
        # The request and its token commit together: once the request is there, so was the token.
        await eventually(VideoRequest.objects.filter(interaction_id=interaction_id).exists, what="the admission")
        await eventually(
            lambda: not ReplyToken.objects.filter(interaction_id=interaction_id).exists(), what="the token forgotten"
        )

    run_bot(scenario, run_worker=False)
    assert server.original_response(payload["id"]) is None
